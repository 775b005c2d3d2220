"""A thread busy on the CPU at the bottom of a 200-frame Python stack, deeper than a sample
keeps: ``python deep_busy.py OUT`` prints ``ready``, then spins until stdin closes or
says ``exit``."""
import sys
import threading

DEPTH = 200


def spin():
    while True:
        pass


def down(n):
    if n <= 1:
        spin()
    else:
        down(n - 1)


sys.setrecursionlimit(1000)
# Frames below `down`: the thread's bootstrap (3 or so) and `down` itself many times.
thread = threading.Thread(target=down, args=(DEPTH,), name="deep")
thread.daemon = True
thread.start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "exit":
        break
