"""Real `faulthandler.dump_traceback(all_threads=True)` output, with what it was made from.

Run under each CPython to cover (3.6 and later):

    python3.X tools/faulthandler/real_dumps.py pyspy-user/tests/data/faulthandler/

For each case this writes the exact bytes faulthandler wrote and, separately, the thread
list and frame chains taken from Python's own view of the same stacks: thread ids in list
order (newest first), `co_filename`, `co_name` and `f_lineno` of every frame. On 3.12 and
3.13 the chains also hold the shim frames (`owner == FRAME_OWNED_BY_CSTACK`), found by
following `_PyInterpreterFrame.previous` with ctypes, so the formatter's tests see the
chains the eBPF walker sees. The formatter must turn the second part into the first.

Strings are stored as JSON strings, or as lists of code points when they hold lone
surrogates.
"""
import _thread
import ctypes
import faulthandler
import gc
import json
import os
import sys
import tempfile
import threading
import time
import types

MINOR = sys.version_info[:2]


def text(s):
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return [ord(c) for c in s]


def code_replace(code, **changes):
    if hasattr(code, "replace"):
        return code.replace(**changes)
    fields = [
        "co_argcount", "co_kwonlyargcount", "co_nlocals", "co_stacksize", "co_flags",
        "co_code", "co_consts", "co_names", "co_varnames", "co_filename", "co_name",
        "co_firstlineno", "co_lnotab", "co_freevars", "co_cellvars",
    ]
    return types.CodeType(*[changes.get(f, getattr(code, f)) for f in fields])


# ------------------------------------------------------------ frame chains


def py_frames(frame):
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


def frame_entry(frame):
    code = frame.f_code
    return ["f", text(code.co_filename), text(code.co_name), frame.f_lineno]


# `PyFrameObject.f_frame`, and `_PyInterpreterFrame.previous` / `.frame_obj` / `.owner`
# (3.12, 3.13 on 64-bit builds).
F_FRAME = 24
IFRAME_PREVIOUS = 8
IFRAME_FRAME_OBJ = 48
IFRAME_OWNER = 70
FRAME_OWNED_BY_CSTACK = 3


def read_ptr(addr):
    return ctypes.c_void_p.from_address(addr).value or 0


def chain_of(top):
    """Chain entries, innermost first, of the thread whose innermost frame is `top`."""
    frames = py_frames(top)
    if MINOR < (3, 12):
        return [frame_entry(f) for f in frames]
    entries = []
    pending = list(frames)
    iframe = read_ptr(id(top) + F_FRAME)
    while iframe:
        owner = ctypes.c_ubyte.from_address(iframe + IFRAME_OWNER).value
        if owner == FRAME_OWNED_BY_CSTACK:
            entries.append(["s"])
        else:
            if not pending:
                raise SystemExit("more interpreter frames than frame objects")
            f = pending.pop(0)
            if read_ptr(iframe + IFRAME_FRAME_OBJ) != id(f):
                raise SystemExit("interpreter frame does not match frame object")
            entries.append(frame_entry(f))
        iframe = read_ptr(iframe + IFRAME_PREVIOUS)
    if pending:
        raise SystemExit("frame objects left over")
    return entries


class Dumper:
    """Writes a dump and takes the current thread's chain on the same line, so that the
    innermost frame's f_lineno is still the line of the dump call."""

    def __init__(self):
        self.out = tempfile.TemporaryFile()

    def read(self):
        self.out.seek(0)
        data = self.out.read().decode("ascii")
        self.out.seek(0)
        self.out.truncate()
        return data

    def dump(self):
        faulthandler.dump_traceback(file=self.out, all_threads=True); chain = chain_of(sys._getframe())  # noqa: E501,E702
        return self.read(), chain

    def dump_one(self):
        faulthandler.dump_traceback(file=self.out, all_threads=False)
        return self.read()


DUMPER = Dumper()


def thread_record(ident, chain, current):
    return {"id": ident, "current": current, "chain": chain}


def case(name, expected, threads, gc_collecting=False, more_threads=False, **extra):
    d = {
        "name": name,
        "expected": expected,
        "gc": gc_collecting,
        "more_threads": more_threads,
        "threads": threads,
    }
    d.update(extra)
    return d


# ------------------------------------------------------------ cases


def recurse(n, result):
    if n > 0:
        return recurse(n - 1, result)
    result.append(DUMPER.dump())


def depth_case(total):
    """Main thread alone, with exactly `total` Python frames at the dump."""
    here = len(py_frames(sys._getframe()))
    # recurse(k) adds k + 1 recurse frames and Dumper.dump adds one more.
    k = total - here - 2
    result = []
    recurse(k, result)
    data, chain = result[0]
    nframes = sum(1 for e in chain if e[0] == "f")
    assert nframes == total, (nframes, total)
    return case("depth-%d" % total, data,
                [thread_record(threading.get_ident(), chain, True)])


def park(event, ready):
    ready.release()
    event.wait()


def start_workers(n, event):
    ready = threading.Semaphore(0)
    workers = []
    for i in range(n):
        t = threading.Thread(target=park, args=(event, ready), name="w%d" % i)
        t.start()
        ready.acquire()
        workers.append(t)
    # Let each reach its blocking wait.
    time.sleep(0.2)
    return workers


def start_frameless(n):
    """Threads whose only function is C (`lock.acquire`): a thread state, no Python frame.
    Returns their idents and the locks that end them."""
    locks = []
    idents = []
    for _ in range(n):
        lock = _thread.allocate_lock()
        lock.acquire()
        locks.append(lock)
        idents.append(_thread.start_new_thread(lock.acquire, ()))
    time.sleep(0.3)
    return idents, locks


def stop_frameless(locks):
    for lock in locks:
        lock.release()
    time.sleep(0.2)


def threads_case():
    event = threading.Event()
    workers = start_workers(3, event)
    frameless, locks = start_frameless(1)
    data, chain = DUMPER.dump()
    current = sys._current_frames()
    threads = [thread_record(i, [], False) for i in reversed(frameless)]
    for t in reversed(workers):
        threads.append(thread_record(t.ident, chain_of(current[t.ident]), False))
    threads.append(thread_record(threading.get_ident(), chain, True))
    event.set()
    for t in workers:
        t.join()
    stop_frameless(locks)
    return case("threads", data, threads)


def thread_limit_case():
    frameless, locks = start_frameless(103)
    data, _ = DUMPER.dump()
    threads = [thread_record(i, [], False) for i in reversed(frameless)][:100]
    stop_frameless(locks)
    return case("thread-limit", data, threads, more_threads=True)


class Cyclic:
    seen = None

    def __init__(self):
        self.me = self

    def __del__(self):
        if Cyclic.seen is None:
            Cyclic.seen = DUMPER.dump()


def gc_case():
    gc.collect()
    Cyclic()
    gc.collect()
    data, chain = Cyclic.seen
    Cyclic.seen = None
    return case("gc", data,
                [thread_record(threading.get_ident(), chain, True)],
                gc_collecting=MINOR >= (3, 10))


def weird_strings():
    names = [
        "a" * 499, "b" * 500, "c" * 501, "\xe9" * 501, "\U0001f600" * 3, "\U0001f600" * 501,
        "nul\x00tab\x09nl\x0aesc\x1bdel\x7f", "\x80\xa0\xff\u0100\uffff\U00010000",
        "sur\udcff\udc80", 'quo"te\\back', "", " ~", "\u65e5\u672c\u8a9e",
    ]
    files = [
        "", "/srv/d\xe9j\xe0/\u65e5\u672c/\U0001f600.py", "weird\tname\n.py",
        "surrogate\udcff\udc80.py", 'q"uo\\te.py', "x" * 501, "<string>", "\x00",
    ]
    return names, files


def escape_case():
    names, files = weird_strings()
    pairs = []
    for i, name in enumerate(names):
        pairs.append((files[i % len(files)], name))
    for i, f in enumerate(files):
        pairs.append((f, "n%d" % i))
    # A chain of functions, one per (file, name): each calls the next; the last dumps.
    src = "def hop(nxt, *rest):\n    return nxt(*rest)\n"
    ns = {}
    exec(compile(src, "<hop>", "exec"), ns)
    hop = ns["hop"]
    funcs = []
    for f, n in pairs:
        funcs.append(types.FunctionType(code_replace(hop.__code__, co_filename=f, co_name=n),
                                        ns, n))
    out = {}

    def last():
        out["all"] = DUMPER.dump()
        out["one"] = DUMPER.dump_one()

    args = funcs[1:] + [last]
    funcs[0](*args)
    data, chain = out["all"]
    extra = {"stack_only": out["one"]} if MINOR == (3, 11) else {}
    return case("escapes", data,
                [thread_record(threading.get_ident(), chain, True)],
                **extra)


def noline_case():
    src = "def f(dump):\n    return dump()\n"
    ns = {}
    exec(compile(src, "<noline>", "exec"), ns)
    f = ns["f"]
    key = "co_linetable" if MINOR >= (3, 10) else "co_lnotab"
    f.__code__ = code_replace(f.__code__, **{key: b""})
    data, chain = f(DUMPER.dump)
    return case("noline", data, [thread_record(threading.get_ident(), chain, True)])


def shorten_filenames():
    """Give this script's functions a short co_filename, to keep the fixtures small."""
    for obj in list(globals().values()) + list(vars(Dumper).values()) + list(vars(Cyclic).values()):
        if isinstance(obj, types.FunctionType) and obj.__module__ == __name__:
            obj.__code__ = code_replace(obj.__code__, co_filename="rd.py")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "."
    shorten_filenames()
    cases = [depth_case(n) for n in (8, 99, 100, 101)]
    cases.append(threads_case())
    cases.append(thread_limit_case())
    cases.append(gc_case())
    cases.append(escape_case())
    cases.append(noline_case())
    doc = {"version": list(sys.version_info[:3]), "cases": cases}
    path = os.path.join(outdir, "%d.%d.json" % MINOR)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"), ensure_ascii=False)
        fh.write("\n")
    print("%d.%d.%d: %d cases -> %s (%d bytes)"
          % (sys.version_info[:3] + (len(cases), path, os.path.getsize(path))))


if __name__ == "__main__":
    main()
