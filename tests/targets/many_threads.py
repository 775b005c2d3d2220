"""105 workers, started one after another and parked at recursion depths 1 to 3, so the dump
stops after 100 thread blocks with "..." and leaves out the five oldest workers and the main
thread, which is blocked in serve()."""
import fhtarget as fh


def descend(spot, levels):
    if levels > 1:
        descend(spot, levels - 1)
    else:
        fh.park(spot)


fh.register()
for i in range(105):
    fh.start(descend, 1 + i % 3)
fh.serve()
