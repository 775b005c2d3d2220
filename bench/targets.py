"""Benchmark target: N threads, each parked at a recursion depth of D frames.

usage: targets.py THREADS DEPTH [SIGNAL_FOR_FAULTHANDLER]
Prints "ready" once every thread is parked, then blocks until killed.
"""
import faulthandler
import os
import signal
import sys
import threading

threads_n = int(sys.argv[1])
depth = int(sys.argv[2])
if len(sys.argv) > 3:
    faulthandler.register(getattr(signal, sys.argv[3]), file=open(os.devnull, "w"), all_threads=True)

parked = threading.Barrier(threads_n + 1)
forever = threading.Event()


def recurse(n):
    if n <= 1:
        parked.wait()
        forever.wait()
        return
    recurse(n - 1)


for _ in range(threads_n):
    threading.Thread(target=recurse, args=(depth,), daemon=True).start()
parked.wait()
print("ready", flush=True)
forever.wait()
