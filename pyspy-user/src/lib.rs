//! pytrace: CPython stacks read from eBPF, printed as faulthandler would.
//!
//! Data flows one way: trigger → eBPF capture (`pyspy-ebpf`) → ring buffer → [`decode`] →
//! [`symbolize`] → an output ([`format`]), driven by [`session`] for every command in [`run`].
//! [`process`], [`python`] and [`tracker`] turn a PID into the per-process table the walker
//! needs.
pub mod backend;
pub mod bpf;
pub mod cli;
pub mod decode;
pub mod error;
pub mod escape;
pub mod format;
pub mod model;
pub mod pidwatch;
pub mod privileges;
pub mod process;
pub mod profile;
pub mod python;
pub mod ratelimit;
pub mod receiver;
pub mod record;
pub mod run;
pub mod schedule;
pub mod session;
pub mod signals;
pub mod startup;
pub mod stuck;
pub mod symbolize;
pub mod thread_names;
pub mod top;
pub mod tracker;
