//! Process comings and goings: tells user space when a process may have become a CPython
//! process (it exec'd a `python*` binary, or its dynamic loader changed its library list, as
//! when libpython is loaded by an embedding program), and forgets a traced process when it
//! exits or execs.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid};
use pytrace_common::{kind, Counter, ProcessEvent};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::PROCS,
};

#[inline(always)]
pub fn on_exec() {
    let pid = current_pid();
    forget(pid);
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    if comm.starts_with(b"python") {
        report(pid);
    }
}

/// Already-traced processes load extension modules all the time: only others are reported.
#[inline(always)]
pub fn on_libraries_changed() {
    let pid = current_pid();
    // SAFETY: lookup only; the value is not used.
    if unsafe { PROCS.get(&pid) }.is_none() {
        report(pid);
    }
}

#[inline(always)]
pub fn on_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if pid == tid {
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
        },
        Wake::Default,
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
        },
        Wake::Default,
    );
}
