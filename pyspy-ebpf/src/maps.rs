//! The walker's maps and load-time settings. User space writes `PROCS` and the globals, and
//! reads `EVENTS` and `COUNTERS`; the rest is per-CPU scratch.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use pytrace_common::{CodeChunk, CodeKey, CodeRecord, ProcInfo, ThreadRecord, COUNTER_COUNT};

use crate::{
    read::{HEADER_WORDS, WINDOW_WORDS},
    walker::WalkState,
};

/// Offset of `task_struct.thread.fsbase` in this kernel (from BTF, set by the loader).
#[no_mangle]
pub static FSBASE_OFFSET: Global<u64> = Global::new(0);
/// Offsets of `task_struct.pid` and `task_struct.tgid` (from BTF, set by the loader).
#[no_mangle]
pub static TASK_PID_OFFSET: Global<u64> = Global::new(0);
#[no_mangle]
pub static TASK_TGID_OFFSET: Global<u64> = Global::new(0);
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

/// Code objects already sent to user space, by (process, generation, address, fingerprint).
/// User space removes the keys of records it drops.
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
pub static CODE_SCRATCH: PerCpuArray<CodeRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static CHUNK_SCRATCH: PerCpuArray<CodeChunk> = PerCpuArray::with_max_entries(1, 0);

/// Buffers of the one-piece reads (`read::Window`).
#[map]
pub static WINDOWS: PerCpuArray<WindowScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WindowScratch {
    pub frame: [u64; WINDOW_WORDS],
    pub code: [u64; WINDOW_WORDS],
    pub filename: [u64; HEADER_WORDS],
    pub name: [u64; HEADER_WORDS],
    pub linetable: [u64; HEADER_WORDS],
}

/// Code objects already looked at in the dump in progress (a direct-mapped table, entries of
/// other dumps are stale): a code object repeated by recursion or by many threads costs one
/// look-up per dump.
#[map]
pub static DUMP_CODES: PerCpuArray<DumpCodes> = PerCpuArray::with_max_entries(1, 0);

/// Slots of `DUMP_CODES` (a power of two).
pub const DUMP_CODE_SLOTS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct DumpCodes {
    pub slots: [DumpCodeSlot; DUMP_CODE_SLOTS],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct DumpCodeSlot {
    pub dump_id: u64,
    pub code: u64,
    pub fingerprint: u64,
}
