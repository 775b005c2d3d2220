//! pytrace: CPython stacks read from eBPF, printed as faulthandler would.
//!
//! Data flows one way: trigger → eBPF walker (`pyspy-ebpf`) → ring buffer → [`decode`] →
//! [`symbolize`] → [`format`]. [`process`] and [`python`] turn a PID into the per-process
//! table the walker needs.
pub mod model;
pub mod python;
pub mod process;
pub mod format;
