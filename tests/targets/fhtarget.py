"""Plumbing shared by the target scripts; it builds no stack of its own.

Every target runs as ``python TARGET.py OUT_FILE SIGNAL...``: faulthandler dumps
all threads into OUT_FILE on each SIGNAL, the target parks its threads, prints
``ready`` and blocks until it is killed.  ``park()`` reports arrival and blocks
on a single line, so a parked thread shows the same stack whether or not it has
reached the blocking call yet.  Both calls are C functions: they add no frame.
"""
import _thread
import faulthandler
import os
import resource
import signal
import sys
import threading

OUT_PATH = os.path.abspath(sys.argv[1])
WORK_DIR = os.path.dirname(OUT_PATH)
SIGNALS = [getattr(signal, name) for name in sys.argv[2:]]
FATAL = (signal.SIGSEGV, signal.SIGFPE, signal.SIGABRT, signal.SIGBUS, signal.SIGILL)

resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_out = open(OUT_PATH, "w")
_forever = _thread.allocate_lock()
_forever.acquire()


def register():
    """Dump all threads into OUT_FILE on each signal; register() refuses the fatal ones, so they go through enable()."""
    for signum in SIGNALS:
        if signum in FATAL:
            faulthandler.enable(file=_out, all_threads=True)
        else:
            faulthandler.register(signum, file=_out, all_threads=True)


class Spot(object):
    def __init__(self):
        self.arrived = _thread.allocate_lock()
        self.arrived.acquire()


def park(spot):
    spot.arrived.release() or _forever.acquire()


def start(func, *args):
    """Run func(spot, *args) in a new daemon thread and return once it has parked at spot."""
    spot = Spot()
    thread = threading.Thread(target=func, args=(spot,) + args)
    thread.daemon = True
    thread.start()
    spot.arrived.acquire()
    return thread


def serve():
    """Report readiness and block the main thread until killed, on one line like park()."""
    print("ready", flush=True) or _forever.acquire()


def serve_pthread_kill(thread):
    """Report readiness; on a "kill SIGNAME" line on stdin, pthread_kill thread with it and block."""
    print("ready", flush=True)
    signum = getattr(signal, sys.stdin.readline().split()[1])
    signal.pthread_kill(thread.ident, signum) or _forever.acquire()


def depth():
    """Number of frames on the caller's stack, the caller's own frame included."""
    frame, n = sys._getframe(1), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n
