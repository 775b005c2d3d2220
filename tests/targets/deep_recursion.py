"""One worker per stack size: exactly 99, 100, 101, 150 and 1000 frames, park() included,
so the 100-frame limit is exercised on both sides; the main thread is blocked in serve()."""
import sys

import fhtarget as fh


def dive(spot, frames):
    here = fh.depth()
    if here + 1 < frames:
        dive(spot, frames)
    elif here + 1 == frames:
        fh.park(spot)
    else:
        sys.stderr.write("stack already deeper than %d frames\n" % frames)


sys.setrecursionlimit(5000)
fh.register()
for size in (99, 100, 101, 150, 1000):
    fh.start(dive, size)
fh.serve()
