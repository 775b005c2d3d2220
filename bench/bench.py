"""pytrace benchmarks, with py-spy, pystack and austin measured in the same run.

Run through bench/run.sh (as root), which prepares the peers' virtualenv. Sections:

  1. launch -> "pytrace: attached", on the host as it is and with many Python processes running
  2. kill -> dump latency on a THREADS x DEPTH target, against the peers' one-shot dumps
  3. kernel time per dump (eBPF run-time stats) and how long the target is stopped per dump
  4. exec -> dumpable, with pytrace tracing the whole host
  5. pytrace's memory before and after many short-lived Python processes
  6. sampling: slowdown of a CPU-bound run under each sampler
  7. `pytrace dump` (no signal; the kernel's reader and --reader process-vm) for 1 and 50
     processes against py-spy dump and pystack remote, and how long each stops the target

--sample-cost PYTHONS runs only section 6's kernel time per sample of a 30-frame stack, for the
given interpreters, with what one read of the target's memory costs and where a sample's time
goes (begin, walk, finish); quick and repeatable: about 15 s per round and interpreter (an idle
run, a busy run, and a busy run whose samples each make 300 more reads and are timed by phase).

Every section prints what it measured; the report goes to standard output and to --report.
"""

import argparse
import calendar
import ctypes
import glob
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(HERE, "targets.py")
PYENV_VERSIONS = os.path.join(os.environ.get("PYENV_ROOT", "/root/.pyenv"), "versions")
clock = time.perf_counter

THREAD_RE = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$")
HEADER_RE = re.compile(r"^Process (\d+) ")
BPF_RE = re.compile(r"^pytrace: bpf: (\S+) runs=(\d+) ns=(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

FRESH_TARGET = (
    "import faulthandler, os, signal, time\n"
    "faulthandler.register(signal.{sig}, file=open(os.devnull, 'w'), all_threads=True)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Numbers and tables


def pct(xs, p):
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(xs):
    if not xs:
        return None
    return {"n": len(xs), "median": pct(xs, 50), "p90": pct(xs, 90), "min": min(xs), "max": max(xs)}


def fmt_ms(seconds):
    if seconds is None:
        return "n/a"
    v = seconds * 1e3
    if v < 10:
        return f"{v:.3f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_ratio(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:.0f}x"
    return f"{x:.1f}x" if x >= 0.1 else f"{x:.2f}x"


def ms_cells(xs):
    s = summary(xs)
    if s is None:
        return ["n/a"] * 4 + ["0"]
    return [fmt_ms(s["median"]), fmt_ms(s["p90"]), fmt_ms(s["min"]), fmt_ms(s["max"]), str(s["n"])]


def table(header, rows):
    cells = [header] + rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]

    def line(r):
        out = [str(r[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(r[1:], widths[1:])]
        return "  " + "  ".join(out).rstrip()

    sep = "  " + "  ".join("-" * w for w in widths)
    return [line(header), sep] + [line(r) for r in rows]


def counts(values):
    if not values:
        return "-"
    seen = {}
    for v in values:
        seen[v] = seen.get(v, 0) + 1
    if len(seen) == 1:
        return str(next(iter(seen)))
    return ", ".join(f"{k} (x{n})" for k, n in sorted(seen.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------------
# Processes


CHILDREN = []


def spawn(cmd, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, **kw)
    CHILDREN.append(p)
    return p


def reap(p, sig=signal.SIGKILL, timeout=10.0):
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    if p in CHILDREN:
        CHILDREN.remove(p)
    return p.returncode


def cleanup():
    for p in list(CHILDREN):
        reap(p)


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def rss_kib(pid):
    v = proc_status(pid, "VmRSS")
    return int(v.split()[0]) if v else None


def hwm_kib(pid):
    v = proc_status(pid, "VmHWM")
    return int(v.split()[0]) if v else None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def header_time_ns(header):
    """The signal's time in a dump header (`..., 2026-11-25T10:00:00.000000Z`), in ns since the epoch."""
    m = re.search(r", (\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{1,9})Z", header)
    if not m:
        return None
    secs = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    frac = m.group(7)
    return secs * 10**9 + int(frac.ljust(9, "0"))


def catches(pid, signum):
    v = proc_status(pid, "SigCgt")
    return v is not None and bool(int(v, 16) >> (signum - 1) & 1)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def bpf_map_keys(owner, name):
    """(keys as ints, max_entries) of the BPF hash map called name that process owner holds open,
    read with the bpf syscall; None if there is none."""
    libc = ctypes.CDLL(None, use_errno=True)
    nr_bpf = 321 if platform.machine() == "x86_64" else 280

    def bpf(cmd, attr):
        buf = ctypes.create_string_buffer(attr, 128)
        return libc.syscall(nr_bpf, cmd, buf, 128)

    ids = set()
    try:
        fds = os.listdir(f"/proc/{owner}/fdinfo")
    except OSError:
        return None
    for fd in fds:
        try:
            with open(f"/proc/{owner}/fdinfo/{fd}") as f:
                m = re.search(r"^map_id:\s+(\d+)", f.read(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    for map_id in sorted(ids):
        fd = bpf(14, struct.pack("=III", map_id, 0, 0))  # BPF_MAP_GET_FD_BY_ID
        if fd < 0:
            continue
        try:
            info = ctypes.create_string_buffer(128)
            if bpf(15, struct.pack("=IIQ", fd, 128, ctypes.addressof(info))) != 0:  # OBJ_GET_INFO_BY_FD
                continue
            _, _, key_size, _, max_entries = struct.unpack_from("=5I", info)
            if info.raw[24:40].split(b"\0")[0].decode(errors="replace") != name or key_size != 4:
                continue
            key, nxt = ctypes.create_string_buffer(4), ctypes.create_string_buffer(4)
            keys, prev = [], 0
            while len(keys) <= max_entries:
                if bpf(4, struct.pack("=IIQQ", fd, 0, prev, ctypes.addressof(nxt))) != 0:  # GET_NEXT_KEY
                    break
                keys.append(struct.unpack("=I", nxt.raw)[0])
                ctypes.memmove(key, nxt, 4)
                prev = ctypes.addressof(key)
            return keys, max_entries
        finally:
            os.close(fd)
    return None


class LineReader:
    """Lines from a pipe, each stamped with the time the read that brought it returned."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def read_ready(self):
        if self.eof:
            return []
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        t = clock()
        if not data:
            self.eof = True
            rest, self.buf = self.buf, b""
            return [(t, rest.decode("utf-8", "replace"))] if rest else []
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [(t, l.decode("utf-8", "replace")) for l in lines]


def poll(readers, timeout):
    """Waits up to timeout for any reader; returns {reader: lines} for those that had data."""
    live = [r for r in readers if not r.eof]
    if not live:
        time.sleep(max(0.0, timeout))
        return {}
    ready, _, _ = select.select([r.fd for r in live], [], [], max(0.0, timeout))
    out = {}
    for r in live:
        if r.fd in ready:
            out[r] = r.read_ready()
    return out


def readline(reader, timeout, pending):
    deadline = clock() + timeout
    while not pending:
        if reader.eof or clock() >= deadline:
            return None
        for lines in poll([reader], deadline - clock()).values():
            pending.extend(lines)
    return pending.pop(0)


# ---------------------------------------------------------------------------------------------
# Dumps in pytrace's text output


class Dump:
    def __init__(self, pid, header, t_first):
        self.pid = pid
        self.header = header
        self.lines = []
        self.t_first = t_first
        self.t_end = None

    @property
    def threads(self):
        return sum(1 for l in self.lines if THREAD_RE.match(l))

    @property
    def frames(self):
        return sum(1 for l in self.lines if l.startswith("  File "))


class DumpParser:
    """Splits text output into dumps. An empty line ends a dump unless a thread header (or the
    "..." of the thread limit) follows it: faulthandler separates threads by empty lines too.
    A dump's end time is when its final empty line arrived; the look-ahead only decides."""

    def __init__(self):
        self.cur = None
        self.blank_t = None
        self.done = []
        self.stray = []

    def feed(self, t, line):
        if self.cur is not None and self.blank_t is not None:
            if THREAD_RE.match(line) or line == "...":
                self.cur.lines += ["", line]
                self.blank_t = None
                return
            self._finish()
        if self.cur is None:
            m = HEADER_RE.match(line)
            if m:
                self.cur = Dump(int(m.group(1)), line, t)
            elif line:
                self.stray.append(line)
            return
        if line == "":
            self.blank_t = t
        else:
            self.cur.lines.append(line)

    def idle(self, grace):
        if self.cur is not None and self.blank_t is not None and clock() - self.blank_t >= grace:
            self._finish()

    def _finish(self):
        self.cur.t_end = self.blank_t
        self.done.append(self.cur)
        self.cur = None
        self.blank_t = None

    def take(self, pid):
        for i, d in enumerate(self.done):
            if d.pid == pid:
                return self.done.pop(i)
        return None


# ---------------------------------------------------------------------------------------------
# pytrace


class Pytrace:
    GRACE = 0.02

    def __init__(self, binary, args):
        self.cmd = [binary] + args
        self.t_launch = clock()
        self.proc = spawn(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self.out = LineReader(self.proc.stdout.fileno())
        self.parser = DumpParser()
        self.err = []
        self.err_eof = False
        self.cond = threading.Condition()
        self.err_thread = threading.Thread(target=self._drain_err, daemon=True)
        self.err_thread.start()
        self.rc = None

    def _drain_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            t = clock()
            with self.cond:
                self.err.append((t, raw.decode("utf-8", "replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.err_eof = True
            self.cond.notify_all()

    def wait_err(self, pred, timeout, start=0):
        deadline = clock() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.err):
                    if pred(self.err[i][1]):
                        return self.err[i]
                    i += 1
                left = deadline - clock()
                if self.err_eof or left <= 0:
                    return None
                self.cond.wait(left)

    def err_tail(self, n=8):
        with self.cond:
            return "\n".join("    " + l for _, l in self.err[-n:]) or "    (nothing on stderr)"

    def wait_attached(self, timeout=60.0):
        hit = self.wait_err(lambda l: l.startswith("pytrace: attached"), timeout)
        if hit is None:
            state = "exited with %s" % self.proc.poll() if self.proc.poll() is not None else "timed out"
            raise BenchError(f"{' '.join(self.cmd)}: no 'pytrace: attached' ({state}); stderr:\n"
                             + self.err_tail())
        m = re.search(r"(\d+) Python process", hit[1])
        return hit[0] - self.t_launch, int(m.group(1)) if m else None

    def pump(self, timeout):
        """Reads stdout for up to timeout; feeds the dump parser."""
        wait = timeout
        if self.parser.blank_t is not None:
            wait = min(wait, max(0.0, self.parser.blank_t + self.GRACE - clock()))
        for lines in poll([self.out], wait).values():
            for t, l in lines:
                self.parser.feed(t, l)
        self.parser.idle(self.GRACE)
        if self.out.eof and self.parser.cur is not None and self.parser.blank_t is not None:
            self.parser._finish()

    def wait_dump(self, pid, timeout):
        deadline = clock() + timeout
        while True:
            d = self.parser.take(pid)
            if d is not None:
                return d
            if self.out.eof:
                raise BenchError(f"pytrace exited (status {self.proc.wait()}) while a dump of "
                                 f"{pid} was awaited; stderr:\n" + self.err_tail())
            left = deadline - clock()
            if left <= 0:
                return None
            self.pump(left)

    def drain(self):
        self.pump(0)
        self.parser.done.clear()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = clock() + timeout
        while not self.out.eof and clock() < deadline:
            self.pump(0.05)
        try:
            self.rc = self.proc.wait(max(0.1, deadline - clock()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.rc = self.proc.wait()
            raise BenchError(f"pytrace (pid {self.pid}) ignored SIGTERM for {timeout:.0f} s")
        finally:
            self.err_thread.join(5)
            reap(self.proc)
        return self.rc

    def stats(self):
        with self.cond:
            for _, l in self.err:
                if l.startswith("pytrace: stats:"):
                    return dict(kv.split("=", 1) for kv in l.split()[2:] if "=" in kv)
        return None

    def bpf(self):
        out = {}
        with self.cond:
            for _, l in self.err:
                m = BPF_RE.match(l)
                if m:
                    out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        return out

    def err_lines(self, prefix):
        with self.cond:
            return [(t, l) for t, l in self.err if l.startswith(prefix)]


def exit_note(pt):
    """The exit status, as a complaint when it is not a clean exit."""
    if pt.rc in (0, None):
        return None
    return f"pytrace exited with status {pt.rc}; stderr:\n{pt.err_tail()}"


def fmt_stats(stats):
    if stats is None:
        return "(no 'pytrace: stats:' line)"
    nonzero = {k: v for k, v in stats.items() if v != "0"}
    return " ".join(f"{k}={v}" for k, v in nonzero.items()) + "  (others 0)"


def fmt_bpf(bpf):
    if not bpf:
        return ["  eBPF run-time stats: n/a (no 'pytrace: bpf:' line)"]
    rows = []
    for prog, (runs, ns) in sorted(bpf.items()):
        rows.append([prog, str(runs), f"{ns / 1e6:.3f}", f"{ns / runs / 1e3:.2f}" if runs else "n/a"])
    return table(["eBPF program", "runs", "total ms", "us/run"], rows)


# ---------------------------------------------------------------------------------------------
# Targets and peers


class Target:
    def __init__(self, python, threads, depth, sig, ticker=False):
        cmd = [python, TARGET, str(threads), str(depth), sig] + (["--ticker"] if ticker else [])
        self.proc = spawn(cmd, stdin=subprocess.PIPE if ticker else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self.out = LineReader(self.proc.stdout.fileno())
        self.pending = []
        line = readline(self.out, 60, self.pending)
        if line is None or line[1] != "ready":
            reap(self.proc)
            raise BenchError(f"target {' '.join(cmd)} did not print ready (got {line!r})")

    def gap(self):
        os.write(self.proc.stdin.fileno(), b"gap\n")
        line = readline(self.out, 10, self.pending)
        if line is None:
            raise BenchError("ticker target did not answer")
        return int(line[1]) / 1e6

    def close(self):
        reap(self.proc)


class Peer:
    def __init__(self, name, argv, thread_re, pauses, tools_dir):
        self.name = name
        self.argv = argv
        self.thread_re = re.compile(thread_re, re.M)
        self.pauses = pauses
        exe = os.path.join(tools_dir, argv[0])
        self.exe = exe if os.access(exe, os.X_OK) else shutil.which(argv[0])
        self.problem = None
        self.version = None
        if self.exe is None:
            self.problem = "not installed"
            return
        try:
            r = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.problem = f"not runnable: {e}"
            return
        text = ANSI_RE.sub("", (r.stdout + r.stderr)).strip()
        if r.returncode != 0:
            self.problem = "not runnable: " + (text.splitlines() or ["exit %d" % r.returncode])[-1]
            return
        self.version = text.splitlines()[0] if text else "?"

    def run(self, pid):
        cmd = [self.exe] + [a.replace("{pid}", str(pid)) for a in self.argv[1:]]
        t0 = clock()
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               timeout=60)
        except subprocess.TimeoutExpired:
            return clock() - t0, -1, 0, "timed out after 60 s"
        t1 = clock()
        out = ANSI_RE.sub("", r.stdout.decode("utf-8", "replace"))
        err = ANSI_RE.sub("", r.stderr.decode("utf-8", "replace")).strip()
        return t1 - t0, r.returncode, len(self.thread_re.findall(out)), err


def make_peers(tools_dir):
    peers = [
        Peer("py-spy dump", ["py-spy", "dump", "--pid", "{pid}"], r"^Thread \d+", "yes (default)", tools_dir),
        Peer("py-spy dump --nonblocking", ["py-spy", "dump", "--nonblocking", "--pid", "{pid}"],
             r"^Thread \d+", "no", tools_dir),
        Peer("pystack remote", ["pystack", "remote", "--no-color", "{pid}"],
             r"^Traceback for thread", "yes (default)", tools_dir),
        Peer("pystack remote --no-block", ["pystack", "remote", "--no-color", "--no-block", "{pid}"],
             r"^Traceback for thread", "no", tools_dir),
        Peer("austin --where", ["austin", "--where", "{pid}"], r"\U0001f9f5 Thread", "no", tools_dir),
    ]
    austin = peers[-1]
    if austin.problem is None:
        h = subprocess.run([austin.exe, "--help"], capture_output=True, text=True)
        if "--where" not in h.stdout + h.stderr:
            austin.problem = f"{austin.version} has no one-shot --where mode; skipped"
    return peers


# ---------------------------------------------------------------------------------------------
# Sections


class Bench:
    def __init__(self, args):
        self.a = args
        self.sig = getattr(signal, args.signal)
        self.report = []
        self.errors = []
        self.peers = make_peers(args.tools_dir)

    def out(self, *lines):
        self.report.extend(lines)

    def pytrace(self, extra):
        # Every signal of the latency rounds must be dumped: no per-process rate limit.
        return Pytrace(self.a.pytrace, ["--signal", self.a.signal, "--max-dumps-per-sec", "0"] + extra)

    def fail(self, section, msg):
        log(f"ERROR in {section}: {msg}")
        self.errors.append(f"{section}: {msg}")

    # 1 ------------------------------------------------------------------------------------

    def sleepers(self, n):
        pythons = sorted(
            (p for p in glob.glob(os.path.join(PYENV_VERSIONS, "3.*", "bin", "python3.*"))
             if re.search(r"/python3\.\d+$", p)),
            key=lambda p: tuple(int(x) for x in re.search(r"versions/([\d.]+)/", p).group(1).split(".")))
        if not pythons:
            raise BenchError(f"no pyenv pythons under {PYENV_VERSIONS}")
        procs = []
        for i in range(n):
            procs.append(spawn([pythons[i % len(pythons)], "-c", "import time; time.sleep(600)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Settled: every one alive and none has used CPU for 300 ms.
        deadline = clock() + 120
        last = None
        while clock() < deadline:
            time.sleep(0.3)
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise BenchError(f"{len(dead)} sleeper(s) exited early, e.g. status {dead[0].returncode}")
            now = sum(cpu_seconds(p.pid) or 0 for p in procs)
            if last is not None and now == last:
                break
            last = now
        return procs, pythons

    def attach_series(self, extra, reps):
        times, known = [], []
        for _ in range(reps):
            pt = self.pytrace(extra)
            try:
                t, k = pt.wait_attached()
                times.append(t)
                known.append(k)
                time.sleep(0.1)
            finally:
                pt.stop()
            note = exit_note(pt)
            if note:
                raise BenchError(note)
            time.sleep(0.2)
        return times, known

    def section_attach(self):
        a = self.a
        self.out("", "1. Launch -> 'pytrace: attached'  (ms)")
        rows = []
        log(f"attach: host as is, {a.attach_reps} runs")
        t_host, k_host = self.attach_series([], a.attach_reps)
        rows.append([f"system-wide, host as is (known: {counts(k_host)})"] + ms_cells(t_host))

        small = Target(a.python, 1, 3, a.signal)
        try:
            log(f"attach: --pid, {a.attach_reps} runs")
            t_pid, _ = self.attach_series(["--pid", str(small.pid)], a.attach_reps)
            rows.append(["--pid (one 3.11 target)"] + ms_cells(t_pid))
        finally:
            small.close()

        log(f"attach: starting {a.procs} sleeping Pythons")
        t0 = clock()
        procs, pythons = self.sleepers(a.procs)
        try:
            started = clock() - t0
            log(f"attach: {a.procs} sleepers settled in {started:.1f} s; {a.attach_reps} runs")
            t_many, k_many = self.attach_series([], a.attach_reps)
            rows.append([f"system-wide, +{a.procs} Pythons (known: {counts(k_many)})"] + ms_cells(t_many))
            pt = self.pytrace(["-v"])
            try:
                pt.wait_attached()
            finally:
                pt.stop()
            skipped = pt.err_lines("pytrace: skipping")
            ours = {str(p.pid) for p in procs}
            skipped_ours = [l for _, l in skipped if ours & set(re.findall(r"\d+", l))]
        finally:
            for p in procs:
                reap(p)
        self.out(*table(["case", "median", "p90", "min", "max", "n"], rows))
        vers = ", ".join(re.search(r"versions/([\d.]+)/", p).group(1) for p in pythons)
        self.out(f"  sleepers: {a.procs} x `python3.X -c 'import time; time.sleep(600)'`, round-robin"
                 f" over {vers}; started and settled in {started:.1f} s")
        k_host = [k for k in k_host if k is not None]
        k_many = [k for k in k_many if k is not None]
        extra = pct(k_many, 50) - pct(k_host, 50) if k_host and k_many else None
        self.out(f"  known Pythons grew by {extra if extra is not None else 'n/a'} with {a.procs} sleepers started")
        if t_host and t_many:
            per = (summary(t_many)["median"] - summary(t_host)["median"]) / a.procs
            self.out(f"  marginal attach cost per running Python process: {per * 1e3:.3f} ms")
        if skipped:
            self.out(f"  with -v, {len(skipped)} process(es) skipped at start-up, e.g.:")
            self.out(*("    " + l for _, l in skipped[:5]))
        if skipped_ours:
            self.fail("1. attach", f"{len(skipped_ours)} of the {a.procs} sleepers were skipped at start-up, "
                      f"e.g. {skipped_ours[0]}")
        elif extra is not None and extra < a.procs:
            self.out(f"  note: fewer known than started, though no sleeper was reported skipped "
                     f"(other processes on the host come and go)")

    # 2 ------------------------------------------------------------------------------------

    def pytrace_dump_once(self, pt, target, timeout=3.0):
        pt.drain()
        t0 = clock()
        os.kill(target.pid, self.sig)
        d = pt.wait_dump(target.pid, timeout)
        return t0, d

    def section_latency(self):
        a = self.a
        expect = a.threads + 1
        self.out("", f"2. kill -> dump written, target {a.threads} threads x {a.depth} frames "
                     f"(+ main thread), Python 3.11  (ms)")
        target = Target(a.python, a.threads, a.depth, a.signal)
        pt = self.pytrace(["--pid", str(target.pid)])
        lat, threads, frames, missing = [], [], [], 0
        cold = None
        peers = [p for p in self.peers if p.problem is None]
        peer_times = {p.name: [] for p in peers}
        peer_threads = {p.name: [] for p in peers}
        peer_fail = {p.name: [] for p in peers}
        try:
            pt.wait_attached()
            t0, d = self.pytrace_dump_once(pt, target)
            if d is None:
                raise BenchError("no dump for the first signal within 3 s")
            cold = d.t_end - t0
            time.sleep(0.02)
            cpu0 = cpu_seconds(pt.pid)
            rounds = max(1, a.peer_reps)
            per_round = [a.latency_iters // rounds + (1 if i < a.latency_iters % rounds else 0)
                         for i in range(rounds)]
            log(f"latency: {a.latency_iters} pytrace dumps, {a.peer_reps} runs of each of "
                f"{len(peers)} peer(s), interleaved")
            for r in range(rounds):
                for _ in range(per_round[r]):
                    t0, d = self.pytrace_dump_once(pt, target)
                    if d is None:
                        missing += 1
                    else:
                        lat.append(d.t_end - t0)
                        threads.append(d.threads)
                        frames.append(d.frames)
                    time.sleep(0.005)
                for p in peers:
                    t, rc, n, err = p.run(target.pid)
                    if rc == 0:
                        peer_times[p.name].append(t)
                        peer_threads[p.name].append(n)
                    else:
                        peer_fail[p.name].append(err.splitlines()[-1] if err else f"exit {rc}")
                    pt.drain()
            cpu1 = cpu_seconds(pt.pid)
            if target.proc.poll() is not None:
                raise BenchError(f"target exited with {target.proc.returncode}")
        finally:
            pt.stop()
            target.close()
        note = exit_note(pt)
        if note:
            self.fail("2. latency", note)
        base = summary(lat)["median"] if lat else None
        rows = [["pytrace (warm)"] + ms_cells(lat) + [str(missing), counts(threads), "1.0x"],
                ["pytrace (first dump)", fmt_ms(cold), "", "", "", "1", "", "", ""]]
        for p in self.peers:
            if p.problem is not None:
                rows.append([p.name, p.problem] + [""] * 8)
                continue
            xs = peer_times[p.name]
            ratio = summary(xs)["median"] / base if xs and base else None
            rows.append([p.name] + ms_cells(xs) + [str(len(peer_fail[p.name])),
                                                  counts(peer_threads[p.name]), fmt_ratio(ratio)])
        self.out(*table(["tool", "median", "p90", "min", "max", "n", "failed", "threads seen",
                         "vs pytrace"], rows))
        self.out("  pytrace: os.kill -> the dump's final empty line read from its stdout (persistent "
                 "`pytrace --pid P`);")
        self.out("  peers: wall time of the whole command (process start, attach, read, print, exit).")
        self.out("  'vs pytrace' = peer median / pytrace warm median.")
        if lat and cpu0 is not None and cpu1 is not None:
            self.out(f"  pytrace user+system CPU while dumping: {(cpu1 - cpu0) / len(lat) * 1e3:.3f} ms per dump "
                     f"(includes idle wake-ups during peer runs; clock tick {1e3 / os.sysconf('SC_CLK_TCK'):.0f} ms)")
        self.out(f"  frames per pytrace dump: {counts(frames)}")
        for name, fails in peer_fail.items():
            if fails:
                self.out(f"  {name}: {len(fails)} failure(s), e.g. {fails[0]}")
        bad = [n for n in threads if n != expect]
        if missing or bad:
            self.fail("2. latency", f"{missing} signal(s) without a dump within 3 s; "
                      f"{len(bad)} dump(s) with a thread count other than {expect}: {counts(bad)}")
        else:
            self.out(f"  sanity: every pytrace dump arrived and had {expect} threads")
        for p in self.peers:
            wrong = [n for n in peer_threads.get(p.name, []) if n != expect]
            if wrong:
                self.out(f"  note: {p.name} reported {counts(wrong)} thread(s) instead of {expect} in "
                         f"{len(wrong)} run(s)")
        self.latency_median = base

    # 3 ------------------------------------------------------------------------------------

    def section_kernel(self):
        a = self.a
        self.out("", f"3. Cost per dump, target {a.threads} x {a.depth}")
        target = Target(a.python, a.threads, a.depth, a.signal)
        per_run, per_dump, rows = [], [], []
        all_bpf = None
        try:
            for r in range(a.kernel_runs):
                log(f"kernel time: run {r + 1}/{a.kernel_runs}, {a.kernel_dumps} dumps")
                pt = self.pytrace(["-v", "--pid", str(target.pid), "--count", str(a.kernel_dumps)])
                got = 0
                try:
                    pt.wait_attached()
                    for _ in range(a.kernel_dumps):
                        _, d = self.pytrace_dump_once(pt, target)
                        got += d is not None
                        time.sleep(0.005)
                        if not pt.alive():
                            break
                finally:
                    try:
                        pt.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                    pt.stop()
                note = exit_note(pt)
                if note:
                    self.fail("3. kernel time", note)
                bpf = pt.bpf()
                stats = pt.stats() or {}
                all_bpf = bpf
                if got != a.kernel_dumps:
                    self.fail("3. kernel time", f"run {r + 1}: {got} of {a.kernel_dumps} dumps arrived")
                if "signal_deliver" in bpf:
                    runs, ns = bpf["signal_deliver"]
                    dumps = int(stats.get("dumps", got) or got)
                    per_run.append(ns / runs / 1e9 if runs else 0)
                    per_dump.append(ns / dumps / 1e9 if dumps else 0)
                    rows.append([str(r + 1), str(runs), str(dumps), f"{ns / 1e6:.3f}",
                                 f"{ns / runs / 1e3:.2f}" if runs else "n/a",
                                 f"{ns / dumps / 1e3:.1f}" if dumps else "n/a"])
                else:
                    rows.append([str(r + 1), "n/a", stats.get("dumps", "?"), "n/a", "n/a", "n/a"])
                self.out(f"  run {r + 1} stats: {fmt_stats(pt.stats())}")
                time.sleep(0.2)
            self.out(*table(["run", "signal_deliver runs", "dumps", "total ms", "us/run", "us/dump"], rows))
            if per_dump:
                self.out(f"  kernel time per dump (total signal_deliver ns / dumps): median "
                         f"{pct(per_dump, 50) * 1e6:.1f} us over {len(per_dump)} run(s) of {a.kernel_dumps}")
                self.out("  runs count every signal delivered on the host while attached (the program "
                         "filters the rest early), so us/dump is an upper bound and us/run a mix.")
            else:
                self.out("  kernel time per dump: n/a (pytrace -v printed no 'pytrace: bpf:' line)")
            if all_bpf:
                self.out(*fmt_bpf(all_bpf))
        finally:
            target.close()
        self.section_stall(per_dump)

    def section_stall(self, kernel_per_dump):
        a = self.a
        log(f"stall: ticker target, {a.stall_reps} rounds")
        target = Target(a.python, a.threads, a.depth, a.signal, ticker=True)
        peers = [p for p in self.peers if p.problem is None]
        idle20, idle200, sig_only = "no tool: idle 20 ms", "no tool: idle 200 ms", "no tool: signal, wait 20 ms"
        gaps = {k: [] for k in [idle20, idle200, sig_only] + [p.name for p in peers] + ["pytrace"]}
        walls = {k: [] for k in gaps}
        pauses = {p.name: p.pauses for p in self.peers}
        pauses.update({"pytrace": "no", sig_only: "no"})

        def sample(name, action):
            target.gap()
            t0 = clock()
            ok = action()
            wall = clock() - t0
            g = target.gap()
            if ok:
                gaps[name].append(g)
                walls[name].append(wall)

        def signal_only():
            os.kill(target.pid, self.sig)
            time.sleep(0.02)
            return True

        try:
            for _ in range(a.stall_reps):
                sample(idle20, lambda: time.sleep(0.02) or True)
                sample(idle200, lambda: time.sleep(0.2) or True)
                sample(sig_only, signal_only)
                for p in peers:
                    sample(p.name, lambda p=p: p.run(target.pid)[1] == 0)
            pt = self.pytrace(["--pid", str(target.pid)])
            try:
                pt.wait_attached()
                self.pytrace_dump_once(pt, target)
                missing = 0

                def dump():
                    nonlocal missing
                    _, d = self.pytrace_dump_once(pt, target)
                    missing += d is None
                    return d is not None

                for _ in range(a.stall_reps):
                    sample("pytrace", dump)
                    time.sleep(0.02)
            finally:
                pt.stop()
            if missing:
                self.fail("3. stall", f"{missing} signal(s) to the ticker target produced no dump")
        finally:
            target.close()
        rows = []
        for name, xs in gaps.items():
            s = summary(xs)
            w = summary(walls[name])
            rows.append([name, pauses.get(name, "-")] +
                        ([fmt_ms(s["median"]), fmt_ms(s["p90"]), fmt_ms(s["max"]), fmt_ms(w["median"])]
                         if s else ["n/a"] * 4))
        for p in self.peers:
            if p.problem is not None:
                rows.append([p.name, p.problem, "", "", "", ""])
        self.out("", "  Target stopped per dump: longest gap seen by a ticker thread of the target (wakes every"
                     " 0.5 ms) while one dump is taken  (ms)")
        self.out(*table(["tool", "stops target", "gap median", "gap p90", "gap max", "window"], rows))
        kd = f"{pct(kernel_per_dump, 50) * 1e6:.0f} us" if kernel_per_dump else "n/a"
        self.out("  pytrace stops no thread: its eBPF walk runs once, in the thread that receives the signal, "
                 f"at delivery (~{kd} per dump, see above);")
        self.out("  the other threads keep running, but that CPU runs nothing else meanwhile (tracepoint programs "
                 "run with preemption off), and pytrace's own")
        self.out("  decoding competes for the CPUs: on a small host that shows up as a longer ticker gap than "
                 "'signal, wait 20 ms' (same window).")
        self.out("  py-spy dump pauses the target unless --nonblocking; pystack remote blocks it unless "
                 "--no-block; austin never pauses it.")
        self.out("  Compare each gap with the idle row of a similar window: the rest is scheduling noise.")

    # 4 ------------------------------------------------------------------------------------

    def section_exec(self):
        a = self.a
        self.out("", "4. Spawn of a fresh Python 3.11 -> first dump, pytrace tracing the whole host  (ms)")
        pt = self.pytrace(["-v"])
        code = FRESH_TARGET.format(sig=a.signal)
        res = {k: [] for k in ("handler", "ready", "tracing", "first", "dumped", "dump")}
        sent_before, which, threads, fails = [], [], [], []
        try:
            pt.wait_attached()
            log(f"exec -> dumpable: {a.spawn_reps} fresh targets")
            for _ in range(a.spawn_reps):
                t_spawn = clock()
                p = spawn([a.python, "-c", code], stdout=subprocess.PIPE, bufsize=0)
                out = LineReader(p.stdout.fileno())
                t_handler = t_ready = dump = None
                kills = []
                next_tick = t_spawn
                deadline = t_spawn + 10
                try:
                    while clock() < deadline:
                        now = clock()
                        if now >= next_tick:
                            next_tick = max(next_tick + 0.002, now + 0.0005)
                            if t_handler is None and catches(p.pid, self.sig):
                                t_handler = clock()
                            if t_handler is not None:
                                kills.append((clock(), time.time_ns()))
                                os.kill(p.pid, self.sig)
                        got = poll([pt.out, out], min(next_tick, deadline) - clock())
                        for t, l in got.get(out, []):
                            if l == "ready" and t_ready is None:
                                t_ready = t
                        for t, l in got.get(pt.out, []):
                            pt.parser.feed(t, l)
                        pt.parser.idle(pt.GRACE)
                        dump = pt.parser.take(p.pid)
                        if dump is not None:
                            break
                        if p.poll() is not None:
                            fails.append(f"target exited ({p.returncode}) after {len(kills)} signal(s)")
                            break
                    else:
                        fails.append(f"no dump within 10 s after {len(kills)} signal(s)")
                finally:
                    reap(p)
                pt.parser.done.clear()
                hit = pt.wait_err(lambda l, pid=p.pid: l == f"pytrace: now tracing new process {pid}", 0.5)
                if dump is None:
                    continue
                res["dump"].append(dump.t_end - t_spawn)
                res["handler"].append(t_handler - t_spawn)
                res["first"].append(kills[0][0] - t_spawn)
                ts = header_time_ns(dump.header)
                k = max((i for i, (_, rt) in enumerate(kills) if ts is not None and rt <= ts), default=None)
                if k is not None:
                    res["dumped"].append(kills[k][0] - t_spawn)
                    which.append(k + 1)
                if t_ready is not None:
                    res["ready"].append(t_ready - t_spawn)
                if hit is not None:
                    res["tracing"].append(hit[0] - t_spawn)
                sent_before.append(len(kills))
                threads.append(dump.threads)
                time.sleep(0.1)
        finally:
            pt.stop()
        note = exit_note(pt)
        if note:
            self.fail("4. exec", note)
        rows = [
            ["spawn -> first dump printed (pytrace)"] + ms_cells(res["dump"]),
            ["spawn -> 'now tracing' on stderr (pytrace -v)"] + ms_cells(res["tracing"]),
            ["spawn -> SIGUSR2 handler installed (SigCgt)"] + ms_cells(res["handler"]),
            ["spawn -> first signal sent"] + ms_cells(res["first"]),
            ["spawn -> the signal of the first dump sent"] + ms_cells(res["dumped"]),
            ["spawn -> 'ready' printed by the interpreter"] + ms_cells(res["ready"]),
        ]
        self.out(*table(["event", "median", "p90", "min", "max", "n"], rows))
        self.out(f"  the first dump came from signal number {counts(which)} (matched by the dump's time stamp); "
                 f"signals sent until it was read: {counts(sent_before)}; threads per dump: {counts(threads)}")
        self.out("  Signals start once /proc/PID/status shows the handler (faulthandler.register in the "
                 "target), every 2 ms: before that SIGUSR2's default action would kill the target.")
        self.out("  When the first dump comes from signal 1, pytrace was ready before the target could even "
                 "take the signal: the first dump waits on the")
        self.out("  interpreter's own start-up; 'now tracing' (pytrace -v) is then pytrace's own readiness.")
        if fails:
            self.fail("4. exec", f"{len(fails)} of {a.spawn_reps} fresh targets got no dump: {fails[0]}")

    # 5 ------------------------------------------------------------------------------------

    def churn(self, n, on_step=None, steps=10):
        """Runs n `python -c pass`, churn_parallel at a time; returns (pids, seconds)."""
        a = self.a
        argv = [a.python, "-c", "pass"]
        pids, inflight = set(), []
        step = max(1, n // steps)
        t0 = clock()
        try:
            for i in range(n):
                if len(inflight) >= a.churn_parallel:
                    os.waitpid(inflight.pop(0), 0)
                pid = os.posix_spawn(a.python, argv, os.environ)
                pids.add(pid)
                inflight.append(pid)
                if on_step is not None and (i + 1) % step == 0:
                    on_step(i + 1, clock() - t0)
        finally:
            for pid in inflight:
                os.waitpid(pid, 0)
        return pids, clock() - t0

    # -----------------------------------------------------------------------------------------
    # 6. sampling: slowdown of a CPU-bound pure-Python run under each sampler

    SAMPLING_TARGET = r"""
import sys, time
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def work(units):
    for _ in range(units):
        fib(22)
if sys.argv[1] == "calibrate":
    t0 = time.perf_counter(); work(20); print(time.perf_counter() - t0, flush=True)
else:
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter(); c0 = time.process_time(); work(int(sys.argv[1]))
    print(time.perf_counter() - t0, time.process_time() - c0, flush=True)
"""

    def sampling_run(self, units, tool):
        """One timed run of the benchmark under `tool` (argv with {pid}/{out}, or None);
        returns (wall seconds, the target's own CPU seconds for the work, tool rusage or None,
        tool stderr)."""
        target = spawn([self.a.python, "-c", self.SAMPLING_TARGET, str(units)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if target.stdout.readline().strip() != "ready":
            raise BenchError("sampling target did not start")
        proc, err_path = None, None
        if tool is not None:
            out = os.path.join(self.tmp, "sample.out")
            err_path = os.path.join(self.tmp, "sample.err")
            argv = [a.replace("{pid}", str(target.pid)).replace("{out}", out) for a in tool]
            err = open(err_path, "w")
            proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
            if argv[0] == self.a.pytrace:
                deadline = clock() + 30
                while "pytrace: attached" not in open(err_path).read():
                    if clock() > deadline or proc.poll() is not None:
                        raise BenchError("pytrace record did not attach: " + open(err_path).read()[-300:])
                    time.sleep(0.02)
            else:
                time.sleep(1.0)  # py-spy and austin print nothing when attached
        target.stdin.write("go\n")
        target.stdin.flush()
        line = target.stdout.readline()
        reap(target, timeout=30)
        usage = None
        if proc is not None:
            try:
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass
            reap(proc, sig=signal.SIGINT)
        try:
            seconds, cpu = (float(x) for x in line.split())
        except ValueError:
            raise BenchError(f"sampling target printed {line!r}")
        stderr = open(err_path).read() if err_path else ""
        return seconds, cpu, usage, stderr

    # A thread busy under 30 frames of 29 distinct functions (or idle in the same place):
    # <module> -> f27 -> ... -> f0 -> leaf.
    DEEP_TARGET = r"""
import sys, time
src = ["def leaf():\n    x = 0\n    while True:\n        for i in range(1000):\n            x += i\n",
       "def f0():\n    leaf()\n"]
src += [f"def f{i}():\n    f{i - 1}()\n" for i in range(1, 28)]
exec(compile("".join(src), "deep_gen.py", "exec"))
print("ready", flush=True)
if sys.argv[1] == "idle":
    time.sleep(1000)
f27()
"""

    # Reads of the sampled thread's memory `--calibrate-reads` adds to each sample.
    CALIBRATE_READS = 300

    def sample_cost_run(self, python, mode, seconds=3, calibrate_reads=0):
        """`pytrace record --hz 999 -v` of the deep target: (program runs, ns, samples,
        phases); with `calibrate_reads`, each sample's phases are timed too (`phases`: ns per
        timed sample in begin, walk and finish; else None)."""
        target = spawn([python, "-c", self.DEEP_TARGET, mode], stdout=subprocess.PIPE, text=True)
        try:
            if target.stdout.readline().strip() != "ready":
                raise BenchError("deep target did not start")
            r = subprocess.run([self.a.pytrace, "record", "--pid", str(target.pid), "--hz", "999",
                                "--duration", str(seconds), "--format", "folded", "-v",
                                "-o", os.path.join(self.tmp, "deep.folded")]
                               + (["--calibrate-reads", str(calibrate_reads), "--time-phases"]
                                  if calibrate_reads else []),
                               capture_output=True, text=True, timeout=120)
        finally:
            reap(target)
        m = re.search(r"bpf: cpu_clock runs=(\d+) ns=(\d+)", r.stderr)
        w = re.search(r"wrote (\d+) samples", r.stderr)
        if not (m and w):
            raise BenchError("pytrace record printed no run-time stats: " + r.stderr[-300:])
        phases = None
        if calibrate_reads:
            c = {k: int(v) for k, v in re.findall(r"\b(phase_\w+)=(\d+)", r.stderr)}
            timed = c.get("phase_timed", 0)
            if not timed:
                raise BenchError("pytrace record timed no phases: " + r.stderr[-300:])
            phases = tuple(c[f"phase_{p}_ns"] / timed for p in ("begin", "walk", "finish"))
        return int(m.group(1)), int(m.group(2)), int(w.group(1)), phases

    def sample_cost(self, python, reps):
        """Kernel time per sample of a 30-frame stack: each busy run's program time less its
        other ticks at the per-tick cost of an idle run (which samples nothing), per sample.
        Each round also times one read of the target's memory (a busy run whose samples each
        make `CALIBRATE_READS` more, against the plain one) and, in that run, the phases of
        each sample (outside which the added reads are made)."""
        per_tick, per_sample, per_read, phases = [], [], [], []
        for _ in range(reps):
            runs, ns, _, _ = self.sample_cost_run(python, "idle")
            idle = ns / max(runs, 1)
            per_tick.append(idle)
            one = []
            for extra in (0, self.CALIBRATE_READS):
                runs, ns, samples, timed = self.sample_cost_run(python, "busy",
                                                                 calibrate_reads=extra)
                one.append((ns - idle * (runs - samples)) / max(samples, 1))
            per_sample.append(one[0])
            per_read.append((one[1] - one[0]) / self.CALIBRATE_READS)
            phases.append(timed)
        return per_tick, per_sample, per_read, phases

    def report_sample_cost(self, python, reps):
        """One report line: the kernel time per sample of `python`'s 30-frame stack, median and
        every run, and what one read of the target's memory costs, with the load average
        around the runs."""
        load0 = loadavg()
        per_tick, per_sample, per_read, phases = self.sample_cost(python, reps)
        begin, walk, finish = (statistics.median(p[i] for p in phases) / 1000 for i in range(3))
        share = statistics.median(per_sample) / 1e9
        runs = " ".join(f"{x / 1000:.1f}" for x in per_sample)
        self.out(f"  pytrace kernel time per sample of a 30-frame stack (29 distinct functions, "
                 f"{os.path.basename(python)}, 999 Hz, {len(per_sample)} runs of 3 s): median "
                 f"{statistics.median(per_sample) / 1000:.1f} us (runs "
                 f"{min(per_sample) / 1000:.1f}-{max(per_sample) / 1000:.1f}: {runs}); other ticks "
                 f"{statistics.median(per_tick):.0f} ns each (idle run); one 8-byte read of the "
                 f"target's memory {statistics.median(per_read):.0f} ns (runs "
                 f"{min(per_read):.0f}-{max(per_read):.0f}; {self.CALIBRATE_READS} reads added "
                 f"per sample); phases of a sample (medians, each with a clock read): begin "
                 f"{begin:.1f} us, walk {walk:.1f} us, finish {finish:.1f} us; charged to the sampled "
                 f"thread: {share * 99 * 100:.2f}% of its time at 99 Hz, {share * 999 * 100:.2f}% at 999 Hz; "
                 f"load average {load0} before, {loadavg()} after")

    def section_sample_cost(self):
        """--sample-cost: only the kernel time per sample, for the interpreters asked for."""
        self.tmp = tempfile.mkdtemp(prefix="pytrace-bench-")
        try:
            for python in self.a.sample_cost:
                self.report_sample_cost(python, self.a.sample_cost_runs)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def section_sampling(self):
        a = self.a
        self.tmp = tempfile.mkdtemp(prefix="pytrace-bench-")
        r = subprocess.run([a.python, "-c", self.SAMPLING_TARGET, "calibrate"], capture_output=True, text=True)
        unit = float(r.stdout) / 20
        units = max(1, int(5.0 / unit))
        tools_dir = a.tools_dir
        def peer(exe):
            path = os.path.join(tools_dir, exe)
            return path if os.access(path, os.X_OK) else shutil.which(exe)
        pt = [a.pytrace, "record", "--pid", "{pid}", "--format", "folded", "-o", "{out}", "-v"]
        configs = [("no tool", None),
                   ("pytrace record --hz 99", pt + ["--hz", "99"]),
                   ("pytrace record --hz 999", pt + ["--hz", "999"])]
        spy, austin = peer("py-spy"), peer("austin")
        if spy:
            for rate in ("100", "1000"):
                base = [spy, "record", "--pid", "{pid}", "--rate", rate, "--format", "raw", "-o", "{out}"]
                configs.append((f"py-spy record --rate {rate}", base))
                configs.append((f"py-spy record --rate {rate} --nonblocking", base + ["--nonblocking"]))
        if austin:
            for interval in ("10ms", "1ms"):
                configs.append((f"austin -i {interval}", [austin, "-i", interval, "-p", "{pid}", "-o", "{out}"]))
        reps = 3 if a.quick else 10
        times = {name: [] for name, _ in configs}
        cpus = {name: [] for name, _ in configs}
        usage = {name: [] for name, _ in configs}
        kernel = []
        for rep in range(reps):
            order = list(configs)
            random.shuffle(order)
            for name, tool in order:
                seconds, target_cpu, ru, stderr = self.sampling_run(units, tool)
                times[name].append(seconds)
                cpus[name].append(target_cpu)
                if ru is not None:
                    usage[name].append((ru.ru_utime + ru.ru_stime, ru.ru_maxrss))
                m = re.search(r"bpf: cpu_clock runs=(\d+) ns=(\d+)", stderr)
                w = re.search(r"wrote (\d+) samples", stderr)
                if m and w and name.endswith("999"):
                    kernel.append((int(m.group(1)), int(m.group(2)), int(w.group(1))))
            log(f"  sampling: round {rep + 1}/{reps} done")
        base = statistics.median(times["no tool"])
        cpu_base = statistics.median(cpus["no tool"])
        rows = []
        for name, _ in configs:
            xs = times[name]
            med = statistics.median(xs)
            cmed = statistics.median(cpus[name])
            cpu = [u[0] for u in usage[name]]
            rss = [u[1] for u in usage[name]]
            rows.append([name, f"{med:.3f} s", f"{(med / base - 1) * 100:+.1f}%",
                         f"{min(xs):.3f}-{max(xs):.3f}",
                         f"{cmed:.3f} s", f"{(cmed / cpu_base - 1) * 100:+.1f}%",
                         f"{min(cpus[name]):.3f}-{max(cpus[name]):.3f}",
                         f"{statistics.median(cpu):.2f} s" if cpu else "-",
                         f"{max(rss) // 1024} MiB" if rss else "-"])
        # Wall time includes waiting for a CPU (the tool's own work competes with the target
        # on a small host) and a blocking tool's pauses; the target's CPU time includes what
        # the tool makes it spend (pytrace's eBPF program runs in the interrupted task) and
        # varies less with the host's other load.
        self.out("", f"6. sampling: a {base:.1f} s CPU-bound pure-Python run ({units} x fib(22)), "
                 f"{reps} interleaved rounds; slowdown of the median against no tool, in wall "
                 f"time and in the target's own CPU time (time.process_time)",
                 *table(["tool", "wall", "slowdown", "min-max", "target CPU", "slowdown",
                         "min-max", "tool CPU", "tool max RSS"], rows))
        # Before 3.12 every code object is proven anew in each sample; from 3.12 its
        # `co_version` proves it in one read (README, Performance).
        py312 = os.path.join(PYENV_VERSIONS, "3.12.1/bin/python3.12")
        for python in [a.python] + ([py312] if os.access(py312, os.X_OK) else []):
            self.report_sample_cost(python, a.sample_cost_runs)
        if kernel:
            runs = sum(k[0] for k in kernel)
            ns = sum(k[1] for k in kernel)
            samples = sum(k[2] for k in kernel)
            self.out(f"  pytrace kernel time at 999 Hz: {ns / max(runs, 1) / 1000:.1f} us per tick "
                     f"(all CPUs, every task), {ns / max(samples, 1) / 1000:.1f} us per Python sample "
                     f"written (an upper bound: it includes the other tasks' ticks)")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def section_churn(self):
        a = self.a
        self.out("", f"5. pytrace memory across {a.churn} short-lived Pythons (`python3.11 -c pass`, "
                     f"{a.churn_parallel} at a time), tracing the whole host")
        n_base = max(50, min(300, a.churn // 20))
        log(f"churn: {n_base} processes without pytrace, for the rate")
        _, base_s = self.churn(n_base)
        pt = self.pytrace(["-v"])
        checkpoints = []
        d = None
        procs_map = None
        try:
            pt.wait_attached()
            time.sleep(1.0)
            rss0, hwm0, fds0, cpu0 = rss_kib(pt.pid), hwm_kib(pt.pid), fd_count(pt.pid), cpu_seconds(pt.pid)
            map0 = bpf_map_keys(pt.pid, "PROCS")
            checkpoints.append([0, rss0, fds0, 0.0])

            def step(done, elapsed):
                checkpoints.append([done, rss_kib(pt.pid), fd_count(pt.pid), elapsed])
                if not pt.alive():
                    raise BenchError(f"pytrace died during the churn (status {pt.proc.poll()}); "
                                     f"stderr:\n{pt.err_tail()}")

            log(f"churn: {a.churn} processes, {a.churn_parallel} at a time")
            pids, elapsed = self.churn(a.churn, step)
            cpu1 = cpu_seconds(pt.pid)
            time.sleep(2.0)
            rss1, hwm1, fds1 = rss_kib(pt.pid), hwm_kib(pt.pid), fd_count(pt.pid)
            checkpoints.append(["+2 s", rss1, fds1, elapsed + 2])
            procs_map = bpf_map_keys(pt.pid, "PROCS")

            log("churn: checking pytrace still dumps a new target")
            cpu_before = cpu_seconds(pt.pid)
            t_start = clock()
            target = Target(a.python, 2, 5, a.signal)
            try:
                t_ready = clock() - t_start
                hit = pt.wait_err(lambda l: l == f"pytrace: now tracing new process {target.pid}", 10.0)
                tracing = hit[0] - t_start if hit else None
                tries = 0
                while d is None and tries < 3:
                    tries += 1
                    pt.drain()
                    t_kill = clock()
                    os.kill(target.pid, self.sig)
                    d = pt.wait_dump(target.pid, 2.0)
                target_pid = target.pid
                pid_re = re.compile(rf"\b{target.pid}\b")
                target_lines = [f"+{(t - t_start) * 1e3:.0f} ms: {l}" for t, l in pt.err_lines("pytrace: ")
                                if pid_re.search(l)]
                cpu_after = cpu_seconds(pt.pid)
            finally:
                target.close()
        finally:
            pt.stop()
        note = exit_note(pt)
        if note:
            self.fail("5. churn", note)
        traced = [int(l.rsplit(" ", 1)[1]) for _, l in pt.err_lines("pytrace: now tracing new process ")]
        traced = [x for x in traced if x in pids]
        not_traced = [l for _, l in pt.err_lines("pytrace: not tracing new process ")
                      if int(l.split()[5].rstrip(":")) in pids]
        rows = [[str(c[0]), f"{c[1] / 1024:.1f}" if c[1] else "?", str(c[2]), f"{c[3]:.1f}"] for c in checkpoints]
        self.out(*table(["processes done", "VmRSS MiB", "open fds", "elapsed s"], rows))
        self.out(f"  VmRSS before {rss0} KiB, after {rss1} KiB: {rss1 - rss0:+d} KiB "
                 f"({(rss1 - rss0) * 1024 / a.churn:+.1f} bytes per process); VmHWM {hwm0} -> {hwm1} KiB; "
                 f"open fds {fds0} -> {fds1}")
        self.out(f"  rate: {a.churn / elapsed:.1f} processes/s with pytrace ({elapsed:.1f} s), "
                 f"{n_base / base_s:.1f}/s without it ({n_base} processes just before)")
        self.out(f"  pytrace CPU (user+system) during the churn: {cpu1 - cpu0:.2f} s, "
                 f"{(cpu1 - cpu0) / a.churn * 1e3:.2f} ms per process")
        self.out(f"  pytrace -v: 'now tracing' {len(traced)} time(s) for {len(set(traced))} distinct of these "
                 f"processes, 'not tracing' for {len(not_traced)}; the rest exited before an inspection")
        for l in not_traced[:3]:
            self.out("    " + l)
        if procs_map is not None and map0 is not None:
            keys, max_entries = procs_map
            dead = [k for k in keys if not os.path.exists(f"/proc/{k}")]
            ours = [k for k in dead if k in pids]
            self.out(f"  kernel map PROCS: {len(map0[0])} entries before, {len(keys)} after (max {max_entries}); "
                     f"{len(dead)} of them for processes that no longer exist ({len(ours)} from the churn)")
            if ours:
                self.fail("5. churn", f"{len(ours)} exited churn processes still in PROCS after the churn "
                          f"(e.g. pid {ours[0]}): entries leak when a process exits around its registration")
        else:
            self.out("  kernel map PROCS: could not be read (no map named PROCS among pytrace's descriptors)")
        self.out(f"  after the churn, a new target (ready {t_ready * 1e3:.0f} ms after spawn, 'now tracing' "
                 f"{'after %.0f ms' % (tracing * 1e3) if tracing is not None else 'not within 10 s'}) was "
                 + (f"dumped in {fmt_ms(d.t_end - t_kill)} ms at signal {tries} ({d.threads} threads, expected 3)"
                    if d else f"NOT dumped after {tries} signals 2 s apart"))
        if d is None or tries > 1 or tracing is None:
            stale = procs_map is not None and target_pid in procs_map[0]
            self.out(f"    its PID {target_pid} was {'a leftover' if stale else 'not'} in PROCS before it started"
                     f"{' (pid of an exited churn process)' if target_pid in pids else ''}; "
                     f"pytrace CPU meanwhile: {cpu_after - cpu_before:.2f} s; what pytrace -v said about it:")
            self.out(*("      " + l for l in target_lines or ["nothing"]))
        self.out(f"  exit stats: {fmt_stats(pt.stats())}")
        self.out(*fmt_bpf(pt.bpf()))
        if d is None or d.threads != 3:
            self.fail("5. churn", "pytrace did not dump a new target correctly after the churn")


    # 7. on-demand dumps ---------------------------------------------------------------------

    def timed(self, cmd):
        """Wall time of a whole command, its exit code, its stdout and the last line of stderr."""
        t0 = clock()
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=120)
        except subprocess.TimeoutExpired:
            return clock() - t0, -1, "", "timed out after 120 s"
        t = clock() - t0
        err = ANSI_RE.sub("", r.stderr.decode("utf-8", "replace")).strip()
        return t, r.returncode, r.stdout.decode("utf-8", "replace"), (err.splitlines() or [""])[-1]

    def section_ondemand(self):
        a = self.a
        n = a.ondemand_procs
        reps = a.ondemand_reps
        self.out("", f"7. On-demand dumps without a signal: `pytrace dump` and one-shot peers, wall time of the "
                     f"whole command  (ms)")
        target = Target(a.python, a.threads, a.depth, a.signal, ticker=True)
        log(f"on-demand: starting {n} sleeping Pythons")
        procs, pythons = self.sleepers(n)
        pids = [p.pid for p in procs]
        peers = {p.name: p for p in self.peers if p.problem is None}
        spy = peers.get("py-spy dump")
        expect = a.threads + 2  # the workers, the ticker thread and the main thread
        vm = "pytrace dump --reader process-vm"
        one = {"pytrace dump --pid P": [a.pytrace, "dump", "--pid", str(target.pid)],
               f"{vm} --pid P": [a.pytrace, "dump", "--reader", "process-vm", "--pid", str(target.pid)]}
        for name in ("py-spy dump", "py-spy dump --nonblocking", "pystack remote", "pystack remote --no-block"):
            if name in peers:
                p = peers[name]
                one[name] = [p.exe] + [x.replace("{pid}", str(target.pid)) for x in p.argv[1:]]
        many_pids = [a.pytrace, "dump"] + [x for pid in pids for x in ("--pid", str(pid))]
        walls = {k: [] for k in list(one) + [f"pytrace dump, {n} --pid", "pytrace dump, whole host",
                                             f"{vm}, {n} --pid", f"{vm}, whole host",
                                             f"py-spy dump loop over the {n}"]}
        busy_name = "no tool: a process busy 100 ms"
        busy_cmd = [sys.executable, "-c", "import time\nt = time.time() + 0.1\nwhile time.time() < t: pass"]
        gaps = {k: [] for k in list(one) + ["no tool: idle 100 ms", busy_name]}
        seen = {k: [] for k in walls}
        fails = {k: [] for k in walls}
        ratio_1, ratio_n = {}, {}
        host_total = []
        try:
            log(f"on-demand: {reps} interleaved rounds")
            for r in range(reps):
                target.gap()
                time.sleep(0.1)
                gaps["no tool: idle 100 ms"].append(target.gap())
                # pytrace reads without stopping anything, but its own start-up runs on the same
                # CPUs: this row shows what any 100 ms of CPU work does to the ticker.
                target.gap()
                subprocess.run(busy_cmd)
                gaps[busy_name].append(target.gap())
                round_1 = {}
                for name, cmd in one.items():
                    target.gap()
                    t, rc, out, err = self.timed(cmd)
                    g = target.gap()
                    if rc != 0:
                        fails[name].append(err or f"exit {rc}")
                        continue
                    walls[name].append(t)
                    gaps[name].append(g)
                    round_1[name] = t
                    if name.startswith("pytrace"):
                        seen[name].append(sum(1 for l in out.splitlines() if THREAD_RE.match(l)))
                    else:
                        seen[name].append(len(peers[name].thread_re.findall(ANSI_RE.sub("", out))))
                base = round_1.get("pytrace dump --pid P")
                for name, t in round_1.items():
                    if base:
                        ratio_1.setdefault(name, []).append(t / base)
                round_n = {}
                name = f"pytrace dump, {n} --pid"
                t, rc, out, err = self.timed(many_pids)
                dumped = {int(m.group(1)) for m in map(HEADER_RE.match, out.splitlines()) if m}
                if rc != 0:
                    fails[name].append(err or f"exit {rc}")
                else:
                    walls[name].append(t)
                    round_n[name] = t
                    seen[name].append(len(dumped & set(pids)))
                name = f"{vm}, {n} --pid"
                t, rc, out, err = self.timed(many_pids[:2] + ["--reader", "process-vm"] + many_pids[2:])
                dumped = {int(m.group(1)) for m in map(HEADER_RE.match, out.splitlines()) if m}
                if rc != 0:
                    fails[name].append(err or f"exit {rc}")
                else:
                    walls[name].append(t)
                    round_n[name] = t
                    seen[name].append(len(dumped & set(pids)))
                for name, cmd in (("pytrace dump, whole host", [a.pytrace, "dump"]),
                                  (f"{vm}, whole host", [a.pytrace, "dump", "--reader", "process-vm"])):
                    t, rc, out, err = self.timed(cmd)
                    dumped = {int(m.group(1)) for m in map(HEADER_RE.match, out.splitlines()) if m}
                    if rc not in (0, 4):  # 4: a process of the host exited while it was read
                        fails[name].append(err or f"exit {rc}")
                    else:
                        walls[name].append(t)
                        round_n[name] = t
                        seen[name].append(len(dumped & set(pids)))
                        if name == "pytrace dump, whole host":
                            host_total.append(len(dumped))
                if spy is not None:
                    name = f"py-spy dump loop over the {n}"
                    t0 = clock()
                    ok = 0
                    for pid in pids:
                        _, rc, _, err = spy.run(pid)
                        if rc == 0:
                            ok += 1
                        else:
                            fails[name].append(err.splitlines()[-1] if err else f"exit {rc}")
                    walls[name].append(clock() - t0)
                    round_n[name] = walls[name][-1]
                    seen[name].append(ok)
                base = round_n.get(f"pytrace dump, {n} --pid")
                for name, t in round_n.items():
                    if base:
                        ratio_n.setdefault(name, []).append(t / base)
            if target.proc.poll() is not None:
                raise BenchError(f"target exited with {target.proc.returncode}")
        finally:
            target.close()
            for p in procs:
                reap(p)
        rows = []
        for name, xs in walls.items():
            ratio = ratio_1.get(name) or ratio_n.get(name)
            rows.append([name] + ms_cells(xs)[:2] + [ms_cells(xs)[4], str(len(fails[name])), counts(seen[name]),
                                                     fmt_ratio(statistics.median(ratio)) if ratio else "n/a"])
        for p in self.peers:
            if p.problem is not None and p.name in ("py-spy dump", "pystack remote"):
                rows.append([p.name, p.problem, "", "", "", "", ""])
        self.out(*table(["command", "median", "p90", "n", "failed", "seen", "vs pytrace"], rows))
        vers = ", ".join(re.search(r"versions/([\d.]+)/", p).group(1) for p in pythons)
        self.out(f"  one PID: the {a.threads} x {a.depth} target (+ ticker and main thread, {expect} threads; "
                 f"'seen' = threads printed); {n} PIDs: sleepers round-robin over {vers} ('seen' = of them dumped"
                 f"{'' if spy is None else ', for py-spy: dumps that succeeded'})")
        if host_total:
            self.out(f"  whole host: {min(host_total)} to {max(host_total)} Python processes dumped in all "
                     f"(the {n} and whatever else ran on the host)")
        self.out(f"  'vs pytrace' = median over the {reps} rounds of (command / pytrace in the same round): "
                 f"one-PID rows against `pytrace dump --pid P`, {n}-process rows against `pytrace dump` with "
                 f"{n} --pid")
        rows = []
        pauses = {p.name: p.pauses for p in self.peers}
        pauses["pytrace dump --pid P"] = "no"
        pauses[f"{vm} --pid P"] = "no"
        for name, xs in gaps.items():
            s = summary(xs)
            rows.append([name, pauses.get(name, "-")] + ([fmt_ms(s["median"]), fmt_ms(s["max"])] if s else ["n/a"] * 2))
        self.out("", "  Target stopped per one-PID dump: longest gap of the target's ticker thread (wakes every "
                     "0.5 ms) over the whole command  (ms)")
        self.out(*table(["tool", "stops target", "gap median", "gap max"], rows))
        self.out("  pytrace dump reads the target from a sleepable BPF task iterator (or, with --reader process-vm, "
                 "process_vm_readv from user space, no BPF program loaded): nothing is stopped or "
                 "signalled; its own start-up competes for the CPUs,")
        self.out("  so compare its gap with the 'busy 100 ms' row (the same CPU work by another process) "
                 "rather than the idle one.")
        for name, fs in fails.items():
            if fs:
                self.out(f"  {name}: {len(fs)} failure(s), e.g. {fs[0]}")
        bad = [x for x in seen["pytrace dump --pid P"] if x != expect]
        if bad or fails["pytrace dump --pid P"]:
            self.fail("7. on-demand", f"pytrace dump of the target: {counts(bad)} threads instead of {expect}; "
                      f"{len(fails['pytrace dump --pid P'])} failure(s)")
        bad = [x for x in seen[f"{vm} --pid P"] if x != expect]
        if bad or fails[f"{vm} --pid P"]:
            self.fail("7. on-demand", f"{vm} of the target: {counts(bad)} threads instead of {expect}; "
                      f"{len(fails[f'{vm} --pid P'])} failure(s)")
        for name in (f"pytrace dump, {n} --pid", f"{vm}, {n} --pid"):
            bad = [x for x in seen[name] if x != n]
            if bad or fails[name]:
                self.fail("7. on-demand", f"{name}: {counts(bad)} dumped instead of {n}; "
                          f"{len(fails[name])} failure(s)")


# ---------------------------------------------------------------------------------------------


def interpreter(spec):
    """A path, or a pyenv version (3.12.1) or minor (3.12, its newest build), as a path."""
    if os.sep in spec:
        return spec
    minor = ".".join(spec.split(".")[:2])
    found = sorted((d for d in os.listdir(PYENV_VERSIONS)
                    if d == spec or (spec == minor and d.startswith(minor + "."))),
                   key=lambda d: [int(x) if x.isdigit() else -1 for x in d.split(".")])
    if not found:
        sys.exit(f"bench: --sample-cost: no pyenv interpreter {spec} under {PYENV_VERSIONS}")
    return os.path.join(PYENV_VERSIONS, found[-1], "bin", "python" + minor)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about one minute: fewer repetitions, churn of 500")
    ap.add_argument("--sections", default="1,2,3,4,5,6,7", help="which sections to run, e.g. 2,3")
    ap.add_argument("--pytrace", default=os.environ.get("PYTRACE_BIN") or os.path.join(ROOT, "target/release/pytrace"))
    ap.add_argument("--python", default=os.path.join(PYENV_VERSIONS, "3.11.7/bin/python3.11"),
                    help="interpreter for the targets")
    ap.add_argument("--tools-dir", default=os.path.dirname(sys.executable),
                    help="where py-spy, pystack and austin are (else PATH)")
    ap.add_argument("--report", default=os.path.join(ROOT, "target/bench-report.txt"))
    ap.add_argument("--signal", default="SIGUSR2")
    ap.add_argument("--threads", type=int, default=10)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--attach-reps", type=int, help="launches per attach case (5; quick 3)")
    ap.add_argument("--procs", type=int, help="sleeping Pythons for section 1 (200; quick 100)")
    ap.add_argument("--latency-iters", type=int, help="pytrace dumps in section 2 (200; quick 40)")
    ap.add_argument("--peer-reps", type=int, help="runs of each peer in section 2 (20; quick 5)")
    ap.add_argument("--kernel-runs", type=int, help="pytrace -v sessions in section 3 (3; quick 1)")
    ap.add_argument("--kernel-dumps", type=int, default=50, help="dumps per session in section 3")
    ap.add_argument("--stall-reps", type=int, help="ticker samples per tool in section 3 (10; quick 3)")
    ap.add_argument("--spawn-reps", type=int, help="fresh targets in section 4 (20; quick 5)")
    ap.add_argument("--churn", type=int, help="short-lived Pythons in section 5 (10000; quick 500)")
    ap.add_argument("--churn-parallel", type=int, default=2)
    ap.add_argument("--ondemand-procs", type=int, default=50, help="sleeping Pythons in section 7")
    ap.add_argument("--ondemand-reps", type=int, help="interleaved rounds in section 7 (7; quick 3)")
    ap.add_argument("--sample-cost", metavar="PYTHONS",
                    help="run only the kernel time per sample of a 30-frame stack (from section 6) "
                         "for these interpreters, comma-separated: paths, pyenv versions (3.12.1) "
                         "or minors (3.12); --sections is then ignored")
    ap.add_argument("--sample-cost-runs", type=int,
                    help="idle/busy run pairs per interpreter for the kernel time per sample (5; quick 3)")
    a = ap.parse_args()
    defaults = {
        "attach_reps": (5, 3), "procs": (200, 100), "latency_iters": (200, 40), "peer_reps": (20, 5),
        "kernel_runs": (3, 1), "stall_reps": (10, 3), "ondemand_reps": (7, 3), "sample_cost_runs": (5, 3), "spawn_reps": (20, 5), "churn": (10000, 500),
    }
    for k, (full, quick) in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, quick if a.quick else full)
    a.sections = {s.strip() for s in a.sections.split(",") if s.strip()}
    if a.sample_cost is not None:
        a.sample_cost = [interpreter(x.strip()) for x in a.sample_cost.split(",") if x.strip()]
        if not a.sample_cost:
            ap.error("--sample-cost: no interpreter given")
        a.sections = {"s"}
    if not a.signal.startswith("SIG"):
        a.signal = "SIG" + a.signal
    return a


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def main():
    a = parse_args()
    if os.geteuid() != 0:
        print("bench: must run as root (eBPF, ptrace)", file=sys.stderr)
        return 2
    if not os.access(a.pytrace, os.X_OK):
        print(f"bench: no pytrace binary at {a.pytrace} (set PYTRACE_BIN or build it)", file=sys.stderr)
        return 2
    if not os.access(a.python, os.X_OK):
        print(f"bench: no target interpreter at {a.python}", file=sys.stderr)
        return 2
    if not hasattr(signal, a.signal):
        print(f"bench: unknown signal {a.signal}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    b = Bench(a)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load0 = loadavg()
    t_start = clock()
    sections = [("1", "1. attach", b.section_attach), ("2", "2. latency", b.section_latency),
                ("3", "3. kernel time", b.section_kernel), ("4", "4. exec", b.section_exec),
                ("5", "5. churn", b.section_churn), ("6", "6. sampling", b.section_sampling),
                ("7", "7. on-demand", b.section_ondemand),
                ("s", "kernel time per sample", b.section_sample_cost)]
    interrupted = False
    try:
        for key, name, fn in sections:
            if key not in a.sections:
                continue
            log(f"section {name} (load {loadavg()})")
            try:
                fn()
            except BenchError as e:
                b.fail(name, str(e))
                b.out(f"  section failed: {e}")
            except KeyboardInterrupt:
                raise
            except Exception as e:
                import traceback
                b.fail(name, f"{type(e).__name__}: {e}")
                b.out(f"  section crashed: {type(e).__name__}: {e}")
                traceback.print_exc()
            finally:
                cleanup()
    except KeyboardInterrupt:
        interrupted = True
        b.errors.append("interrupted")
    finally:
        cleanup()

    head = [
        "pytrace benchmark report",
        "=" * 24,
        f"started {started}, took {clock() - t_start:.0f} s{' (--quick)' if a.quick else ''}; "
        f"load average {load0} at start, {loadavg()} at end",
        f"host: {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPU(s)",
        f"pytrace: {a.pytrace} (tree {git_rev()}, built "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(os.stat(a.pytrace).st_mtime))})",
        f"targets: {a.python}; trigger {a.signal}, handled by faulthandler.register(... file=/dev/null)",
        "peers: " + "; ".join(f"{p.name.split()[0]}: {p.version or p.problem}"
                              for p in b.peers if p.name in ("py-spy dump", "pystack remote", "austin --where")),
        "times in ms unless stated; p90 is nearest-rank",
    ]
    tail = ["", "Problems:" if b.errors else "Problems: none"] + [f"  - {e}" for e in b.errors]
    text = "\n".join(head + b.report + tail) + "\n"
    sys.stdout.write("\n" + text)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
        with open(a.report, "w") as f:
            f.write(text)
        log(f"report written to {a.report}")
    except OSError as e:
        log(f"cannot write {a.report}: {e}")
        return 1
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
