//! Loading and attaching the eBPF programs, and the maps user space shares with them.

mod btf;

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        uprobe::UProbeScope,
        BtfTracePoint, Iter, Lsm, PerfEvent, ProgramError, UProbe,
    },
    Btf, Ebpf, EbpfLoader,
};
use std::path::PathBuf;

use pytrace_common::{CodeKey, Counter, ProcInfo, TaskKey, TaskSnapshot, COUNTER_COUNT};

use crate::{error::Error, startup};

/// The compiled eBPF object, built from `pyspy-ebpf` by this crate's build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pyspy"));

/// What the benchmark measures of the sampler (`record --calibrate-reads`, `--time-phases`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Calibration {
    /// Reads of the sampled thread's memory added after each sample: the cost of one.
    pub reads: u32,
    /// Each capture's begin, walk and finish timed into counters.
    pub time_phases: bool,
}

/// What the programs are told at load time.
pub struct ProbeConfig {
    /// Signals that trigger a dump.
    pub signals: Vec<u32>,
    /// Refuse those signals to the registered processes (`--hold`).
    pub hold: bool,
    /// Only processes user space registers are walked; others are counted, not reported.
    pub pid_filter: bool,
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Batched records (samples) wake the reader once this many bytes wait.
    pub wake_batch_bytes: u32,
    /// Ask the kernel to account each program's run time (small cost per run).
    pub run_time_stats: bool,
    /// Print the programs' debug messages (`-vv`). Off, the messages' code is dropped by the
    /// verifier (`AYA_LOG_LEVEL` 0 is read-only data) and nothing reads their buffer.
    pub kernel_log: bool,
    /// The benchmark's measurements of the sampler (off: no cost).
    pub calibration: Calibration,
    /// Only the task iterator will run (`pytrace dump`): the maps that only the signal, timer
    /// and lifecycle programs use are made as small as they can be (one entry), so that their
    /// preallocation does not slow the start.
    pub on_demand_only: bool,
}

/// `aya_log_common::Level::Debug`: the level of the programs' messages.
const KERNEL_LOG_DEBUG: u8 = 4;

/// Prints the programs' messages on standard error.
struct KernelLog;

impl log::Log for KernelLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        eprintln!("pytrace: kernel: {}", record.args());
    }

    fn flush(&self) {}
}

/// The programs' messages, printed when the session drains its ring buffer and at its end
/// ([`Probes::flush_kernel_log`]).
type KernelLogger = aya_log::EbpfLogger<KernelLog>;

/// Maps no program of an on-demand dump touches (each an LRU cache, correct at any size).
const NOT_ON_DEMAND_MAPS: [&str; 4] = ["NOTED", "DEATHS", "RECENTLY_REPORTED", "THREAD_STATES"];

pub struct Probes {
    ebpf: Ebpf,
    /// The kernel's BTF, parsed once for every program to load against.
    btf: Btf,
    /// Keeps the kernel's per-program run-time statistics on while held.
    _stats: Option<std::os::fd::OwnedFd>,
    procs: HashMap<MapData, u32, ProcInfo>,
    /// The kernel's "code record already sent" cache.
    sent_codes: HashMap<MapData, CodeKey, u8>,
    /// Bumped after `sent_codes` loses keys: the samplers' per-CPU proofs that a record was
    /// sent are then void.
    codes_epoch: Array<MapData, u64>,
    /// The CPU-clock perf events, while attached.
    cpu_clock_links: Vec<aya::programs::perf_event::PerfEventLinkId>,
    /// The programs' debug messages, under `-vv`.
    kernel_log: Option<KernelLogger>,
    counters: PerCpuArray<MapData, u64>,
}

impl Probes {
    /// Checks kernel support, then loads (but does not attach) the programs (privileges are
    /// checked once at start, `privileges::check`).
    pub fn load(config: &ProbeConfig) -> Result<Self, Error> {
        // Three independent reads of the kernel's BTF, side by side (each takes tens of
        // milliseconds): the offsets pytrace patches into the object, aya's parse for program
        // loads, and the loader's own parse (`EbpfLoader::new` always makes one).
        let (k, kernel_btf, loader) = std::thread::scope(|s| {
            let for_loads = s.spawn(Btf::from_sys_fs);
            let loader = s.spawn(EbpfLoader::new);
            let k = btf::kernel_offsets();
            (k, for_loads.join(), loader.join())
        });
        let k = k?;
        let kernel_btf = kernel_btf
            .map_err(|_| Error::Runtime("reading the kernel's BTF panicked".into()))?
            .map_err(|e| Error::KernelSupport(format!("cannot read the kernel's BTF: {e}")))?;
        let loader =
            loader.map_err(|_| Error::Runtime("preparing the eBPF loader panicked".into()))?;
        startup::step("kernel BTF read (offsets, program loads, loader; in parallel)");
        // Bit n - 1 for signal n, 1 to 64.
        let mask = config
            .signals
            .iter()
            .fold(0u64, |m, &s| m | pytrace_common::signal_bit(s));
        let hold = u32::from(config.hold);
        let self_pid = std::process::id();
        let so = k.signal;
        let pid_filter = u32::from(config.pid_filter);
        let time_phases = u32::from(config.calibration.time_phases);
        let wake_batch_bytes = config.wake_batch_bytes as u64;
        let kernel_log_level: u8 = if config.kernel_log {
            KERNEL_LOG_DEBUG
        } else {
            0
        };
        raise_memlock_limit();
        let mut loader = loader;
        if config.on_demand_only {
            for name in NOT_ON_DEMAND_MAPS {
                loader.map_max_entries(name, 1);
            }
        }
        let mut ebpf = loader
            .override_global("FSBASE_OFFSET", &k.fsbase, true)
            .override_global("TASK_PID_OFFSET", &k.task_pid, true)
            .override_global("TASK_TGID_OFFSET", &k.task_tgid, true)
            .override_global(
                "SIGNAL_THREAD_HEAD_OFFSET",
                &k.threads.signal_thread_head,
                true,
            )
            .override_global("TASK_THREAD_NODE_OFFSET", &k.threads.task_thread_node, true)
            .override_global("TASK_COMM_OFFSET", &k.task_comm, true)
            .override_global("TASK_ON_CPU_OFFSET", &k.task_on_cpu, true)
            .override_global("SIGNAL_MASK", &mask, true)
            .override_global("HOLD", &hold, true)
            .override_global("HOLD_PROBE_PID", &self_pid, true)
            .override_global("TASK_SIGNAL_OFFSET", &so.task_signal, true)
            .override_global("TASK_GROUP_LEADER_OFFSET", &so.task_group_leader, true)
            .override_global("TASK_START_TIME_OFFSET", &so.task_start_time, true)
            .override_global("SIGNAL_FLAGS_OFFSET", &so.flags, true)
            .override_global("SIGNAL_GROUP_EXIT_CODE_OFFSET", &so.group_exit_code, true)
            .override_global("SIGNAL_OOM_MM_OFFSET", &so.oom_mm, true)
            .override_global("PID_FILTER", &pid_filter, true)
            .override_global("AYA_LOG_LEVEL", &kernel_log_level, true)
            .override_global("WAKE_BATCH_BYTES", &wake_batch_bytes, true)
            .override_global("CALIBRATE_READS", &config.calibration.reads, true)
            .override_global("TIME_PHASES", &time_phases, true)
            .map_max_entries("EVENTS", config.ringbuf_bytes)
            .load(OBJECT)
            .map_err(|e| Error::KernelSupport(format!("loading the eBPF object failed: {e}")))?;
        startup::step("eBPF object: maps created");
        let procs = HashMap::try_from(take_map(&mut ebpf, "PROCS")?)
            .map_err(|e| Error::Runtime(format!("map PROCS: {e}")))?;
        let sent_codes = HashMap::try_from(take_map(&mut ebpf, "SENT_CODES")?)
            .map_err(|e| Error::Runtime(format!("map SENT_CODES: {e}")))?;
        let codes_epoch = Array::try_from(take_map(&mut ebpf, "CODES_EPOCH")?)
            .map_err(|e| Error::Runtime(format!("map CODES_EPOCH: {e}")))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, "COUNTERS")?)
            .map_err(|e| Error::Runtime(format!("map COUNTERS: {e}")))?;
        let kernel_log = if config.kernel_log {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, KernelLog)
                    .map_err(|e| Error::Runtime(format!("kernel debug messages: {e}")))?,
            )
        } else {
            None
        };
        let stats = config
            .run_time_stats
            .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok())
            .flatten();
        Ok(Probes {
            ebpf,
            btf: kernel_btf,
            _stats: stats,
            procs,
            sent_codes,
            codes_epoch,
            cpu_clock_links: Vec::new(),
            kernel_log,
            counters,
        })
    }

    /// Attaches the signal-delivery program (`tp_btf/signal_deliver`: BTF tracepoints need no
    /// tracefs).
    pub fn attach_signal(&mut self) -> Result<(), Error> {
        // The sender's host PID, noted at generation, for targets in other PID namespaces.
        self.attach_btf_tracepoint("signal_generate", "signal_generate")?;
        self.attach_btf_tracepoint("signal_deliver", "signal_deliver")
    }

    /// Attaches the BPF LSM `task_kill` program that refuses the watched signals to the
    /// registered processes, then checks that the kernel runs it: pytrace sends signal 0 to
    /// itself, which the program refuses. A kernel without the BPF LSM active (`bpf` missing
    /// from `/sys/kernel/security/lsm`) loads and attaches the program but never calls it.
    pub fn attach_hold(&mut self) -> Result<(), Error> {
        let attach_err = |reason: String| Error::Attach {
            probe: "lsm/task_kill".into(),
            reason,
        };
        let program: &mut Lsm = self
            .ebpf
            .program_mut("task_kill")
            .ok_or_else(|| attach_err("program missing from the object".into()))?
            .try_into()
            .map_err(|e| attach_err(format!("{e}")))?;
        let unsupported =
            |what: String| Error::KernelSupport(format!("--hold needs the BPF LSM, and {what}"));
        program.load("task_kill", &self.btf).map_err(|e| match e {
            ProgramError::LoadError { io_error, .. }
                if io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                unsupported("this kernel refuses to load BPF LSM programs (EPERM)".into())
            }
            e => unsupported(format!(
                "loading its program failed: {}",
                verifier_summary(&e)
            )),
        })?;
        program
            .attach()
            .map_err(|e| unsupported(format!("attaching its program failed: {e}")))?;
        // SAFETY: kill(2) with signal 0 only checks permission; no memory is involved.
        let refused = unsafe { libc::kill(std::process::id() as libc::pid_t, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !refused {
            return Err(unsupported(
                "this kernel does not run it (\"bpf\" is not in /sys/kernel/security/lsm)".into(),
            ));
        }
        Ok(())
    }

    /// Attaches the CPU-clock program to a software perf event firing `hz` times per second
    /// of CPU time on every online CPU (no hardware PMU needed). Returns the number of CPUs.
    pub fn attach_cpu_clock(&mut self, hz: u64) -> Result<usize, Error> {
        let attach_err = |reason: String| Error::Attach {
            probe: "perf_event/cpu-clock".into(),
            reason,
        };
        let cpus = aya::util::online_cpus()
            .map_err(|(what, e)| attach_err(format!("cannot list online CPUs ({what}): {e}")))?;
        let program: &mut PerfEvent = self
            .ebpf
            .program_mut("cpu_clock")
            .ok_or_else(|| attach_err("program missing from the object".into()))?
            .try_into()
            .map_err(|e| attach_err(format!("{e}")))?;
        program
            .load()
            .map_err(|e| attach_err(verifier_summary(&e)))?;
        for &cpu in &cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(hz),
                    false,
                )
                .map_err(|e| attach_err(format!("CPU {cpu}: {e}")))?;
            self.cpu_clock_links.push(link);
        }
        Ok(cpus.len())
    }

    /// Prints the programs' debug messages written so far (`-vv`).
    pub fn flush_kernel_log(&mut self) {
        if let Some(log) = &mut self.kernel_log {
            log.flush();
        }
    }

    /// Stops the CPU clock: no sample starts after this, so a drain after it sees every
    /// sample the kernel counted (but one in progress on another CPU, for microseconds).
    pub fn detach_cpu_clock(&mut self) {
        let Some(program) = self.ebpf.program_mut("cpu_clock") else {
            return;
        };
        let Ok(program): Result<&mut PerfEvent, _> = program.try_into() else {
            return;
        };
        for link in self.cpu_clock_links.drain(..) {
            let _ = program.detach(link);
        }
    }

    /// Attaches only the exit program (`tp_btf/sched_process_exit`), to learn when chosen
    /// processes exit.
    pub fn attach_exits(&mut self) -> Result<(), Error> {
        self.attach_btf_tracepoint("process_exit", "sched_process_exit")
    }

    /// Attaches the process-lifecycle programs: exec (`tp_btf/sched_process_exec`), exit
    /// (`tp_btf/sched_process_exit`), fork (`tp_btf/sched_process_fork`) and the dynamic
    /// loader's `_dl_debug_state` hook (uprobe
    /// on every `loaders`), which runs after libraries are loaded at start-up or by `dlopen`.
    /// Returns the loaders that could not be probed, with why.
    pub fn attach_lifecycle(&mut self, loaders: &[PathBuf]) -> Result<Vec<String>, Error> {
        self.attach_btf_tracepoint("process_exec", "sched_process_exec")?;
        self.attach_btf_tracepoint("process_exit", "sched_process_exit")?;
        self.attach_btf_tracepoint("process_fork", "sched_process_fork")?;
        let program: &mut UProbe = self
            .ebpf
            .program_mut("libraries_changed")
            .ok_or_else(|| Error::Attach {
                probe: "uprobe/_dl_debug_state".into(),
                reason: "program missing from the object".into(),
            })?
            .try_into()
            .map_err(|e| Error::Attach {
                probe: "uprobe/_dl_debug_state".into(),
                reason: format!("{e}"),
            })?;
        program.load().map_err(|e| Error::Attach {
            probe: "uprobe/_dl_debug_state".into(),
            reason: verifier_summary(&e),
        })?;
        let mut failed = Vec::new();
        for loader in loaders {
            if let Err(e) = program.attach("_dl_debug_state", loader, UProbeScope::AllProcesses) {
                failed.push(format!("uprobe {}:_dl_debug_state: {e}", loader.display()));
            }
        }
        Ok(failed)
    }

    fn attach_btf_tracepoint(&mut self, program: &str, tracepoint: &str) -> Result<(), Error> {
        let attach_err = |reason: String| Error::Attach {
            probe: format!("tp_btf/{tracepoint}"),
            reason,
        };
        let program: &mut BtfTracePoint = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| attach_err("program missing from the object".into()))?
            .try_into()
            .map_err(|e| attach_err(format!("{e}")))?;
        program
            .load(tracepoint, &self.btf)
            .map_err(|e| attach_err(verifier_summary(&e)))?;
        program.attach().map_err(|e| attach_err(format!("{e}")))?;
        Ok(())
    }

    /// Loads the sleepable task iterator of on-demand dumps. A kernel without it (task
    /// iterators, sleepable iterators, `bpf_copy_from_user_task`) cannot load it: that is
    /// `Error::KernelSupport`.
    pub fn load_task_iterator(&mut self) -> Result<(), Error> {
        let program: &mut Iter = self
            .ebpf
            .program_mut("dump_task")
            .ok_or_else(|| Error::KernelSupport("the task iterator is missing".into()))?
            .try_into()
            .map_err(|e| Error::KernelSupport(format!("the task iterator: {e}")))?;
        let loaded = program.load("task", &self.btf).map_err(|e| {
            Error::KernelSupport(format!(
                "this kernel cannot run a sleepable task iterator reading other tasks' memory \
                 (iter.s/task with bpf_copy_from_user_task, Linux 5.18+): {}",
                verifier_summary(&e)
            ))
        });
        startup::step("task iterator verified and loaded");
        loaded
    }

    /// Runs the task iterator once over every task of the host: each process of `pids` (with a
    /// table in `PROCS`) is captured into the ring buffer, all its threads. Returns where each
    /// PID stands and what the iterator saw of their threads.
    pub fn dump_now(&mut self, pids: &[u32]) -> Result<IteratorRun, Error> {
        use std::io::Read;
        let map_err =
            |name: &str, e: aya::maps::MapError| Error::Runtime(format!("map {name}: {e}"));
        {
            let mut tasks: HashMap<&mut MapData, TaskKey, TaskSnapshot> =
                HashMap::try_from(self.map_mut("DUMP_TASKS")?)
                    .map_err(|e| map_err("DUMP_TASKS", e))?;
            let stale: Vec<TaskKey> = tasks.keys().filter_map(Result::ok).collect();
            for key in stale {
                let _ = tasks.remove(&key);
            }
        }
        {
            let mut requests: HashMap<&mut MapData, u32, u32> =
                HashMap::try_from(self.map_mut("DUMP_PIDS")?)
                    .map_err(|e| map_err("DUMP_PIDS", e))?;
            let stale: Vec<u32> = requests.keys().filter_map(Result::ok).collect();
            for pid in stale {
                let _ = requests.remove(&pid);
            }
            for &pid in pids {
                requests
                    .insert(pid, DUMP_PENDING, 0)
                    .map_err(|e| Error::Runtime(format!("requesting a dump of {pid}: {e}")))?;
            }
        }
        let program: &mut Iter = self
            .ebpf
            .program_mut("dump_task")
            .ok_or_else(|| Error::Runtime("the task iterator is missing".into()))?
            .try_into()
            .map_err(|e| Error::Runtime(format!("the task iterator: {e}")))?;
        let link_id = program
            .attach()
            .map_err(|e| Error::KernelSupport(format!("attaching the task iterator: {e}")))?;
        let link = program
            .take_link(link_id)
            .map_err(|e| Error::Runtime(format!("the task iterator's link: {e}")))?;
        let mut file = link
            .into_file()
            .map_err(|e| Error::KernelSupport(format!("creating a task iterator: {e}")))?;
        // The program writes nothing to the iterator's own output: one read runs it over
        // every task (it returns at the end of the iteration).
        let mut sink = Vec::new();
        file.read_to_end(&mut sink)
            .map_err(|e| Error::Runtime(format!("running the task iterator: {e}")))?;
        let requests: HashMap<&MapData, u32, u32> =
            HashMap::try_from(self.map("DUMP_PIDS")?).map_err(|e| map_err("DUMP_PIDS", e))?;
        let states = pids
            .iter()
            .map(|&pid| (pid, requests.get(&pid, 0).unwrap_or(DUMP_PENDING)))
            .collect();
        let tasks: HashMap<&MapData, TaskKey, TaskSnapshot> =
            HashMap::try_from(self.map("DUMP_TASKS")?).map_err(|e| map_err("DUMP_TASKS", e))?;
        let tasks = tasks
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| ((k.tgid, k.fsbase), v))
            .collect();
        Ok(IteratorRun {
            states,
            tasks,
            records: Vec::new(),
            proc_tasks: None,
            refused: Vec::new(),
        })
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map, Error> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| Error::Runtime(format!("map {name} missing from the eBPF object")))
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map, Error> {
        self.ebpf
            .map(name)
            .ok_or_else(|| Error::Runtime(format!("map {name} missing from the eBPF object")))
    }

    /// Makes a process walkable.
    pub fn add_process(&mut self, pid: u32, info: &ProcInfo) -> Result<(), Error> {
        self.procs
            .insert(pid, info, 0)
            .map_err(|e| Error::Runtime(format!("registering process {pid}: {e}")))
    }

    /// Forgets that these code records were sent (user space dropped them): the kernel sends
    /// each again the next time a frame needs it.
    pub fn forget_codes(&mut self, keys: &[CodeKey]) {
        for key in keys {
            let _ = self.sent_codes.remove(key);
        }
        let epoch = self.codes_epoch.get(&0, 0).unwrap_or(0);
        let _ = self.codes_epoch.set(0, epoch.wrapping_add(1) % u64::MAX, 0);
    }

    pub fn remove_process(&mut self, pid: u32) {
        let _ = self.procs.remove(&pid);
    }

    /// The ring buffer the walker writes records to.
    pub fn events(&mut self) -> Result<RingBuf<MapData>, Error> {
        RingBuf::try_from(take_map(&mut self.ebpf, "EVENTS")?)
            .map_err(|e| Error::Runtime(format!("map EVENTS: {e}")))
    }

    /// Counter totals over all CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| {
                let total = self
                    .counters
                    .get(&(c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (c, total)
            })
            .collect()
    }

    /// (runs, total nanoseconds) of each attached program, when run-time stats are enabled.
    /// (program, runs, run time in ns, instructions the verifier processed).
    pub fn run_stats(&self) -> Vec<(String, u64, u64, u32)> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some((
                    name.to_string(),
                    info.run_count(),
                    info.run_time().as_nanos() as u64,
                    info.verified_instruction_count().unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// `DUMP_PIDS` values (the kernel's `ondemand::dump_state`): no task of the process was seen
/// (it has exited), captured, or seen but not captured.
pub const DUMP_PENDING: u32 = 0;
pub const DUMP_CAPTURED: u32 = 1;
pub const DUMP_FAILED: u32 = 2;

/// What one run of the task iterator (or of the host walk, `backend.rs`) left.
pub struct IteratorRun {
    /// Each requested PID with its `DUMP_*` state.
    pub states: Vec<(u32, u32)>,
    /// Threads of those processes by (pid, FS base = `pthread_self()`).
    pub tasks: std::collections::HashMap<(u32, u64), TaskSnapshot>,
    /// The host walk's records (the kernel's are in the ring buffer).
    pub records: Vec<Vec<u8>>,
    /// The host walk: each process's threads as `/proc` listed them (`tasks` is empty then).
    pub proc_tasks: Option<std::collections::HashMap<u32, Vec<crate::backend::ProcTask>>>,
    /// The host walk: processes `process_vm_readv` refused, with why.
    pub refused: Vec<(u32, Error)>,
}

const _: () = assert!(COUNTER_COUNT as usize == Counter::ALL.len());

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name)
        .ok_or_else(|| Error::Runtime(format!("map {name} missing from the eBPF object")))
}

/// The verifier log is long; its last lines say why.
fn verifier_summary(e: &aya::programs::ProgramError) -> String {
    let text = format!("{e:?}");
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(3);
    lines[tail..].join(" | ")
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
