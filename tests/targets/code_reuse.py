"""Fresh code objects every round, freed before the next, so that new ones land at the
addresses of old ones (template engines, exec, re-imports do this).

Each round execs new source: a function calling another, named afresh (odd rounds: always
`f` and `g`) with 0-6 blank lines in front, from one file-name object. The inner one writes
"p" on stdout and blocks reading a line, on a single line of source, so a signal shows the
same stack whenever it lands. Once the line comes the round's functions are freed (they form
a cycle with their namespace: the collector frees them) and the next round starts; an empty
line (end of input) ends the target.
"""
import gc
import os
import random
import sys

import fhtarget as fh

INNER = "    return os.write(1, b'p\\n') and read()\n"

fh.register()
rng = random.Random(int(os.environ.get("CODE_REUSE_SEED", "7")))
filename = os.path.join(fh.WORK_DIR, "fresh_code.py")
read = sys.stdin.readline
print("ready", flush=True)
k = 0
while True:
    if k % 2:
        outer, inner = "f", "g"
    else:
        outer = "r%d_t%02d_%02d" % (k % 10, rng.randrange(100), rng.randrange(100))
        inner = "s%d_u%02d_%02d" % (k % 10, rng.randrange(100), rng.randrange(100))
    source = "\n" * rng.randrange(7) + (
        "def %s(read):\n    return %s(read)\n\n\ndef %s(read):\n%s" % (outer, inner, inner, INNER)
    )
    namespace = {"os": os}
    exec(compile(source, filename, "exec"), namespace)
    line = namespace[outer](read)
    del namespace
    gc.collect()
    if not line:
        break
    k += 1
