#!/bin/sh
# Prints pytrace's VersionLayout fields for one installed CPython, computed by the C
# compiler from that version's own headers.
#
#   gen.sh 3.11.7                      # a pyenv version name
#   gen.sh /opt/python/3.11            # or an installation prefix
#
# Environment: PYENV_ROOT (default: `pyenv root`, else ~/.pyenv), CC (default: cc).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 <pyenv-version | prefix>" >&2
    exit 2
fi

case "$1" in
    /*) prefix=$1 ;;
    *)
        root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
        prefix=$root/versions/$1
        ;;
esac

inc=
for d in "$prefix"/include/python3.*; do
    [ -f "$d/Python.h" ] && inc=$d
done
if [ -z "$inc" ]; then
    echo "$0: no include/python3.*/Python.h under $prefix" >&2
    exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

${CC:-cc} -std=gnu11 -w -DPy_BUILD_CORE -I"$inc" -I"$inc/internal" \
    -o "$tmp/offsets" "$here/offsets.c"
"$tmp/offsets"
