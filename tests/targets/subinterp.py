"""Sub-interpreter plumbing for the subinterp_* targets; it builds no stack of its own.

``sub_code()`` gives code for ``run_string`` that parks in ``sub_park`` (file
``<string>``): it writes one byte to a pipe the caller reads to know it has arrived, then
blocks reading another pipe, on a single line, through C functions only.
"""
import os

try:
    import _interpreters as interpreters  # 3.13+
except ImportError:
    import _xxsubinterpreters as interpreters  # 3.8 - 3.12

SUB_CODE = """import os
def sub_park(arrived, blocked):
    os.write(arrived, b"x") and os.read(blocked, 1)
sub_park({arrived}, {blocked})
"""


def sub_code():
    """(fd the caller reads for the arrival, code to run in the sub-interpreter)."""
    arrived_r, arrived_w = os.pipe()
    blocked_r, _blocked_w = os.pipe()
    _keep.append(_blocked_w)
    return arrived_r, SUB_CODE.format(arrived=arrived_w, blocked=blocked_r)


_keep = []
