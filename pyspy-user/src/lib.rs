//! pytrace: CPython stacks read from eBPF, printed as faulthandler would.
//!
//! Data flows one way: trigger → eBPF walker (`pyspy-ebpf`) → ring buffer → [`decode`] →
//! [`symbolize`] → [`format`]. [`process`], [`python`] and [`tracker`] turn a PID into the
//! per-process table the walker needs.
pub mod bpf;
pub mod cli;
pub mod decode;
pub mod error;
pub mod format;
pub mod model;
pub mod process;
pub mod python;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod symbolize;
pub mod thread_names;
pub mod tracker;
