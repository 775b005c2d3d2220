//! pytrace's eBPF programs: thin entry points, one per trigger, over one CPython walker.
#![no_std]
#![no_main]

mod counters;
mod dump;
mod emit;
mod maps;
mod read;
mod symbols;
mod walker;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`: runs in the
/// thread that receives the signal, before its handler (or default action) runs.
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    let sig: i32 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    dump::on_signal(sig as u32, info);
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
