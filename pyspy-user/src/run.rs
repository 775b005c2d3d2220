//! The session: load and attach, register processes, then turn ring-buffer records into
//! printed dumps until told to stop.

use std::{
    fs::File,
    io::{self, Write},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    bpf::{ProbeConfig, Probes},
    cli::Cli,
    decode::{self, Assembler, Record},
    error::Error,
    format::{self, DumpFormat},
    process, signals,
    symbolize::Symbolizer,
    tracker,
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
    asm: Assembler,
    format: Box<dyn DumpFormat>,
    out: Box<dyn Write>,
    dumps: u64,
    decode_errors: u64,
    boot_to_epoch_ns: i128,
}

async fn session(cli: Cli, signal: u32) -> Result<(), Error> {
    // Check the requested PIDs before touching the kernel: a typo is the commonest error.
    for &pid in &cli.pid {
        process::inspect(pid).map_err(tracker_error)?;
    }
    let mut probes = Probes::load(&ProbeConfig {
        signals: vec![signal],
        pid_filter: !cli.pid.is_empty(),
        ringbuf_bytes: cli.ringbuf_mib.max(1).next_power_of_two() * 1024 * 1024,
    })?;
    let mut sym = Symbolizer::default();
    if cli.pid.is_empty() {
        for pid in process::candidate_pids() {
            if let Err(e) = tracker::register(pid, &mut probes, &mut sym) {
                if cli.verbose > 0 {
                    eprintln!("pytrace: skipping {e}");
                }
            }
        }
    } else {
        for &pid in &cli.pid {
            tracker::register(pid, &mut probes, &mut sym)?;
        }
    }
    let ring = probes.events()?;
    probes.attach_signal()?;
    let out: Box<dyn Write> = match &cli.output {
        Some(path) => Box::new(File::create(path).map_err(|e| {
            Error::Output(format!("cannot create {}: {e}", path.display()))
        })?),
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
        asm: Assembler::default(),
        out,
        dumps: 0,
        decode_errors: 0,
        boot_to_epoch_ns: boot_to_epoch_ns(),
    };
    let result = s.pump(ring).await;
    s.report();
    result
}

impl Session {
    async fn pump(&mut self, ring: RingBuf<MapData>) -> Result<(), Error> {
        let mut fd = AsyncFd::new(ring).map_err(|e| Error::Runtime(format!("ring buffer: {e}")))?;
        let mut term = tokio::signal::unix::signal(SignalKind::terminate())
            .map_err(|e| Error::Runtime(format!("SIGTERM handler: {e}")))?;
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
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = sleep => return Ok(()),
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
            Ok(Record::Code(c)) => self.sym.add_code(c),
            Ok(Record::End(e)) => {
                if let Some(raw) = self.asm.end(e) {
                    let dump = self.sym.symbolize(&raw, self.boot_to_epoch_ns);
                    self.format
                        .write_dump(&dump, &mut self.out)
                        .and_then(|_| self.out.flush())
                        .map_err(|e| Error::Output(format!("writing a dump: {e}")))?;
                    self.dumps += 1;
                }
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

    /// Counters on exit: all of them with -v; otherwise only losses.
    fn report(&self) {
        let counters = self.probes.counters();
        let lost = counters
            .iter()
            .filter(|(c, _)| matches!(c, pytrace_common::Counter::RingbufFull))
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.asm.torn
            + self.decode_errors;
        if self.cli.verbose == 0 && lost == 0 {
            return;
        }
        let mut line = format!("pytrace: stats: printed={}", self.dumps);
        for (c, n) in counters {
            line.push_str(&format!(" {}={}", c.name(), n));
        }
        line.push_str(&format!(
            " torn_dumps={} orphan_records={} decode_errors={} stray_codes={}",
            self.asm.torn, self.asm.orphans, self.decode_errors, self.sym.stray_codes
        ));
        eprintln!("{line}");
    }
}

fn tracker_error(e: process::InspectError) -> Error {
    use process::InspectError as I;
    match e {
        I::NoSuchProcess(pid) => Error::NoSuchProcess(pid),
        I::NotPython { pid, comm } => Error::NotPython { pid, comm },
        I::UnsupportedVersion { pid, version } => Error::UnsupportedPython { pid, version },
        I::PermissionDenied(pid) => Error::Privileges(format!("cannot inspect process {pid}")),
        other => Error::Runtime(other.to_string()),
    }
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
