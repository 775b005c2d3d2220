//! The trigger-agnostic driver: loads the programs, registers CPython processes (at start and
//! as they appear), attaches what the mode needs, then drains the ring buffer — decode →
//! assemble → symbolize — and hands each finished [`Capture`] to a [`Consumer`] until told to
//! stop. What a capture becomes (text, JSON, a profile) is the consumer's business.

use std::{collections::BTreeMap, os::fd::OwnedFd, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind, time::Instant};

use crate::{
    backend::Backend,
    bpf::{Calibration, ProbeConfig, Probes},
    cli::Reader,
    decode::{self, Assembler, RawCapture, Record},
    error::Error,
    escape,
    model::{Capture, InterpreterState, SignalAction, ThreadTask, TriggerInfo},
    pidwatch::PidWatch,
    privileges, process,
    schedule::{Due, Schedule, NOT_PYTHON_RECHECKS},
    signals,
    symbolize::Symbolizer,
    tracker::{self, Tracker},
};

/// What triggers captures.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A dump of every thread at each delivery of these signals (for a process a signal
    /// kills, once); with `hold`, the signals are refused to the selected processes instead.
    Signal { signals: Vec<u32>, hold: bool },
    /// A sample of the interrupted thread at this many ticks per second on every CPU (with
    /// the benchmark's measurements, `record --calibrate-reads`, `--time-phases`).
    Timer { hz: u64, calibration: Calibration },
    /// Dumps taken when asked ([`Session::dump_now`]), by the task iterator (or the host
    /// walk, `SessionConfig::reader`) reading each process from outside: nothing is attached,
    /// nothing is signalled.
    OnDemand,
}

/// Where one process of an on-demand dump stands.
#[derive(Debug)]
pub enum DumpOutcome {
    /// Its capture went to the consumer.
    Dumped,
    /// It could not be dumped (gone, not Python, unsupported...): the error says why.
    Failed(Error),
}

pub struct SessionConfig {
    pub mode: Mode,
    /// Only these processes (filtered in the kernel); empty: every CPython process, including
    /// new ones.
    pub pids: Vec<u32>,
    pub verbose: u8,
    pub ringbuf_mib: u32,
    /// Stop once a run of this long is over.
    pub duration: Option<f64>,
    /// Stop once every process of `pids` has exited.
    pub stop_when_targets_exit: bool,
    /// On-demand mode: where the targets' memory is read.
    pub reader: Reader,
}

/// Whether the session goes on after a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What the session's captures go to.
pub trait Consumer {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error>;
    /// Called on the session's drain clock (timer mode), with the session's progress.
    fn tick(&mut self, _progress: &Progress) -> Flow {
        Flow::Continue
    }
    /// A traced process has exited.
    fn exited(&mut self, _pid: u32) {}
}

/// Where a session stands, for progress lines.
pub struct Progress {
    pub elapsed: Duration,
    pub captures: u64,
    pub processes: usize,
    /// Captures lost whole so far (torn or undecodable).
    pub lost: u64,
}

/// How often processes holding code records are checked for having exited (their exit is
/// otherwise only learnt with the next wake-up, and not at all with `--pid`).
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Samples are read on this clock (they wake the reader only in large batches).
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// A sampling session wakes the reader once a quarter of the ring buffer is full.
const BATCH_FRACTION: u32 = 4;

pub struct Session {
    config: SessionConfig,
    /// The eBPF programs, or the walker compiled for the host (on-demand mode only).
    probes: Backend,
    sym: Symbolizer,
    tracker: Tracker,
    schedule: Schedule,
    asm: Assembler,
    ring: Option<RingBuf<MapData>>,
    stop: Stop,
    /// The `--pid` processes, watched when their exits end the session.
    watch: Option<PidWatch>,
    captures: u64,
    decode_errors: u64,
    /// Signals to new processes that arrived before their inspection finished.
    missed_new: u64,
    /// Signals `--hold` refused.
    held: u64,
    /// Held signals whose on-demand dump has not come back yet, by process.
    held_pending: std::collections::HashMap<
        u32,
        std::collections::VecDeque<(pytrace_common::HeldSignal, crate::bpf::IteratorRun)>,
    >,
    boot_to_epoch_ns: i128,
    /// Processes holding code records that were found gone at the last check.
    gone: Vec<u32>,
    started: Instant,
    /// Online CPUs the timer is attached on.
    pub cpus: usize,
    /// On-demand mode: the processes registered (each with a pidfd, which tells its exit
    /// even once its PID is reused), and those of `--pid` that could not be.
    registered: BTreeMap<u32, Option<OwnedFd>>,
    rejected: Vec<(u32, Error)>,
}

impl Session {
    /// Checks the requested PIDs, loads the programs, registers the processes and attaches
    /// the mode's programs. SIGINT and SIGTERM are caught from here on.
    pub fn start(config: SessionConfig) -> Result<Self, Error> {
        let on_demand = matches!(config.mode, Mode::OnDemand);
        // Check the requested PIDs before touching the kernel: a typo is the commonest error.
        // An on-demand dump reports each bad PID and dumps the others.
        // Inspected over the CPUs; an on-demand dump registers what it found here.
        let mut rejected = Vec::new();
        let mut accepted = Vec::new();
        for (&pid, checked) in config.pids.iter().zip(process::inspect_all(&config.pids)) {
            match checked {
                Ok(p) => accepted.push((pid, Ok(p))),
                Err(e) => {
                    let e = exit_aware(pid, tracker::inspect_error(e));
                    if !on_demand {
                        return Err(e);
                    }
                    rejected.push((pid, e));
                }
            }
        }
        crate::startup::step("requested processes inspected");
        let (mut probes, ring) = match config.reader {
            Reader::ProcessVm if on_demand => (Backend::ProcessVm, None),
            Reader::Auto if on_demand => match Self::load_kernel(&config) {
                Ok((probes, ring)) => (Backend::Kernel(Box::new(probes)), Some(ring)),
                Err(Error::KernelSupport(why)) => {
                    if config.verbose > 0 {
                        eprintln!(
                            "pytrace: the kernel cannot read other processes from BPF ({}); \
                             reading with process_vm_readv instead",
                            escape::field(&why)
                        );
                    }
                    (Backend::ProcessVm, None)
                }
                Err(e) => return Err(e),
            },
            _ => {
                let (probes, ring) = Self::load_kernel(&config)?;
                (Backend::Kernel(Box::new(probes)), Some(ring))
            }
        };
        let mut sym = Symbolizer::default();
        let mut tracker = Tracker::default();
        let mut schedule = Schedule::default();
        let mut registered = BTreeMap::new();
        if on_demand {
            let scan = config.pids.is_empty();
            let inspected = if scan {
                // Judged and inspected over the CPUs, registered in order.
                let pids = process::candidate_pids();
                let found = process::inspect_all(&pids);
                pids.into_iter().zip(found).collect()
            } else {
                accepted
            };
            for (pid, inspected) in inspected {
                match tracker.register_inspected(pid, inspected, &mut probes, &mut sym) {
                    Ok(()) => {
                        registered.insert(pid, pidfd(pid));
                    }
                    Err(e) if scan => {
                        if config.verbose > 0 {
                            eprintln!("pytrace: skipping {e}");
                        }
                    }
                    Err(e) => rejected.push((pid, exit_aware(pid, e))),
                }
            }
        } else if config.pids.is_empty() {
            // Attach the lifecycle probes first, so a process started during the scan is not
            // missed.
            for failure in kernel(&mut probes)?.attach_lifecycle(&dynamic_loaders())? {
                let why = if privileges::can_attach_uprobes() {
                    ""
                } else {
                    " (uprobes need CAP_SYS_ADMIN)"
                };
                eprintln!(
                    "pytrace: warning: {failure}{why}; processes loading libpython later may be missed"
                );
            }
            for pid in process::candidate_pids() {
                match tracker.register(pid, &mut probes, &mut sym) {
                    Ok(()) => schedule.registered(pid),
                    Err(e) if config.verbose > 0 => {
                        eprintln!("pytrace: skipping {}", escape::field(&e.to_string()))
                    }
                    Err(_) => {}
                }
            }
        } else {
            if config.stop_when_targets_exit {
                // To notice that the chosen processes are all gone.
                kernel(&mut probes)?.attach_exits()?;
            }
            for &pid in &config.pids {
                tracker.register(pid, &mut probes, &mut sym)?;
            }
        }
        let cpus = match config.mode {
            Mode::Signal { hold, .. } => {
                let probes = kernel(&mut probes)?;
                if hold {
                    // A held process is dumped by the task iterator, as `pytrace dump` does.
                    probes.load_task_iterator()?;
                    probes.attach_hold()?;
                }
                probes.attach_signal()?;
                0
            }
            Mode::Timer { hz, .. } => kernel(&mut probes)?.attach_cpu_clock(hz)?,
            Mode::OnDemand => 0,
        };
        crate::startup::step("processes registered, programs attached");
        // Installed before "attached" is printed: a SIGTERM right after it must detach cleanly.
        let stop = Stop::install()?;
        Ok(Session {
            watch: config
                .stop_when_targets_exit
                .then(|| PidWatch::new(&config.pids)),
            config,
            probes,
            sym,
            tracker,
            schedule,
            asm: Assembler::default(),
            ring,
            stop,
            captures: 0,
            decode_errors: 0,
            missed_new: 0,
            held: 0,
            held_pending: Default::default(),
            boot_to_epoch_ns: boot_to_epoch_ns(),
            gone: Vec::new(),
            started: Instant::now(),
            cpus,
            registered,
            rejected,
        })
    }

    /// Loads the eBPF programs the mode needs and maps the ring buffer (for an on-demand
    /// dump: the task iterator, whose load says whether this kernel can run it).
    fn load_kernel(config: &SessionConfig) -> Result<(Probes, RingBuf<MapData>), Error> {
        let on_demand = matches!(config.mode, Mode::OnDemand);
        // `--ringbuf-mib` is checked by the command line (1 to 1024).
        let ringbuf_bytes = config.ringbuf_mib.next_power_of_two() * 1024 * 1024;
        let mut probes = Probes::load(&ProbeConfig {
            signals: match &config.mode {
                Mode::Signal { signals, .. } => signals.clone(),
                Mode::Timer { .. } | Mode::OnDemand => vec![],
            },
            hold: matches!(config.mode, Mode::Signal { hold: true, .. }),
            pid_filter: !config.pids.is_empty(),
            ringbuf_bytes,
            wake_batch_bytes: ringbuf_bytes / BATCH_FRACTION,
            run_time_stats: config.verbose > 0,
            kernel_log: config.verbose > 1,
            on_demand_only: on_demand,
            calibration: match config.mode {
                Mode::Timer { calibration, .. } => calibration,
                Mode::Signal { .. } | Mode::OnDemand => Calibration::default(),
            },
        })?;
        let ring = probes.events()?;
        crate::startup::step("ring buffer mapped");
        if on_demand {
            probes.load_task_iterator()?;
        }
        Ok((probes, ring))
    }

    /// Which reader on-demand dumps use, for `-v`.
    pub fn reader(&self) -> &'static str {
        self.probes.describe()
    }

    /// On-demand mode: dumps every registered process now (one run of the task iterator, or
    /// the host walk of each process) and
    /// hands the captures to `consumer` in PID order. Returns every process asked for (the
    /// registered ones and the `--pid`s that could not be) with its outcome, in PID order.
    pub fn dump_now(
        &mut self,
        consumer: &mut dyn Consumer,
    ) -> Result<Vec<(u32, DumpOutcome)>, Error> {
        let pids: Vec<u32> = self.registered.keys().copied().collect();
        let mut run = self.probes.dump_now(&pids)?;
        crate::startup::step("processes read");
        let mut collected = Collect::default();
        // The host walk's records, where the kernel's come from the ring buffer: the same
        // decoding from here on.
        for record in std::mem::take(&mut run.records) {
            self.handle(&record, &mut collected)?;
        }
        if let Some(mut ring) = self.ring.take() {
            let drained = self.drain(&mut ring, &mut collected);
            self.ring = Some(ring);
            drained?;
        }
        crate::startup::step("captures decoded and symbolized");
        crate::startup::finish();
        let mut outcomes: Vec<(u32, DumpOutcome)> = std::mem::take(&mut self.rejected)
            .into_iter()
            .map(|(pid, e)| (pid, DumpOutcome::Failed(e)))
            .collect();
        for (pid, state) in run.states {
            if let Some(i) = run.refused.iter().position(|(p, _)| *p == pid) {
                outcomes.push((pid, DumpOutcome::Failed(run.refused.swap_remove(i).1)));
                continue;
            }
            let captured = collected.0.remove(&pid);
            let gone = process::is_gone(pid) || process::procfs::is_exiting(pid);
            let outcome = match captured {
                Some(mut capture) => {
                    match run.proc_tasks.as_ref() {
                        Some(procs) => {
                            let tasks = procs.get(&pid).map(Vec::as_slice).unwrap_or_default();
                            let tasks = crate::backend::task_map(&capture, tasks);
                            name_threads(&mut capture, &tasks);
                        }
                        None => name_threads(&mut capture, &run.tasks),
                    }
                    if gone
                        && (capture.interpreter_state != InterpreterState::Initialised
                            || capture.threads.iter().any(|t| t.torn))
                    {
                        // It exited while being read: what was read is not its last state.
                        DumpOutcome::Failed(Error::NoSuchProcess(pid))
                    } else {
                        consumer.capture(capture)?;
                        DumpOutcome::Dumped
                    }
                }
                None if state == crate::bpf::DUMP_PENDING || gone => {
                    DumpOutcome::Failed(Error::NoSuchProcess(pid))
                }
                None => DumpOutcome::Failed(Error::Inspect {
                    pid,
                    reason: "the dump could not be read (see the counters with -v)".into(),
                }),
            };
            outcomes.push((pid, outcome));
        }
        outcomes.sort_by_key(|(pid, _)| *pid);
        Ok(outcomes)
    }

    /// On-demand mode, between two rounds of `--watch`: forgets the processes that have
    /// exited and, without `--pid`, registers the CPython processes started since. Returns the
    /// processes found exited.
    pub fn refresh_on_demand(&mut self) -> Vec<u32> {
        let gone: Vec<u32> = self
            .registered
            .iter()
            .filter(|(&pid, fd)| match fd {
                Some(fd) => has_exited(fd),
                None => process::is_gone(pid),
            })
            .map(|(&pid, _)| pid)
            .collect();
        for &pid in &gone {
            self.forget_on_demand(pid);
        }
        if self.config.pids.is_empty() {
            for pid in process::candidate_pids() {
                if self.registered.contains_key(&pid) {
                    continue;
                }
                match self.tracker.register(pid, &mut self.probes, &mut self.sym) {
                    Ok(()) => {
                        self.registered.insert(pid, pidfd(pid));
                        if self.config.verbose > 0 {
                            eprintln!("pytrace: now dumping new process {pid}");
                        }
                    }
                    Err(e) if self.config.verbose > 1 => {
                        eprintln!("pytrace: skipping {}", escape::field(&e.to_string()))
                    }
                    Err(_) => {}
                }
            }
        }
        gone
    }

    /// On-demand mode: how many processes the next round reads.
    pub fn registered_count(&self) -> usize {
        self.registered.len()
    }

    /// On-demand mode: no longer dumps `pid` (it has exited, or `--watch` ends for it).
    pub fn forget_on_demand(&mut self, pid: u32) {
        if self.registered.remove(&pid).is_some() {
            self.tracker
                .unregister(pid, &mut self.probes, &mut self.sym);
        }
    }

    /// Whether `pid` is dumped at the next on-demand round.
    pub fn is_registered(&self, pid: u32) -> bool {
        self.registered.contains_key(&pid)
    }

    /// Waits until `until`; false when SIGINT or SIGTERM came first (or had come meanwhile).
    pub async fn pause_until(&mut self, until: Instant) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.interrupt.recv() => false,
            _ = self.stop.terminate.recv() => false,
            _ = tokio::time::sleep_until(until) => true,
        }
    }

    /// Python processes known now.
    pub fn process_count(&self) -> usize {
        self.sym.process_count()
    }

    /// Captures handed to the consumer so far.
    pub fn captures(&self) -> u64 {
        self.captures
    }

    /// Drains captures into `consumer` until a stop: SIGINT/SIGTERM, the duration, the
    /// consumer's `Flow::Stop`, or (if asked) the exit of every chosen process.
    pub async fn run(&mut self, consumer: &mut dyn Consumer) -> Result<(), Error> {
        let ring = self
            .ring
            .take()
            .ok_or_else(|| Error::Runtime("the session has already run".into()))?;
        // SAFETY: the ring buffer owns its file descriptor, which stays open (and is not closed
        // or reused behind tokio's back) for as long as the AsyncFd owns the ring buffer.
        let mut fd = unsafe { AsyncFd::register(ring) }
            .map_err(|e| Error::Runtime(format!("ring buffer: {e}")))?;
        self.started = Instant::now();
        let deadline = self
            .config
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let drain_clock = matches!(self.config.mode, Mode::Timer { .. });
        // Exit records ride the next wake-up: the chosen processes' pidfds say at once.
        let watch = self.watch.take();
        let all_exited = async {
            match &watch {
                Some(w) => w.all_exited().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(all_exited);
        let mut reap = tokio::time::interval(REAP_EVERY);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticker = tokio::time::interval(DRAIN_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
            let tick = async {
                if drain_clock {
                    ticker.tick().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let flow = tokio::select! {
                guard = fd.readable_mut() => {
                    let mut guard = guard.map_err(|e| Error::Runtime(format!("ring buffer: {e}")))?;
                    let flow = self.drain(guard.get_inner_mut(), consumer)?;
                    guard.clear_ready();
                    flow
                }
                _ = tick => {
                    let flow = self.drain(fd.get_mut(), consumer)?;
                    let asked = consumer.tick(&Progress {
                        elapsed: self.started.elapsed(),
                        captures: self.captures,
                        processes: self.sym.process_count(),
                        lost: self.torn(),
                    });
                    if asked == Flow::Stop { Flow::Stop } else { flow }
                }
                _ = &mut all_exited => {
                    // Their last records are already in the ring buffer.
                    let flow = self.drain(fd.get_mut(), consumer)?;
                    if flow == Flow::Continue {
                        eprintln!("pytrace: every selected process has exited");
                    }
                    return Ok(());
                }
                _ = self.stop.interrupt.recv() => Flow::Stop,
                _ = self.stop.terminate.recv() => Flow::Stop,
                _ = sleep => Flow::Stop,
                _ = inspect => {
                    self.inspect_due();
                    Flow::Continue
                }
                _ = reap.tick() => {
                    self.reap();
                    Flow::Continue
                }
            };
            if flow == Flow::Stop {
                // What is already in the ring buffer belongs to the run: keep it.
                if drain_clock {
                    if let Some(probes) = self.probes.kernel_mut() {
                        probes.detach_cpu_clock();
                    }
                    self.drain(fd.get_mut(), consumer)?;
                }
                return Ok(());
            }
        }
    }

    /// Handles every record waiting in the ring buffer.
    fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        consumer: &mut dyn Consumer,
    ) -> Result<Flow, Error> {
        self.probes.flush_kernel_log();
        while let Some(item) = ring.next() {
            let bytes = item.to_vec();
            drop(item);
            if self.handle(&bytes, consumer)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
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

    /// Drops the state of processes found gone at two checks in a row: by then every record
    /// of a capture they received before dying has been read.
    fn reap(&mut self) {
        let gone: Vec<u32> = self
            .sym
            .pids_with_codes()
            .into_iter()
            .filter(|&pid| process::is_gone(pid))
            .collect();
        for &pid in &gone {
            if self.gone.contains(&pid) {
                self.schedule.forget(pid);
                self.tracker
                    .unregister(pid, &mut self.probes, &mut self.sym);
            }
        }
        self.gone = gone;
    }

    /// Tells the kernel which code records the symbolizer dropped to stay within its bounds.
    fn forget_evicted(&mut self) {
        let keys = self.sym.take_evicted();
        if !keys.is_empty() {
            self.probes.forget_codes(&keys);
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
                if self.config.verbose > 0 {
                    eprintln!("pytrace: now tracing new process {pid}");
                }
            }
            Err(Error::NoSuchProcess(_)) => {}
            Err(Error::NotPython { .. }) if attempt >= NOT_PYTHON_RECHECKS => {}
            Err(e) => {
                if Schedule::has_retry(attempt) {
                    self.schedule.retry(pid, attempt + 1);
                } else if self.config.verbose > 0 {
                    eprintln!(
                        "pytrace: not tracing new process {pid}: {}",
                        escape::field(&e.to_string())
                    );
                }
            }
        }
    }

    /// The kernel could not read the interpreter list's head: at signal delivery no page can
    /// be faulted in, and a page never touched is not there (3.6 keeps `interp_head` in
    /// `.bss`, untouched until `Py_Initialize`). Read it again now, while the process lives:
    /// still null means there is no interpreter.
    fn recheck_interpreter_list(&self, capture: &mut Capture) {
        let Some(addr) = self.sym.interp_head_addr(capture.pid) else {
            return;
        };
        let mut head = [0u8; 8];
        if process::read_memory(capture.pid, addr, &mut head).is_ok() && head == [0; 8] {
            capture.interpreter_state = InterpreterState::NotInitialised;
        }
    }

    /// A capture whose records have all arrived: symbolized, completed while the process
    /// lives, and handed to the consumer.
    fn captured(&mut self, raw: &RawCapture, consumer: &mut dyn Consumer) -> Result<Flow, Error> {
        let mut capture = self.sym.symbolize(raw, self.boot_to_epoch_ns);
        if capture.interpreter_state == InterpreterState::Unreadable {
            self.recheck_interpreter_list(&mut capture);
        }
        if capture.ns_pid.is_some() && matches!(capture.trigger, TriggerInfo::Signal { .. }) {
            // In a PID namespace: the receiving thread's id as the target sees it,
            // while the thread still exists.
            capture.ns_tid = process::procfs::thread_ns_tid(capture.pid, capture.tid);
        }
        if capture.trigger == TriggerInfo::OnDemand {
            if let Some((h, run)) = self
                .held_pending
                .get_mut(&capture.pid)
                .and_then(|q| q.pop_front())
            {
                // The thread the signal was addressed to is faulthandler's current
                // thread, as it would have been at the delivery.
                name_threads(&mut capture, &run.tasks);
                for t in &mut capture.threads {
                    t.current = t.task.as_ref().is_some_and(|k| k.tid == h.tid);
                }
                capture.trigger = TriggerInfo::Signal {
                    signal: h.signal,
                    sender_pid: Some(h.sender),
                    action: SignalAction::Held,
                    from_kernel: false,
                    fault_addr: None,
                    oom: false,
                    delivered_as: None,
                };
                capture.tid = h.tid;
            }
        }
        self.captures += 1;
        consumer.capture(capture)
    }

    fn handle(&mut self, bytes: &[u8], consumer: &mut dyn Consumer) -> Result<Flow, Error> {
        match decode::decode(bytes) {
            Ok(Record::Begin(b)) => self.asm.begin(b),
            Ok(Record::Signal(s)) => self.asm.signal(s),
            Ok(Record::Thread(h, f)) => self.asm.thread(h, f),
            Ok(Record::Tasks(t)) => self.asm.tasks(t),
            Ok(Record::Code(c)) => {
                self.sym.add_code(c);
                self.forget_evicted();
            }
            Ok(Record::CodeChunk(c)) => {
                self.sym.add_chunk(c);
                self.forget_evicted();
            }
            Ok(Record::End(e)) => {
                if let Some(raw) = self.asm.end(e) {
                    return self.captured(&raw, consumer);
                }
            }
            Ok(Record::Sample(raw)) => return self.captured(&raw, consumer),
            Ok(Record::Mapped(pid)) => {
                if self.config.pids.is_empty() && !self.sym.has_process(pid) {
                    self.schedule.reported(pid);
                }
            }
            Ok(Record::Forked(child, parent)) => {
                if self.sym.fork_process(parent, child) && self.config.verbose > 0 {
                    eprintln!("pytrace: now tracing process {child}, forked from {parent}");
                }
            }
            Ok(Record::Exited(pid)) => {
                self.schedule.forget(pid);
                self.tracker
                    .unregister(pid, &mut self.probes, &mut self.sym);
                consumer.exited(pid);
            }
            Ok(Record::Held(h)) => {
                // The signal never reaches the process: dump it now from outside, through the
                // task iterator; its capture comes back through the ring buffer and is named
                // after the held signal.
                self.held += 1;
                match self.probes.dump_now(&[h.pid]) {
                    Ok(run) => self
                        .held_pending
                        .entry(h.pid)
                        .or_default()
                        .push_back((h, run)),
                    Err(e) => eprintln!(
                        "pytrace: held {} from PID {} to process {} (the sender got EPERM); not dumped: {e}",
                        signals::name(h.signal),
                        h.sender,
                        h.pid
                    ),
                }
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
                if self.config.verbose > 0 {
                    let end = s.comm.iter().position(|&c| c == 0).unwrap_or(16);
                    eprintln!(
                        "pytrace: process {} ({}) received {}: not a known Python process, ignored",
                        s.pid,
                        escape::field_bytes(&s.comm[..end]),
                        signals::name(s.signal)
                    );
                }
            }
            Err(e) => {
                self.decode_errors += 1;
                if self.config.verbose > 1 {
                    eprintln!("pytrace: undecodable record: {e}");
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Counters on exit: all of them with -v, or whenever something was lost or incomplete.
    /// `written` names what the consumer wrote (`printed=N`).
    pub fn report(&mut self, written: (&str, u64)) {
        self.report_with(written, &[]);
    }

    /// [`Session::report`], with the consumer's own losses (`name=N`, counted as lost).
    pub fn report_with(&mut self, written: (&str, u64), consumer_lost: &[(&str, u64)]) {
        self.probes.flush_kernel_log();
        let counters = self.probes.counters();
        let lost = counters
            .iter()
            .filter(|(c, _)| c.is_loss())
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.asm.torn
            + self.decode_errors
            + self.missed_new
            + consumer_lost.iter().map(|(_, n)| n).sum::<u64>();
        if self.config.verbose == 0 && lost == 0 {
            return;
        }
        let mut line = format!("pytrace: stats: {}={}", written.0, written.1);
        for (c, n) in counters {
            line.push_str(&format!(" {}={}", c.name(), n));
        }
        line.push_str(&format!(
            " torn_dumps={} orphan_records={} decode_errors={} stray_codes={} stray_chunks={} \
             dropped_codes={} cached_codes={} cached_code_bytes={} missed_new_processes={} held_signals={}",
            self.asm.torn,
            self.asm.orphans,
            self.decode_errors,
            self.sym.stray_codes,
            self.sym.stray_chunks,
            self.sym.dropped_codes,
            self.sym.cached().0,
            self.sym.cached().1,
            self.missed_new,
            self.held
        ));
        for (name, n) in consumer_lost {
            line.push_str(&format!(" {name}={n}"));
        }
        eprintln!("{line}");
        if self.config.verbose > 0 {
            for (name, runs, ns, verified) in self.probes.run_stats() {
                eprintln!("pytrace: bpf: {name} runs={runs} ns={ns} verified_insns={verified}");
            }
        }
    }

    /// The kernel side's counters (totals over all CPUs).
    pub fn counters(&self) -> Vec<(pytrace_common::Counter, u64)> {
        self.probes.counters()
    }

    /// Captures lost whole: torn in the ring buffer, or undecodable.
    pub fn torn(&self) -> u64 {
        self.asm.torn + self.decode_errors
    }
}

/// Keeps an on-demand run's captures by PID, to hand them on in PID order.
#[derive(Default)]
struct Collect(std::collections::BTreeMap<u32, Capture>);

impl Consumer for Collect {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        self.0.insert(capture.pid, capture);
        Ok(Flow::Continue)
    }
}

/// The eBPF programs, for the modes that only run in the kernel.
fn kernel(backend: &mut Backend) -> Result<&mut Probes, Error> {
    backend
        .kernel_mut()
        .ok_or_else(|| Error::Runtime("this mode needs the kernel's programs".into()))
}

/// An inspection error, unless the process has exited or is exiting: one that exits while
/// being inspected can look like anything on the way out (its maps torn down first), so say
/// that it exited.
fn exit_aware(pid: u32, e: Error) -> Error {
    match e {
        _ if process::procfs::exited_unreaped(pid) => Error::Zombie(pid),
        _ if process::is_gone(pid) || process::procfs::is_exiting(pid) => Error::NoSuchProcess(pid),
        e => e,
    }
}

/// A pidfd for `pid` (`None` when it cannot be had: the process's exit is then learnt from
/// `/proc`).
fn pidfd(pid: u32) -> Option<OwnedFd> {
    use std::os::fd::{FromRawFd, RawFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: `fd` is a descriptor just returned to us and owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process of a pidfd has exited (the pidfd is readable then).
fn has_exited(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid, initialised pollfd, without waiting.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n > 0 && poll.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// A kernel `comm` (NUL-padded) as text.
fn comm_text(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
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

/// Gives each thread of an on-demand capture its kernel task as the iterator saw it: host tid,
/// whether it was on a CPU, and its OS name (the raw comm 3.14+ prints after the thread's
/// header), and marks the names unknown when a thread had no task.
fn name_threads(
    capture: &mut Capture,
    tasks: &std::collections::HashMap<(u32, u64), pytrace_common::TaskSnapshot>,
) {
    let pid = capture.pid;
    for t in capture.threads.iter_mut().chain(&mut capture.other_threads) {
        let task = tasks.get(&(pid, t.thread_id));
        t.os_name = task.map(|k| {
            let end = k.comm.iter().position(|&b| b == 0).unwrap_or(k.comm.len());
            k.comm[..end].to_vec()
        });
        t.task = task.map(|k| ThreadTask {
            tid: k.tid,
            name: comm_text(&k.comm),
            on_cpu: k.on_cpu != 0,
        });
    }
    capture.thread_names_unknown = capture.threads.iter().any(|t| t.task.is_none());
}
