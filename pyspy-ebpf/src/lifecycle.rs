//! Process comings and goings: tells user space when a process may have become a CPython
//! process (it exec'd a `python*` binary, or its dynamic loader changed its library list, as
//! when libpython is loaded by an embedding program), and forgets a traced process when it
//! exits or execs.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::map,
    maps::LruHashMap,
};
use pytrace_common::{kind, Counter, ProcessEvent};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{PROCS, TASK_PID_OFFSET, TASK_TGID_OFFSET},
    read::kernel_i32,
};

/// When a process's library-list change was last reported (boot ns).
#[map]
static RECENTLY_REPORTED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
pub fn on_exec() {
    let pid = current_pid();
    forget(pid);
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    if comm.starts_with(b"python") {
        report(pid);
    }
}

/// A process's library-list changes are reported at most once per this interval (a start-up
/// or an import loads many libraries in a burst). User space checks the process again after
/// the interval, so a change inside it is not missed.
pub const REPORT_INTERVAL_NS: u64 = 4_000_000;

/// Already-traced processes load extension modules all the time: only others are reported.
#[inline(always)]
pub fn on_libraries_changed() {
    let pid = current_pid();
    // SAFETY: lookup only; the value is not used.
    if unsafe { PROCS.get(&pid) }.is_some() {
        return;
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: lookup; the value is copied.
    if let Some(&last) = unsafe { RECENTLY_REPORTED.get(&pid) } {
        if now.wrapping_sub(last) < REPORT_INTERVAL_NS {
            return;
        }
    }
    let _ = RECENTLY_REPORTED.insert(&pid, &now, 0);
    report(pid);
}

/// A new process (not a thread) forked from a traced one inherits its table; user space is
/// told so it can register the child's own.
#[inline(always)]
pub fn on_fork(parent: u64, child: u64) {
    let (Some(parent_tgid), Some(child_pid), Some(child_tgid)) = (
        kernel_i32(parent + TASK_TGID_OFFSET.load()),
        kernel_i32(child + TASK_PID_OFFSET.load()),
        kernel_i32(child + TASK_TGID_OFFSET.load()),
    ) else {
        return;
    };
    if child_pid != child_tgid || child_tgid == parent_tgid {
        return;
    }
    let (parent_tgid, child_tgid) = (parent_tgid as u32, child_tgid as u32);
    // SAFETY: lookup; the value is copied out at once.
    let Some(info) = (unsafe { PROCS.get(&parent_tgid) }).copied() else {
        return;
    };
    if PROCS.insert(&child_tgid, &info, 0).is_ok() {
        bump(Counter::Forked);
        emit::record(
            &ProcessEvent {
                kind: kind::FORKED,
                pid: child_tgid,
                parent: parent_tgid,
                _pad: 0,
            },
            // The child is already walkable; user space needs this before the child's first
            // dump, whose end record wakes it.
            Wake::Later,
        );
    }
}

#[inline(always)]
pub fn on_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if pid == tid {
        let _ = RECENTLY_REPORTED.remove(&pid);
        forget(pid);
    }
}

#[inline(always)]
fn current_pid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn report(pid: u32) {
    bump(Counter::Mapped);
    emit::record(
        &ProcessEvent {
            kind: kind::MAPPED,
            pid,
            parent: 0,
            _pad: 0,
        },
        // Records written without a wake-up may be waiting ahead of this one, so the kernel's
        // adaptive wake-up would not fire: force it.
        Wake::Now,
    );
}

/// Drops a traced process (its image is gone) and tells user space.
#[inline(always)]
fn forget(pid: u32) {
    // SAFETY: lookup only; the value is not used.
    if unsafe { PROCS.get(&pid) }.is_none() {
        return;
    }
    let _ = PROCS.remove(&pid);
    bump(Counter::Exited);
    emit::record(
        &ProcessEvent {
            kind: kind::EXITED,
            pid,
            parent: 0,
            _pad: 0,
        },
        // Not urgent: read at the next wake-up (a new process or a dump).
        Wake::Later,
    );
}
