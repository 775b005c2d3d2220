//! Command-line arguments.

use std::path::PathBuf;

use clap::Parser;

use crate::format::FormatKind;

/// Dump the Python stacks of any process, from the kernel, exactly as faulthandler would.
///
/// With --signal, every CPython process on the host (or each --pid) that receives that signal
/// gets its threads dumped as `faulthandler.dump_traceback(all_threads=True)` would print them
/// at that moment. The target is only read, never changed: the signal still has its effect.
#[derive(Debug, Parser)]
#[command(name = "pytrace", version)]
pub struct Cli {
    /// Signal whose delivery triggers a dump: a name (SIGILL, ILL, SIGRTMIN+1) or a number.
    #[arg(long, short = 's', value_name = "SIGNAL")]
    pub signal: String,

    /// Only dump this process (repeatable). Filtered in the kernel.
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Vec<u32>,

    /// Exit after this many dumps.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Exit after this many seconds.
    #[arg(long, short = 'd', value_name = "SECS")]
    pub duration: Option<f64>,

    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: FormatKind,

    /// Write dumps to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Report ignored events and the walker's counters on standard error (-vv: more).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Ring-buffer size in MiB (rounded up to a power of two).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub ringbuf_mib: u32,
}
