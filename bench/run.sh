#!/usr/bin/env bash
# Benchmarks of pytrace against py-spy, pystack and austin. Needs root.
#
#   bash bench/run.sh [--quick] [bench.py options...]     (bench/bench.py --help lists them)
#
# PYTRACE_BIN: the binary to measure (default target/release/pytrace).
# BENCH_BASE_PYTHON: the interpreter the peers' virtualenv is made from.
# The virtualenv (target/bench-venv) is created, and the peers installed into it, only when
# missing. The report is printed and written to target/bench-report.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export PYTRACE_BIN="${PYTRACE_BIN:-$root/target/release/pytrace}"
base_python="${BENCH_BASE_PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3.11}"
venv="$root/target/bench-venv"

say() { echo "bench/run.sh: $*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
    say "must run as root (eBPF programs, ptrace of the peers)"
    exit 2
fi
for arg in "$@"; do
    if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
        py="$base_python"
        [[ -x "$venv/bin/python" ]] && py="$venv/bin/python"
        exec "$py" "$here/bench.py" --help
    fi
done
if [[ ! -x "$PYTRACE_BIN" ]]; then
    say "no pytrace binary at $PYTRACE_BIN (cargo xtask build, or set PYTRACE_BIN)"
    exit 2
fi
if [[ ! -x "$base_python" ]]; then
    say "no interpreter at $base_python (set BENCH_BASE_PYTHON)"
    exit 2
fi

# --sample-cost measures pytrace alone: no peers, no virtualenv.
for arg in "$@"; do
    if [[ "$arg" == "--sample-cost" || "$arg" == --sample-cost=* ]]; then
        exec "$base_python" "$here/bench.py" --pytrace "$PYTRACE_BIN" \
            --report "$root/target/bench-report.txt" "$@"
    fi
done

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    "$base_python" -m venv "$venv"
fi

runs() { "$venv/bin/$1" --version >/dev/null 2>&1; }

if [[ ! -x "$venv/bin/py-spy" || ! -x "$venv/bin/pystack" || ! -x "$venv/bin/austin" ]]; then
    say "installing py-spy, pystack, austin-dist into $venv"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q py-spy pystack austin-dist; then
        say "WARNING: pip install failed; the missing peers will be reported as not installed"
    fi
fi
# austin-dist 4.x ships a binary linked against glibc >= 2.38; older systems get the newest 3.x,
# which has the same one-shot --where mode.
if [[ -x "$venv/bin/austin" ]] && ! runs austin; then
    say "austin from austin-dist does not run here ($("$venv/bin/austin" --version 2>&1 | head -1)); installing austin-dist<4"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q 'austin-dist<4'; then
        say "WARNING: pip install 'austin-dist<4' failed; austin will be reported as not runnable"
    fi
fi

exec "$venv/bin/python" "$here/bench.py" --pytrace "$PYTRACE_BIN" --tools-dir "$venv/bin" \
    --report "$root/target/bench-report.txt" "$@"
