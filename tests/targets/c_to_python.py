"""The main thread calls Python from C in a tight loop (``sorted(key=...)``, ``map``), so a
signal often lands while C code enters or leaves the interpreter: on 3.12 the top of the
frame chain is then the entry frame (``<interpreter trampoline>``), sometimes before its
first instruction.  Single-threaded: every dump has one ``Current thread`` block.
"""
import fhtarget

fhtarget.register()


def key(x):
    return -x


def spin():
    data = list(range(16))
    while True:
        sorted(data, key=key)
        list(map(key, data))


print("ready", flush=True)
spin()
