"""Line-table fixtures for pytrace's `addr2line`, computed by CPython itself.

Run under each CPython to cover (3.6 and later):

    python3.X tools/linetables/dump.py pyspy-user/tests/data/linetables/

It compiles a varied corpus, walks every code object in it, and writes
`<major>.<minor>.json` with, for each code object: `co_firstlineno`, the line table
(`co_lnotab` up to 3.9, `co_linetable` from 3.10) as hex, and the value of the C function
`PyCode_Addr2Line(code, addr)` for every byte offset `addr` from -4 to a few bytes past the
end of the bytecode, called through ctypes. That is the function faulthandler's `dump_frame`
uses, so it is the authoritative answer; negative results are where faulthandler prints `???`.

Three other CPython-side views are checked against it before anything is written, and the
script fails on any disagreement: `dis.findlinestarts` (up to 3.9), `co_lines()` (3.10+),
`co_positions()` (3.11+), and `(f_lasti, f_lineno)` pairs of real frames taken while the
corpus runs. The frame pairs go into the fixture too.
"""
import ast
import ctypes
import dis
import json
import os
import sys
import types

VERSION = sys.version_info[:3]
MINOR = VERSION[:2]

ADDR2LINE = ctypes.pythonapi.PyCode_Addr2Line
ADDR2LINE.argtypes = [ctypes.py_object, ctypes.c_int]
ADDR2LINE.restype = ctypes.c_int

LOW_ADDR = -4
PAST_END = 6
# Tables larger than this are checked but left out of the fixture (3.10 gives the module of
# the huge-first-line unit a 31 MB table: 127 lines per two bytes).
MAX_TABLE_BYTES = 16384


def table_of(code):
    if MINOR >= (3, 10):
        return code.co_linetable
    return code.co_lnotab


def kind_name():
    if MINOR >= (3, 11):
        return "Locations311"
    if MINOR == (3, 10):
        return "Linetable310"
    return "Lnotab"


def code_replace(code, **changes):
    """`code.replace()` on every version (3.6/3.7 have only the constructor)."""
    if hasattr(code, "replace"):
        return code.replace(**changes)
    fields = [
        "co_argcount", "co_kwonlyargcount", "co_nlocals", "co_stacksize", "co_flags",
        "co_code", "co_consts", "co_names", "co_varnames", "co_filename", "co_name",
        "co_firstlineno", "co_lnotab", "co_freevars", "co_cellvars",
    ]
    return types.CodeType(*[changes.get(f, getattr(code, f)) for f in fields])


def walk_codes(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            for inner in walk_codes(const):
                yield inner


# ---------------------------------------------------------------- corpus

BASIC = '''
import sys

def probe(*args):
    f = sys._getframe(1)
    while f is not None:
        PROBES.append((f.f_code, f.f_lasti, f.f_lineno))
        f = f.f_back
    return 1

def multi_line_call(a, b, c):
    return probe(
        a,
        b,
    ) if False else probe(
    )

def call_spread(x):
    r = max(
        x,
        probe(),
        3,
    )
    return r

def loops(n):
    total = 0
    for i in range(n):
        if i % 2:
            continue
        total += i
        if i > 5:
            break
    while n > 0:
        n -= 1
        total += probe()
    else:
        total += 1
    return total

def trying(x):
    try:
        probe()
        1 / x
    except ZeroDivisionError as e:
        probe()
        return -1
    except (TypeError,
            ValueError):
        return -2
    else:
        probe()
    finally:
        probe()
    with open(__file__ if False else "/dev/null") as fh:
        probe()
    return 0

def comprehensions(n):
    a = [probe() for i in range(n)
         if i]
    b = {i: probe() for i in range(n)}
    c = {probe() for i in range(n)}
    d = list(probe() for i in range(n))
    e = [[j for j in range(i)] for i in range(n)]
    return a, b, c, d, e

def lambdas():
    f = lambda x: (x,
                   probe())
    g = (lambda: probe())
    return f(1), g()

class Klass:
    attr = 1

    def meth(self):
        return probe()

    @staticmethod
    def stat(
        a=1,
        b=2,
    ):
        return probe()

def gen(n):
    for i in range(n):
        yield probe()
    yield from range(2)

def nested():
    x = 1
    def inner():
        nonlocal x
        x += 1
        return probe()
    return inner()

def conditional(a):
    return (probe() if a
            else probe())

def backwards(a):
    x = (
        a
        +
        probe()
    )
    while (a <
           3):
        a += 1
    return x

def run():
    multi_line_call(1, 2, 3)
    call_spread(1)
    loops(9)
    trying(0)
    trying(1)
    comprehensions(3)
    lambdas()
    Klass().meth()
    Klass.stat()
    list(gen(2))
    nested()
    conditional(0)
    conditional(1)
    backwards(0)
'''


def big_jumps_source():
    """Functions whose consecutive statements are far apart (line deltas > 255, both ways)."""
    lines = ["def big_jump(a):", "    x = a"]
    lines += [""] * 300
    lines += ["    y = probe()"]
    lines += [""] * 700
    lines += ["    while a < 3:", "        a += 1"]
    lines += [""] * 400
    lines += ["        z = probe()"]
    lines += ["    return (x,"]
    lines += [""] * 260
    lines += ["            probe())"]
    lines += ["", "def big_bytecode(a):"]
    # One line with more than 255 bytes of bytecode, then a line change.
    lines += ["    t = (" + ", ".join("a + %d" % i for i in range(200)) + ")"]
    lines += ["    return probe()"]
    lines += ["", "def backwards_far(a):", "    r = 0", "    for i in range(2):"]
    lines += ["        r += 1"] + [""] * 300 + ["        r += probe()"]
    lines += ["    return r", ""]
    return "\n".join(lines) + "\nbig_jump(0)\nbig_bytecode(1)\nbackwards_far(0)\n"


def long_module_source():
    lines = ["v0 = 0"]
    for i in range(1, 700):
        if i % 97 == 0:
            lines.append("v%d = probe()" % i)
        elif i % 13 == 0:
            lines.append("")
            lines.append("v%d = v%d" % (i, i - 1))
        else:
            lines.append("v%d = v%d + %d" % (i, i - 1, i))
    return "\n".join(lines) + "\n"


def extra_source():
    parts = []
    if MINOR >= (3, 8):
        parts.append('''
def walrus(a):
    if (n := len(a)) > 1:
        return probe()
    return n
walrus([1, 2])
''')
    if MINOR >= (3, 10):
        parts.append('''
def matching(v):
    match v:
        case [x,
              y]:
            return probe()
        case {"k": k}:
            return k
        case _:
            return probe()
matching([1, 2])
matching(3)
''')
    parts.append('''
async def coro():
    return probe()

def drive():
    c = coro()
    try:
        c.send(None)
    except StopIteration:
        pass
drive()
''')
    return "\n".join(parts)


def compile_corpus():
    """(label, module code, namespace-runner) for every corpus unit."""
    units = []
    units.append(("basic", compile(BASIC + "\nrun()\n", "<corpus-basic>", "exec")))
    units.append(("bigjumps", compile(big_jumps_source(), "<corpus-bigjumps>", "exec")))
    units.append(("longmodule", compile(long_module_source(), "<corpus-long>", "exec")))
    units.append(("extra", compile(extra_source(), "<corpus-extra>", "exec")))
    tree = ast.parse(BASIC + "\nrun()\n", "<corpus-huge-lineno>")
    ast.increment_lineno(tree, 2000000000)
    units.append(("hugelineno", compile(tree, "<corpus-huge-lineno>", "exec")))
    return units


PROBES = []


def run_corpus(units):
    for label, code in units:
        ns = {"PROBES": PROBES, "__name__": "corpus_" + label}
        ns["probe"] = None
        if label != "basic" and label != "hugelineno":
            exec(compile(BASIC, "<corpus-probe-" + label + ">", "exec"), ns)
        exec(code, ns)


def synthetic_codes():
    """Code objects with tables the compiler does not make: empty, and odd first lines."""
    src = "def f(a):\n    b = a\n\n    return (b,\n            a)\n"
    ns = {}
    exec(compile(src, "<synthetic>", "exec"), ns)
    base = ns["f"].__code__
    empty = b""
    out = []
    key = "co_linetable" if MINOR >= (3, 10) else "co_lnotab"
    out.append(("empty-table", code_replace(base, **{key: empty})))
    for first in (-7, 0, 2147483640, 2147483647, -2147483647):
        try:
            out.append(("firstlineno=%d" % first, code_replace(base, co_firstlineno=first)))
        except (ValueError, OverflowError) as e:
            print("skip firstlineno=%d: %s" % (first, e), file=sys.stderr)
    for i, table in enumerate(crafted_tables()):
        out.append(("crafted-%d" % i, code_replace(base, **{key: table})))
    return out


def crafted_tables():
    """Hand-made tables in the version's own format, with the rarer shapes of each.

    Each stays within what CPython reads safely: a table may end mid-entry only where the
    bytes object's trailing NUL finishes the read.
    """
    if MINOR <= (3, 9):
        return [
            bytes([2, 3, 0, 0xfe, 4, 0x81, 6, 0x7f, 2, 0x80, 0, 5]),
            bytes([0, 10, 0, 0x80, 0, 0x80, 8, 1, 255, 0, 4, 2]),
            bytes([6, 0xff, 2]),  # odd length: the last byte is never read
            bytes([0, 0x80] * 20),  # below line 0
        ]
    if MINOR == (3, 10):
        return [
            bytes([2, 3, 0, 0xfe, 4, 0x81, 6, 0x7f, 2, 0x80, 4, 0x80, 2, 5]),
            bytes([0, 10, 0, 0x81, 8, 0x80, 0, 3, 6, 0x80, 255, 0, 4, 2]),
            bytes([4, 1, 6]),  # odd length: the second half is the NUL after the bytes
            bytes([0, 0x81] * 20 + [4, 0]),  # below line 0
        ]

    def header(code, units):
        return 0x80 | (code << 3) | (units - 1)

    def svarint(v):
        u = ((-v) << 1) | 1 if v < 0 else v << 1
        out = []
        while True:
            chunk = u & 63
            u >>= 6
            if u:
                out.append(chunk | 64)
            else:
                out.append(chunk)
                return out

    return [
        # short form, NONE, ONE_LINE1/2, NO_COLUMNS with a negative and a 2-chunk delta,
        # LONG with end line and columns, NONE at the end.
        bytes([header(3, 2), 0x12, header(15, 1), header(11, 3), 4, 9, header(12, 1), 0, 1]
              + [header(13, 4)] + svarint(-3) + [header(13, 2)] + svarint(300)
              + [header(14, 8)] + svarint(-70000) + [2, 5, 7] + [header(15, 2)]),
        # a LONG header as the last byte: its varint is the bytes object's trailing NUL
        bytes([header(10, 2), 1, 2, header(14, 3)]),
        # first byte without the entry bit, continuation bytes that look like headers
        bytes([0x05, 0x33, header(13, 1), 0x41, 0x02, header(0, 8), 0x7f]),
        # large varint chains that overflow the shift
        bytes([header(13, 1)] + [0x7f] * 7 + [0x01, header(12, 2), 0, 0]),
    ]


# ---------------------------------------------------------------- checks


def addr2line_all(code, past_end):
    n = len(code.co_code)
    return [ADDR2LINE(code, a) for a in range(LOW_ADDR, n + past_end)]


def norm(line):
    return -1 if line is None or line < 0 else line


def check_views(code, lines):
    """Compare PyCode_Addr2Line with the Python-level views of the same table."""
    n = len(code.co_code)
    at = lambda a: lines[a - LOW_ADDR]
    problems = []
    if MINOR <= (3, 9):
        starts = list(dis.findlinestarts(code))
        for a in range(0, n, 2):
            line = code.co_firstlineno
            for sa, sl in starts:
                if sa <= a:
                    line = sl
            if line != at(a):
                problems.append(("findlinestarts", a, line, at(a)))
    if MINOR >= (3, 10):
        for start, end, line in code.co_lines():
            for a in range(start, min(end, n)):
                if norm(line) != norm(at(a)):
                    problems.append(("co_lines", a, line, at(a)))
    if MINOR >= (3, 11):
        for i, pos in enumerate(code.co_positions()):
            a = 2 * i
            if norm(pos[0]) != norm(at(a)):
                problems.append(("co_positions", a, pos[0], at(a)))
    return problems


def rle(values):
    out = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "."
    units = compile_corpus()
    run_corpus(units)
    frames_by_code = {}
    for code, lasti, lineno in PROBES:
        frames_by_code.setdefault(id(code), set()).add((lasti, lineno))

    records = []
    problems = []
    seen = set()
    probe_codes = {id(c): c for c, _, _ in PROBES}
    all_codes = []
    for label, code in units:
        for c in walk_codes(code):
            all_codes.append((label, c))
    for c in probe_codes.values():
        all_codes.append(("probed", c))
    for label, c in synthetic_codes():
        all_codes.append((label, c))

    for label, c in all_codes:
        if id(c) in seen:
            continue
        seen.add(id(c))
        # Crafted tables may describe more bytecode than the code has: follow them further.
        lines = addr2line_all(c, 96 if label.startswith("crafted") else PAST_END)
        if not label.startswith(("empty", "firstlineno", "crafted")):
            problems += [(label, c.co_name) + p for p in check_views(c, lines)]
        frames = sorted(frames_by_code.get(id(c), ()))
        for lasti, lineno in frames:
            expect = ADDR2LINE(c, lasti)
            if norm(lineno) != norm(expect):
                problems.append((label, c.co_name, "f_lineno", lasti, lineno, expect))
        if len(table_of(c)) > MAX_TABLE_BYTES:
            print("left out %s %s: table of %d bytes" % (label, c.co_name, len(table_of(c))),
                  file=sys.stderr)
            continue
        records.append({
            "unit": label,
            "name": c.co_name,
            "firstlineno": c.co_firstlineno,
            "table": table_of(c).hex(),
            "code_len": len(c.co_code),
            "low": LOW_ADDR,
            "lines": rle(lines),
            "frames": [[lasti, -1 if lineno is None else lineno] for lasti, lineno in frames],
        })

    if problems:
        for p in problems[:50]:
            print("MISMATCH", p, file=sys.stderr)
        print("%d mismatches" % len(problems), file=sys.stderr)
        sys.exit(1)

    doc = {
        "version": "%d.%d.%d" % VERSION,
        "kind": kind_name(),
        "codes": records,
    }
    path = os.path.join(outdir, "%d.%d.json" % MINOR)
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    nframes = sum(len(r["frames"]) for r in records)
    print("%s: %d code objects, %d frame samples -> %s (%d bytes)"
          % (doc["version"], len(records), nframes, path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
