//! One function per command: builds the session its mode needs and the consumer its output
//! needs, runs it, and reports.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{self, BufWriter, IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use pytrace_common::Counter;

use crate::{
    bpf::Calibration,
    cli::{Cli, Command, DumpArgs, RecordArgs, TopArgs},
    error::Error,
    escape,
    format::{self, Output},
    model::Capture,
    privileges, process,
    profile::{Options, Profile, ProfileOutput},
    ratelimit::RateLimit,
    record::{reason, Recorder},
    session::{Consumer, DumpOutcome, Flow, Mode, Session, SessionConfig},
    signals,
    stuck::{Stuck, StuckFilter},
};

pub fn main(cli: Cli) -> Result<(), Error> {
    let verbose = match &cli.command {
        Some(Command::Dump(a)) => a.common.verbose,
        Some(Command::Record(a)) => a.common.verbose,
        Some(Command::Top(a)) => a.common.verbose,
        None => cli.dump.common.verbose,
    };
    crate::startup::begin(verbose > 0);
    // `pytrace dump --reader process-vm` loads no eBPF program.
    let loads_bpf = match &cli.command {
        Some(Command::Dump(a)) => {
            !(a.signal.is_empty() && a.reader == crate::cli::Reader::ProcessVm)
        }
        _ => true,
    };
    privileges::check(loads_bpf)?;
    check_procfs()?;
    match cli.command {
        Some(Command::Dump(args)) => block_on(dump(args)),
        Some(Command::Record(args)) => block_on(record(args)),
        Some(Command::Top(args)) => block_on(top(args)),
        // `pytrace` alone keeps needing --signal: a dump of the whole host is `pytrace dump`.
        None if cli.dump.signal.is_empty() => Err(Error::Usage(
            "--signal is required (or use `pytrace dump` to dump every Python process now)".into(),
        )),
        None => block_on(dump(cli.dump)),
    }
}

fn block_on<F: std::future::Future<Output = Result<(), Error>>>(f: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the event loop: {e}")))?
        .block_on(f)
}

/// `pytrace dump --signal SIG`: a dump written at each delivery; without a signal, every
/// process (or each `--pid`) dumped now.
async fn dump(args: DumpArgs) -> Result<(), Error> {
    if args.signal.is_empty() {
        if args.hold {
            return Err(Error::Usage("--hold needs --signal".into()));
        }
        return dump_now(args).await;
    }
    if args.watch.is_some() || args.stuck.is_some() {
        return Err(Error::Usage(
            "--watch and --stuck repeat `pytrace dump` without --signal".into(),
        ));
    }
    if args.reader != crate::cli::Reader::Auto {
        return Err(Error::Usage(
            "--reader chooses how `pytrace dump` without --signal reads; a signal's dump is \
             always read in the kernel"
                .into(),
        ));
    }
    let watched = signals::parse_list(&args.signal)?;
    check_watchable(&watched, args.hold)?;
    let mut session = Session::start(SessionConfig {
        mode: Mode::Signal {
            signals: watched.clone(),
            hold: args.hold,
        },
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: args.duration.map(|d| d.as_secs_f64()),
        stop_when_targets_exit: !args.pid.is_empty(),
        reader: crate::cli::Reader::Kernel,
    })?;
    let (out, terminal) = create_output(args.output.as_deref())?;
    if args.hold {
        eprintln!(
            "pytrace: attached; holding {} from the selected processes (senders get EPERM); {} Python process(es) known",
            signals::describe(&watched),
            session.process_count()
        );
    } else {
        eprintln!(
            "pytrace: attached to signal delivery for {}; {} Python process(es) known",
            signals::describe(&watched),
            session.process_count()
        );
    }
    let mut printer = Printer {
        format: format::for_output(args.format, terminal),
        out,
        count: args.count,
        printed: 0,
        limit: RateLimit::new(args.max_dumps_per_sec),
        closed: false,
    };
    let result = session.run(&mut printer).await;
    session.report_with(
        ("printed", printer.printed),
        &[("rate_limited", printer.limit.suppressed_total())],
    );
    if let Some(line) = rate_limit_report(&printer.limit) {
        eprintln!("{line}");
    }
    result
}

/// Refuses, before touching the kernel, signals that cannot be watched: those ignored by
/// default never reach a process that does not handle them, and `--hold` cannot keep SIGKILL
/// or SIGSTOP (the kernel must be able to kill and stop any process).
fn check_watchable(watched: &[u32], hold: bool) -> Result<(), Error> {
    if let Some(&sig) = watched
        .iter()
        .find(|&&s| signals::default_action(s) == signals::DefaultAction::Ignore)
    {
        return Err(Error::Usage(format!(
            "{} is ignored by default: the kernel discards it before delivery to a process without a handler, so nothing would be dumped; use --hold to turn a signal into a dump request, or `pytrace dump --pid PID`",
            signals::name(sig)
        )));
    }
    if hold {
        if let Some(&sig) = watched
            .iter()
            .find(|&&s| s == libc::SIGKILL as u32 || s == libc::SIGSTOP as u32)
        {
            return Err(Error::Usage(format!(
                "--hold cannot keep {} from a process: choose signals that can be caught",
                signals::name(sig)
            )));
        }
    }
    Ok(())
}

/// `pytrace dump` without a signal: every CPython process (or each `--pid`) read from outside
/// by the kernel's task iterator, written in PID order. A `--pid` that cannot be dumped gets a
/// line on standard error; the exit status is the first such error's (after the others are
/// dumped). `--watch` and `--stuck` repeat the read ([`watch`]).
async fn dump_now(args: DumpArgs) -> Result<(), Error> {
    let mut session = Session::start(SessionConfig {
        mode: Mode::OnDemand,
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: None,
        stop_when_targets_exit: false,
        reader: args.reader,
    })?;
    if args.common.verbose > 0 {
        eprintln!(
            "pytrace: reading {} Python process(es) through {}",
            session.process_count(),
            session.reader()
        );
    }
    let (out, terminal) = create_output(args.output.as_deref())?;
    let mut printer = Printer {
        format: format::for_output(args.format, terminal),
        out,
        count: None,
        printed: 0,
        // One dump per process and round: nothing to limit.
        limit: RateLimit::new(0),
        closed: false,
    };
    if args.watch.is_some() || args.stuck.is_some() {
        let result = watch(&args, &mut session, &mut printer).await;
        session.report(("printed", printer.printed));
        return result;
    }
    let outcomes = session.dump_now(&mut printer)?;
    session.report(("printed", printer.printed));
    let mut errors = Vec::new();
    for (pid, outcome) in outcomes {
        let DumpOutcome::Failed(e) = outcome else {
            continue;
        };
        if matches!(e, Error::NoSuchProcess(_)) && !args.pid.contains(&pid) {
            // Found by the scan, gone before it was read: nothing to report.
            continue;
        }
        errors.push(e);
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            for e in &errors {
                eprintln!("pytrace: error: {}", escape::field(&e.to_string()));
            }
            Err(Error::Reported(errors))
        }
    }
}

/// `--stuck` without `--watch` dumps this often (or twice per SECS, when that is shorter).
const STUCK_PERIOD: Duration = Duration::from_secs(1);

/// `--watch` / `--stuck`: rounds of on-demand dumps with the programs kept loaded, until
/// SIGINT/SIGTERM, `--duration`, a closed output, the exit of every `--pid`, or (`--stuck`
/// alone) the one report. Errors get their line as they come, once per process; a `--pid`
/// that has exited (or could not be dumped at all) is not read again, and once none is left
/// the status is the first one's error.
async fn watch(args: &DumpArgs, session: &mut Session, printer: &mut Printer) -> Result<(), Error> {
    let period = match (args.watch, args.stuck) {
        (Some(every), _) => every,
        (None, Some(secs)) => (secs / 2)
            .min(STUCK_PERIOD)
            .max(Duration::from_secs_f64(crate::cli::MIN_PERIOD_SECS)),
        (None, None) => STUCK_PERIOD,
    };
    // `--stuck` alone: one report, from the first round that starts SECS after the first
    // round ended (so every thread reported was read the same over at least SECS).
    let one_shot = args.watch.is_none();
    let mut stuck = args.stuck.map(Stuck::new);
    // `--duration` bounds a watch; a one-shot `--stuck` ends with its report.
    let deadline = args
        .duration
        .filter(|_| !one_shot)
        .map(|d| Instant::now() + d);
    let mut first_round_end: Option<Instant> = None;
    let mut reported_errors: BTreeSet<(u32, String)> = BTreeSet::new();
    let mut ended: Vec<Error> = Vec::new();
    let mut stuck_reported = 0usize;
    loop {
        let round_start = Instant::now();
        let last = match (first_round_end, args.stuck) {
            (Some(end), Some(secs)) if one_shot => round_start >= end + secs,
            _ => false,
        };
        let outcomes = match &mut stuck {
            None => session.dump_now(printer)?,
            Some(stuck) => {
                let mut filter = StuckFilter {
                    stuck,
                    inner: printer,
                    report: !one_shot || last,
                    reported: 0,
                };
                let outcomes = session.dump_now(&mut filter)?;
                stuck_reported += filter.reported;
                stuck.end_round();
                outcomes
            }
        };
        first_round_end.get_or_insert_with(Instant::now);
        for (pid, outcome) in outcomes {
            let DumpOutcome::Failed(e) = outcome else {
                continue;
            };
            let asked = args.pid.contains(&pid);
            if !asked && matches!(e, Error::NoSuchProcess(_)) {
                // Found by a scan, gone before it was read: nothing to report.
                continue;
            }
            if reported_errors.insert((pid, e.to_string())) {
                eprintln!("pytrace: error: {}", escape::field(&e.to_string()));
            }
            if asked && (!session.is_registered(pid) || process::is_gone(pid)) {
                // Exited (or never dumpable): the watch ends for it.
                session.forget_on_demand(pid);
                ended.push(e);
            }
        }
        if printer.closed || last {
            break;
        }
        for pid in session.refresh_on_demand() {
            if args.pid.contains(&pid) {
                let e = Error::NoSuchProcess(pid);
                if reported_errors.insert((pid, e.to_string())) {
                    eprintln!("pytrace: error: {e}");
                }
                ended.push(e);
            }
        }
        if session.registered_count() == 0 && !args.pid.is_empty() {
            // Every --pid has exited (or could not be dumped): their status.
            return Err(Error::Reported(ended));
        }
        let next = round_start + period;
        let until = deadline.map_or(next, |d| d.min(next));
        if !session.pause_until(until.into()).await || deadline.is_some_and(|d| d <= until) {
            break;
        }
    }
    if one_shot && stuck_reported == 0 && !printer.closed {
        if let Some(secs) = args.stuck {
            eprintln!(
                "pytrace: no thread's Python stack was read unchanged for {} s",
                secs.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Writes each capture as it comes and flushes it, within `--max-dumps-per-sec`.
struct Printer {
    format: Box<dyn Output>,
    out: Box<dyn Write>,
    /// Stop after this many.
    count: Option<u64>,
    printed: u64,
    limit: RateLimit,
    /// The reader has gone (`| head`): nothing more is written.
    closed: bool,
}

impl Printer {
    /// Whether `--max-dumps-per-sec` lets this capture through; says so the first time it
    /// does not.
    fn within_limit(&mut self, capture: &Capture) -> bool {
        match self.limit.allow(capture.pid, std::time::Instant::now()) {
            Ok(()) => true,
            Err(first) => {
                if first {
                    eprintln!(
                        "pytrace: process {} ({}) is signalled more than {} times a second; \
                         leaving dumps out (counted; --max-dumps-per-sec)",
                        capture.pid,
                        escape::field(&capture.comm),
                        self.limit.rate()
                    );
                }
                false
            }
        }
    }
}

impl Consumer for Printer {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        if self.closed {
            return Ok(Flow::Stop);
        }
        if !self.within_limit(&capture) {
            return Ok(Flow::Continue);
        }
        match self
            .format
            .record(&capture, &mut self.out)
            .and_then(|_| self.out.flush())
        {
            Ok(()) => self.printed += 1,
            // The reader is gone (`| head`): end quietly, as command-line tools do.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                return Ok(Flow::Stop);
            }
            Err(e) => return Err(Error::Output(format!("writing a dump: {e}"))),
        }
        Ok(match self.count {
            Some(n) if self.printed >= n => Flow::Stop,
            _ => Flow::Continue,
        })
    }

    fn exited(&mut self, pid: u32) {
        self.limit.forget(pid);
    }
}

/// The output and whether it is a terminal.
fn create_output(path: Option<&std::path::Path>) -> Result<(Box<dyn Write>, bool), Error> {
    Ok(match path {
        Some(path) => {
            let file = File::create(path)
                .map_err(|e| Error::Output(format!("cannot create {}: {e}", path.display())))?;
            let terminal = file.is_terminal();
            (Box::new(file), terminal)
        }
        None => (Box::new(io::stdout()), io::stdout().is_terminal()),
    })
}

/// `pytrace record`: samples aggregated into one profile, written when the recording ends.
async fn record(args: RecordArgs) -> Result<(), Error> {
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(args.format.default_file_name(SystemTime::now())));
    // Created first: a path that cannot be written is an error before anything is recorded.
    let file = File::create(&path)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", path.display())))?;
    let mut session = Session::start(SessionConfig {
        mode: Mode::Timer {
            hz: args.hz,
            calibration: Calibration {
                reads: args.calibrate_reads,
                time_phases: args.time_phases,
            },
        },
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: args.duration.map(|d| d.as_secs_f64()),
        stop_when_targets_exit: !args.pid.is_empty(),
        reader: crate::cli::Reader::Kernel,
    })?;
    eprintln!(
        "pytrace: attached to a {} Hz CPU clock on {} CPU(s); {} Python process(es) known; \
         recording to {}",
        args.hz,
        session.cpus,
        session.process_count(),
        path.display()
    );
    let options = Options {
        threads: args.threads,
        gil_only: args.gil,
        ..Default::default()
    };
    let start_ns = epoch_ns();
    let mut recorder = Recorder::new(Profile::new(args.format, options, args.hz as u32));
    let result = session.run(&mut recorder).await;
    recorder.end_progress();
    // Samples the kernel could not turn into captures.
    let counters = session.counters();
    let counter = |c: Counter| {
        counters
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, n)| *n)
    };
    recorder.lost(reason::NESTED, counter(Counter::Nested));
    recorder.lost(
        reason::RING_BUFFER_FULL,
        session.torn() + counter(Counter::NotBegun),
    );
    recorder.profile.aggregate.set_span(start_ns, epoch_ns());
    let mut out = BufWriter::new(file);
    recorder
        .profile
        .finish(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Output(format!("writing {}: {e}", path.display())))?;
    eprintln!("{}", recorder.summary(&path, counter(Counter::Samples)));
    if args.gil && recorder.gil_unknown > 0 {
        eprintln!(
            "pytrace: warning: {} samples are of processes whose GIL pytrace cannot read \
             (CPython 3.6): --gil left them out",
            recorder.gil_unknown
        );
    }
    session.report(("samples", recorder.samples));
    result
}

/// Wall-clock time, nanoseconds since the Unix epoch.
fn epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `pytrace top`: the live view, until `q`, Ctrl-C, SIGTERM or the exit of every `--pid`.
async fn top(args: TopArgs) -> Result<(), Error> {
    let mut session = Session::start(SessionConfig {
        mode: Mode::Timer {
            hz: args.hz,
            calibration: Calibration::default(),
        },
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: None,
        stop_when_targets_exit: !args.pid.is_empty(),
        reader: crate::cli::Reader::Kernel,
    })?;
    eprintln!(
        "pytrace: attached to a {} Hz CPU clock on {} CPU(s); {} Python process(es) known",
        args.hz,
        session.cpus,
        session.process_count()
    );
    let mut view = crate::top::Top::new(args.hz)?;
    let result = session.run(&mut view).await;
    let samples = view.stats.samples;
    view.restore();
    session.report(("samples", samples));
    result
}

/// `pytrace: 120 dumps left out by --max-dumps-per-sec 10: process 41 120`, when any were.
fn rate_limit_report(limit: &RateLimit) -> Option<String> {
    const SHOWN: usize = 10;
    let per_pid = limit.suppressed();
    if per_pid.is_empty() {
        return None;
    }
    let mut line = format!(
        "pytrace: {} dumps left out by --max-dumps-per-sec {}:",
        limit.suppressed_total(),
        limit.rate()
    );
    for (pid, n) in per_pid.iter().take(SHOWN) {
        line.push_str(&format!(" process {pid} {n},"));
    }
    line.pop();
    if per_pid.len() > SHOWN {
        line.push_str(&format!(" and {} more processes", per_pid.len() - SHOWN));
    }
    Some(line)
}

/// Inspection reads `/proc`: without it pytrace could find nothing.
fn check_procfs() -> Result<(), Error> {
    std::fs::metadata("/proc/self/stat")
        .map(|_| ())
        .map_err(|e| Error::NoProcfs(format!("/proc is not mounted here ({e})")))
}
