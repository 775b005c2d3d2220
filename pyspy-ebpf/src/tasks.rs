//! The target's OS threads at dump time: host tid, FS base and name (`comm`) of every task
//! of the thread group, sent as one record right after the dump's begin record.
//!
//! CPython 3.14+ faulthandler writes each thread's OS name; after a fatal signal the process
//! is gone before user space could read `/proc/PID/task/*/comm`, so the names are copied
//! here. The walk follows `current->signal->thread_head` through each task's `thread_node`
//! (offsets from the kernel's BTF, set by the loader), one task per `bpf_loop` step. It runs
//! in `signal_deliver` with the target's `siglock` held, which keeps the list from changing.
//! As in the walker, the loop's state lives in per-CPU maps, not in the callback context
//! (on-stack counters compared to constants never finished verifying).

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated::bpf_loop},
    macros::map,
    maps::PerCpuArray,
};
use pytrace_common::{
    kind, task_flags, Counter, TaskName, TaskNames, TaskNamesHeader, COMM_LEN, MAX_TASKS,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{
        FSBASE_OFFSET, SIGNAL_THREAD_HEAD_OFFSET, TASK_COMM_OFFSET, TASK_PID_OFFSET,
        TASK_SIGNAL_OFFSET, TASK_THREAD_NODE_OFFSET,
    },
    read::{kernel_i32, kernel_u64},
};

#[map]
static TASK_SCRATCH: PerCpuArray<TaskNames> = PerCpuArray::with_max_entries(1, 0);

#[map]
static TASK_CURSOR: PerCpuArray<TaskCursor> = PerCpuArray::with_max_entries(1, 0);

/// `bpf_loop` steps: one per task, and one more that finds the end of the list.
const TASK_STEPS: u32 = MAX_TASKS as u32 + 1;

/// Where the task walk is: the list head (`&signal->thread_head`) and the next node.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskCursor {
    pub head: u64,
    pub node: u64,
}

/// Lists the current thread group's tasks and sends them; returns whether the record went
/// out (a failure is counted as a lost record by the caller).
#[inline(always)]
pub fn send(dump_id: u64) -> bool {
    let (Some(rec), Some(cursor)) = (TASK_SCRATCH.get_ptr_mut(0), TASK_CURSOR.get_ptr_mut(0))
    else {
        bump(Counter::NoScratch);
        return true;
    };
    // SAFETY: per-CPU scratch owned by this dump (the walk state's `busy` flag is held).
    let (rec, cursor) = unsafe { (&mut *rec, &mut *cursor) };
    rec.hdr = TaskNamesHeader {
        kind: kind::TASKS,
        flags: 0,
        dump_id,
        count: 0,
        _pad: 0,
    };
    match list_head() {
        Some(head) => {
            let first = match kernel_u64(head) {
                Some(n) => n,
                None => {
                    bump(Counter::TaskReadFailed);
                    rec.hdr.flags |= task_flags::READ_FAILED;
                    head
                }
            };
            *cursor = TaskCursor { head, node: first };
            // SAFETY: `step` has the callback signature bpf_loop expects; its context is
            // unused (the state is in the per-CPU maps).
            unsafe { bpf_loop(TASK_STEPS, step as *mut c_void, core::ptr::null_mut(), 0) };
        }
        None => rec.hdr.flags |= task_flags::UNSUPPORTED,
    }
    let Some(rec) = TASK_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return true;
    };
    // SAFETY: as above; no other reference to the record is alive here.
    let rec = unsafe { &mut *rec };
    let len = size_of::<TaskNamesHeader>() + rec.hdr.count as usize * size_of::<TaskName>();
    emit::prefix(rec, len, Wake::Later)
}

/// `&current->signal->thread_head`, if the loader found the members in BTF.
#[inline(always)]
fn list_head() -> Option<u64> {
    let (signal_off, head_off, node_off) = (
        TASK_SIGNAL_OFFSET.load(),
        SIGNAL_THREAD_HEAD_OFFSET.load(),
        TASK_THREAD_NODE_OFFSET.load(),
    );
    if signal_off == 0 || head_off == 0 || node_off == 0 {
        return None;
    }
    // SAFETY: bpf_get_current_task has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let signal = kernel_u64(task + signal_off).filter(|&s| s != 0)?;
    Some(signal + head_off)
}

extern "C" fn step(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(rec), Some(cursor)) = (TASK_SCRATCH.get_ptr_mut(0), TASK_CURSOR.get_ptr_mut(0))
    else {
        return 1;
    };
    // SAFETY: per-CPU scratch owned by this dump; the references end with the step.
    let (rec, cursor) = unsafe { (&mut *rec, &mut *cursor) };
    if cursor.node == cursor.head || cursor.node == 0 {
        return 1;
    }
    let n = rec.hdr.count as usize;
    let Some(slot) = rec.tasks.get_mut(n) else {
        bump(Counter::TaskLimit);
        rec.hdr.flags |= task_flags::MORE_TASKS;
        return 1;
    };
    let task = cursor.node.wrapping_sub(TASK_THREAD_NODE_OFFSET.load());
    let tid = kernel_i32(task + TASK_PID_OFFSET.load());
    let fsbase = kernel_u64(task + FSBASE_OFFSET.load());
    // SAFETY: bpf_probe_read_kernel checks the address and never faults.
    let comm =
        unsafe { bpf_probe_read_kernel((task + TASK_COMM_OFFSET.load()) as *const [u8; COMM_LEN]) };
    let next = kernel_u64(cursor.node);
    let (Some(tid), Some(fsbase), Ok(comm), Some(next)) = (tid, fsbase, comm, next) else {
        bump(Counter::TaskReadFailed);
        rec.hdr.flags |= task_flags::READ_FAILED;
        return 1;
    };
    *slot = TaskName {
        tid: tid as u32,
        _pad: 0,
        fsbase,
        comm,
    };
    rec.hdr.count += 1;
    cursor.node = next;
    0
}
