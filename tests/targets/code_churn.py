"""Makes fresh code objects round after round: each round a chain of 40 functions, each a new
code object (`code.replace`, 3.8+) with a new, long name and file name and a line table of
tens of KiB. The innermost writes "p" on stdout and blocks reading a line; then the round's
functions are dropped and the next round starts (an empty line ends the target). Each
signal thus finds 40 code objects never seen before; faulthandler dumps them to /dev/null
(the dumps are not compared: this target measures pytrace's memory)."""
import faulthandler
import os
import signal
import sys
import types

for name in sys.argv[2:]:
    faulthandler.register(getattr(signal, name), file=open(os.devnull, "w"), all_threads=True)

DEPTH = 40
PAD = "x" * 400
# A loop over nothing: its body never runs, but every line of it is in the line table.
FILLER = "    for _ in ():\n" + "".join("        x = %d\n" % (i % 7) for i in range(10000))
SOURCE = (
    "def link(read):\n" + FILLER + "    return nxt(read)\n\n\n"
    "def last(read):\n" + FILLER + "    return os.write(1, b'p\\n') and read()\n"
)
templates = {}
exec(compile(SOURCE, "template.py", "exec"), templates)
link, last = templates["link"].__code__, templates["last"].__code__

print("ready", flush=True)
k = 0
while True:
    filename = "/fresh/%d/%s.py" % (k, PAD)
    fn = types.FunctionType(
        last.replace(co_name="last_%d_%s" % (k, PAD), co_filename=filename), {"os": os}
    )
    for i in range(DEPTH - 1):
        code = link.replace(co_name="n%d_%d_%s" % (k, i, PAD), co_filename=filename)
        fn = types.FunctionType(code, {"nxt": fn})
    if not fn(sys.stdin.readline):
        break
    k += 1
