"""Only the main thread, blocked in serve(): the smallest dump, for tests that send many."""
import fhtarget as fh

fh.register()
fh.serve()
