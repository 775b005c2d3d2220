//! One function per command: builds the session its mode needs and the consumer its output
//! needs, runs it, and reports.

use std::{
    fs::File,
    io::{self, IsTerminal, Write},
};

use crate::{
    cli::{Cli, Command, DumpArgs},
    error::Error,
    escape,
    format::{self, Output},
    model::Capture,
    privileges,
    ratelimit::RateLimit,
    session::{Consumer, Flow, Mode, Session, SessionConfig},
    signals,
};

pub fn main(cli: Cli) -> Result<(), Error> {
    privileges::check()?;
    check_procfs()?;
    match cli.command {
        Some(Command::Dump(args)) => block_on(dump(args)),
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

/// `pytrace --signal SIG`: a dump written at each delivery.
async fn dump(args: DumpArgs) -> Result<(), Error> {
    let signal_arg = args
        .signal
        .as_deref()
        .ok_or_else(|| Error::Runtime("--signal is required".into()))?;
    let signal = signals::parse(signal_arg)?;
    let mut session = Session::start(SessionConfig {
        mode: Mode::Signal(signal),
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: args.duration.map(|d| d.as_secs_f64()),
        stop_when_targets_exit: !args.pid.is_empty(),
    })?;
    let (out, terminal) = create_output(args.output.as_deref())?;
    eprintln!(
        "pytrace: attached to signal delivery for {}; {} Python process(es) known",
        signals::name(signal),
        session.process_count()
    );
    let mut printer = Printer {
        format: format::for_output(args.format, terminal),
        out,
        count: args.count,
        printed: 0,
        limit: RateLimit::new(args.max_dumps_per_sec),
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

/// Writes each capture as it comes and flushes it, within `--max-dumps-per-sec`.
struct Printer {
    format: Box<dyn Output>,
    out: Box<dyn Write>,
    /// Stop after this many.
    count: Option<u64>,
    printed: u64,
    limit: RateLimit,
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
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Flow::Stop),
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
