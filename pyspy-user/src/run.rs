//! The session: load and attach, register processes, then turn ring-buffer records into
//! printed dumps until told to stop.

use std::{
    fs::File,
    io::{self, Write},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind, time::Instant};

use crate::{
    bpf::{ProbeConfig, Probes},
    cli::Cli,
    decode::{self, Assembler, Record},
    error::Error,
    format::{self, DumpFormat},
    process,
    schedule::{Due, Schedule, NOT_PYTHON_RECHECKS},
    signals,
    symbolize::Symbolizer,
    tracker::{self, Tracker},
};

pub fn main(cli: Cli) -> Result<(), Error> {
    let signal = signals::parse(&cli.signal)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the event loop: {e}")))?;
    runtime.block_on(session(cli, signal))
}

struct Session {
    cli: Cli,
    probes: Probes,
    sym: Symbolizer,
    tracker: Tracker,
    schedule: Schedule,
    asm: Assembler,
    format: Box<dyn DumpFormat>,
    out: Box<dyn Write>,
    dumps: u64,
    decode_errors: u64,
    /// Signals to new processes that arrived before their inspection finished.
    missed_new: u64,
    boot_to_epoch_ns: i128,
}

async fn session(cli: Cli, signal: u32) -> Result<(), Error> {
    // Check the requested PIDs before touching the kernel: a typo is the commonest error.
    for &pid in &cli.pid {
        process::inspect(pid).map_err(tracker::inspect_error)?;
    }
    let mut probes = Probes::load(&ProbeConfig {
        signals: vec![signal],
        pid_filter: !cli.pid.is_empty(),
        ringbuf_bytes: cli.ringbuf_mib.max(1).next_power_of_two() * 1024 * 1024,
        run_time_stats: cli.verbose > 0,
    })?;
    let mut sym = Symbolizer::default();
    let mut tracker = Tracker::default();
    let mut schedule = Schedule::default();
    let ring = probes.events()?;
    if cli.pid.is_empty() {
        // Attach the lifecycle probes first, so a process started during the scan is not missed.
        for failure in probes.attach_lifecycle(&dynamic_loaders())? {
            eprintln!(
                "pytrace: warning: {failure}; processes loading libpython later may be missed"
            );
        }
        for pid in process::candidate_pids() {
            match tracker.register(pid, &mut probes, &mut sym) {
                Ok(()) => schedule.registered(pid),
                Err(e) if cli.verbose > 0 => eprintln!("pytrace: skipping {e}"),
                Err(_) => {}
            }
        }
    } else {
        for &pid in &cli.pid {
            tracker.register(pid, &mut probes, &mut sym)?;
        }
    }
    probes.attach_signal()?;
    // Installed before "attached" is printed: a SIGTERM right after it must detach cleanly.
    let stop = Stop::install()?;
    let out: Box<dyn Write> = match &cli.output {
        Some(path) => Box::new(
            File::create(path)
                .map_err(|e| Error::Output(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(io::stdout()),
    };
    eprintln!(
        "pytrace: attached to signal delivery for {}; {} Python process(es) known",
        signals::name(signal),
        sym.process_count()
    );
    let mut s = Session {
        format: format::new(cli.format),
        cli,
        probes,
        sym,
        tracker,
        schedule,
        asm: Assembler::default(),
        out,
        dumps: 0,
        decode_errors: 0,
        missed_new: 0,
        boot_to_epoch_ns: boot_to_epoch_ns(),
    };
    let result = s.pump(ring, stop).await;
    s.report();
    result
}

impl Session {
    async fn pump(&mut self, ring: RingBuf<MapData>, mut stop: Stop) -> Result<(), Error> {
        // SAFETY: the ring buffer owns its file descriptor, which stays open (and is not closed
        // or reused behind tokio's back) for as long as the AsyncFd owns the ring buffer.
        let mut fd = unsafe { AsyncFd::register(ring) }
            .map_err(|e| Error::Runtime(format!("ring buffer: {e}")))?;
        let deadline = self
            .cli
            .duration
            .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        loop {
            if self.done() {
                return Ok(());
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let next_inspect = self.schedule.next();
            let inspect = async {
                match next_inspect {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                guard = fd.readable_mut() => {
                    let mut guard = guard.map_err(|e| Error::Runtime(format!("ring buffer: {e}")))?;
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        let bytes = item.to_vec();
                        drop(item);
                        self.handle(&bytes)?;
                        if self.done() {
                            break;
                        }
                    }
                    guard.clear_ready();
                }
                _ = stop.interrupt.recv() => return Ok(()),
                _ = stop.terminate.recv() => return Ok(()),
                _ = sleep => return Ok(()),
                _ = inspect => self.inspect_due(),
            }
        }
    }

    /// Does what the schedule says is due: inspections of reported processes (file names
    /// first, which is cheap; the full inspection only for likely interpreters), and the
    /// second look at newly registered ones.
    fn inspect_due(&mut self) {
        for due in self.schedule.take_due(Instant::now()) {
            match due {
                Due::Recheck(pid) => {
                    if process::is_gone(pid) {
                        self.tracker
                            .unregister(pid, &mut self.probes, &mut self.sym);
                    }
                }
                Due::Inspect { pid, attempt } => self.inspect(pid, attempt),
            }
        }
    }

    fn inspect(&mut self, pid: u32, attempt: usize) {
        let result = if process::is_candidate(pid) {
            self.tracker.register(pid, &mut self.probes, &mut self.sym)
        } else if process::is_gone(pid) {
            Err(Error::NoSuchProcess(pid))
        } else {
            Err(Error::NotPython {
                pid,
                comm: String::new(),
            })
        };
        match result {
            Ok(()) => {
                self.schedule.registered(pid);
                if self.cli.verbose > 0 {
                    eprintln!("pytrace: now tracing new process {pid}");
                }
            }
            Err(Error::NoSuchProcess(_)) => {}
            Err(Error::NotPython { .. }) if attempt >= NOT_PYTHON_RECHECKS => {}
            Err(e) => {
                if Schedule::has_retry(attempt) {
                    self.schedule.retry(pid, attempt + 1);
                } else if self.cli.verbose > 0 {
                    eprintln!("pytrace: not tracing new process {pid}: {e}");
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.cli.count.is_some_and(|n| self.dumps >= n)
    }

    fn handle(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match decode::decode(bytes) {
            Ok(Record::Begin(b)) => self.asm.begin(b),
            Ok(Record::Thread(h, f)) => self.asm.thread(h, f),
            Ok(Record::Tasks(t)) => self.asm.tasks(t),
            Ok(Record::Code(c)) => self.sym.add_code(c),
            Ok(Record::End(e)) => {
                if let Some(raw) = self.asm.end(e) {
                    let mut dump = self.sym.symbolize(&raw, self.boot_to_epoch_ns);
                    if dump.ns_pid.is_some() {
                        // In a PID namespace: the receiving thread's id as the target sees it,
                        // while the thread still exists.
                        dump.ns_tid = process::procfs::thread_ns_tid(dump.pid, dump.tid);
                    }
                    self.format
                        .write_dump(&dump, &mut self.out)
                        .and_then(|_| self.out.flush())
                        .map_err(|e| Error::Output(format!("writing a dump: {e}")))?;
                    self.dumps += 1;
                }
            }
            Ok(Record::Mapped(pid)) => {
                if self.cli.pid.is_empty() && !self.sym.has_process(pid) {
                    self.schedule.reported(pid);
                }
            }
            Ok(Record::Forked(child, parent)) => {
                if self.sym.fork_process(parent, child) && self.cli.verbose > 0 {
                    eprintln!("pytrace: now tracing process {child}, forked from {parent}");
                }
            }
            Ok(Record::Exited(pid)) => {
                self.schedule.forget(pid);
                self.tracker
                    .unregister(pid, &mut self.probes, &mut self.sym);
            }
            Ok(Record::Skipped(s)) if self.schedule.is_waiting(s.pid) => {
                // A new process, signalled before its inspection finished: count it and say
                // so, since the dump is lost.
                self.missed_new += 1;
                eprintln!(
                    "pytrace: process {} received {} before pytrace finished inspecting it; not dumped",
                    s.pid,
                    signals::name(s.signal)
                );
            }
            Ok(Record::Skipped(s)) => {
                if self.cli.verbose > 0 {
                    let end = s.comm.iter().position(|&c| c == 0).unwrap_or(16);
                    eprintln!(
                        "pytrace: process {} ({}) received {}: not a known Python process, ignored",
                        s.pid,
                        String::from_utf8_lossy(&s.comm[..end]),
                        signals::name(s.signal)
                    );
                }
            }
            Err(e) => {
                self.decode_errors += 1;
                if self.cli.verbose > 1 {
                    eprintln!("pytrace: undecodable record: {e}");
                }
            }
        }
        Ok(())
    }

    /// Counters on exit: all of them with -v, or whenever something was lost or incomplete.
    fn report(&self) {
        let counters = self.probes.counters();
        let lost = counters
            .iter()
            .filter(|(c, _)| c.is_loss())
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.asm.torn
            + self.decode_errors
            + self.missed_new;
        if self.cli.verbose == 0 && lost == 0 {
            return;
        }
        let mut line = format!("pytrace: stats: printed={}", self.dumps);
        for (c, n) in counters {
            line.push_str(&format!(" {}={}", c.name(), n));
        }
        line.push_str(&format!(
            " torn_dumps={} orphan_records={} decode_errors={} stray_codes={} missed_new_processes={}",
            self.asm.torn,
            self.asm.orphans,
            self.decode_errors,
            self.sym.stray_codes,
            self.missed_new
        ));
        eprintln!("{line}");
        if self.cli.verbose > 0 {
            for (name, runs, ns) in self.probes.run_stats() {
                eprintln!("pytrace: bpf: {name} runs={runs} ns={ns}");
            }
        }
    }
}

/// SIGINT and SIGTERM, caught so that pytrace detaches and reports before exiting.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> Result<Self, Error> {
        let catch = |kind| {
            tokio::signal::unix::signal(kind)
                .map_err(|e| Error::Runtime(format!("cannot catch SIGINT/SIGTERM: {e}")))
        };
        Ok(Stop {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
        })
    }
}

/// The dynamic loaders present on the host (their `_dl_debug_state` runs in every process
/// that uses them).
fn dynamic_loaders() -> Vec<std::path::PathBuf> {
    const KNOWN: [&str; 3] = [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/lib/ld-musl-x86_64.so.1",
    ];
    let mut found: Vec<std::path::PathBuf> = KNOWN
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    found.sort();
    found.dedup();
    // Loaders of their own that running processes map (a container image's, a runtime
    // unpacked with its own C library).
    let others = crate::process::loaders::mapped_loaders(&found);
    found.extend(others);
    found
}

/// CLOCK_REALTIME − CLOCK_BOOTTIME, in nanoseconds.
fn boot_to_epoch_ns() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a valid timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}
