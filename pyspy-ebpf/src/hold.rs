//! `--hold`: the BPF LSM hook `task_kill`, which runs in the sender, refuses a watched signal
//! sent to a selected Python process (the sender's `kill` fails with EPERM) and tells user
//! space, which dumps the process on demand instead. Signals the kernel raises itself (faults,
//! timers, OOM) do not pass through this hook and are never held.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, Global};
use pytrace_common::{kind, Counter, HeldSignal};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{PROCS, TASK_PID_OFFSET, TASK_TGID_OFFSET},
    read::kernel_i32,
    signal::chosen,
};

/// 1: refuse watched signals to the processes in `PROCS`.
#[no_mangle]
static HOLD: Global<u32> = Global::new(0);
/// pytrace's own tgid: signal 0 that it sends to itself is refused, which tells it at start
/// that the hook runs (a kernel without the BPF LSM loads the program but never calls it).
#[no_mangle]
static HOLD_PROBE_PID: Global<u32> = Global::new(0);

const EPERM: i32 = 1;

/// The hook's answer: 0 lets the signal through, `-EPERM` refuses it.
#[inline(always)]
pub fn on_task_kill(target: u64, sig: u32) -> i32 {
    let Some(pid) = kernel_i32(target + TASK_TGID_OFFSET.load()) else {
        return 0;
    };
    let pid = pid as u32;
    let sender = (bpf_get_current_pid_tgid() >> 32) as u32;
    if sig == 0 {
        let probe = HOLD_PROBE_PID.load();
        return if probe != 0 && pid == probe && sender == probe {
            -EPERM
        } else {
            0
        };
    }
    if HOLD.load() == 0 || !chosen(sig) {
        return 0;
    }
    // SAFETY: lookup only; nothing is kept.
    if unsafe { PROCS.get(&pid) }.is_none() {
        return 0;
    }
    bump(Counter::Held);
    let held = HeldSignal {
        kind: kind::HELD,
        signal: sig,
        pid,
        tid: kernel_i32(target + TASK_PID_OFFSET.load()).unwrap_or(pid as i32) as u32,
        sender,
        _pad: 0,
    };
    emit::record(&held, Wake::Now);
    -EPERM
}
