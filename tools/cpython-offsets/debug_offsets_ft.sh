#!/bin/sh
# Writes the `_Py_DebugOffsets` a free-threaded (Py_GIL_DISABLED) build of CPython would carry,
# from the headers of an installed build of the same version: CPython's own initializer
# (`_Py_DebugOffsets_INIT` in 3.14+, the `.debug_offsets` part of `_PyRuntimeState_INIT` in
# 3.13) compiled with Py_GIL_DISABLED. Without `ft` as third argument the same program gives the
# table of the installed build itself, which checks the method against a live process.
#
#   debug_offsets_ft.sh INCLUDE_DIR OUT.bin [ft]
#   (INCLUDE_DIR: the directory holding Python.h, e.g. ~/.pyenv/versions/3.13.0/include/python3.13)
set -eu
inc=$1 out=$2 mode=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if grep -q "define _Py_DebugOffsets_INIT" "$inc/internal/pycore_debug_offsets.h" 2>/dev/null; then
    init='_Py_DebugOffsets_INIT("xdebugpy")'
    extra='#include "internal/pycore_debug_offsets.h"
#include "internal/pycore_interpframe.h"'
else
    python3 - "$inc/internal/pycore_runtime_init.h" "$work/init.h" <<'PY'
import sys
src = open(sys.argv[1]).read()
i = src.index(".debug_offsets = {")
j = k = src.index("{", i)
depth = 0
while True:
    depth += {"{": 1, "}": -1}.get(src[k], 0)
    if depth == 0:
        break
    k += 1
body = src[j:k + 1].replace("\\\n", "\n").replace(".cookie = debug_cookie,", '.cookie = "xdebugpy",')
open(sys.argv[2], "w").write(body)
PY
    init='
#include "init.h"
'
    extra='#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"'
fi
cat > "$work/gen.c" <<C
#define Py_BUILD_CORE 1
#include "Python.h"
#include "internal/pycore_runtime.h"
$extra
#include <stdio.h>
int main(void) {
    _Py_DebugOffsets d = $init;
    fwrite(&d, 1, sizeof d, stdout);
    return 0;
}
C
flags=""
[ "$mode" = ft ] && flags="-DPy_GIL_DISABLED=1"
gcc $flags -I"$inc" -I"$(dirname "$inc")" -I"$work" -o "$work/gen" "$work/gen.c"
"$work/gen" > "$out"
