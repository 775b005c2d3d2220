"""A thread busy on the CPU under a stack whose frames alternate between two files:
``python two_files.py`` prints ``ready``, then spins until stdin closes or says ``exit``.

``a5`` (mod_a.py) calls ``b5`` (mod_b_of_another_length.py), which calls ``a4``, ... down to
``b0``, which calls ``spin`` (in B's file). Function ``aN`` is defined on line 2N+1 of its
file and makes its call on line 2N+2; so is ``bN``."""
import sys
import threading

N = 6
A = "".join(f"def a{i}():\n    b{i}()\n" for i in range(N))
B = "".join(f"def b{i}():\n    {'a%d' % (i - 1) if i else 'spin'}()\n" for i in range(N))
B += "def spin():\n    while True:\n        pass\n"
names = {}
exec(compile(A, "mod_a.py", "exec"), names)
exec(compile(B, "mod_b_of_another_length.py", "exec"), names)

thread = threading.Thread(target=names[f"a{N - 1}"], name="alternating")
thread.daemon = True
thread.start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "exit":
        break
