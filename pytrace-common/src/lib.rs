//! Layouts shared by the kernel walker (`pyspy-ebpf`) and the loader (`pyspy-user`).
//!
//! Everything here is `#[repr(C)]` plain data: the per-process table of CPython offsets the
//! loader writes into a map, the records the walker writes into the ring buffer, and the names
//! of the walker's counters. Both sides compile this same file, so a layout change is one edit.
#![no_std]

/// faulthandler prints at most this many threads (`MAX_NTHREADS` in `Python/traceback.c`):
/// the signal trigger's thread bound.
pub const MAX_THREADS: u32 = 100;
/// faulthandler prints at most this many frames per thread (`MAX_FRAME_DEPTH`): the signal
/// trigger's frame bound.
pub const MAX_FRAMES: u32 = 100;
/// Real frames a timer sample keeps per stack (the chain bound `MAX_CHAIN` leaves room for the
/// shim frames between them).
pub const SAMPLE_MAX_FRAMES: u32 = 127;
/// Frame-chain entries kept per thread, shim frames included: the capture's hard bound. A
/// capture stops after its frame bound + 1 real frames (the extra one tells the formatter that
/// the stack goes on).
pub const MAX_CHAIN: usize = 160;
/// Bytes copied from a `str`: 501 code points of up to 4 bytes (500 printed, one more shows
/// truncation; the true length travels beside it).
pub const STR_MAX_BYTES: usize = 2048;
/// faulthandler's string limit, in code points (`MAX_STRING_LENGTH`).
pub const STR_MAX_CODEPOINTS: u64 = 500;
/// Bytes of a code object's line table copied by the kernel (lnotab / linetable / locations).
pub const LINETABLE_MAX: usize = 16384;
/// `bpf_loop` iterations for one capture: every thread walked costs one start step, one step
/// per chain entry and one finish step; every thread passed over (a capture of one thread
/// looking for it) costs one step.
pub const WALK_STEPS: u32 = MAX_THREADS * (MAX_CHAIN as u32 + 2) + 8;
/// Threads a capture of one thread passes over looking for it before giving up.
pub const MAX_SCAN_THREADS: u32 = 4096;

/// An offset that does not exist in this CPython version.
pub const NO_OFFSET: u32 = u32::MAX;

/// Where the walker finds things in one CPython version. Every field is a byte offset inside
/// the named CPython structure; `NO_OFFSET` marks a field the version does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyOffsets {
    /// `PyInterpreterState` → first `PyThreadState*` (`tstate_head`, `threads.head`).
    pub interp_threads_head: u32,
    /// `PyInterpreterState` → `gc.collecting` (int); `NO_OFFSET` where faulthandler prints no
    /// "Garbage-collecting" line.
    pub interp_gc_collecting: u32,
    /// `PyThreadState` → `next`.
    pub tstate_next: u32,
    /// `PyThreadState` → `thread_id` (`pthread_self()`).
    pub tstate_thread_id: u32,
    /// `PyThreadState` → `native_thread_id` (3.11+); `NO_OFFSET` before.
    pub tstate_native_thread_id: u32,
    /// `PyThreadState` → `frame` (≤3.10), `cframe` (3.11, 3.12) or `current_frame` (3.13+).
    pub tstate_frame: u32,
    /// `_PyCFrame` → `current_frame` when `tstate_frame` points at a cframe; else `NO_OFFSET`.
    pub cframe_current_frame: u32,
    /// Frame → previous frame (`f_back`, `previous`).
    pub frame_previous: u32,
    /// Frame → code object (`f_code`, `f_executable`; low tag bits are cleared).
    pub frame_code: u32,
    /// Frame → last instruction (`f_lasti` int, or `prev_instr`/`instr_ptr` pointer).
    pub frame_instr: u32,
    /// Frame → `owner` (char, 3.12+); `NO_OFFSET` before.
    pub frame_owner: u32,
    /// Owners at or above this value are shim frames (`FRAME_OWNED_BY_CSTACK`, …).
    pub frame_owner_shim_min: u32,
    /// `PyCodeObject` → `co_filename`.
    pub code_filename: u32,
    /// `PyCodeObject` → `co_name`.
    pub code_name: u32,
    /// `PyCodeObject` → `co_lnotab` (≤3.9) or `co_linetable` (3.10+).
    pub code_linetable: u32,
    /// `PyCodeObject` → `co_firstlineno` (int).
    pub code_firstlineno: u32,
    /// `PyASCIIObject` → `length`.
    pub unicode_length: u32,
    /// `PyASCIIObject` → `state` (bit field: kind, compact, ascii).
    pub unicode_state: u32,
    /// First character of a compact ASCII string (`sizeof(PyASCIIObject)`).
    pub unicode_ascii_data: u32,
    /// First character of a compact non-ASCII string (`sizeof(PyCompactUnicodeObject)`).
    pub unicode_compact_data: u32,
    /// `PyBytesObject` → `ob_size`.
    pub bytes_size: u32,
    /// `PyBytesObject` → `ob_sval`.
    pub bytes_data: u32,
}

/// Bits of `PyASCIIObject.state` (unchanged from 3.3 to 3.14).
pub const UNICODE_KIND_SHIFT: u32 = 2;
pub const UNICODE_KIND_MASK: u32 = 0b111;
pub const UNICODE_COMPACT_BIT: u32 = 1 << 5;
pub const UNICODE_ASCII_BIT: u32 = 1 << 6;

/// One traced CPython process, as the loader tells the walker about it (map value, keyed by
/// the host tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcInfo {
    /// Address, in the target, of the `PyInterpreterState*` that heads the interpreter list
    /// (`&_PyRuntime.interpreters.head`, or `&interp_head` on 3.6).
    pub interp_head_addr: u64,
    /// `PY_VERSION_HEX` of the target.
    pub version_hex: u32,
    /// Distinguishes this registration from an earlier process that had the same PID, so code
    /// objects sent for that one are not taken as sent for this one.
    pub generation: u32,
    pub offsets: PyOffsets,
}

/// What made the walker run (`CaptureBegin.trigger`).
pub mod trigger {
    /// Delivery of a chosen signal; a `SignalInfo` record follows the begin record.
    pub const SIGNAL: u32 = 1;
    /// A CPU-clock perf event: one sample of the interrupted thread.
    pub const TIMER: u32 = 2;
    /// An on-demand dump (`pytrace dump` without a signal), read from another task by the
    /// task iterator: `CaptureBegin.tid` is the task it read through, `fsbase` is 0.
    pub const ON_DEMAND: u32 = 3;
}

/// Tag at the start of every ring-buffer record.
pub mod kind {
    pub const CAPTURE_BEGIN: u32 = 1;
    pub const THREAD: u32 = 2;
    pub const CODE: u32 = 3;
    pub const CAPTURE_END: u32 = 4;
    pub const SKIPPED: u32 = 5;
    pub const MAPPED: u32 = 6;
    pub const EXITED: u32 = 7;
    pub const FORKED: u32 = 8;
    pub const SIGNAL_INFO: u32 = 9;
    pub const HELD: u32 = 10;
}

/// A process may have become a CPython process: it exec'd a `python*` binary or its dynamic
/// loader changed its library list (`MAPPED`); a traced process forked a child that the
/// kernel side already walks with the parent's table (`FORKED`, with `parent`); or a traced
/// process exited or exec'd (`EXITED`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEvent {
    pub kind: u32,
    pub pid: u32,
    /// The parent, for `FORKED`; 0 otherwise.
    pub parent: u32,
    pub _pad: u32,
}

/// First record of a capture, whatever triggered it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureBegin {
    pub kind: u32,
    /// A `trigger::*` value.
    pub trigger: u32,
    pub capture_id: u64,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub boot_ns: u64,
    /// Host tgid and tid of the thread the trigger ran in.
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    /// `interp->gc.collecting` at the event (0 where the version has none).
    pub gc_collecting: u32,
    pub version_hex: u32,
    /// `begin_flags::*`.
    pub flags: u32,
    /// Thread-local base of that thread (= its `pthread_self()` on glibc x86_64).
    pub fsbase: u64,
    pub comm: [u8; 16],
}

/// Flags of a capture's begin record.
pub mod begin_flags {
    /// The GIL could be read: thread records carry `thread_flags::HOLDS_GIL` truthfully.
    pub const GIL_KNOWN: u32 = 1;
}

/// What the signal trigger adds to a capture: sent right after its begin record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalInfo {
    pub kind: u32,
    /// The signal the dump is about: for a process killed by a signal the kernel turned into
    /// a group SIGKILL (a fatal signal that does not dump core), the original signal.
    pub signal: u32,
    pub capture_id: u64,
    /// `si_code` and sender of the signal (from the siginfo, or noted at generation for a
    /// converted signal), 0 when unknown.
    pub si_code: i32,
    pub sender_pid: u32,
    pub sender_uid: u32,
    /// The signal number the receiving thread saw at delivery (9 for a converted signal).
    pub delivered: u32,
    /// A `signal_action::*` value.
    pub action: u32,
    /// `signal_flags::*`.
    pub flags: u32,
    /// `si_addr` of a fault the kernel raised (valid with `signal_flags::FAULT_ADDR`).
    pub fault_addr: u64,
    /// The process's comm (its group leader's), when the dump was taken in another thread.
    pub comm: [u8; 16],
}

/// `--hold` refused a watched signal to a selected process (in the sender, which got EPERM).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldSignal {
    pub kind: u32,
    pub signal: u32,
    /// Host tgid and tid of the task it was sent to.
    pub pid: u32,
    pub tid: u32,
    /// Host tgid of the sender.
    pub sender: u32,
    pub _pad: u32,
}

/// What a delivered signal does (`SignalInfo.action`), from the receiving thread's
/// `k_sigaction` and the signal's default action.
pub mod signal_action {
    pub const UNKNOWN: u32 = 0;
    /// A handler installed by the process runs.
    pub const HANDLER: u32 = 1;
    /// The default action kills the process.
    pub const KILL: u32 = 2;
    /// The default action kills the process and dumps core.
    pub const CORE: u32 = 3;
    /// The default action stops the process.
    pub const STOP: u32 = 4;
    /// Ignored (explicitly, by default, or because the process is a namespace's init).
    pub const IGNORE: u32 = 5;
    /// Held by `--hold`: not delivered at all (the sender's `kill` failed with EPERM).
    pub const HELD: u32 = 6;
}

/// Flags of a `SignalInfo` record.
pub mod signal_flags {
    /// The process was chosen by the kernel's OOM killer (`signal->oom_mm` set).
    pub const OOM: u32 = 1;
    /// `fault_addr` holds the fault's `si_addr`.
    pub const FAULT_ADDR: u32 = 2;
    /// The kernel turned the signal into a group SIGKILL before delivery.
    pub const CONVERTED: u32 = 4;
}

/// Flags of a thread record.
pub mod thread_flags {
    /// Its `thread_id` equals the receiving thread's `pthread_self()`.
    pub const CURRENT: u32 = 1;
    /// The frame chain goes on past the last entry sent.
    pub const CHAIN_CONTINUES: u32 = 2;
    /// A read of the chain failed; the entries sent are those read before it.
    pub const READ_FAILED: u32 = 4;
    /// The thread held the GIL at the event (meaningful with `begin_flags::GIL_KNOWN`).
    pub const HOLDS_GIL: u32 = 8;
    /// The stack kept changing while it was read (the target runs during an on-demand read):
    /// no frames are sent, rather than a mix of two moments.
    pub const RACED: u32 = 16;
}

/// One entry of a thread's frame chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameEntry {
    /// Code object address (tag bits cleared), 0 for a shim frame.
    pub code: u64,
    /// Raw value at `frame_instr`: `f_lasti` in the low 32 bits (≤3.10) or the instruction
    /// pointer (3.11+).
    pub instr: u64,
    /// `owner` byte (3.12+), else 0.
    pub owner: u32,
    pub flags: u32,
}

/// Header of a thread record; `nframes` `FrameEntry`s follow it in the same record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadHeader {
    pub kind: u32,
    pub flags: u32,
    pub capture_id: u64,
    pub thread_id: u64,
    pub native_id: u64,
    pub tstate: u64,
    /// Position in the interpreter's thread list (0 = head = newest).
    pub index: u32,
    pub nframes: u32,
}

/// Scratch layout of a whole thread record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadRecord {
    pub hdr: ThreadHeader,
    pub frames: [FrameEntry; MAX_CHAIN],
}

/// A copied `str` object.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyStr {
    /// Length in code points, as CPython stores it.
    pub length: u64,
    /// Bytes per code point (1, 2, 4); 0 when the object could not be read as a compact str.
    pub char_size: u32,
    /// Bytes copied into `data`.
    pub copied: u32,
    pub data: [u8; STR_MAX_BYTES],
}

/// Flags of a code record.
pub mod code_flags {
    pub const FILENAME_UNREADABLE: u32 = 1;
    pub const NAME_UNREADABLE: u32 = 2;
    pub const LINETABLE_UNREADABLE: u32 = 4;
    /// The line table was longer than `LINETABLE_MAX`; the copy holds its start.
    pub const LINETABLE_TRUNCATED: u32 = 8;
}

/// Everything needed to print a code object's frames after the process is gone. Sent once
/// per (process, code object); the record is written up to `linetable_copied` bytes of
/// `linetable`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CodeRecord {
    pub kind: u32,
    pub pid: u32,
    pub code: u64,
    pub firstlineno: i32,
    pub flags: u32,
    pub linetable_len: u64,
    pub linetable_copied: u32,
    pub _pad: u32,
    pub filename: PyStr,
    pub name: PyStr,
    pub linetable: [u8; LINETABLE_MAX],
}

/// Byte offset of `linetable` inside `CodeRecord`.
pub const CODE_RECORD_FIXED: usize = core::mem::size_of::<CodeRecord>() - LINETABLE_MAX;

/// Flags of a capture's end record.
pub mod end_flags {
    /// More threads than the capture's thread bound: faulthandler writes "...".
    pub const MORE_THREADS: u32 = 1;
    /// The interpreter or its thread list could not be read.
    pub const NO_INTERPRETER: u32 = 2;
    /// The walk ran out of `bpf_loop` steps.
    pub const STEPS_EXHAUSTED: u32 = 4;
    /// A capture of one thread found no thread state for it.
    pub const NO_THREAD_STATE: u32 = 8;
}

/// Last record of a capture.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureEnd {
    pub kind: u32,
    pub flags: u32,
    pub capture_id: u64,
    pub nthreads: u32,
    /// Records of this capture that did not fit in the ring buffer.
    pub lost_records: u32,
}

/// A signal reached a process the walker has no table for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Skipped {
    pub kind: u32,
    pub signal: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
}

/// Key of an on-demand dump's task snapshot: a thread by its process and its FS base (its
/// `pthread_self()`, the `thread_id` of its `PyThreadState`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub tgid: u32,
    pub _pad: u32,
    pub fsbase: u64,
}

/// One thread of a process dumped on demand, as the task iterator saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskSnapshot {
    /// Host tid.
    pub tid: u32,
    /// `task_struct.on_cpu`: the thread was running on a CPU.
    pub on_cpu: u32,
    /// The thread's name (`task_struct.comm`, what `pthread_setname_np` sets).
    pub comm: [u8; 16],
}

/// Walker counters: one per early exit or notable event, indexes into a per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Dumps started.
    Dumps = 0,
    /// Signal events for a process without a CPython table.
    NotPython,
    /// Signal events filtered out by `--pid`.
    PidFiltered,
    /// The interpreter pointer could not be read or was null.
    NoInterpreter,
    /// A thread state could not be read.
    ThreadReadFailed,
    /// A frame could not be read (stack kept up to it).
    FrameReadFailed,
    /// A code object's fields could not be read.
    CodeReadFailed,
    /// A `str` could not be read.
    StringReadFailed,
    /// A line table could not be read.
    LineTableReadFailed,
    /// A line table longer than `LINETABLE_MAX`.
    LineTableTruncated,
    /// Frame chains longer than `MAX_CHAIN` entries.
    ChainTooLong,
    /// Processes with more than `MAX_THREADS` threads.
    ThreadLimit,
    /// Walks that ran out of steps.
    StepsExhausted,
    /// Code records sent.
    CodesSent,
    /// Records lost because the ring buffer was full.
    RingbufFull,
    /// Per-CPU scratch unavailable (never expected).
    NoScratch,
    /// Walks that found another walk in progress on this CPU (nesting).
    Nested,
    /// Possible new CPython processes reported (exec of python*, library-list changes).
    Mapped,
    /// Traced processes whose exit or exec was reported.
    Exited,
    /// Children of traced processes made walkable at fork.
    Forked,
    /// Deliveries of signals other than the chosen ones (the walker returns at once).
    OtherSignal,
    /// Timer samples of a thread whose process has no CPython table (never reported).
    SampleNotPython,
    /// Captures of one thread that found no thread state for it.
    NoThreadState,
    /// Threads read again because their stack changed while it was read (a target that runs
    /// during the read: on-demand dumps).
    ThreadRetried,
    /// Threads whose stack kept changing while read: sent without frames, marked raced.
    ThreadRaced,
    /// Deliveries in a process whose death by this signal was already dumped (the other
    /// threads' SIGKILL, a core-dumping signal's followers).
    DeathAlreadyDumped,
    /// SIGKILL deliveries of a group exit that no watched signal caused (`exit_group`, exec).
    GroupExit,
    /// Watched signals refused to the sender by `--hold` (each one dumped on demand).
    Held,
}

pub const COUNTER_COUNT: u32 = Counter::Held as u32 + 1;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Dumps,
        Counter::NotPython,
        Counter::PidFiltered,
        Counter::NoInterpreter,
        Counter::ThreadReadFailed,
        Counter::FrameReadFailed,
        Counter::CodeReadFailed,
        Counter::StringReadFailed,
        Counter::LineTableReadFailed,
        Counter::LineTableTruncated,
        Counter::ChainTooLong,
        Counter::ThreadLimit,
        Counter::StepsExhausted,
        Counter::CodesSent,
        Counter::RingbufFull,
        Counter::NoScratch,
        Counter::Nested,
        Counter::Mapped,
        Counter::Exited,
        Counter::Forked,
        Counter::OtherSignal,
        Counter::SampleNotPython,
        Counter::NoThreadState,
        Counter::ThreadRetried,
        Counter::ThreadRaced,
        Counter::DeathAlreadyDumped,
        Counter::GroupExit,
        Counter::Held,
    ];

    /// Whether this counter counts something lost or incomplete (reported even without -v).
    pub const fn is_loss(self) -> bool {
        matches!(
            self,
            Counter::NoInterpreter
                | Counter::ThreadReadFailed
                | Counter::FrameReadFailed
                | Counter::CodeReadFailed
                | Counter::StringReadFailed
                | Counter::LineTableReadFailed
                | Counter::LineTableTruncated
                | Counter::ChainTooLong
                | Counter::StepsExhausted
                | Counter::RingbufFull
                | Counter::NoScratch
                | Counter::Nested
                | Counter::ThreadRaced
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Counter::Dumps => "dumps",
            Counter::NotPython => "not_python",
            Counter::PidFiltered => "pid_filtered",
            Counter::NoInterpreter => "no_interpreter",
            Counter::ThreadReadFailed => "thread_read_failed",
            Counter::FrameReadFailed => "frame_read_failed",
            Counter::CodeReadFailed => "code_read_failed",
            Counter::StringReadFailed => "string_read_failed",
            Counter::LineTableReadFailed => "linetable_read_failed",
            Counter::LineTableTruncated => "linetable_truncated",
            Counter::ChainTooLong => "chain_too_long",
            Counter::ThreadLimit => "thread_limit",
            Counter::StepsExhausted => "steps_exhausted",
            Counter::CodesSent => "codes_sent",
            Counter::RingbufFull => "ringbuf_full",
            Counter::NoScratch => "no_scratch",
            Counter::Nested => "nested",
            Counter::Mapped => "mapped",
            Counter::Exited => "exited",
            Counter::Forked => "forked",
            Counter::OtherSignal => "other_signal",
            Counter::SampleNotPython => "sample_not_python",
            Counter::NoThreadState => "no_thread_state",
            Counter::ThreadRetried => "thread_retried",
            Counter::ThreadRaced => "thread_raced",
            Counter::DeathAlreadyDumped => "death_already_dumped",
            Counter::GroupExit => "group_exit",
            Counter::Held => "held",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::ProcInfo {}
    unsafe impl aya::Pod for super::PyOffsets {}
    unsafe impl aya::Pod for super::TaskKey {}
    unsafe impl aya::Pod for super::TaskSnapshot {}
}
