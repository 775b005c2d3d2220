//! pytrace's eBPF programs: thin entry points, one per trigger, over one CPython walker.
#![no_std]
#![no_main]

mod counters;
mod dump;
mod emit;
mod lifecycle;
mod maps;
mod read;
mod symbols;
mod walker;

use aya_ebpf::{
    macros::{btf_tracepoint, fentry},
    programs::{BtfTracePointContext, FEntryContext},
};

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`: runs in the
/// thread that receives the signal, before its handler (or default action) runs.
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    let sig: i32 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    dump::on_signal(sig as u32, info);
    0
}

/// `security_mmap_file(struct file *file, unsigned long prot, unsigned long flags)`: every
/// mmap of a file, in the mapping process, including the executable's own at exec.
#[fentry(function = "security_mmap_file")]
pub fn mmap_file(ctx: FEntryContext) -> u32 {
    let file: u64 = ctx.arg(0);
    let prot: u64 = ctx.arg(1);
    lifecycle::on_mmap(file, prot);
    0
}

/// `sched_process_exit(struct task_struct *p, ...)`: runs in each exiting thread.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn process_exit(_ctx: BtfTracePointContext) -> i32 {
    lifecycle::on_exit();
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
