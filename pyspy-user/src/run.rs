//! One function per command: builds the session its mode needs and the consumer its output
//! needs, runs it, and reports.

use std::{
    fs::File,
    io::{self, Write},
};

use crate::{
    cli::{Cli, Command, DumpArgs},
    error::Error,
    format::{self, Output},
    model::Capture,
    session::{Consumer, DumpOutcome, Flow, Mode, Session, SessionConfig},
    signals,
};

pub fn main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Dump(args)) => block_on(dump(args)),
        // `pytrace` alone keeps needing --signal: a dump of the whole host is `pytrace dump`.
        None if cli.dump.signal.is_empty() => {
            use clap::CommandFactory;
            Cli::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--signal is required (or use `pytrace dump` to dump every Python process now)",
                )
                .exit()
        }
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
        return dump_now(args);
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
        duration: args.duration,
        stop_when_targets_exit: false,
    })?;
    let out = create_output(args.output.as_deref())?;
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
/// dumped).
fn dump_now(args: DumpArgs) -> Result<(), Error> {
    let mut session = Session::start(SessionConfig {
        mode: Mode::OnDemand,
        pids: args.pid.clone(),
        verbose: args.common.verbose,
        ringbuf_mib: args.common.ringbuf_mib,
        duration: None,
        stop_when_targets_exit: false,
    })?;
    if args.common.verbose > 0 {
        eprintln!(
            "pytrace: reading {} Python process(es) through the kernel's task iterator \
             (bpf_copy_from_user_task)",
            session.process_count()
        );
    }
    let mut printer = Printer {
        format: format::new(args.format),
        out: create_output(args.output.as_deref())?,
        count: None,
        printed: 0,
    };
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
                eprintln!("pytrace: error: {e}");
            }
            Err(Error::Reported(errors))
        }
    }
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
