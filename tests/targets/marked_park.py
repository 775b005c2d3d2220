"""Main thread parked in a function named park_<pid> (so a dump of this process names it), one
worker parked under descend() 3 deep."""
import os

import fhtarget as fh


def descend(spot, levels):
    if levels > 1:
        descend(spot, levels - 1)
    else:
        fh.park(spot)


fh.register()
fh.start(descend, 3)
namespace = {"fh": fh}
exec("def park_%d():\n    fh.serve()\n" % os.getpid(), namespace)
namespace["park_%d" % os.getpid()]()
