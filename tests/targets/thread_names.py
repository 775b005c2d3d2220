"""Threads with OS names, newest first in the dump: a raw _thread thread (the kernel gives it
its creator's name, the main thread's), a thread that renamed itself through
/proc/thread-self/comm to bytes the kernel cuts at 15 inside a UTF-8 character, and
threading.Thread workers named with non-ASCII characters, with more than 15 characters, with
exactly 15, and a short name. The main thread is blocked in serve().

From 3.14 on threading gives the OS thread its name (cut to 15 bytes); before, every thread
keeps the process's name unless renamed."""
import _thread
import os
import threading

import fhtarget as fh

# "abcdefghijklmn" + "é" (c3 a9): the kernel keeps 15 bytes, up to and including the c3.
RAW_NAME = b"abcdefghijklmn\xc3\xa9"


def hold(spot):
    fh.park(spot)


def rename_and_hold(spot):
    fd = os.open("/proc/thread-self/comm", os.O_WRONLY)
    os.write(fd, RAW_NAME)
    os.close(fd)
    fh.park(spot)


def named(name, func=hold):
    spot = fh.Spot()
    thread = threading.Thread(target=func, args=(spot,), name=name)
    thread.daemon = True
    thread.start()
    spot.arrived.acquire()


fh.register()
named("short")
named("exactly-15-char")
named("a-name-longer-than-fifteen-characters")
named("caf\u00e9-\u65e5\u672c\u8a9e-\u00e9")
named("renamed", rename_and_hold)
spot = fh.Spot()
_thread.start_new_thread(hold, (spot,))
spot.arrived.acquire()
fh.serve()
