//! Layouts shared by the kernel walker (`pyspy-ebpf`) and the loader (`pyspy-user`).
//!
//! Everything here is `#[repr(C)]` plain data: the per-process table of CPython offsets the
//! loader writes into a map, the records the walker writes into the ring buffer, and the names
//! of the walker's counters. Both sides compile this same file, so a layout change is one edit.
//! Also the walker's decoding of one frame (`FrameRead`, `tlbc`), which unit tests run on
//! memory laid out from CPython's headers.
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
/// Bytes of a code object's line table carried by its code record (lnotab / linetable /
/// locations); the rest follows in continuation records of this size.
pub const LINETABLE_MAX: usize = 16384;
/// The bit of signal `sig` (1 to 64: bit `sig - 1`, so that `SIGRTMAX` fits) in the mask of
/// signals that trigger a dump; 0 for a number outside that range.
#[inline(always)]
pub const fn signal_bit(sig: u32) -> u64 {
    if sig >= 1 && sig <= 64 {
        1u64 << (sig - 1)
    } else {
        0
    }
}

/// Interpreters walked per dump (the main one and its sub-interpreters, newest first).
pub const MAX_INTERPRETERS: u32 = 8;
/// `bpf_loop` iterations for one dump: every interpreter costs one step; every thread one
/// start step, one step per chain entry and one finish step. Each interpreter's list is cut
/// at `MAX_THREADS`; the whole walk gets the steps of two full lists, so a process with
/// sub-interpreters is read in full unless their threads are very many and very deep (the
/// dump then says the walk ran out of steps).
pub const WALK_STEPS: u32 = 2 * MAX_THREADS * (MAX_CHAIN as u32 + 2) + MAX_INTERPRETERS + 8;
/// Threads a capture of one thread passes over looking for it before giving up.
pub const MAX_SCAN_THREADS: u32 = 4096;
/// Longest line table the kernel copies (the start of a longer one is sent, marked truncated).
pub const LINETABLE_LIMIT: usize = 256 * 1024;
/// Continuation records after a code record: `LINETABLE_LIMIT` in `LINETABLE_MAX` pieces.
pub const LINETABLE_CHUNKS: u32 = (LINETABLE_LIMIT / LINETABLE_MAX) as u32 - 1;
/// Largest span of a frame's fields (`frame_previous`, `frame_code`, `frame_instr`,
/// `frame_owner`) read in one user-memory read, 8-byte aligned.
pub const FRAME_WINDOW_MAX: u32 = 128;
/// Target memory page: a data-stack read (`ReadWindows::stack`) covers the frame's page from
/// its start, mapped whenever the frame is.
pub const STACK_PAGE: u64 = 4096;
/// Largest data-stack read: the part of a page below a frame's window, and that window.
pub const STACK_WINDOW_MAX: u32 = STACK_PAGE as u32 + FRAME_WINDOW_MAX;
/// Largest span of a code object's header fields (`code_firstlineno` … `code_linetable`) read
/// in one user-memory read, 8-byte aligned.
pub const CODE_WINDOW_MAX: u32 = 128;
/// Largest span of a `str` or `bytes` header read in one piece.
pub const HEADER_WINDOW_MAX: u32 = 40;
/// Bytes of a line table's data read with its header (mixed into the code's fingerprint).
/// Every `bytes` object's allocation extends at least this far past `ob_sval`.
pub const BYTES_PREFIX: u32 = 8;

/// OS threads of the target whose names one dump records (`tasks.rs`): faulthandler names
/// at most `MAX_THREADS` Python threads, and a process may run other threads besides.
pub const MAX_TASKS: usize = 256;
/// `TASK_COMM_LEN`: the kernel's thread names, NUL-padded, at most 15 bytes.
pub const COMM_LEN: usize = 16;

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
    /// `PyInterpreterState` → `next` (the interpreter list runs newest first).
    pub interp_next: u32,
    /// `PyThreadState` → `_status` (a word of bit fields, 3.12+); `NO_OFFSET` before.
    pub tstate_status: u32,
    /// Bits to shift `PyASCIIObject.state` right by before reading it with the
    /// `UNICODE_*` constants: 0, or 6 in free-threaded builds, whose `interned` is a whole
    /// byte rather than a 2-bit field.
    pub unicode_state_shift: u32,
    /// Frame → `tlbc_index` (`int32_t`, free-threaded 3.14+): which per-thread copy of the
    /// bytecode `frame_instr` points into; `NO_OFFSET` where frames run the code object's
    /// own `co_code_adaptive`.
    pub frame_tlbc_index: u32,
    /// `PyCodeObject` → `co_tlbc` (`_PyCodeArray *`: `Py_ssize_t size; char *entries[]`,
    /// `entries[0]` being `co_code_adaptive`), free-threaded 3.14+; else `NO_OFFSET`.
    pub code_tlbc: u32,
    /// `PyCodeObject` → `co_version` (uint32, 3.12+): a serial number each code object gets as
    /// it is made, from a counter that only grows (it stops at 0 once exhausted), so a code
    /// object made later at a freed one's address has another; `NO_OFFSET` where code objects
    /// have none.
    pub code_version: u32,
}

/// Per-thread bytecode copies of free-threaded CPython 3.14+ (`Py_GIL_DISABLED`): each thread
/// may run its own specialized copy of a code object's bytecode, and a frame's `instr_ptr` then
/// points into `co->co_tlbc->entries[frame->tlbc_index]` rather than into `co_code_adaptive`.
/// [`tlbc::offset`] finds the byte offset CPython's `_PyInterpreterFrame_LASTI` computes
/// (through `_PyFrame_GetBytecode`); the walker calls it with its bounded reads of the target,
/// unit tests with memory laid out from the headers.
pub mod tlbc {
    /// `_PyCodeArray` → `entries` (after its `Py_ssize_t size`).
    pub const ENTRIES: u64 = 8;
    /// Highest `tlbc_index` followed: indices are handed out smallest-first to live threads,
    /// so a larger one (or a negative `int32_t`, read unsigned) is taken as garbage.
    pub const MAX_INDEX: u32 = 1 << 16;

    /// Why a frame's copy could not be found.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        /// The index is negative, above `MAX_INDEX`, or not below the array's `size`: CPython's
        /// own assertion (`0 <= tlbc_index < tlbc->size`) would refuse it.
        IndexInvalid,
        /// The array or its entry could not be read, or was null.
        ReadFailed,
    }

    /// Byte offset of `instr` into copy `index` of the bytecode of the code object at `code`:
    /// `instr - co_tlbc->entries[index]`, with `co_tlbc` at `code + code_tlbc`. `read_u64`
    /// reads 8 bytes of the target. Copy 0 is the code object's own `co_code_adaptive`
    /// (`entries[0]`, always): callers need not come here for it.
    #[inline(always)]
    pub fn offset(
        mut read_u64: impl FnMut(u64) -> Option<u64>,
        code: u64,
        code_tlbc: u32,
        index: u32,
        instr: u64,
    ) -> Result<u64, Error> {
        if index > MAX_INDEX {
            return Err(Error::IndexInvalid);
        }
        let array = read_u64(code.wrapping_add(code_tlbc as u64))
            .filter(|&a| a != 0)
            .ok_or(Error::ReadFailed)?;
        // `Py_ssize_t size`: the copies the array has room for.
        let size = read_u64(array).ok_or(Error::ReadFailed)? as i64;
        if (index as i64) >= size {
            return Err(Error::IndexInvalid);
        }
        let entry = read_u64(array.wrapping_add(ENTRIES + 8 * index as u64))
            .filter(|&e| e != 0)
            .ok_or(Error::ReadFailed)?;
        Ok(instr.wrapping_sub(entry))
    }
}

/// Bits of `PyASCIIObject.state` (unchanged from 3.3 to 3.15 in builds with a GIL; see
/// `PyOffsets::unicode_state_shift` for free-threaded ones).
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
    pub gil: GilInfo,
    pub windows: ReadWindows,
}

/// The spans read in one piece: each starts 8-byte aligned at or below the first field it
/// covers and ends right after the last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadWindows {
    pub frame_start: u32,
    pub frame_len: u32,
    pub code_start: u32,
    pub code_len: u32,
    /// A `str`'s `length` … `state` (the cached hash lies between).
    pub str_start: u32,
    pub str_len: u32,
    /// A `bytes` object's `ob_size` … the first `BYTES_PREFIX` bytes of its data.
    pub bytes_start: u32,
    pub bytes_len: u32,
    /// 1 when frames live on their thread's data stack, each caller right below its callee
    /// (3.11+; set by user space from the version, 0 from `of`): the walker reads a frame's
    /// page up to it in one piece and finds the callers there (`STACK_WINDOW_MAX`); 0: one
    /// read per frame.
    pub stack: u32,
    pub _pad: u32,
}

impl ReadWindows {
    /// The windows for a layout; `None` when a span exceeds its bound (no supported layout).
    pub fn of(off: &PyOffsets) -> Option<Self> {
        let (frame_start, frame_len) = span(
            &[
                (off.frame_previous, 8),
                (off.frame_code, 8),
                (off.frame_instr, 8),
                (off.frame_owner, 1),
                (off.frame_tlbc_index, 4),
            ],
            FRAME_WINDOW_MAX,
        )?;
        let (code_start, code_len) = span(
            &[
                (off.code_firstlineno, 4),
                (off.code_filename, 8),
                (off.code_name, 8),
                (off.code_linetable, 8),
                (off.code_version, 4),
            ],
            CODE_WINDOW_MAX,
        )?;
        let (str_start, str_len) = span(
            &[(off.unicode_length, 8), (off.unicode_state, 4)],
            HEADER_WINDOW_MAX,
        )?;
        let (bytes_start, bytes_len) = span(
            &[(off.bytes_size, 8), (off.bytes_data, BYTES_PREFIX)],
            HEADER_WINDOW_MAX,
        )?;
        Some(ReadWindows {
            frame_start,
            frame_len,
            code_start,
            code_len,
            str_start,
            str_len,
            bytes_start,
            bytes_len,
            stack: 0,
            _pad: 0,
        })
    }
}

/// `[start, start + len)` covering every (offset, size) field that exists, `start` rounded
/// down to 8 bytes.
fn span(fields: &[(u32, u32)], max: u32) -> Option<(u32, u32)> {
    let mut lo = u32::MAX;
    let mut hi = 0;
    for &(f, size) in fields {
        if f == NO_OFFSET {
            continue;
        }
        lo = lo.min(f & !7);
        hi = hi.max(f.checked_add(size)?);
    }
    let len = hi.checked_sub(lo)?;
    (len <= max).then_some((lo, len))
}

/// Where a process's GIL is (`last_holder` = `NO_OFFSET`: unknown).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GilInfo {
    /// Address of the `_gil_runtime_state` (3.7–3.11), or 0.
    pub addr: u64,
    /// Else: offset in `PyInterpreterState` of a pointer to it (3.12+), or `NO_OFFSET`.
    pub interp_ptr: u32,
    /// `_gil_runtime_state` → `last_holder` (thread-state pointer).
    pub last_holder: u32,
    /// `_gil_runtime_state` → `locked` (int).
    pub locked: u32,
    pub _pad: u32,
}

impl Default for GilInfo {
    fn default() -> Self {
        GilInfo {
            addr: 0,
            interp_ptr: NO_OFFSET,
            last_holder: NO_OFFSET,
            locked: NO_OFFSET,
            _pad: 0,
        }
    }
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
    pub const CODE_CHUNK: u32 = 10;
    pub const TASKS: u32 = 11;
    pub const HELD: u32 = 12;
    /// A whole timer sample in one record (`SampleHeader`, then at most one thread).
    pub const SAMPLE: u32 = 13;
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
    pub version_hex: u32,
    /// `begin_flags::*`.
    pub flags: u32,
    pub _pad: u32,
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
    /// Its `thread_id` equals the receiving thread's `pthread_self()`. Whether it is the
    /// thread state faulthandler calls current is for user space to decide (several thread
    /// states can carry one id).
    pub const RECEIVER_ID: u32 = 1;
    /// The frame chain goes on past the last entry sent.
    pub const CHAIN_CONTINUES: u32 = 2;
    /// A read of the chain failed; the entries sent are those read before it.
    pub const READ_FAILED: u32 = 4;
    /// The thread held the GIL at the event (meaningful with `begin_flags::GIL_KNOWN`).
    pub const HOLDS_GIL: u32 = 8;
    /// `_status` could not be read (`ThreadHeader::status` is 0).
    pub const STATUS_UNREADABLE: u32 = 16;
    /// The stack kept changing while it was read (the target runs during an on-demand read):
    /// no frames are sent, rather than a mix of two moments.
    pub const RACED: u32 = 32;
}

/// Flags of a frame-chain entry.
pub mod frame_flags {
    /// `instr` is a byte offset into the thread's own copy of the bytecode
    /// (`co_tlbc->entries[tlbc_index]`, free-threaded 3.14+), not an address.
    pub const INSTR_OFFSET: u32 = 1;
    /// The frame runs a per-thread bytecode copy that could not be read (an index out of the
    /// array's range, an unreadable array or entry): its line is unknown.
    pub const TLBC_UNREADABLE: u32 = 2;
}

/// Fields of a target structure read in one piece (the kernel's `Window`; in unit tests,
/// bytes laid out from CPython's headers): 0 for a field outside what was read.
pub trait Fields {
    /// The pointer-sized field at structure offset `off`.
    fn u64_at(&self, off: u32) -> u64;
    /// The 4-byte field at structure offset `off`.
    fn u32_at(&self, off: u32) -> u32;
    /// The byte at structure offset `off`.
    fn u8_at(&self, off: u32) -> u8;
}

/// Code objects are at least 8-byte aligned; 3.14 keeps tag bits in `f_executable`.
pub const CODE_TAG_MASK: u64 = !0b111;

/// One frame as the walker decodes it from its window: what a chain entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRead {
    /// The code word as read (tag bits kept): the race check compares it.
    pub raw_code: u64,
    /// Code object address, tag bits cleared; 0 for a shim.
    pub code: u64,
    /// As `FrameEntry::instr`.
    pub instr: u64,
    pub previous: u64,
    pub owner: u32,
    /// Owned by the C stack or the interpreter (`owner >= frame_owner_shim_min`): no code
    /// record.
    pub shim: bool,
    /// `int32_t tlbc_index` (free-threaded 3.14+) as read, else 0.
    pub tlbc_index: u32,
    /// `frame_flags::*` for the entry.
    pub flags: u32,
}

impl FrameRead {
    /// Decodes a frame's window. A shim keeps no code address (it gets no code record); its
    /// instruction is kept relative to its code object, which is all faulthandler's line for
    /// it depends on.
    #[inline(always)]
    pub fn of(off: &PyOffsets, w: &impl Fields) -> Self {
        let raw_code = w.u64_at(off.frame_code);
        let instr = w.u64_at(off.frame_instr);
        let owner = if off.frame_owner != NO_OFFSET {
            w.u8_at(off.frame_owner) as u32
        } else {
            0
        };
        let shim = off.frame_owner_shim_min != NO_OFFSET && owner >= off.frame_owner_shim_min;
        let code = raw_code & CODE_TAG_MASK;
        FrameRead {
            raw_code,
            code: if shim { 0 } else { code },
            instr: if shim {
                instr.wrapping_sub(code)
            } else {
                instr
            },
            previous: w.u64_at(off.frame_previous),
            owner,
            shim,
            tlbc_index: if off.frame_tlbc_index != NO_OFFSET {
                w.u32_at(off.frame_tlbc_index)
            } else {
                0
            },
            flags: 0,
        }
    }

    /// Free-threaded 3.14+: a frame running its thread's own copy of the bytecode (index not
    /// 0) gets its instruction as an offset into that copy (`frame_flags::INSTR_OFFSET`), or,
    /// when the copy cannot be found, `frame_flags::TLBC_UNREADABLE` and the reason. Shims
    /// print no line there; every other frame is left as it is.
    #[inline(always)]
    pub fn in_own_copy(
        &mut self,
        code_tlbc: u32,
        read_u64: impl FnMut(u64) -> Option<u64>,
    ) -> Result<(), tlbc::Error> {
        if self.shim || self.tlbc_index == 0 {
            return Ok(());
        }
        match tlbc::offset(read_u64, self.code, code_tlbc, self.tlbc_index, self.instr) {
            Ok(offset) => {
                self.instr = offset;
                self.flags = frame_flags::INSTR_OFFSET;
                Ok(())
            }
            Err(e) => {
                self.flags = frame_flags::TLBC_UNREADABLE;
                Err(e)
            }
        }
    }
}

/// One entry of a thread's frame chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameEntry {
    /// Code object address (tag bits cleared), 0 for a shim frame.
    pub code: u64,
    /// Raw value at `frame_instr`: `f_lasti` in the low 32 bits (≤3.10) or the instruction
    /// pointer (3.11+); for a shim frame, the instruction pointer minus its code object's
    /// address; with `frame_flags::INSTR_OFFSET`, the byte offset into the thread's
    /// bytecode copy.
    pub instr: u64,
    /// Fingerprint of the code object as read in this dump (0: its header could not be
    /// read): the frame is symbolized only with the code record of the same fingerprint.
    pub fingerprint: u64,
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
    /// Position in the walk: interpreters in list order, each one's threads in list order
    /// (0 = head of the newest interpreter).
    pub index: u32,
    pub nframes: u32,
    /// The `PyInterpreterState` this thread state belongs to.
    pub interp: u64,
    /// Position of that interpreter in the interpreter list (0 = head = newest).
    pub interp_index: u32,
    /// The thread state's `_status` word (3.12+), else 0.
    pub status: u32,
}

/// Scratch layout of a whole thread record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadRecord {
    pub hdr: ThreadHeader,
    pub frames: [FrameEntry; MAX_CHAIN],
}

/// A whole timer sample in one record: the capture's begin and end records as they would
/// have been sent, then, when `end.nthreads` is 1, the sampled thread's header and its
/// `nframes` chain entries (the record is cut after the last entry, or after this header
/// when no thread was found). One ring-buffer write per sample instead of three.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleHeader {
    pub kind: u32,
    pub _pad: u32,
    pub begin: CaptureBegin,
    pub end: CaptureEnd,
}

/// Scratch layout of a whole sample record (and of every thread record: the walker builds a
/// thread in `thread`, whatever the trigger).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SampleRecord {
    pub head: SampleHeader,
    pub thread: ThreadRecord,
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
    /// The line table was longer than `LINETABLE_LIMIT`; the copies hold its start.
    pub const LINETABLE_TRUNCATED: u32 = 8;
}

/// Everything needed to print a code object's frames after the process is gone. Sent once
/// per (process, code object, fingerprint); the record is written up to `linetable_copied`
/// bytes of `linetable`, and a longer table continues in `CodeChunk` records.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CodeRecord {
    pub kind: u32,
    pub pid: u32,
    pub code: u64,
    /// What the frames that use this record carry (see `FrameEntry::fingerprint`).
    pub fingerprint: u64,
    pub firstlineno: i32,
    pub flags: u32,
    /// Size of the whole line table in the target.
    pub linetable_len: u64,
    pub linetable_copied: u32,
    /// `ProcInfo::generation` of the process when it was sent (part of the kernel's key).
    pub generation: u32,
    pub filename: PyStr,
    pub name: PyStr,
    pub linetable: [u8; LINETABLE_MAX],
}

/// Byte offset of `linetable` inside `CodeRecord`.
pub const CODE_RECORD_FIXED: usize = core::mem::size_of::<CodeRecord>() - LINETABLE_MAX;

/// The next `len` bytes of a code record's line table, from byte `offset`; sent right after
/// the code record (or the previous piece), written up to `len` bytes of `data`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CodeChunk {
    pub kind: u32,
    pub pid: u32,
    pub code: u64,
    pub fingerprint: u64,
    pub offset: u32,
    pub len: u32,
    pub data: [u8; LINETABLE_MAX],
}

/// Byte offset of `data` inside `CodeChunk`.
pub const CODE_CHUNK_FIXED: usize = core::mem::size_of::<CodeChunk>() - LINETABLE_MAX;

/// Key of the kernel's "already sent" cache (`SENT_CODES`): a code record is sent again when
/// any part differs. User space removes a key when it drops the record, so the kernel sends
/// it again when it is next needed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodeKey {
    pub pid: u32,
    pub generation: u32,
    pub code: u64,
    pub fingerprint: u64,
}

/// Flags of a capture's end record.
/// One OS thread of the target, as the kernel saw it when the dump began.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskName {
    /// Host tid (`task_struct.pid`).
    pub tid: u32,
    pub _pad: u32,
    /// `task_struct.thread.fsbase`: the thread's `pthread_self()` on glibc x86_64, which is
    /// its `PyThreadState.thread_id`.
    pub fsbase: u64,
    /// `task_struct.comm`: the thread's name, raw bytes, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Flags of a task-names record.
pub mod task_flags {
    /// The thread group held more than `MAX_TASKS` threads; the rest are not listed.
    pub const MORE_TASKS: u32 = 1;
    /// A read of the thread list failed; the tasks listed are those read before it.
    pub const READ_FAILED: u32 = 2;
    /// This kernel's BTF lacks the thread-list members: no task was listed.
    pub const UNSUPPORTED: u32 = 4;
}

/// Header of a task-names record, sent right after `DumpBegin`; `count` `TaskName`s follow
/// it in the same record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskNamesHeader {
    pub kind: u32,
    pub flags: u32,
    pub dump_id: u64,
    pub count: u32,
    pub _pad: u32,
}

/// Scratch layout of a whole task-names record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskNames {
    pub hdr: TaskNamesHeader,
    pub tasks: [TaskName; MAX_TASKS],
}

/// Flags of a dump's end record.
pub mod end_flags {
    /// An interpreter had more threads than the capture's thread bound (which one:
    /// `CaptureEnd::more_threads_mask`): faulthandler writes "...".
    pub const MORE_THREADS: u32 = 1;
    /// The interpreter list is empty: libpython is loaded but not initialised (or finalised).
    pub const NO_INTERPRETER: u32 = 2;
    /// The walk ran out of `bpf_loop` steps.
    pub const STEPS_EXHAUSTED: u32 = 4;
    /// A capture of one thread found no thread state for it.
    pub const NO_THREAD_STATE: u32 = 8;
    /// The head of the interpreter list could not be read.
    pub const INTERP_UNREADABLE: u32 = 16;
    /// The interpreter list goes on past `MAX_INTERPRETERS`.
    pub const MORE_INTERPRETERS: u32 = 32;
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
    /// Interpreters walked (entries of `interps`).
    pub ninterps: u32,
    /// Bit i: interpreter i's thread list went on past `MAX_THREADS`.
    pub more_threads_mask: u32,
    /// Bit i: interpreter i (or its `next`, or a thread state of it) could not be read.
    pub unreadable_mask: u32,
    /// Bit i: interpreter i's `gc.collecting` was set (where the version prints it).
    pub gc_mask: u32,
    /// Addresses of the interpreters walked, in list order.
    pub interps: [u64; MAX_INTERPRETERS as usize],
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
    /// Dumps started (signal deliveries and on-demand dumps; timer samples are `Samples`).
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
    /// A line table longer than `LINETABLE_LIMIT`.
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
    /// A read of the target's thread list (for thread names) failed.
    TaskReadFailed,
    /// Processes with more than `MAX_TASKS` OS threads (names of the rest not recorded).
    TaskLimit,
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
    /// Frames whose per-thread bytecode copy index (free-threaded 3.14+) is negative or
    /// beyond the code object's array of copies: sent with an unknown line.
    TlbcIndexInvalid,
    /// Frames whose per-thread bytecode copy (the code object's array of copies, or its
    /// entry) could not be read or was null: sent with an unknown line.
    TlbcReadFailed,
    /// Timer samples started: ticks in a thread of a traced process. Each one reaches user
    /// space as a capture, or is counted by `Nested`, `NotBegun` or `NoScratch`.
    Samples,
    /// Code objects proven, by their `co_version` and header, to be one already proven and
    /// sent from this CPU: its strings and line table were not read again.
    CodesByVersion,
    /// Captures lost whole: their begin record (a timer sample's one record) did not fit in
    /// the ring buffer (the record is also counted by `RingbufFull`).
    NotBegun,
    /// Captures timed under `record --time-phases` (the benchmark's); the three counters
    /// below are their nanoseconds by phase, each including one clock read.
    PhaseTimed,
    /// Beginning: the process look-up, the walk state, the GIL.
    PhaseBeginNs,
    /// Walking the thread(s).
    PhaseWalkNs,
    /// Finishing: the end or sample record written.
    PhaseFinishNs,
}

pub const COUNTER_COUNT: u32 = Counter::PhaseFinishNs as u32 + 1;

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
        Counter::TaskReadFailed,
        Counter::TaskLimit,
        Counter::ThreadRetried,
        Counter::ThreadRaced,
        Counter::DeathAlreadyDumped,
        Counter::GroupExit,
        Counter::Held,
        Counter::TlbcIndexInvalid,
        Counter::TlbcReadFailed,
        Counter::Samples,
        Counter::CodesByVersion,
        Counter::NotBegun,
        Counter::PhaseTimed,
        Counter::PhaseBeginNs,
        Counter::PhaseWalkNs,
        Counter::PhaseFinishNs,
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
                | Counter::TaskReadFailed
                | Counter::TaskLimit
                | Counter::ThreadRaced
                | Counter::TlbcIndexInvalid
                | Counter::TlbcReadFailed
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
            Counter::TaskReadFailed => "task_read_failed",
            Counter::TaskLimit => "task_limit",
            Counter::ThreadRetried => "thread_retried",
            Counter::ThreadRaced => "thread_raced",
            Counter::DeathAlreadyDumped => "death_already_dumped",
            Counter::GroupExit => "group_exit",
            Counter::Held => "held",
            Counter::TlbcIndexInvalid => "tlbc_index_invalid",
            Counter::TlbcReadFailed => "tlbc_read_failed",
            Counter::Samples => "samples_started",
            Counter::CodesByVersion => "codes_by_version",
            Counter::NotBegun => "not_begun",
            Counter::PhaseTimed => "phase_timed",
            Counter::PhaseBeginNs => "phase_begin_ns",
            Counter::PhaseWalkNs => "phase_walk_ns",
            Counter::PhaseFinishNs => "phase_finish_ns",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::ProcInfo {}
    unsafe impl aya::Pod for super::PyOffsets {}
    unsafe impl aya::Pod for super::CodeKey {}
    unsafe impl aya::Pod for super::TaskKey {}
    unsafe impl aya::Pod for super::TaskSnapshot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_field_and_round_down() {
        let off = PyOffsets {
            frame_previous: 8,
            frame_code: 0,
            frame_instr: 56,
            frame_owner: 70,
            code_firstlineno: 68,
            code_filename: 112,
            code_name: 120,
            code_linetable: 136,
            unicode_length: 16,
            unicode_state: 32,
            bytes_size: 16,
            bytes_data: 32,
            code_version: 92,
            ..Default::default()
        };
        let w = ReadWindows::of(&off).unwrap();
        assert_eq!((w.frame_start, w.frame_len), (0, 71));
        assert_eq!((w.code_start, w.code_len), (64, 80));
        assert_eq!((w.str_start, w.str_len), (16, 20));
        assert_eq!((w.bytes_start, w.bytes_len), (16, 24));
        // A field that does not exist does not count; one too far makes the layout unusable.
        let no_owner = PyOffsets {
            frame_owner: NO_OFFSET,
            ..off
        };
        assert_eq!(ReadWindows::of(&no_owner).unwrap().frame_len, 64);
        // A version without `co_version` reads the same code window (3.12 has it inside).
        let no_version = PyOffsets {
            code_version: NO_OFFSET,
            ..off
        };
        assert_eq!(ReadWindows::of(&no_version), ReadWindows::of(&off));
        let far = PyOffsets {
            frame_instr: 400,
            ..off
        };
        assert!(ReadWindows::of(&far).is_none());
        // A free-threaded frame's `tlbc_index` is read with the other fields.
        let tlbc = PyOffsets {
            frame_tlbc_index: 72,
            ..off
        };
        assert_eq!(ReadWindows::of(&tlbc).unwrap().frame_len, 76);
    }

    /// A `_PyCodeArray` of 3 copies at 0x9000 for a code object at 0x1000 whose `co_tlbc` is
    /// at 0xe0; copy 2 at 0x7000; copy 1 never made (null).
    fn tlbc_memory(addr: u64) -> Option<u64> {
        match addr {
            0x10e0 => Some(0x9000),
            0x9000 => Some(3),
            0x9008 => Some(0x10e8),
            0x9010 => Some(0),
            0x9018 => Some(0x7000),
            _ => None,
        }
    }

    #[test]
    fn tlbc_offset_is_relative_to_the_frames_copy() {
        assert_eq!(tlbc::offset(tlbc_memory, 0x1000, 0xe0, 2, 0x700a), Ok(10));
        // Out of the array's range, negative, beyond the bound: never read past the array.
        for index in [3, u32::MAX, (-1i32) as u32, tlbc::MAX_INDEX + 1] {
            assert_eq!(
                tlbc::offset(tlbc_memory, 0x1000, 0xe0, index, 0x700a),
                Err(tlbc::Error::IndexInvalid),
                "{index}"
            );
        }
        // A null entry, an unreadable or null array.
        assert_eq!(
            tlbc::offset(tlbc_memory, 0x1000, 0xe0, 1, 0x700a),
            Err(tlbc::Error::ReadFailed)
        );
        assert_eq!(
            tlbc::offset(tlbc_memory, 0x2000, 0xe0, 1, 0x700a),
            Err(tlbc::Error::ReadFailed)
        );
        assert_eq!(
            tlbc::offset(|_| Some(0), 0x1000, 0xe0, 1, 0x700a),
            Err(tlbc::Error::ReadFailed)
        );
    }
}
