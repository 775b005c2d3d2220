//! Command-line arguments: `pytrace --signal SIG …` (the dump mode, also `pytrace dump`),
//! `pytrace record` and `pytrace top`. Each value is checked as it is parsed: a bad value is a
//! usage error (exit 2) with a one-line reason.

use std::{path::PathBuf, time::Duration};

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
    /// Dump every thread of every CPython process (or of each --pid) now; with --signal, when
    /// it receives that signal (the default command).
    Dump(DumpArgs),
    /// Sample the Python stacks running on the CPUs, and write a profile.
    Record(RecordArgs),
    /// A live view of the functions the sampled Python processes spend their CPU time in.
    Top(TopArgs),
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

    /// Only dump this process (repeatable). Filtered in the kernel. pytrace exits when every
    /// one of them has exited.
    #[arg(long, short = 'p', value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,

    /// Without --signal: dump again every SECS seconds (fractions allowed, at least 0.01)
    /// until SIGINT/SIGTERM (or --duration), the programs staying loaded; without --pid,
    /// processes started since are included; with --pid, a process that exits gets its line
    /// and pytrace ends once none is left.
    #[arg(long, value_name = "SECS", value_parser = parse_period)]
    pub watch: Option<Duration>,

    /// Without --signal: a hang detector. Dump every second (or every --watch SECS, or every
    /// half SECS when that is shorter) and print only the threads whose Python stack has been
    /// read the same for at least SECS, each with how long. Alone, it reports once, SECS after
    /// the first dump, and exits; with --watch, at every dump where a thread qualifies.
    #[arg(long, value_name = "SECS", value_parser = parse_period)]
    pub stuck: Option<Duration>,

    /// Without --signal: how the targets' memory is read. `kernel`: a sleepable BPF task
    /// iterator (bpf_copy_from_user_task, Linux 5.18+); `process-vm`: process_vm_readv from
    /// user space, no BPF program loaded (needs ptrace read access); `auto`: the kernel's
    /// iterator where this kernel has it, else process_vm_readv. -v says which was used.
    #[arg(long, value_enum, default_value = "auto")]
    pub reader: Reader,

    /// Exit after this many dumps (at least 1).
    #[arg(long, short = 'n', value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Exit after this many seconds (more than 0, at most one year; fractions allowed).
    #[arg(long, short = 'd', value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Print at most this many dumps per second of each process (0: no limit), after a burst of
    /// twice as many; the dumps left out are counted and reported at exit.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_dumps_per_sec: u32,

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

    /// Ring-buffer size in MiB, from 1 to 1024 (rounded up to a power of two).
    #[arg(long, default_value_t = 16, value_name = "MIB", value_parser = parse_ringbuf_mib)]
    pub ringbuf_mib: u32,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Only sample this process (repeatable); without it, every CPython process on the host,
    /// including those started later.
    #[arg(long, short = 'p', value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,

    /// Samples per second of CPU time, on every CPU.
    #[arg(long, default_value_t = 99, value_name = "HZ", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub hz: u64,

    /// Stop after this many seconds (else at Ctrl-C, SIGTERM, or when every --pid has exited).
    #[arg(long, short = 'd', value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

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

    /// After each sample, this many more 8-byte reads of the sampled thread's memory: what one
    /// read costs on this host, measured by the benchmark (`-v` prints the kernel's run
    /// time). Off by default; not for profiling.
    #[arg(long, hide = true, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub calibrate_reads: u32,

    /// Time each sample's phases in the kernel (begin, walk, finish), printed with the
    /// counters under `-v`: where a sample's time goes, for the benchmark. Not for profiling.
    #[arg(long, hide = true)]
    pub time_phases: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Only sample this process (repeatable); without it, every CPython process on the host.
    #[arg(long, short = 'p', value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,

    /// Samples per second of CPU time, on every CPU.
    #[arg(long, default_value_t = 99, value_name = "HZ", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub hz: u64,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Largest ring buffer: 1 GiB of locked kernel memory.
pub const MAX_RINGBUF_MIB: u32 = 1024;

/// Longest `--duration`: a year (longer runs need no `--duration`).
pub const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// `pytrace dump --reader`: where an on-demand dump reads its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reader {
    Auto,
    Kernel,
    ProcessVm,
}

/// Shortest `--watch` and `--stuck` period: 10 ms.
pub const MIN_PERIOD_SECS: f64 = 0.01;

/// `--watch` and `--stuck`: a finite number of seconds from [`MIN_PERIOD_SECS`] to a year.
fn parse_period(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.as_secs_f64() < MIN_PERIOD_SECS {
        return Err(format!("must be at least {MIN_PERIOD_SECS} seconds"));
    }
    Ok(d)
}

/// `--count`: at least 1.
fn parse_count(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (without --count pytrace runs until stopped)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number of dumps".into()),
    }
}

/// `--ringbuf-mib`: from 1 to [`MAX_RINGBUF_MIB`].
fn parse_ringbuf_mib(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_RINGBUF_MIB).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number of MiB from 1 to {MAX_RINGBUF_MIB}"
        )),
    }
}

/// `--duration`: a finite number of seconds, more than 0 and at most [`MAX_DURATION_SECS`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if !secs.is_finite() {
        return Err("must be a finite number of seconds".into());
    }
    if secs <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "must be at most {MAX_DURATION_SECS} seconds (a year); without --duration pytrace runs until stopped"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A clap error as one line (`--help` and `--version` output is not an error and is kept).
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let reason: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let reason = reason.join(" ");
    let reason = reason.strip_prefix("error: ").unwrap_or(&reason);
    format!("{reason} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["pytrace", "--signal", "SIGUSR1"].iter().chain(args))
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse(&["--duration", "1.5"]).unwrap().dump.duration,
            Some(Duration::from_millis(1500))
        );
        for bad in ["inf", "1e30", "0", "nan", "-1", "-0", "x", "", "31536001"] {
            let e = parse(&[&format!("--duration={bad}")]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            let line = one_line(&e);
            assert!(
                !line.contains('\n') && line.contains("--duration"),
                "{bad}: {line}"
            );
        }
    }

    #[test]
    fn counts_sizes_and_pids() {
        for args in [
            &["--count", "0"][..],
            &["--ringbuf-mib", "0"],
            &["--ringbuf-mib", "4096"],
            &["--ringbuf-mib", "1025"],
            &["--pid", "0"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(one_line(&e).contains(args[0]), "{args:?}: {}", one_line(&e));
        }
        assert_eq!(
            parse(&["--ringbuf-mib", "1024"])
                .unwrap()
                .dump
                .common
                .ringbuf_mib,
            1024
        );
        assert_eq!(parse(&["--count", "1"]).unwrap().dump.count, Some(1));
        assert_eq!(parse(&[]).unwrap().dump.max_dumps_per_sec, 10);
    }

    #[test]
    fn reader_names() {
        let reader = |args: &[&str]| {
            Cli::try_parse_from(["pytrace", "dump"].iter().chain(args)).map(|c| match c.command {
                Some(Command::Dump(d)) => d.reader,
                _ => panic!("not a dump"),
            })
        };
        assert_eq!(reader(&[]).unwrap(), Reader::Auto);
        assert_eq!(reader(&["--reader", "kernel"]).unwrap(), Reader::Kernel);
        assert_eq!(
            reader(&["--reader", "process-vm"]).unwrap(),
            Reader::ProcessVm
        );
        let e = reader(&["--reader", "ptrace"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(one_line(&e).contains("--reader"), "{}", one_line(&e));
    }

    #[test]
    fn calibration_reads_are_bounded_and_hidden() {
        let reads = |args: &[&str]| {
            Cli::try_parse_from(["pytrace", "record"].iter().chain(args)).map(|c| match c.command {
                Some(Command::Record(r)) => r.calibrate_reads,
                _ => panic!("not a record"),
            })
        };
        assert_eq!(reads(&[]).unwrap(), 0);
        assert_eq!(reads(&["--calibrate-reads", "300"]).unwrap(), 300);
        let e = reads(&["--calibrate-reads", "5000"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            one_line(&e).contains("--calibrate-reads"),
            "{}",
            one_line(&e)
        );
        let help = reads(&["--help"]).unwrap_err().to_string();
        assert!(
            help.contains("--hz") && !help.contains("calibrate"),
            "{help}"
        );
    }

    #[test]
    fn watch_and_stuck_periods() {
        let dump = |args: &[&str]| {
            Cli::try_parse_from(["pytrace", "dump"].iter().chain(args)).map(|c| match c.command {
                Some(Command::Dump(d)) => (d.watch, d.stuck),
                _ => panic!("not a dump"),
            })
        };
        assert_eq!(
            dump(&["--watch", "0.5", "--stuck", "3"]).unwrap(),
            (
                Some(Duration::from_millis(500)),
                Some(Duration::from_secs(3))
            )
        );
        for bad in ["0", "0.001", "-1", "inf", "x", "31536001"] {
            for opt in ["--watch", "--stuck"] {
                let e = dump(&[&format!("{opt}={bad}")]).unwrap_err();
                assert_eq!(e.exit_code(), 2, "{opt} {bad}");
                assert!(one_line(&e).contains(opt), "{opt} {bad}: {}", one_line(&e));
            }
        }
    }

    #[test]
    fn missing_signal_value_is_one_line() {
        // `pytrace` alone parses (run refuses it: `pytrace dump` is the on-demand dump).
        assert!(Cli::try_parse_from(["pytrace"])
            .unwrap()
            .dump
            .signal
            .is_empty());
        let e = Cli::try_parse_from(["pytrace", "--signal"]).unwrap_err();
        let line = one_line(&e);
        assert!(line.contains("--signal") && !line.contains('\n'), "{line}");
    }
}
