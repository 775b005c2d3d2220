"""The main thread renames the process (prctl(PR_SET_NAME)) to a name that clears a terminal
and starts a forged line, "\\x1b[2J\\x1b[H\\nProcess" (15 bytes, as much as a name holds), then
is blocked in serve()."""
import ctypes

import fhtarget as fh

PR_SET_NAME = 15
NAME = b"\x1b[2J\x1b[H\nProcess"

libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_NAME, ctypes.c_char_p(NAME), 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")
fh.register()
fh.serve()
