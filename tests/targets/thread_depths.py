"""Main thread blocked in serve(); four workers, started in this order: descend() 1 deep,
a method calling a nested function, a lambda calling descend() 4 deep, and descend() 12 deep."""
import fhtarget as fh


def descend(spot, levels):
    if levels > 1:
        descend(spot, levels - 1)
    else:
        fh.park(spot)


class Walker(object):
    def step(self, spot):
        def inner():
            fh.park(spot)
        inner()


fh.register()
fh.start(descend, 1)
fh.start(Walker().step)
fh.start(lambda spot: descend(spot, 4))
fh.start(descend, 12)
fh.serve()
