"""A worker runs gc.collect(); the collector finalizes an unreachable cycle whose __del__
parks the worker, so the dump is taken mid-collection.  On "kill SIGNAME" from stdin the main
thread sends that signal to the worker with signal.pthread_kill, making it current."""
import gc

import fhtarget as fh


class Cycle(object):
    def __init__(self, spot):
        self.spot = spot
        self.me = self

    def __del__(self):
        fh.park(self.spot)


def collect(spot):
    Cycle(spot)
    gc.collect()


gc.disable()
fh.register()
fh.serve_pthread_kill(fh.start(collect))
