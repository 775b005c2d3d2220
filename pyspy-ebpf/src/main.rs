//! pytrace's eBPF programs: thin entry points, one adapter per trigger (`signal`, `timer`,
//! `ondemand`), one capture transaction (`capture`) over one CPython walker (`walker`).
//!
//! Debug messages (`aya_log_ebpf::debug!`, in `capture`) are read by user space under `-vv`
//! only. Without it the loader sets `AYA_LOG_LEVEL` to 0: read-only data the verifier knows,
//! so it drops each message's code as dead, and the programs run as if there were none.
#![no_std]
#![no_main]

mod capture;
mod counters;
mod emit;
mod hold;
mod lifecycle;
mod maps;
mod ondemand;
mod platform;
mod read;
mod signal;
mod symbols;
mod tasks;
mod timer;
mod tlbc;
mod walker;

use aya_ebpf::{
    macros::{btf_tracepoint, lsm, perf_event, uprobe},
    programs::{BtfTracePointContext, LsmContext, PerfEventContext, ProbeContext},
};

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`: runs in the
/// thread that receives the signal, before its handler (or default action) runs.
#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    let sig: i32 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let ka: u64 = ctx.arg(2);
    signal::on_signal(sig as u32, info, ka);
    0
}

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
/// int result)`: runs in the sender.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    let sig: i32 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let task: u64 = ctx.arg(2);
    let result: i32 = ctx.arg(4);
    signal::on_generate(sig as u32, info, task, result);
    0
}

/// LSM hook `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig,
/// const struct cred *cred)`: runs in the sender of a signal a process sends; a non-zero
/// return refuses it (the sender gets that error).
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let target: u64 = ctx.arg(0);
    let sig: i32 = ctx.arg(2);
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        // Another security module already refused it.
        return previous;
    }
    hold::on_task_kill(target, sig as u32)
}

/// A software CPU-clock perf event on one CPU: runs in the interrupted task's context.
#[perf_event]
pub fn cpu_clock(_ctx: PerfEventContext) -> u32 {
    timer::on_tick();
    0
}

/// The sleepable task iterator (`iter.s/task`; aya-ebpf has no iterator attribute, so the
/// section is set by hand). Its context is `struct bpf_iter__task { struct bpf_iter_meta
/// *meta; struct task_struct *task; }`; `task` is null on the last call.
#[no_mangle]
#[link_section = "iter.s/task"]
pub extern "C" fn dump_task(ctx: *mut core::ffi::c_void) -> i32 {
    // SAFETY: the kernel passes a `bpf_iter__task`; its second word is the task pointer.
    let task = unsafe { *(ctx as *const *mut aya_ebpf::bindings::task_struct).add(1) };
    if !task.is_null() {
        ondemand::on_task(task);
    }
    0
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`: the
/// process has its new image (and its new comm).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn process_exec(_ctx: BtfTracePointContext) -> i32 {
    lifecycle::on_exec();
    0
}

/// The dynamic loader's debugger hook `_dl_debug_state()`, called after it has added or removed
/// libraries: at start-up and at every `dlopen`/`dlclose`.
#[uprobe]
pub fn libraries_changed(_ctx: ProbeContext) -> u32 {
    lifecycle::on_libraries_changed();
    0
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`: a forked child
/// of a traced process has the same memory layout, so it is walkable at once.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn process_fork(ctx: BtfTracePointContext) -> i32 {
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    lifecycle::on_fork(parent, child);
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
