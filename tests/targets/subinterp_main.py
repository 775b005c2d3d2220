"""The main thread runs a sub-interpreter's code, parked in ``sub_park``; a worker of the
main interpreter is parked too, and another announces readiness.  A kill(2) lands on the
main thread: from 3.12 on, running the sub-interpreter made its thread state the one the
thread's gilstate slot holds, so faulthandler prints the sub-interpreter's threads; up to
3.11 the slot keeps the main interpreter's thread state, and the main interpreter is
printed.
"""
import os
import threading

import fhtarget
from subinterp import interpreters, sub_code

fhtarget.register()
interp = interpreters.create()
arrived, code = sub_code()


def parked(spot):
    fhtarget.park(spot)


def announce():
    os.read(arrived, 1) and fhtarget.serve()


fhtarget.start(parked)
announcer = threading.Thread(target=announce)
announcer.daemon = True
announcer.start()
interpreters.run_string(interp, code)
