//! One function per command: builds the session its mode needs and the consumer its output
//! needs, runs it, and reports.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    time::SystemTime,
};

use pytrace_common::Counter;

use crate::{
    cli::{Cli, Command, DumpArgs, RecordArgs, TopArgs},
    error::Error,
    format::{self, Output},
    model::Capture,
    profile::{Options, Profile, ProfileOutput},
    record::{reason, Recorder},
    session::{Consumer, Flow, Mode, Session, SessionConfig},
    signals,
};

pub fn main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Dump(args)) => block_on(dump(args)),
        Some(Command::Record(args)) => block_on(record(args)),
        Some(Command::Top(args)) => block_on(top(args)),
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
        duration: args.duration,
        stop_when_targets_exit: false,
    })?;
    let out = create_output(args.output.as_deref())?;
    eprintln!(
        "pytrace: attached to signal delivery for {}; {} Python process(es) known",
        signals::name(signal),
        session.process_count()
    );
    let mut printer = Printer {
        format: format::new(args.format),
        out,
        count: args.count,
        printed: 0,
    };
    if args.count == Some(0) {
        session.report(("printed", 0));
        return Ok(());
    }
    let result = session.run(&mut printer).await;
    session.report(("printed", printer.printed));
    result
}

/// Writes each capture as it comes and flushes it.
struct Printer {
    format: Box<dyn Output>,
    out: Box<dyn Write>,
    /// Stop after this many.
    count: Option<u64>,
    printed: u64,
}

impl Consumer for Printer {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        self.format
            .record(&capture, &mut self.out)
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::Output(format!("writing a dump: {e}")))?;
        self.printed += 1;
        Ok(match self.count {
            Some(n) if self.printed >= n => Flow::Stop,
            _ => Flow::Continue,
        })
    }
}

fn create_output(path: Option<&std::path::Path>) -> Result<Box<dyn Write>, Error> {
    Ok(match path {
        Some(path) => Box::new(
            File::create(path)
                .map_err(|e| Error::Output(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(io::stdout()),
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
        mode: Mode::Timer { hz: args.hz },
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: args.duration,
        stop_when_targets_exit: !args.pid.is_empty(),
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
    recorder.lost(reason::RING_BUFFER_FULL, session.torn());
    recorder.profile.aggregate.set_span(start_ns, epoch_ns());
    let mut out = BufWriter::new(file);
    recorder
        .profile
        .finish(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Output(format!("writing {}: {e}", path.display())))?;
    let mut summary = format!(
        "pytrace: wrote {} samples to {}",
        recorder.samples,
        path.display()
    );
    if !recorder.unwalked.is_empty() {
        let reasons: Vec<String> = recorder
            .unwalked
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        summary.push_str(&format!("; without a stack: {}", reasons.join(", ")));
    }
    eprintln!("{summary}");
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
        mode: Mode::Timer { hz: args.hz },
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: None,
        stop_when_targets_exit: !args.pid.is_empty(),
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
