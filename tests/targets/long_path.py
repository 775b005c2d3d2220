"""A worker calls hop() in three modules whose paths are exactly 500, exactly 501 and about
700 code points long (the directories mix in non-ASCII), then parks in a function whose name
is 600 code points long; the main thread is blocked in serve()."""
import importlib.util
import os

import fhtarget as fh

LONG_NAME = "\u00e9" * 300 + "n" * 300


def deepen(directory, at_least):
    while len(directory) < at_least:
        directory = os.path.join(directory, "\u00e9" * 10 + "x" * 20 + "%03d" % len(directory))
    os.makedirs(directory, exist_ok=True)
    return directory


def write_module(path, body):
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
    spec = importlib.util.spec_from_file_location("m%d" % len(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOP = "def hop(spot, then):\n    then(spot)\n"
LAST = "import fhtarget as fh\n\n\ndef %s(spot):\n    fh.park(spot)\n" % LONG_NAME

base = deepen(os.path.join(fh.WORK_DIR, "long"), 300)
m500 = write_module(os.path.join(base, "a" * (500 - len(base) - 4) + ".py"), HOP)
m501 = write_module(os.path.join(base, "b" * (501 - len(base) - 4) + ".py"), HOP)
m700 = write_module(os.path.join(deepen(base, 690), "m.py"), LAST)
assert len(m500.__file__) == 500 and len(m501.__file__) == 501 and len(m700.__file__) > 690


def run(spot):
    m500.hop(spot, lambda spot: m501.hop(spot, getattr(m700, LONG_NAME)))


fh.register()
fh.start(run)
fh.serve()
