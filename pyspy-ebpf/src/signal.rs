//! The signal trigger: notes who sends a watched signal (in the sender), and at its delivery
//! captures every thread of the receiving process with faulthandler's bounds, adding a
//! `SignalInfo` record that names the signal, its sender and what it does.
//!
//! A process-directed fatal signal that does not dump core (SIGTERM, SIGUSR1 without a
//! handler, …) never arrives as itself: `complete_signal()` turns it into a group exit
//! (`signal->flags = SIGNAL_GROUP_EXIT`, `group_exit_code = sig`) and queues SIGKILL in every
//! thread, whose `get_signal()` then reports `signal_deliver(SIGKILL, SEND_SIG_NOINFO)`. Such a
//! death is dumped once, by the first thread that sees its SIGKILL, named after
//! `group_exit_code`, with the sender and addressed thread noted at generation. A death is
//! dumped at most once per process (`DEATHS`), so a core-dumping signal's own delivery and
//! the SIGKILLs its core dump sends to the other threads give one dump.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::map,
    maps::LruHashMap,
    Global,
};
use pytrace_common::{
    kind, signal_action, signal_flags, trigger, Counter, SignalInfo, Skipped, MAX_FRAMES,
    MAX_THREADS,
};

use crate::{
    capture::{self, CaptureRequest, TriggerRecord},
    counters::bump,
    emit::{self, Wake},
    maps::{
        FSBASE_OFFSET, TASK_COMM_OFFSET, TASK_PID_OFFSET, TASK_SIGNAL_OFFSET, TASK_TGID_OFFSET,
    },
    read::{kernel_i32, kernel_u64},
    tasks,
    walker::SCOPE_ALL_THREADS,
};

/// Bit `n - 1` set: signal `n` (1 to 64) triggers a dump.
#[no_mangle]
static SIGNAL_MASK: Global<u64> = Global::new(0);

/// Offsets from the kernel's BTF, set by the loader: `task_struct.group_leader`,
/// `task_struct.start_time`, `signal_struct.flags`, `signal_struct.group_exit_code`,
/// `signal_struct.oom_mm` (`task_struct.signal` and `.comm` are in `maps`).
#[no_mangle]
static TASK_GROUP_LEADER_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
static TASK_START_TIME_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
static SIGNAL_FLAGS_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
static SIGNAL_GROUP_EXIT_CODE_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
static SIGNAL_OOM_MM_OFFSET: Global<u64> = Global::new(0);

/// What the sender side knows about the last watched signal sent to a process (host tgid):
/// noted in the sender, taken at delivery.
#[map]
static NOTED: LruHashMap<SignalKey, Noted> = LruHashMap::with_max_entries(4096, 0);

/// Processes whose death was dumped, by (tgid, group leader's start time): a process dies
/// once, and a reused PID has another start time.
#[map]
static DEATHS: LruHashMap<DeathKey, u32> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SignalKey {
    pub pid: u32,
    pub signal: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Noted {
    /// Host tgid of the sender, 0 when the kernel raised the signal.
    sender: u32,
    si_code: i32,
    /// Host tid and FS base of the task the signal was addressed to.
    tid: u32,
    _pad: u32,
    fsbase: u64,
    fault_addr: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DeathKey {
    pid: u32,
    _pad: u32,
    start_time: u64,
}

const SIGKILL: u32 = 9;
/// `SIGNAL_GROUP_EXIT` and `SIGNAL_UNKILLABLE` in `signal_struct.flags`
/// (include/linux/sched/signal.h; not in BTF, which has no macros).
const SIGNAL_GROUP_EXIT: u32 = 0x4;
const SIGNAL_UNKILLABLE: u32 = 0x40;
/// `group_exit_code` of a signal death: the signal, with 0x80 once a core was dumped; of
/// `exit_group(status)`: `(status & 0xff) << 8`.
const EXIT_SIGNAL_MASK: i32 = 0x7f;
const EXIT_STATUS_MIN: i32 = 0x100;
/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: the `info` pointers that stand for "sent by a
/// process, no siginfo" and "sent by the kernel".
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
/// `si_code` values (include/uapi/asm-generic/siginfo.h).
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const SI_QUEUE: i32 = -1;
const SI_MESGQ: i32 = -3;
const SI_TKILL: i32 = -6;
/// `kernel_siginfo`: `si_code` at 8, then the union: `_kill.si_pid` at 16, `si_uid` at 20,
/// `_sigfault._addr` at 16.
const SI_CODE: u64 = 8;
const SI_PID: u64 = 16;
const SI_UID: u64 = 20;
const SI_ADDR: u64 = 16;
/// `k_sigaction.sa.sa_handler` is its first field; `SIG_DFL` and `SIG_IGN`.
const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
/// `signal_generate`'s `result` when the signal was queued (`TRACE_SIGNAL_DELIVERED`).
const TRACE_SIGNAL_DELIVERED: i32 = 0;
/// `BPF_NOEXIST`: insert only if the key is absent (atomic under the bucket lock).
const BPF_NOEXIST: u64 = 1;

/// Default actions (`man 7 signal`): signals that stop, that are ignored, that dump core;
/// every other signal (1 to 64) kills.
const STOP_SET: u64 = bit(19) | bit(20) | bit(21) | bit(22);
const IGNORE_SET: u64 = bit(17) | bit(18) | bit(23) | bit(28);
const CORE_SET: u64 =
    bit(3) | bit(4) | bit(5) | bit(6) | bit(7) | bit(8) | bit(11) | bit(24) | bit(25) | bit(31);

const FAULT_SET: u64 = bit(4) | bit(5) | bit(7) | bit(8) | bit(11);

const fn bit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

#[inline(always)]
fn in_set(set: u64, sig: u32) -> bool {
    (1..=64).contains(&sig) && set & (1u64 << (sig - 1)) != 0
}

#[inline(always)]
pub fn chosen(sig: u32) -> bool {
    SIGNAL_MASK.load() & pytrace_common::signal_bit(sig) != 0
}

/// What the default action of `sig` does.
#[inline(always)]
fn default_action(sig: u32) -> u32 {
    if in_set(STOP_SET, sig) {
        signal_action::STOP
    } else if in_set(IGNORE_SET, sig) {
        signal_action::IGNORE
    } else if in_set(CORE_SET, sig) {
        signal_action::CORE
    } else {
        signal_action::KILL
    }
}

/// A fault the kernel raised: one of the signals whose siginfo is `_sigfault` (ILL, TRAP,
/// BUS, FPE, SEGV) with a positive `si_code` other than `SI_KERNEL`, so `si_addr` is set.
#[inline(always)]
fn is_fault(sig: u32, si_code: i32) -> bool {
    in_set(FAULT_SET, sig) && si_code > 0 && si_code != SI_KERNEL
}

/// `si_code` of a signal sent with `info` (a real siginfo, or one of the two special values).
#[inline(always)]
fn si_code_of(info: u64) -> i32 {
    match info {
        SEND_SIG_NOINFO => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        _ => kernel_i32(info + SI_CODE).unwrap_or(SI_USER),
    }
}

/// Codes of signals a process sent (the sender is the task that runs `signal_generate`);
/// the others come from the kernel, a timer or an I/O event, where the current task is not
/// the sender.
#[inline(always)]
fn sent_by_current(si_code: i32) -> bool {
    matches!(si_code, SI_USER | SI_QUEUE | SI_MESGQ | SI_TKILL)
}

/// In the sender (or the kernel context that raises the signal), after the signal was queued
/// and `complete_signal()` ran: notes the sender, the siginfo and the addressed thread.
#[inline(always)]
pub fn on_generate(sig: u32, info: u64, target: u64, result: i32) {
    if !chosen(sig) || result != TRACE_SIGNAL_DELIVERED {
        return;
    }
    let Some(pid) = kernel_i32(target + TASK_TGID_OFFSET.load()) else {
        return;
    };
    let si_code = si_code_of(info);
    let sender = if sent_by_current(si_code) {
        (bpf_get_current_pid_tgid() >> 32) as u32
    } else {
        0
    };
    let fault_addr = if is_fault(sig, si_code) && info > SEND_SIG_PRIV {
        kernel_u64(info + SI_ADDR).unwrap_or(0)
    } else {
        0
    };
    let noted = Noted {
        sender,
        si_code,
        tid: kernel_i32(target + TASK_PID_OFFSET.load()).unwrap_or(pid) as u32,
        _pad: 0,
        fsbase: kernel_u64(target + FSBASE_OFFSET.load()).unwrap_or(0),
        fault_addr,
    };
    let key = SignalKey {
        pid: pid as u32,
        signal: sig,
    };
    let _ = NOTED.insert(&key, &noted, 0);
}

/// In the receiving thread, before its handler or default action runs. `ka` is its
/// `k_sigaction` for the signal.
#[inline(always)]
pub fn on_signal(sig: u32, info: u64, ka: u64) {
    // SAFETY: no preconditions; the task pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    let signal = kernel_u64(task + TASK_SIGNAL_OFFSET.load()).unwrap_or(0);
    if sig == SIGKILL {
        // `get_signal()` reports every thread's part in a group exit as a SIGKILL (with
        // `SEND_SIG_NOINFO`, or a cleared siginfo in newer kernels).
        let flags = kernel_i32(signal + SIGNAL_FLAGS_OFFSET.load()).unwrap_or(0) as u32;
        if flags & SIGNAL_GROUP_EXIT != 0 {
            on_group_exit(task, signal);
            return;
        }
    }
    if !chosen(sig) {
        bump(Counter::OtherSignal);
        return;
    }
    let action = action_of(sig, ka, signal);
    if matches!(action, signal_action::KILL | signal_action::CORE) && !first_death(task) {
        bump(Counter::DeathAlreadyDumped);
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let mut record = signal_info(sig, info, pid);
    record.action = action;
    dump(pid, pid_tgid as u32, capture::current_fsbase(), &mut record);
}

/// What a delivered signal does: the handler, or the default action; a namespace's init
/// ignores default-fatal signals (`get_signal()`: "Global init gets no signals it doesn't
/// want").
#[inline(always)]
fn action_of(sig: u32, ka: u64, signal: u64) -> u32 {
    let handler = match kernel_u64(ka) {
        Some(h) => h,
        None => return signal_action::UNKNOWN,
    };
    if handler == SIG_IGN {
        return signal_action::IGNORE;
    }
    if handler != SIG_DFL {
        return signal_action::HANDLER;
    }
    let action = default_action(sig);
    if action == signal_action::IGNORE || sig == SIGKILL || sig == 19 {
        return action;
    }
    let flags = kernel_i32(signal + SIGNAL_FLAGS_OFFSET.load()).unwrap_or(0) as u32;
    if flags & SIGNAL_UNKILLABLE != 0 {
        return signal_action::IGNORE;
    }
    action
}

/// A SIGKILL while the process is in a group exit: this thread takes part in it. Dumped once
/// per process when a watched signal caused it (`group_exit_code`). (An exec killing the
/// other threads sets `group_exec_task`, not `SIGNAL_GROUP_EXIT`, and is not dumped.)
#[inline(always)]
fn on_group_exit(task: u64, signal: u64) {
    let code = kernel_i32(signal + SIGNAL_GROUP_EXIT_CODE_OFFSET.load()).unwrap_or(0);
    // A group exit by `exit_group()`, not by a signal.
    if !(0..EXIT_STATUS_MIN).contains(&code) {
        bump(Counter::GroupExit);
        return;
    }
    let original = (code & EXIT_SIGNAL_MASK) as u32;
    if !chosen(original) {
        if original == 0 {
            bump(Counter::GroupExit);
        } else {
            bump(Counter::OtherSignal);
        }
        return;
    }
    if !first_death(task) {
        bump(Counter::DeathAlreadyDumped);
        return;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let leader = kernel_u64(task + TASK_GROUP_LEADER_OFFSET.load()).unwrap_or(0);
    let key = SignalKey {
        pid,
        signal: original,
    };
    // SAFETY: lookup; the value is copied.
    let noted = unsafe { NOTED.get(&key) }.copied();
    if noted.is_some() {
        let _ = NOTED.remove(&key);
    }
    // The thread the signal was addressed to is the dump's current thread; without a note
    // (sent before pytrace attached), the main thread, to which kill() addresses it.
    let (tid, fsbase) = match noted {
        Some(n) => (n.tid, n.fsbase),
        None => (
            kernel_i32(leader + TASK_PID_OFFSET.load()).unwrap_or(pid as i32) as u32,
            kernel_u64(leader + FSBASE_OFFSET.load()).unwrap_or(0),
        ),
    };
    let mut flags = if original != SIGKILL {
        signal_flags::CONVERTED
    } else {
        0
    };
    if kernel_u64(signal + SIGNAL_OOM_MM_OFFSET.load()).unwrap_or(0) != 0 {
        flags |= signal_flags::OOM;
    }
    let mut record = SignalInfo {
        kind: kind::SIGNAL_INFO,
        signal: original,
        capture_id: 0,
        si_code: noted.map(|n| n.si_code).unwrap_or(SI_USER),
        sender_pid: noted.map(|n| n.sender).unwrap_or(0),
        sender_uid: 0,
        delivered: SIGKILL,
        action: if in_set(CORE_SET, original) {
            signal_action::CORE
        } else {
            signal_action::KILL
        },
        flags,
        fault_addr: 0,
        comm: leader_comm(leader),
    };
    if let Some(n) = noted {
        if n.fault_addr != 0 {
            record.fault_addr = n.fault_addr;
            record.flags |= signal_flags::FAULT_ADDR;
        }
    }
    dump(pid, tid, fsbase, &mut record);
}

#[inline(always)]
fn leader_comm(leader: u64) -> [u8; 16] {
    let mut comm = [0u8; 16];
    if leader != 0 {
        // SAFETY: a probe read into a local array of exactly its size.
        if let Ok(c) = unsafe {
            aya_ebpf::helpers::bpf_probe_read_kernel(
                (leader + TASK_COMM_OFFSET.load()) as *const [u8; 16],
            )
        } {
            comm = c;
        }
    }
    comm
}

/// Claims the dump of this process's death; false when another thread already did.
#[inline(always)]
fn first_death(task: u64) -> bool {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let leader = kernel_u64(task + TASK_GROUP_LEADER_OFFSET.load()).unwrap_or(0);
    let key = DeathKey {
        pid,
        _pad: 0,
        start_time: kernel_u64(leader + TASK_START_TIME_OFFSET.load()).unwrap_or(0),
    };
    DEATHS.insert(&key, &1, BPF_NOEXIST).is_ok()
}

/// Captures the process `pid` with `tid`/`fsbase` as its current thread.
#[inline(always)]
fn dump(pid: u32, tid: u32, fsbase: u64, record: &mut SignalInfo) {
    let req = CaptureRequest {
        trigger: trigger::SIGNAL,
        pid,
        tid,
        fsbase,
        scope: SCOPE_ALL_THREADS,
        max_threads: MAX_THREADS,
        max_frames: MAX_FRAMES,
        copy_code: true,
        read_gil: false,
        wake: Wake::Now,
        one_record: false,
    };
    match capture::run(&req, record) {
        Ok(()) => {}
        Err(Counter::NotPython) => {
            bump(Counter::NotPython);
            // Reported at once: a new process may have been signalled before its inspection.
            let skipped = Skipped {
                kind: kind::SKIPPED,
                signal: record.signal,
                pid,
                tid,
                comm: aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]),
            };
            emit::record(&skipped, Wake::Now);
        }
        Err(c) => bump(c),
    }
}

/// The signal's `si_code`, sender and fault address, for a signal delivered as itself.
/// `si_pid` is the sender as the target's PID namespace sees it (0 when the sender is outside
/// it); the host's view was noted at generation.
#[inline(always)]
fn signal_info(sig: u32, info: u64, pid: u32) -> SignalInfo {
    let si_code = if info > SEND_SIG_PRIV {
        kernel_i32(info + SI_CODE).unwrap_or(0)
    } else {
        si_code_of(info)
    };
    let (si_pid, sender_uid) = if info > SEND_SIG_PRIV && sent_by_current(si_code) {
        (
            kernel_i32(info + SI_PID).unwrap_or(0) as u32,
            kernel_i32(info + SI_UID).unwrap_or(0) as u32,
        )
    } else {
        (0, 0)
    };
    let (fault_addr, flags) = if is_fault(sig, si_code) && info > SEND_SIG_PRIV {
        match kernel_u64(info + SI_ADDR) {
            Some(a) => (a, signal_flags::FAULT_ADDR),
            None => (0, 0),
        }
    } else {
        (0, 0)
    };
    let key = SignalKey { pid, signal: sig };
    // SAFETY: lookup; the value is copied.
    let sender_pid = match unsafe { NOTED.get(&key) }.copied() {
        Some(noted) => {
            let _ = NOTED.remove(&key);
            if noted.sender != 0 {
                noted.sender
            } else {
                si_pid
            }
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
        delivered: sig,
        action: signal_action::UNKNOWN,
        flags,
        fault_addr,
        comm: [0; 16],
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
