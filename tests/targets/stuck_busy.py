"""Main thread blocked in serve(); one worker parked under hang() (its stack never changes);
and, once SIGUSR2 arrives, one worker, "busy", that never stops changing its stack: it
alternates between spin_a() and spin_b(), each at a recursion depth that cycles from 0 to 39,
a few hundred microseconds per call, so no two reads of it a fraction of a second apart find
the same stack. The busy worker starts only then so that faulthandler's own dump, the test's
oracle for the parked threads, is taken before it runs: faulthandler reads a running thread's
frames without any lock and can print garbage or crash on them."""
import signal
import threading

import fhtarget as fh


def hang(spot):
    fh.park(spot)


def spin_a(n):
    if n:
        return spin_a(n - 1)
    for _ in range(300):
        pass


def spin_b(n):
    if n:
        return spin_b(n - 1)
    for _ in range(300):
        pass


def busy():
    i = 0
    while True:
        (spin_a if i % 2 else spin_b)(i % 40)
        i += 1


def start_busy(signum, frame):
    worker = threading.Thread(target=busy, name="busy")
    worker.daemon = True
    worker.start()


fh.register()
fh.start(hang)
signal.signal(signal.SIGUSR2, start_busy)
fh.serve()
