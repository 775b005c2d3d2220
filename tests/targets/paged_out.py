"""Four workers parked 30 frames deep; the main thread serves stdin lines: on "pageout" it asks
the kernel to page out every private writable mapping of its own (madvise MADV_PAGEOUT), then
prints how many mappings it advised and parks, on the same line as before. A dump of the workers afterwards must fault their frames and code objects back in."""
import ctypes
import sys

import fhtarget as fh

MADV_PAGEOUT = 21
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def descend(spot, levels):
    if levels > 1:
        descend(spot, levels - 1)
    else:
        fh.park(spot)


def page_out():
    advised = 0
    with open("/proc/self/maps") as maps:
        lines = maps.readlines()
    for line in lines:
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if fields[1].startswith("rw") and fields[1][3] == "p" and "[vsyscall]" not in line:
            if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
                advised += 1
    return advised


def serve_commands():
    """One line for reading the command, answering it and parking for good, so that the main
    thread shows the same line before and after."""
    print("ready", flush=True) or sys.stdin.readline() and print("paged out %d" % page_out(), flush=True) or fh._forever.acquire()


fh.register()
for _ in range(4):
    fh.start(descend, 30)
serve_commands()
