"""One generated function of N lines, parked at line AT, for long line tables. N and AT come
on the first line of stdin (after `ready`); the function is compiled from a file name in the
work directory (the file itself need not exist). Once parked it writes "p" on stdout and
blocks reading a line, on that single line of source; then the target exits."""
import os
import sys

import fhtarget as fh

fh.register()
print("ready", flush=True)
n, at = map(int, sys.stdin.readline().split())
body = ["    x = %d\n" % (i % 7) for i in range(n)]
body[at - 2] = "    os.write(1, b'p\\n') and read()\n"
source = "def long_function(read):\n" + "".join(body)
code = compile(source, os.path.join(fh.WORK_DIR, "long_function.py"), "exec")
namespace = {"os": os}
exec(code, namespace)
namespace["long_function"](sys.stdin.readline)
