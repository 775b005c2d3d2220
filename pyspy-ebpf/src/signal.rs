//! The signal trigger: notes who sends a chosen signal (in the sender), and at its delivery
//! captures every thread of the receiving process with faulthandler's bounds, adding a
//! `SignalInfo` record.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::LruHashMap, Global};
use pytrace_common::{kind, trigger, Counter, SignalInfo, Skipped, MAX_FRAMES, MAX_THREADS};

use crate::{
    capture::{self, CaptureRequest, TriggerRecord},
    counters::bump,
    emit::{self, Wake},
    maps::TASK_TGID_OFFSET,
    read::kernel_i32,
    tasks,
    walker::SCOPE_ALL_THREADS,
};

/// Bit `n - 1` set (`signal_bit`): signal `n` triggers a dump.
#[no_mangle]
static SIGNAL_MASK: Global<u64> = Global::new(0);

/// Who sent a chosen signal to a process (host tgid), noted in the sender, taken at delivery.
#[map]
static SENDERS: LruHashMap<SignalKey, u32> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct SignalKey {
    pid: u32,
    signal: u32,
}

/// `kernel_siginfo`: `si_code` at 8, then the `_kill` member: `si_pid` at 16, `si_uid` at 20.
const SI_CODE: u64 = 8;
const SI_PID: u64 = 16;
const SI_UID: u64 = 20;
/// `signal_generate`'s `result` when the signal was queued (`TRACE_SIGNAL_DELIVERED`).
const TRACE_SIGNAL_DELIVERED: i32 = 0;

/// In the sender: notes who sends a chosen signal to which process, by host ids.
#[inline(always)]
pub fn on_generate(sig: u32, target: u64, result: i32) {
    if !chosen(sig) || result != TRACE_SIGNAL_DELIVERED {
        return;
    }
    let Some(pid) = kernel_i32(target + TASK_TGID_OFFSET.load()) else {
        return;
    };
    let sender = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = SignalKey {
        pid: pid as u32,
        signal: sig,
    };
    let _ = SENDERS.insert(&key, &sender, 0);
}

#[inline(always)]
fn chosen(sig: u32) -> bool {
    SIGNAL_MASK.load() & pytrace_common::signal_bit(sig) != 0
}

/// In the receiving thread, before its handler or default action runs.
#[inline(always)]
pub fn on_signal(sig: u32, info: u64) {
    if !chosen(sig) {
        bump(Counter::OtherSignal);
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let mut record = signal_info(sig, info, pid);
    let req = CaptureRequest {
        trigger: trigger::SIGNAL,
        pid,
        tid,
        fsbase: capture::current_fsbase(),
        scope: SCOPE_ALL_THREADS,
        max_threads: MAX_THREADS,
        max_frames: MAX_FRAMES,
        copy_code: true,
        read_gil: false,
        wake: Wake::Now,
    };
    match capture::run(&req, &mut record) {
        Ok(()) => {}
        Err(Counter::NotPython) => {
            bump(Counter::NotPython);
            // Reported at once: a new process may have been signalled before its inspection.
            let skipped = Skipped {
                kind: kind::SKIPPED,
                signal: sig,
                pid,
                tid,
                comm: aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]),
            };
            emit::record(&skipped, Wake::Now);
        }
        Err(c) => bump(c),
    }
}

/// The signal's `si_code` and sender. `si_pid` is the sender as the target's PID namespace
/// sees it (0 when the sender is outside it); the host's view was noted at generation.
#[inline(always)]
fn signal_info(sig: u32, info: u64, pid: u32) -> SignalInfo {
    let (si_code, si_pid, sender_uid) = if info != 0 {
        (
            kernel_i32(info + SI_CODE).unwrap_or(0),
            kernel_i32(info + SI_PID).unwrap_or(0) as u32,
            kernel_i32(info + SI_UID).unwrap_or(0) as u32,
        )
    } else {
        (0, 0, 0)
    };
    let key = SignalKey { pid, signal: sig };
    // SAFETY: lookup; the value is copied.
    let sender_pid = match unsafe { SENDERS.get(&key) }.copied() {
        Some(host) => {
            let _ = SENDERS.remove(&key);
            host
        }
        None => si_pid,
    };
    SignalInfo {
        kind: kind::SIGNAL_INFO,
        signal: sig,
        capture_id: 0,
        si_code,
        sender_pid,
        sender_uid,
        _pad: 0,
    }
}

impl TriggerRecord for SignalInfo {
    #[inline(always)]
    fn send(&mut self, capture_id: u64) -> bool {
        self.capture_id = capture_id;
        let sent = emit::record(self, Wake::Later);
        // The thread names, read now: the process may not outlive this signal.
        tasks::send(capture_id) && sent
    }
}
