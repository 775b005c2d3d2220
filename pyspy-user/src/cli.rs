//! Command-line arguments: `pytrace --signal SIG …` (the dump mode, also `pytrace dump`),
//! `pytrace record` and `pytrace top`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::format::FormatKind;

/// Dump or sample the Python stacks of any process, from the kernel.
///
/// With --signal, every CPython process on the host (or each --pid) that receives that signal
/// gets its threads dumped as `faulthandler.dump_traceback(all_threads=True)` would print them
/// at that moment. The target is only read, never changed: the signal still has its effect.
/// `pytrace record` samples the Python threads running on the CPUs into a profile; `pytrace
/// top` shows where they spend their CPU time, live.
#[derive(Debug, Parser)]
#[command(
    name = "pytrace",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// `pytrace --signal SIG …`: the same as `pytrace dump --signal SIG …`.
    #[command(flatten)]
    pub dump: DumpArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump every thread of a process when it receives a signal (the default command).
    Dump(DumpArgs),
    /// Sample the Python stacks running on the CPUs, and write a profile.
    Record(RecordArgs),
    /// A live view of the functions the sampled Python processes spend their CPU time in.
    Top(TopArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Signal whose delivery triggers a dump: a name (SIGILL, ILL, SIGRTMIN+1) or a number.
    #[arg(long, short = 's', value_name = "SIGNAL", required = true)]
    pub signal: Option<String>,

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

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Report ignored events and the walker's counters on standard error (-vv: more).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Ring-buffer size in MiB (rounded up to a power of two).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub ringbuf_mib: u32,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Only sample this process (repeatable); without it, every CPython process on the host,
    /// including those started later.
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Vec<u32>,

    /// Samples per second of CPU time, on every CPU.
    #[arg(long, default_value_t = 99, value_name = "HZ", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub hz: u64,

    /// Stop after this many seconds (else at Ctrl-C, SIGTERM, or when every --pid has exited).
    #[arg(long, short = 'd', value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<f64>,

    /// Output file (default: a name made from the format).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "flamegraph")]
    pub format: crate::profile::ProfileFormat,

    /// Add a `thread TID (name)` frame under each process.
    #[arg(long)]
    pub threads: bool,

    /// Keep only samples of threads that held the GIL.
    #[arg(long)]
    pub gil: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Only sample this process (repeatable); without it, every CPython process on the host.
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Vec<u32>,

    /// Samples per second of CPU time, on every CPU.
    #[arg(long, default_value_t = 99, value_name = "HZ", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub hz: u64,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// A finite, non-negative number of seconds.
fn parse_duration(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}
