//! One dump: decide whether this event is wanted, send the begin record, walk, send the end.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_boot_ns,
    generated::bpf_get_smp_processor_id,
};
use pytrace_common::{kind, Counter, DumpBegin, Skipped, Trigger};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{
        SignalKey, FSBASE_OFFSET, PID_FILTER, PROCS, SENDERS, SIGNAL_MASK, TASK_TGID_OFFSET, WALK,
    },
    read::{kernel_i32, kernel_u64},
    tasks, walker,
};

/// `kernel_siginfo`: `si_code` at 8, then the `_kill` member: `si_pid` at 16, `si_uid` at 20.
const SI_CODE: u64 = 8;
const SI_PID: u64 = 16;
const SI_UID: u64 = 20;
/// `signal_generate`'s `result` when the signal was queued (`TRACE_SIGNAL_DELIVERED`).
const TRACE_SIGNAL_DELIVERED: i32 = 0;

/// In the sender: notes who sends a chosen signal to which process, by host ids.
#[inline(always)]
pub fn on_generate(sig: u32, target: u64, result: i32) {
    if sig >= 64 || SIGNAL_MASK.load() & (1u64 << sig) == 0 || result != TRACE_SIGNAL_DELIVERED {
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
pub fn on_signal(sig: u32, info: u64) {
    if sig >= 64 || SIGNAL_MASK.load() & (1u64 << sig) == 0 {
        bump(Counter::OtherSignal);
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let (si_code, si_pid, sender_uid) = if info != 0 {
        (
            kernel_i32(info + SI_CODE).unwrap_or(0),
            kernel_i32(info + SI_PID).unwrap_or(0) as u32,
            kernel_i32(info + SI_UID).unwrap_or(0) as u32,
        )
    } else {
        (0, 0, 0)
    };
    // `si_pid` is the sender as the target's PID namespace sees it (0 when the sender is
    // outside it); the host's view was noted when the signal was generated.
    let key = SignalKey { pid, signal: sig };
    // SAFETY: lookup; the value is copied.
    let sender_pid = match unsafe { SENDERS.get(&key) }.copied() {
        Some(host) => {
            let _ = SENDERS.remove(&key);
            host
        }
        None => si_pid,
    };
    run(
        Trigger::Signal,
        pid,
        tid,
        sig,
        si_code,
        sender_pid,
        sender_uid,
    );
}

#[inline(always)]
fn run(
    trigger: Trigger,
    pid: u32,
    tid: u32,
    signal: u32,
    si_code: i32,
    sender_pid: u32,
    sender_uid: u32,
) {
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: map lookup; the value is copied out at once.
    let Some(proc) = (unsafe { PROCS.get(&pid) }).copied() else {
        if PID_FILTER.load() != 0 {
            bump(Counter::PidFiltered);
        } else {
            bump(Counter::NotPython);
            let skipped = Skipped {
                kind: kind::SKIPPED,
                signal,
                pid,
                tid,
                comm,
            };
            emit::record(&skipped, Wake::Now);
        }
        return;
    };
    let Some(state) = WALK.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return;
    };
    // SAFETY: per-CPU state; `busy` keeps a nested trigger on this CPU out.
    let state = unsafe { &mut *state };
    if state.busy != 0 {
        bump(Counter::Nested);
        return;
    }
    state.busy = 1;
    bump(Counter::Dumps);

    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    let task = unsafe { bpf_get_current_task() };
    let fsbase = kernel_u64(task + FSBASE_OFFSET.load()).unwrap_or(0);
    let gc_collecting = read_gc_collecting(&proc);

    state.proc = proc;
    state.dump_id = (now << 8) | (cpu & 0xff);
    state.fsbase = fsbase;
    state.pid = pid;
    state.end_flags = 0;
    state.lost = 0;
    state.frame = 0;
    state.nchain = 0;
    state.nreal = 0;
    state.thread_flags = 0;
    state.last_code = 0;

    let begin = DumpBegin {
        kind: kind::DUMP_BEGIN,
        trigger: trigger as u32,
        dump_id: state.dump_id,
        boot_ns: now,
        pid,
        tid,
        signal,
        si_code,
        sender_pid,
        sender_uid,
        gc_collecting,
        version_hex: proc.version_hex,
        fsbase,
        comm,
    };
    if !emit::record(&begin, Wake::Later) {
        state.busy = 0;
        return;
    }
    // The thread names, read now: the process may not outlive this signal.
    if !tasks::send(begin.dump_id) {
        if let Some(state) = WALK.get_ptr_mut(0) {
            // SAFETY: per-CPU state of this dump; the earlier reference is not used again.
            unsafe { (*state).lost += 1 };
        }
    }
    // No reference to the walk state is held across the walk: the loop's callback changes it
    // through its own look-up.
    walker::walk();
    walker::finish();
}

/// `interp->gc.collecting`, where the version prints a "Garbage-collecting" line.
#[inline(always)]
fn read_gc_collecting(proc: &pytrace_common::ProcInfo) -> u32 {
    use pytrace_common::NO_OFFSET;
    if proc.offsets.interp_gc_collecting == NO_OFFSET {
        return 0;
    }
    crate::read::field_u64(proc.interp_head_addr, 0)
        .filter(|&i| i != 0)
        .and_then(|interp| {
            crate::read::user_u32(interp.wrapping_add(proc.offsets.interp_gc_collecting as u64))
        })
        .unwrap_or(0)
}
