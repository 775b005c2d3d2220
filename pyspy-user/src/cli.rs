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
    /// Dump every thread of every CPython process (or of each --pid) now; with --signal, when
    /// it receives that signal (the default command).
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Signal whose delivery triggers a dump: a name (SIGILL, ILL, SIGRTMIN+1) or a number.
    /// Without it (`pytrace dump`), every CPython process (or each --pid) is dumped now, read
    /// from the kernel without signalling or stopping anything, and pytrace exits.
    /// Several: a comma list or the option repeated; `fatal`: every signal whose default
    /// action kills the process, SIGKILL included.
    #[arg(
        long,
        short = 's',
        value_name = "SIGNAL",
        action = clap::ArgAction::Append,
        value_delimiter = ','
    )]
    pub signal: Vec<String>,

    /// Keep the watched signals from the selected processes (refused to the sender, whose
    /// kill() fails with EPERM) and dump those processes instead. Needs the BPF LSM.
    #[arg(long)]
    pub hold: bool,

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
