//! The walker's maps and load-time settings. User space writes `PROCS` and the globals, and
//! reads `EVENTS` and `COUNTERS`; the rest is per-CPU scratch.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use pytrace_common::{CodeRecord, ProcInfo, TaskNames, ThreadRecord, COUNTER_COUNT};

use crate::{tasks::TaskCursor, walker::WalkState};

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
#[no_mangle]
pub static TASK_COMM_OFFSET: Global<u64> = Global::new(0);
/// Bit `n` set: signal `n` triggers a dump.
#[no_mangle]
pub static SIGNAL_MASK: Global<u64> = Global::new(0);
/// 1: processes missing from `PROCS` were filtered out by the user (`--pid`), not unknown.
#[no_mangle]
pub static PID_FILTER: Global<u32> = Global::new(0);

/// CPython processes to walk, by host tgid.
#[map]
pub static PROCS: HashMap<u32, ProcInfo> = HashMap::with_max_entries(16384, 0);

/// When a process's library-list change was last reported (boot ns).
#[map]
pub static RECENTLY_REPORTED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Who sent a chosen signal to a process (host tgid), noted in the sender, taken at delivery.
#[map]
pub static SENDERS: LruHashMap<SignalKey, u32> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SignalKey {
    pub pid: u32,
    pub signal: u32,
}

/// Code objects already sent to user space.
#[map]
pub static SENT_CODES: LruHashMap<CodeKey, u8> = LruHashMap::with_max_entries(65536, 0);

/// Records to user space (size overridden by the loader).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map]
pub static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static THREAD_SCRATCH: PerCpuArray<ThreadRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TASK_SCRATCH: PerCpuArray<TaskNames> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TASK_CURSOR: PerCpuArray<TaskCursor> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static CODE_SCRATCH: PerCpuArray<CodeRecord> = PerCpuArray::with_max_entries(1, 0);

/// Identity of a code object as sent: the object and the three objects the record copies, so a
/// freed and reused address is sent again.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CodeKey {
    pub pid: u32,
    pub generation: u32,
    pub code: u64,
    pub filename: u64,
    pub name: u64,
    pub linetable: u64,
}
