//! The maps and load-time settings every part of the kernel side shares: the traced
//! processes (`PROCS`), the ring buffer to user space (`EVENTS`), the counters, and the task
//! layout from BTF. A leaf: each feature's own maps live with the feature.

use crate::platform::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    Global,
};
use pytrace_common::{ProcInfo, COUNTER_COUNT};

/// Offset of `task_struct.thread.fsbase` in this kernel (from BTF, set by the loader).
#[no_mangle]
pub static FSBASE_OFFSET: Global<u64> = Global::new(0);
/// Offsets of `task_struct.pid` and `task_struct.tgid` (from BTF, set by the loader).
#[no_mangle]
pub static TASK_PID_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
pub static TASK_TGID_OFFSET: Global<u64> = Global::new(0);
/// Offsets of `task_struct.signal`, `signal_struct.thread_head`, `task_struct.thread_node`
/// and `task_struct.comm` (from BTF, set by the loader; 0 where this kernel lacks them).
#[no_mangle]
pub static TASK_SIGNAL_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
pub static SIGNAL_THREAD_HEAD_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
pub static TASK_THREAD_NODE_OFFSET: Global<u64> = Global::new(0);
/// Offset of `task_struct.on_cpu` (from BTF, set by the loader).
#[no_mangle]
pub static TASK_ON_CPU_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
pub static TASK_COMM_OFFSET: Global<u64> = Global::new(0);
/// 1: processes missing from `PROCS` were filtered out by the user (`--pid`), not unknown.
#[no_mangle]
pub static PID_FILTER: Global<u32> = Global::new(0);

/// CPython processes to walk, by host tgid.
#[map]
pub static PROCS: HashMap<u32, ProcInfo> = HashMap::with_max_entries(16384, 0);

/// Records to user space (size overridden by the loader).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);
