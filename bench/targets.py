"""Benchmark target: N threads, each parked at a recursion depth of D frames.

usage: targets.py THREADS DEPTH [SIGNAL_FOR_FAULTHANDLER] [--ticker]

With a signal name, faulthandler dumps all threads to /dev/null on that signal, so the signal
does not kill the process. Prints "ready" once every thread is parked, then blocks until killed.

--ticker adds one more thread that wakes every 0.5 ms and records the longest gap between two
wake-ups; the main thread then serves standard input: each line "gap" is answered with the
longest gap in microseconds since the previous "gap" line. A tool that stops the process shows
up as a gap about as long as the stop.
"""
import faulthandler
import os
import signal
import sys
import threading
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
ticker = "--ticker" in sys.argv[1:]
threads_n = int(args[0])
depth = int(args[1])
if len(args) > 2:
    faulthandler.register(getattr(signal, args[2]), file=open(os.devnull, "w"), all_threads=True)

parked = threading.Barrier(threads_n + 1)
forever = threading.Event()


def recurse(n):
    if n <= 1:
        parked.wait()
        forever.wait()
        return
    recurse(n - 1)


max_gap = [0.0]


def tick():
    clock = time.perf_counter
    sleep = time.sleep
    last = clock()
    while True:
        sleep(0.0005)
        now = clock()
        if now - last > max_gap[0]:
            max_gap[0] = now - last
        last = now


for _ in range(threads_n):
    threading.Thread(target=recurse, args=(depth,), daemon=True).start()
parked.wait()
if ticker:
    threading.Thread(target=tick, daemon=True).start()
print("ready", flush=True)
if ticker:
    for line in sys.stdin:
        if line.strip() == "gap":
            gap, max_gap[0] = max_gap[0], 0.0
            print(f"{gap * 1e6:.0f}", flush=True)
else:
    forever.wait()
