//! The decoded, symbolized form of one dump: what every output format reads.
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
    /// The thread that received the signal.
    pub current: bool,
    pub chain: Vec<ChainEntry>,
    /// The chain goes on past the last entry in `chain`.
    pub chain_continues: bool,
    /// A read failed part-way: the chain is incomplete.
    pub torn: bool,
    /// The OS name of the thread when the dump began (the kernel's `comm`: raw bytes, at most
    /// 15, cut by the kernel even inside a UTF-8 sequence). `None` when no OS thread of the
    /// process has this thread's id, or when the names could not be read (then
    /// [`Dump::thread_names_unknown`] is set).
    pub os_name: Option<Vec<u8>>,
    /// The target itself could read that name when it dumped: always for the thread that
    /// received the signal (`prctl(PR_GET_NAME)`), for the others only through a `/proc`
    /// whose numbering is the target's own. faulthandler prints only names it can read.
    pub name_seen_by_target: bool,
}

/// One dump of one process.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dump {
    /// Host tgid and tid of the receiving thread.
    pub pid: u32,
    pub tid: u32,
    /// Same ids as seen inside the target's PID namespace, where they differ.
    pub ns_pid: Option<u32>,
    pub ns_tid: Option<u32>,
    pub signal: u32,
    pub sender_pid: Option<u32>,
    /// Wall-clock time of the event, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub comm: String,
    /// (major, minor, micro) of the target's CPython.
    pub python_version: (u8, u8, u8),
    /// `interp->gc.collecting` was set.
    pub gc_collecting: bool,
    /// Threads in list order (head = newest first), at most `MAX_THREADS`.
    pub threads: Vec<ThreadStack>,
    /// The list held more than `MAX_THREADS` threads.
    pub more_threads: bool,
    /// Frames whose code object could not be symbolized.
    pub unsymbolized_frames: u32,
    /// Records of this dump lost in the ring buffer.
    pub lost_records: u32,
    /// The OS names of some threads could not be read (the kernel's thread list was not
    /// readable, or held more than `MAX_TASKS` threads).
    pub thread_names_unknown: bool,
}
