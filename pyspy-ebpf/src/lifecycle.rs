//! Process comings and goings: tells user space when a process maps a CPython binary or
//! library (exec of python, or libpython loaded by an embedding program), and forgets a traced
//! process when it exits.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf};
use pytrace_common::{kind, Counter, ProcessEvent, MAPPED_NAME_LEN};

use crate::{
    counters::bump,
    emit,
    maps::{DENTRY_NAME_OFFSET, FILE_DENTRY_OFFSET, PROCS},
    read::kernel_u64,
};

/// `PROT_EXEC`: only code mappings matter (one per file and process).
const PROT_EXEC: u64 = 4;

#[inline(always)]
pub fn on_mmap(file: u64, prot: u64) {
    if file == 0 || prot & PROT_EXEC == 0 {
        return;
    }
    let Some(dentry) = kernel_u64(file + FILE_DENTRY_OFFSET.load()) else {
        return;
    };
    let Some(name) = kernel_u64(dentry + DENTRY_NAME_OFFSET.load()) else {
        return;
    };
    let mut buf = [0u8; MAPPED_NAME_LEN];
    // SAFETY: reads kernel memory through the checked helper into a local buffer; a short name
    // is NUL-terminated, and a failed read leaves zeros.
    if unsafe { bpf_probe_read_kernel_buf(name as *const u8, &mut buf) }.is_err() {
        return;
    }
    if !(buf.starts_with(b"python") || buf.starts_with(b"libpython")) {
        return;
    }
    bump(Counter::Mapped);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    emit::record(&ProcessEvent {
        kind: kind::MAPPED,
        pid,
    });
}

#[inline(always)]
pub fn on_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if pid != tid {
        return;
    }
    // SAFETY: lookup only; the value is not used.
    if unsafe { PROCS.get(&pid) }.is_none() {
        return;
    }
    let _ = PROCS.remove(&pid);
    bump(Counter::Exited);
    emit::record(&ProcessEvent {
        kind: kind::EXITED,
        pid,
    });
}
