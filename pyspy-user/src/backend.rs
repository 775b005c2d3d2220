//! Where the walker runs: in the kernel (`bpf::Probes`: the eBPF programs, the task iterator
//! of `pytrace dump`), or, for `pytrace dump --reader process-vm` (and `auto` on a kernel
//! without the iterator), in this process: the same walker compiled for the host
//! (`pyspy_ebpf::host`), reading each target with `process_vm_readv`. Its records are the
//! kernel's, handed over as a list instead of through the ring buffer; the session decodes,
//! assembles and symbolizes both alike.
//!
//! What the task iterator reads from each `task_struct` (tid, name, on a CPU) comes from
//! `/proc` on the host path ([`ProcTask`], [`task_map`]).

use std::collections::HashMap;

use pyspy_ebpf::host;
use pytrace_common::{CodeKey, Counter, ProcInfo, TaskSnapshot};

use crate::{
    bpf::{IteratorRun, Probes, DUMP_CAPTURED, DUMP_FAILED, DUMP_PENDING},
    error::Error,
    model::Capture,
    process,
};

pub enum Backend {
    Kernel(Box<Probes>),
    /// The walker compiled for the host (its state is `pyspy_ebpf::host`'s).
    ProcessVm,
}

impl Backend {
    /// The eBPF programs, when the walker runs in the kernel.
    pub fn kernel_mut(&mut self) -> Option<&mut Probes> {
        match self {
            Backend::Kernel(p) => Some(p),
            Backend::ProcessVm => None,
        }
    }

    /// Which reader an on-demand dump uses, for `-v`.
    pub fn describe(&self) -> &'static str {
        match self {
            Backend::Kernel(_) => {
                "the kernel's task iterator (iter.s/task, bpf_copy_from_user_task)"
            }
            Backend::ProcessVm => "process_vm_readv, walked in user space (no BPF program)",
        }
    }

    /// Makes a process walkable.
    pub fn add_process(&mut self, pid: u32, info: &ProcInfo) -> Result<(), Error> {
        match self {
            Backend::Kernel(p) => p.add_process(pid, info),
            Backend::ProcessVm => host::add_process(pid, info)
                .map_err(|e| Error::Runtime(format!("registering process {pid}: error {e}"))),
        }
    }

    pub fn remove_process(&mut self, pid: u32) {
        match self {
            Backend::Kernel(p) => p.remove_process(pid),
            Backend::ProcessVm => host::remove_process(pid),
        }
    }

    /// Forgets that these code records were sent (user space dropped them).
    pub fn forget_codes(&mut self, keys: &[CodeKey]) {
        match self {
            Backend::Kernel(p) => p.forget_codes(keys),
            Backend::ProcessVm => host::forget_codes(keys),
        }
    }

    /// Counter totals, in `Counter::ALL` order.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        match self {
            Backend::Kernel(p) => p.counters(),
            Backend::ProcessVm => {
                let all = host::counters();
                Counter::ALL
                    .iter()
                    .map(|&c| (c, all.get(c as usize).copied().unwrap_or(0)))
                    .collect()
            }
        }
    }

    /// (program, runs, run time in ns, verified instructions) of each eBPF program.
    pub fn run_stats(&self) -> Vec<(String, u64, u64, u32)> {
        match self {
            Backend::Kernel(p) => p.run_stats(),
            Backend::ProcessVm => Vec::new(),
        }
    }

    pub fn flush_kernel_log(&mut self) {
        if let Backend::Kernel(p) = self {
            p.flush_kernel_log();
        }
    }

    /// Captures every process of `pids` now: the kernel's task iterator (its records in the
    /// ring buffer), or the host walk (its records in the returned run).
    pub fn dump_now(&mut self, pids: &[u32]) -> Result<IteratorRun, Error> {
        match self {
            Backend::Kernel(p) => p.dump_now(pids),
            Backend::ProcessVm => Ok(dump_process_vm(pids)),
        }
    }
}

/// The host walk of each process of `pids`, one after the other, each followed by a look at
/// its threads in `/proc`.
fn dump_process_vm(pids: &[u32]) -> IteratorRun {
    let mut run = IteratorRun {
        states: Vec::with_capacity(pids.len()),
        tasks: HashMap::new(),
        records: Vec::new(),
        proc_tasks: Some(HashMap::new()),
        refused: Vec::new(),
    };
    for &pid in pids {
        let state = match host::dump(pid) {
            Ok(()) => DUMP_CAPTURED,
            // Gone before it could be read: as the task iterator not finding it.
            Err(host::DumpError::Refused(libc::ESRCH)) => DUMP_PENDING,
            Err(host::DumpError::Refused(errno)) => {
                run.refused.push((
                    pid,
                    Error::Privileges(format!(
                        "process_vm_readv of process {pid} refused: {} (it needs ptrace read \
                         access: CAP_SYS_PTRACE, and Yama's ptrace_scope below 3)",
                        std::io::Error::from_raw_os_error(errno)
                    )),
                ));
                DUMP_FAILED
            }
            Err(host::DumpError::NotBegun(_)) => DUMP_FAILED,
        };
        run.states.push((pid, state));
        if let Some(tasks) = run.proc_tasks.as_mut() {
            tasks.insert(pid, proc_tasks(pid));
        }
        // Taken after each process: the ring buffer's byte budget then bounds one process's
        // records, not the whole host's.
        run.records.extend(host::drain());
    }
    run
}

/// One thread of a process as `/proc` shows it right after the host walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcTask {
    /// Host tid.
    pub tid: u32,
    /// Its id in the process's own PID namespace (what `gettid()` returns there).
    pub ns_tid: u32,
    pub comm: [u8; 16],
    /// State `R` in `/proc/PID/task/TID/stat`: running *or runnable* (waiting for a CPU).
    /// The task iterator reads `task_struct.on_cpu`, which is running only.
    pub running: bool,
}

/// The threads of `pid` (empty once it is gone).
pub fn proc_tasks(pid: u32) -> Vec<ProcTask> {
    let dir = process::procfs::proc_dir(pid).join("task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    for entry in entries.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, state)) = parse_stat(&stat) else {
            continue;
        };
        let ns_tid = process::procfs::thread_ns_tid(pid, tid).unwrap_or(tid);
        tasks.push(ProcTask {
            tid,
            ns_tid,
            comm,
            running: state == b'R',
        });
    }
    tasks.sort_by_key(|t| t.tid);
    tasks
}

/// The name and state of a `/proc/PID/task/TID/stat` line: `tid (comm) S ...`, where comm
/// (at most 15 bytes) may itself hold parentheses and spaces.
fn parse_stat(stat: &[u8]) -> Option<([u8; 16], u8)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let name = stat.get(open + 1..close)?;
    let state = *stat.get(close + 2)?;
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    Some((comm, state))
}

/// glibc x86_64's `struct pthread`: `pthread_self()` (a thread state's `thread_id`) points at
/// it; its TCB header's `self` field (offset 16) points back at it, and its `tid` (offset
/// 0x2d0, fixed since glibc 2.x by the ABI `libthread_db` relies on) is the thread's id in
/// its PID namespace.
const PTHREAD_SELF_OFFSET: u64 = 16;
const PTHREAD_TID_OFFSET: u64 = 0x2d0;

/// Each thread of `capture` with its OS thread, by (pid, `thread_id`), as the task iterator's
/// `DUMP_TASKS` gives them: matched by `native_thread_id` (3.8+), else by the tid glibc keeps
/// in the thread's `struct pthread`, read only when its `self` field proves the layout (a
/// thread matched by neither has no task: its name is unknown, never guessed).
pub fn task_map(capture: &Capture, tasks: &[ProcTask]) -> HashMap<(u32, u64), TaskSnapshot> {
    let pid = capture.pid;
    let mut map = HashMap::new();
    for t in capture.threads.iter().chain(&capture.other_threads) {
        let ns_tid = match t.native_id {
            Some(id) if id != 0 => u32::try_from(id).ok(),
            _ => glibc_tid(pid, t.thread_id),
        };
        let Some(task) = ns_tid.and_then(|id| tasks.iter().find(|k| k.ns_tid == id)) else {
            continue;
        };
        map.insert(
            (pid, t.thread_id),
            TaskSnapshot {
                tid: task.tid,
                on_cpu: u32::from(task.running),
                comm: task.comm,
            },
        );
    }
    map
}

/// The tid glibc notes in the `struct pthread` at `thread_id`, when that memory is one.
fn glibc_tid(pid: u32, thread_id: u64) -> Option<u32> {
    if thread_id == 0 {
        return None;
    }
    let mut word = [0u8; 8];
    process::read_memory(pid, thread_id.checked_add(PTHREAD_SELF_OFFSET)?, &mut word).ok()?;
    if u64::from_ne_bytes(word) != thread_id {
        return None;
    }
    let mut tid = [0u8; 4];
    process::read_memory(pid, thread_id.checked_add(PTHREAD_TID_OFFSET)?, &mut tid).ok()?;
    let tid = i32::from_ne_bytes(tid);
    u32::try_from(tid).ok().filter(|&t| t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names() {
        let (comm, state) = parse_stat(b"42 (a) b (c) R 1 2 3").unwrap();
        assert_eq!(&comm[..7], b"a) b (c");
        assert_eq!(state, b'R');
        assert_eq!(parse_stat(b"42 (x) S 1").unwrap().1, b'S');
        assert!(parse_stat(b"42 (x").is_none());
    }

    #[test]
    fn this_process_threads_are_listed_and_matched() {
        let pid = std::process::id();
        let tasks = proc_tasks(pid);
        let me = tasks
            .iter()
            .find(|t| t.tid == pid)
            .expect("main thread listed");
        // The test thread runs while it looks.
        assert!(tasks.iter().any(|t| t.running), "{tasks:?}");
        assert_eq!(me.ns_tid, pid);
        // SAFETY: pthread_self has no preconditions.
        let self_id = unsafe { libc::pthread_self() } as u64;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert_eq!(glibc_tid(pid, self_id), Some(tid));
        // An address that is not a `struct pthread` is refused, not read as one.
        let x = 0u64;
        assert_eq!(glibc_tid(pid, &x as *const u64 as u64), None);
        assert_eq!(glibc_tid(pid, 0), None);
    }
}
