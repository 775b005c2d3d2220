//! The on-demand trigger: a sleepable task iterator visits every task of the host; for each
//! process user space asked for (`DUMP_PIDS`), the first of its tasks seen captures all its
//! threads with faulthandler's bounds, reading its memory through that task
//! (`bpf_copy_from_user_task`, which faults non-resident pages in). Nothing is signalled or
//! stopped.

use aya_ebpf::{bindings::task_struct, macros::map, maps::HashMap};
use pytrace_common::{TaskKey, TaskSnapshot};

use crate::{
    capture::{self, CaptureRequest, NoRecord},
    counters::bump,
    maps::{FSBASE_OFFSET, TASK_ON_CPU_OFFSET, TASK_PID_OFFSET, TASK_TGID_OFFSET},
    read::{kernel_i32, kernel_u64, Memory, Task},
};

/// Processes to dump, by host tgid, with where each stands (`dump_state`), set by user space
/// before it runs the iterator and read back after.
#[map]
static DUMP_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Every thread of the processes dumped, by (tgid, FS base): its tid, whether it is on a CPU,
/// its name. Written as the iterator passes each task; read by user space after.
#[map]
static DUMP_TASKS: HashMap<TaskKey, TaskSnapshot> = HashMap::with_max_entries(65536, 0);

/// `DUMP_PIDS` values.
pub mod dump_state {
    /// Asked for; no task of the process seen yet.
    pub const PENDING: u32 = 0;
    /// Captured (its records are in the ring buffer).
    pub const CAPTURED: u32 = 1;
    /// Seen, but not captured: no table in `PROCS`, or the capture could not start.
    pub const FAILED: u32 = 2;
}

/// For one task of the iteration.
#[inline(always)]
pub fn on_task(task: *mut task_struct) {
    let base = task as u64;
    let (Some(tgid), Some(tid)) = (
        kernel_i32(base + TASK_TGID_OFFSET.load()),
        kernel_i32(base + TASK_PID_OFFSET.load()),
    ) else {
        return;
    };
    let pid = tgid as u32;
    let Some(slot) = DUMP_PIDS.get_ptr_mut(&pid) else {
        return;
    };
    // SAFETY: map value pointer, valid while the program runs; only this program writes it
    // while the iterator runs.
    let slot = unsafe { &mut *slot };
    note_task(task, pid, tid as u32);
    if *slot != dump_state::PENDING {
        return;
    }
    let req = CaptureRequest::on_demand(pid, tid as u32);
    *slot = match capture::run_in(Task(task), &req, &mut NoRecord) {
        Ok(()) => dump_state::CAPTURED,
        Err(c) => {
            bump(c);
            dump_state::FAILED
        }
    };
}

/// Notes one thread of a process being dumped. Not inlined: its stack is not added to the
/// capture's, whose frame plus the walk callback's must stay within 512 bytes ("combined
/// stack size of 2 calls is 528. Too large").
#[inline(never)]
fn note_task(task: *mut task_struct, pid: u32, tid: u32) {
    let base = task as u64;
    let key = TaskKey {
        tgid: pid,
        _pad: 0,
        fsbase: kernel_u64(base + FSBASE_OFFSET.load()).unwrap_or(0),
    };
    let snapshot = TaskSnapshot {
        tid,
        on_cpu: kernel_i32(base + TASK_ON_CPU_OFFSET.load()).unwrap_or(0) as u32,
        comm: Task(task).comm(),
    };
    let _ = DUMP_TASKS.insert(&key, &snapshot, 0);
}
