//! From a PID to a CPython process description: which interpreter, where its runtime is.
