//! The decoded, symbolized form of one capture (a signal's dump or a timer's sample): what
//! every output reads.
//!
//! Built by the decoder and symbolizer from ring-buffer records; never holds raw kernel
//! layouts.

/// A Python `str` as the kernel copied it: at most 501 code points, plus the true length.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PyText {
    /// The first code points of the string (at most `STR_MAX_CODEPOINTS + 1`).
    pub codepoints: Vec<u32>,
    /// Length of the whole string, in code points.
    pub length: u64,
}

impl PyText {
    pub fn from_text(s: &str) -> Self {
        let codepoints: Vec<u32> = s.chars().map(|c| c as u32).collect();
        PyText {
            length: codepoints.len() as u64,
            codepoints,
        }
    }

    /// Lossy Rust string of the copied part (lone surrogates become U+FFFD).
    pub fn to_string_lossy(&self) -> String {
        self.codepoints
            .iter()
            .map(|&c| char::from_u32(c).unwrap_or('\u{fffd}'))
            .collect()
    }
}

/// One Python frame, symbolized. `None` fields print as `???`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frame {
    pub filename: Option<PyText>,
    pub name: Option<PyText>,
    pub line: Option<i32>,
}

/// One entry of a thread's frame chain, in chain order (innermost first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainEntry {
    Frame(Frame),
    /// A shim / C-stack-owned frame (3.12+): faulthandler skips these.
    Shim,
}

/// One thread of the interpreter's thread list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ThreadStack {
    /// `PyThreadState.thread_id` (`pthread_self()`).
    pub thread_id: u64,
    /// `PyThreadState.native_thread_id` where the version has it.
    pub native_id: Option<u64>,
    /// The thread the trigger ran in (the one that received the signal).
    pub current: bool,
    /// The thread held the GIL at the event (meaningful when the capture's `gil_known`).
    pub holds_gil: bool,
    pub chain: Vec<ChainEntry>,
    /// The chain goes on past the last entry in `chain`.
    pub chain_continues: bool,
    /// A read failed part-way: the chain is incomplete.
    pub torn: bool,
    /// The stack kept changing while it was read (on-demand dumps of a running target): no
    /// frames are kept rather than a mix of two moments. Also `torn`.
    pub raced: bool,
    /// What the kernel's task said of this thread at an on-demand dump: its host tid, its
    /// name (`comm`), whether it was on a CPU. `None` for other captures.
    pub task: Option<ThreadTask>,
}

/// A thread's kernel task at an on-demand dump.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ThreadTask {
    pub tid: u32,
    pub name: String,
    pub on_cpu: bool,
}

/// Why a capture was taken, and what the trigger adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerInfo {
    /// Delivery of a chosen signal to the thread `Capture::tid`.
    Signal {
        signal: u32,
        /// The process that sent it (host PID), when a process did.
        sender_pid: Option<u32>,
    },
    /// A CPU-clock tick that interrupted the thread `Capture::tid` on this CPU.
    Timer { cpu: u32 },
    /// `pytrace dump` without a signal: read from outside the process (`Capture::tid` is the
    /// task the read went through). The thread marked current is the GIL holder, if known.
    OnDemand,
}

impl Default for TriggerInfo {
    fn default() -> Self {
        TriggerInfo::Signal {
            signal: 0,
            sender_pid: None,
        }
    }
}

/// One capture of one process.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Capture {
    /// Host tgid and tid of the thread the trigger ran in.
    pub pid: u32,
    pub tid: u32,
    /// Same ids as seen inside the target's PID namespace, where they differ.
    pub ns_pid: Option<u32>,
    pub ns_tid: Option<u32>,
    pub trigger: TriggerInfo,
    /// Wall-clock time of the event, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub comm: String,
    /// (major, minor, micro) of the target's CPython.
    pub python_version: (u8, u8, u8),
    /// `interp->gc.collecting` was set.
    pub gc_collecting: bool,
    /// Threads in list order (head = newest first), at most the trigger's thread bound (a
    /// timer sample holds only the interrupted thread).
    pub threads: Vec<ThreadStack>,
    /// The list held more threads than the bound.
    pub more_threads: bool,
    /// The interpreter or its thread list could not be read (not initialised yet, or gone).
    pub no_interpreter: bool,
    /// A capture of one thread found no thread state for it (not a Python thread).
    pub no_thread_state: bool,
    /// The GIL could be read: `ThreadStack::holds_gil` is meaningful.
    pub gil_known: bool,
    /// Frames whose code object could not be symbolized.
    pub unsymbolized_frames: u32,
    /// Records of this dump lost in the ring buffer.
    pub lost_records: u32,
}
