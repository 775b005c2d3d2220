"""A sub-interpreter runs code in a worker thread, parked in ``sub_park``; the main thread
parks in the main interpreter.  A kill(2) lands on the main thread, whose interpreter is
the main one: faulthandler prints the main interpreter's threads (the worker shows
``in_worker``, where it entered the sub-interpreter), never the sub-interpreter's.
"""
import os
import threading

import fhtarget
from subinterp import interpreters, sub_code

fhtarget.register()
interp = interpreters.create()
arrived, code = sub_code()


def in_worker():
    interpreters.run_string(interp, code)


worker = threading.Thread(target=in_worker)
worker.daemon = True
worker.start()
os.read(arrived, 1)
fhtarget.serve()
