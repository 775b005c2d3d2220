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
    /// A shim / C-stack-owned frame (3.12+): faulthandler skips these, but for the cases
    /// where its frame loop prints one.
    Shim {
        /// Its instruction pointer is before its code object's first instruction.
        before_start: bool,
    },
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
    /// Position of its interpreter in the process's interpreter list (0 = newest).
    pub interp: u32,
    /// The OS name of the thread when the dump began (the kernel's `comm`: raw bytes, at most
    /// 15, cut by the kernel even inside a UTF-8 sequence). `None` when no OS thread of the
    /// process has this thread's id, or when the names could not be read (then
    /// [`Dump::thread_names_unknown`] is set).
    pub os_name: Option<Vec<u8>>,
    /// The target itself could read that name when it dumped: always for the thread that
    /// received the signal (`prctl(PR_GET_NAME)`), for the others only through a `/proc`
    /// whose numbering is the target's own. faulthandler prints only names it can read.
    pub name_seen_by_target: bool,
    /// The stack kept changing while it was read (on-demand dumps of a running target): no
    /// frames are kept rather than a mix of two moments. Also `torn`.
    pub raced: bool,
    /// What the kernel's task said of this thread at an on-demand dump: its host tid, its
    /// name (`comm`), whether it was on a CPU. `None` for other captures.
    pub task: Option<ThreadTask>,
    /// `pytrace dump --stuck`: for how long, in milliseconds, this stack has been read the
    /// same at every round (at least; from its first such read). `None` for other captures.
    pub unchanged_ms: Option<u64>,
}

/// A thread's kernel task at an on-demand dump.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ThreadTask {
    pub tid: u32,
    pub name: String,
    pub on_cpu: bool,
}

/// One interpreter of the process (the main one or a sub-interpreter).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Interpreter {
    /// Position in the interpreter list (0 = head = newest; the main one is the oldest).
    pub index: u32,
    /// Address of its `PyInterpreterState`.
    pub address: u64,
    pub main: bool,
    /// The one whose threads faulthandler prints.
    pub dumped: bool,
    /// Its thread list went on past `MAX_THREADS`.
    pub more_threads: bool,
    /// Part of it (its thread list, a thread state, its `next`) could not be read.
    pub unreadable: bool,
}

/// Whether the target had a Python interpreter to dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InterpreterState {
    #[default]
    Initialised,
    /// The interpreter list is empty: libpython is loaded but `Py_Initialize` has not run
    /// (or `Py_Finalize` has).
    NotInitialised,
    /// The interpreter list could not be read.
    Unreadable,
}

/// What a signal does to the process that receives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignalAction {
    /// Not known (the action could not be read).
    #[default]
    Unknown,
    /// A handler the process installed runs.
    Handler,
    /// The default action kills the process.
    Kill,
    /// The default action kills the process and dumps core.
    Core,
    /// The default action stops the process.
    Stop,
    /// Ignored.
    Ignore,
    /// Held by `--hold`: never delivered.
    Held,
}

impl SignalAction {
    /// `kill`, `core`, `handler`, … (JSON).
    pub fn name(self) -> &'static str {
        match self {
            SignalAction::Unknown => "unknown",
            SignalAction::Handler => "handler",
            SignalAction::Kill => "kill",
            SignalAction::Core => "core",
            SignalAction::Stop => "stop",
            SignalAction::Ignore => "ignore",
            SignalAction::Held => "held",
        }
    }
}

/// Why a capture was taken, and what the trigger adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerInfo {
    /// A chosen signal: delivered to the thread `Capture::tid` (for a process it killed, the
    /// thread it was addressed to), or held before delivery.
    Signal {
        signal: u32,
        /// The process that sent it (host PID), when a process did.
        sender_pid: Option<u32>,
        action: SignalAction,
        /// The kernel raised it (`si_code` > 0: a fault, a timer, the OOM killer).
        from_kernel: bool,
        /// The address of the fault, for SIGSEGV, SIGBUS and the other fault signals.
        fault_addr: Option<u64>,
        /// The OOM killer chose the process.
        oom: bool,
        /// The signal number seen at delivery when it differs (9: the kernel turned a fatal
        /// signal into a group SIGKILL).
        delivered_as: Option<u32>,
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
            action: SignalAction::Unknown,
            from_kernel: false,
            fault_addr: None,
            oom: false,
            delivered_as: None,
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
    /// Threads of the interpreter faulthandler dumps, in list order (head = newest first), at
    /// most the trigger's thread bound (a timer sample holds only the interrupted thread).
    pub threads: Vec<ThreadStack>,
    /// Threads of the process's other interpreters, in walk order (never current).
    pub other_threads: Vec<ThreadStack>,
    /// Every interpreter walked, in list order.
    pub interpreters: Vec<Interpreter>,
    /// The interpreter list went on past the interpreters walked.
    pub more_interpreters: bool,
    pub interpreter_state: InterpreterState,
    /// What else is missing or uncertain, each a short phrase for the `incomplete` note.
    pub incomplete: Vec<&'static str>,
    /// The list held more threads than the bound.
    pub more_threads: bool,
    /// A capture of one thread found no thread state for it (not a Python thread).
    pub no_thread_state: bool,
    /// The GIL could be read: `ThreadStack::holds_gil` is meaningful.
    pub gil_known: bool,
    /// Frames whose code object could not be symbolized.
    pub unsymbolized_frames: u32,
    /// Frames whose line could not be had (the line table, or the part of it that covers the
    /// frame's instruction, could not be read): printed as `???`, and the dump is incomplete.
    pub unknown_lines: u32,
    /// Records of this dump lost in the ring buffer.
    pub lost_records: u32,
    /// The OS names of some threads could not be read (the kernel's thread list was not
    /// readable, or held more than `MAX_TASKS` threads).
    pub thread_names_unknown: bool,
}
