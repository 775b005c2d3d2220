"""thread_depths.py's stack, in a process that leaves every signal but the oracle's to its
default action: faulthandler dumps all threads into OUT_FILE on the signals named on the
command line, and SIGINT (which Python itself handles) is reset to SIG_DFL, so that any
other fatal signal kills the process.

With UNHANDLED_MAIN_THREAD_ONLY=1 the workers block the registered signals, so every delivery
goes to the main thread, one after the other (faulthandler skips a dump that starts while
another thread's is running).

With UNHANDLED_THEN=segv or UNHANDLED_THEN=oom the main thread, once ready, waits for a line on
stdin, then reads address 16 (the kernel raises SIGSEGV) or allocates until the OOM killer
ends it (run it in a memory-limited cgroup)."""
import os
import signal
import sys

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


main_only = os.environ.get("UNHANDLED_MAIN_THREAD_ONLY") == "1"
signal.signal(signal.SIGINT, signal.SIG_DFL)
fh.register()
if main_only:
    signal.pthread_sigmask(signal.SIG_BLOCK, fh.SIGNALS)
fh.start(descend, 1)
fh.start(Walker().step)
fh.start(lambda spot: descend(spot, 4))
fh.start(descend, 12)
if main_only:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, fh.SIGNALS)


def crash():
    import ctypes
    ctypes.string_at(16)


def grow():
    chunks = []
    while True:
        chunks.append(bytearray(4 << 20))


then = os.environ.get("UNHANDLED_THEN")
if then:
    print("ready", flush=True)
    sys.stdin.readline()
    crash() if then == "segv" else grow()
fh.serve()
