"""CPU-bound target for ``pytrace record``.

``python cpu_split.py OUT``: one busy thread ("busy") splits its CPU time between
``heavy``, ``medium`` and ``light`` about 5:3:2, in slices of 0.5 to 1.5 ms of its own
CPU clock given to a function drawn at random (so no period of the work lines up with
the sampling period), and adds up, inside the target, the CPU time each function
really took.  The main
thread prints ``ready`` and waits for lines on stdin:

- ``report``: write {"heavy": s, "medium": s, "light": s, "cpu": s, "tid": n} as
  JSON to OUT (``cpu`` is the busy thread's CPU time so far);
- ``exit``: exit at once.
"""
import json
import os
import random
import sys
import threading
import time

OUT = sys.argv[1]
# 3.6 has no per-thread clock; the other threads are idle, so the process clock is close.
clock = getattr(time, "thread_time", time.process_time)
spent = {"heavy": 0.0, "medium": 0.0, "light": 0.0}
tid = []


def heavy(budget):
    start = clock()
    end = start + budget
    while clock() < end:
        pass
    spent["heavy"] += clock() - start


def medium(budget):
    start = clock()
    end = start + budget
    while clock() < end:
        pass
    spent["medium"] += clock() - start


def light(budget):
    start = clock()
    end = start + budget
    while clock() < end:
        pass
    spent["light"] += clock() - start


def busy():
    tid.append(threading.get_ident() if not hasattr(threading, "get_native_id") else threading.get_native_id())
    while True:
        budget = 0.0005 + random.random() * 0.001
        r = random.random()
        if r < 0.5:
            heavy(budget)
        elif r < 0.8:
            medium(budget)
        else:
            light(budget)


def main():
    thread = threading.Thread(target=busy, name="busy")
    thread.daemon = True
    thread.start()
    print("ready", flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "report":
            # No lock: the busy thread would take it back at once and starve this one. A
            # copy of the dict is one step under the GIL, so the three sums are consistent.
            counts = dict(spent)
            report = dict(counts, cpu=sum(counts.values()), tid=tid[0] if tid else 0)
            with open(OUT + ".tmp", "w") as f:
                json.dump(report, f)
            os.rename(OUT + ".tmp", OUT)
        elif line == "exit":
            os._exit(0)


main()
