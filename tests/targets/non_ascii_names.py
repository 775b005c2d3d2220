"""A worker calls café() -> 日本語() -> 𠀀() in a module loaded from WORK_DIR/dé_日本_😀/módulo_😀.py,
then odd() from code compiled with a file name full of control characters, quotes and a
backslash, and parks there; the main thread is blocked in serve()."""
import importlib.util
import os

import fhtarget as fh

MODULE = """\
def café(spot, then):
    日本語(spot, then)


def 日本語(spot, then):
    𠀀(spot, then)


def 𠀀(spot, then):
    then(spot)
"""
ODD_NAME = 'tab\there nl\nesc\x1b del\x7f nbsp\xa0 "quo" back\\slash \uffff.py'


def load(path):
    spec = importlib.util.spec_from_file_location("m\u00f3dulo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


directory = os.path.join(fh.WORK_DIR, "d\u00e9_\u65e5\u672c_\U0001f600")
os.mkdir(directory)
path = os.path.join(directory, "m\u00f3dulo_\U0001f600.py")
with open(path, "w", encoding="utf-8") as f:
    f.write(MODULE)
module = load(path)
odd = {"fh": fh}
exec(compile("def odd(spot):\n    fh.park(spot)\n", ODD_NAME, "exec"), odd)


def run(spot):
    module.café(spot, odd["odd"])


fh.register()
fh.start(run)
fh.serve()
