"""Target for ``pytrace record``: a thread inside long GIL-released C calls, and one
running Python code.

``python gil_released.py OUT``: thread "compressor" calls ``zlib.compress`` on a
large buffer over and over from ``compress_forever`` (zlib releases the GIL while it
compresses); thread "spinner" spins in ``spin_forever``.  Prints ``ready``, then
exits on the line ``exit`` on stdin.
"""
import os
import sys
import threading
import zlib

DATA = os.urandom(1 << 20) * 8


def compress_forever():
    while True:
        zlib.compress(DATA, 9)


def spin_forever():
    n = 0
    while True:
        n += 1


def main():
    for name, func in (("compressor", compress_forever), ("spinner", spin_forever)):
        thread = threading.Thread(target=func, name=name)
        thread.daemon = True
        thread.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            os._exit(0)


main()
