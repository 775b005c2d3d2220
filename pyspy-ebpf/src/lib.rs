//! The walker compiled for the host: `pytrace dump --reader process-vm` runs the same capture
//! as the kernel's task iterator (`capture`, `walker`, `symbols`, `tlbc`, `read`, `emit`), in
//! user space, through `platform`'s host shims and `host::ProcessVm` (`process_vm_readv`).
//! These are the very files the eBPF object is built from (`main.rs` declares them for BPF);
//! nothing of the walk is written twice.
//!
//! For BPF this library is empty: the eBPF object is the `pyspy` binary alone.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg(not(target_arch = "bpf"))]

pub mod host;

// The parts of these modules only the kernel's entry points use (the current task's reads,
// the signal and timer adapters' helpers) are not used on the host.
#[allow(dead_code)]
mod capture;
#[allow(dead_code)]
mod counters;
#[allow(dead_code)]
mod emit;
#[allow(dead_code)]
mod maps;
#[allow(dead_code)]
mod platform;
#[allow(dead_code)]
mod read;
#[allow(dead_code)]
mod symbols;
#[allow(dead_code)]
mod tlbc;
#[allow(dead_code)]
mod walker;
