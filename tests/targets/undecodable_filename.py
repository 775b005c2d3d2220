"""A worker parks in hop() of a module whose file name is not valid UTF-8 (bytes ff fe),
so its co_filename carries surrogate escapes; the main thread is blocked in serve()."""
import importlib.util
import os

import fhtarget as fh

raw = os.path.join(os.fsencode(fh.WORK_DIR), b"undecodable_\xff\xfe.py")
with open(raw, "wb") as f:
    f.write(b"import fhtarget as fh\n\n\ndef hop(spot):\n    fh.park(spot)\n")
spec = importlib.util.spec_from_file_location("undecodable", os.fsdecode(raw))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

fh.register()
fh.start(module.hop)
fh.serve()
