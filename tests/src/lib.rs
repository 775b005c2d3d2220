//! Harness for pytrace's end-to-end tests.
//!
//! A [`Target`] runs one of the scripts in `tests/targets`: faulthandler dumps all its
//! threads into a file on the chosen signals, and its threads sit parked in a known stack.
//! [`Pytrace`] runs the binary under test. [`check_conformance`] signals a target while
//! pytrace watches, and requires pytrace's dump to equal faulthandler's bytes exactly.
//!
//! Environment:
//! - `PYTRACE_BIN`: the binary (default `<workspace>/target/release/pytrace`);
//! - `PYTRACE_TEST_PYTHONS`: comma list of interpreters, by name (`3.11.7`, `debian-3.11`),
//!   release prefix (`3.11`, `3`) or `all`; default `all` (every CPython 3 build found);
//! - `PYENV_ROOT`: where the pyenv builds live (else `pyenv root`, else `/root/.pyenv`);
//! - `PYTRACE_TEST_KEEP`: keep the targets' work directories.

pub mod cases;
pub mod dump;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub use cases::{Case, Trigger};
pub use dump::{escape, parse_dump, split_text_output, Dump, Frame, TextDump, ThreadDump};

pub type Result<T, E = String> = std::result::Result<T, E>;

/// Until a target prints `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Until pytrace prints `pytrace: attached`.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// From the signal until pytrace has printed its dumps and exited, or the target has died.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long pytrace must stay silent about a signal it should ignore.
pub const QUIET_PERIOD: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------
// Interpreters

const PYENV_RELEASES: &[&str] = &[
    "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0",
];
/// (name, release, path) of the distribution's own builds: the host's, and Debian sid's that
/// `cargo xtask pythons` unpacks under `/opt/pytrace-cpython` (libpython linked statically
/// into `python3.X`, and a `Py_BytesMain` launcher linked against `libpython3.X.so`; both run
/// sid's own glibc and dynamic loader, not the host's). The last field: the build brings its
/// own C library and dynamic loader, which programs linked against its libpython must use.
const SYSTEM_PYTHONS: &[(&str, &str, &str, bool)] = &[
    ("debian-3.11", "3.11", "/usr/bin/python3.11", false),
    (
        "sid-3.14",
        "3.14",
        "/opt/pytrace-cpython/3.14/bin/python3.14",
        true,
    ),
    (
        "sid-3.14-shared",
        "3.14",
        "/opt/pytrace-cpython/3.14/bin/python3.14-shared",
        true,
    ),
    (
        "sid-3.15",
        "3.15",
        "/opt/pytrace-cpython/3.15/bin/python3.15",
        true,
    ),
    (
        "sid-3.15-shared",
        "3.15",
        "/opt/pytrace-cpython/3.15/bin/python3.15-shared",
        true,
    ),
];
/// Where a build with its own C library keeps it, under its prefix.
const OWN_RUNTIME_LIBDIR: &str = "lib/x86_64-linux-gnu";
const DEFAULT_SELECTION: &str = "all";

#[derive(Clone, Debug)]
pub struct Interpreter {
    /// `3.11.7` for a pyenv build, `debian-3.11` for the system one.
    pub name: String,
    /// `3.11.7`, or just `3.11` when the patch level is not pinned.
    pub release: String,
    pub python: PathBuf,
    /// The build runs its own C library and dynamic loader, not the host's.
    pub own_runtime: bool,
}

impl Interpreter {
    /// Linker arguments for a program that loads this interpreter's libpython: for a build
    /// with its own C library, its dynamic loader and an rpath (DT_RPATH, which libpython's
    /// own dependencies also follow) to its library directory; libpython's references to
    /// that newer C library are left for run time.
    pub fn runtime_link_args(&self) -> Vec<String> {
        let Some(prefix) = self.python.parent().and_then(Path::parent) else {
            return Vec::new();
        };
        if !self.own_runtime {
            return Vec::new();
        }
        let lib = prefix.join(OWN_RUNTIME_LIBDIR);
        vec![
            format!(
                "-Wl,--dynamic-linker={}",
                lib.join("ld-linux-x86-64.so.2").display()
            ),
            "-Wl,--disable-new-dtags,--allow-shlib-undefined".to_string(),
            format!("-Wl,-rpath,{}", lib.display()),
        ]
    }

    pub fn version(&self) -> (u32, u32) {
        let mut parts = self.release.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version() >= (major, minor)
    }

    fn selected_by(&self, token: &str) -> bool {
        token == "all"
            || token == self.name
            || self.name.starts_with(&format!("{token}-"))
            || token == self.release
            || self.release.starts_with(&format!("{token}."))
    }
}

pub fn pyenv_root() -> PathBuf {
    if let Some(root) = std::env::var_os("PYENV_ROOT").filter(|r| !r.is_empty()) {
        return root.into();
    }
    if let Ok(out) = Command::new("pyenv")
        .arg("root")
        .stderr(Stdio::null())
        .output()
    {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !root.is_empty() {
            return root.into();
        }
    }
    PathBuf::from("/root/.pyenv")
}

/// `3.N.M`: a CPython 3 release as pyenv names its builds (not `2.7.18`, `pypy3.10-…`).
fn cpython3_release(name: &str) -> Option<(u32, u32, u32)> {
    let parts: Vec<u32> = name
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [3, minor, patch] => Some((3, minor, patch)),
        _ => None,
    }
}

/// Every interpreter the suite knows about: the expected pyenv builds (present or not), any
/// other CPython 3 build under `<pyenv root>/versions`, and the system builds.
pub fn known_interpreters() -> Vec<Interpreter> {
    let root = pyenv_root();
    let mut releases: Vec<String> = PYENV_RELEASES.iter().map(|r| r.to_string()).collect();
    let mut found: Vec<String> = fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| cpython3_release(name).is_some() && !releases.contains(name))
        .collect();
    found.sort_by_key(|name| cpython3_release(name));
    releases.extend(found);
    let pyenv = releases.iter().map(|release| Interpreter {
        name: release.to_string(),
        release: release.to_string(),
        python: root
            .join("versions")
            .join(release)
            .join("bin")
            .join("python3"),
        own_runtime: false,
    });
    let system = SYSTEM_PYTHONS
        .iter()
        .map(|(name, release, path, own_runtime)| Interpreter {
            name: name.to_string(),
            release: release.to_string(),
            python: PathBuf::from(path),
            own_runtime: *own_runtime,
        });
    pyenv.chain(system).collect()
}

/// The interpreters selected by `PYTRACE_TEST_PYTHONS`; a selected one that is missing is an
/// error, never a skip.
pub fn selected_interpreters() -> Result<Vec<Interpreter>> {
    let spec = std::env::var("PYTRACE_TEST_PYTHONS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SELECTION.to_string());
    let known = known_interpreters();
    let tokens: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    for token in &tokens {
        if !known.iter().any(|i| i.selected_by(token)) {
            let names: Vec<&str> = known.iter().map(|i| i.name.as_str()).collect();
            return Err(format!(
                "PYTRACE_TEST_PYTHONS: {token:?} names no known interpreter ({})",
                names.join(", ")
            ));
        }
    }
    let selected: Vec<Interpreter> = known
        .into_iter()
        .filter(|i| tokens.iter().any(|t| i.selected_by(t)))
        .collect();
    for interp in &selected {
        if !interp.python.is_file() {
            return Err(format!(
                "interpreter {} is selected but {} does not exist",
                interp.name,
                interp.python.display()
            ));
        }
    }
    Ok(selected)
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held while a test runs processes: targets and pytrace runs never overlap, so a test's
/// timing does not depend on what the other tests in its binary are doing.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `check` for every selected interpreter (all of them, even after a failure) and
/// panics with every failure.
pub fn for_each_interpreter(check: impl Fn(&Interpreter) -> Result<()>) {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, check);
}

/// Runs `check` for each of `interpreters` (all of them, even after a failure) and panics
/// with every failure. The caller holds [`serial`].
pub fn each_interpreter(interpreters: &[Interpreter], check: impl Fn(&Interpreter) -> Result<()>) {
    assert!(!interpreters.is_empty(), "no interpreter selected");
    let mut failures = Vec::new();
    for interp in interpreters {
        eprintln!("--- {} ({})", interp.name, interp.python.display());
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(interp)))
            .unwrap_or_else(|payload| Err(panic_message(payload)));
        if let Err(e) = outcome {
            eprintln!("FAILED on {}", interp.name);
            failures.push(format!("=== {} ===\n{e}", interp.name));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} interpreters failed:\n\n{}",
            failures.len(),
            interpreters.len(),
            failures.join("\n\n")
        );
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    format!("panicked: {text}")
}

// ---------------------------------------------------------------------------------------
// Signals, paths, scratch directories

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    pub name: &'static str,
    pub number: i32,
}

pub const SIGUSR1: Signal = Signal {
    name: "SIGUSR1",
    number: libc::SIGUSR1,
};
pub const SIGUSR2: Signal = Signal {
    name: "SIGUSR2",
    number: libc::SIGUSR2,
};
pub const SIGQUIT: Signal = Signal {
    name: "SIGQUIT",
    number: libc::SIGQUIT,
};
/// The last real-time signal (64 with glibc on Linux); pytrace names it `SIGRTMAX`.
pub const SIGRTMAX: Signal = Signal {
    name: "SIGRTMAX",
    number: 64,
};
pub const SIGILL: Signal = Signal {
    name: "SIGILL",
    number: libc::SIGILL,
};
pub const SIGINT: Signal = Signal {
    name: "SIGINT",
    number: libc::SIGINT,
};

impl Signal {
    /// faulthandler.register() refuses these; targets use faulthandler.enable() for them,
    /// which writes a `Fatal Python error` header and then lets the signal kill the process.
    pub fn is_fatal(self) -> bool {
        [
            libc::SIGSEGV,
            libc::SIGFPE,
            libc::SIGABRT,
            libc::SIGBUS,
            libc::SIGILL,
        ]
        .contains(&self.number)
    }
}

pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn targets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("targets")
}

pub fn pytrace_binary() -> PathBuf {
    match std::env::var_os("PYTRACE_BIN").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => workspace_dir()
            .join("target")
            .join("release")
            .join("pytrace"),
    }
}

/// A fresh directory, removed on drop unless `PYTRACE_TEST_KEEP` is set. Its path has the
/// same length on every run, so where faulthandler cuts long paths does not move.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000;
        let path = std::env::temp_dir().join(format!(
            "pytrace-tests-{:07}-{n:04}",
            std::process::id() % 10_000_000
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PYTRACE_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// kill(2).
pub fn send_signal(pid: u32, signal: Signal) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, signal.number) } != 0 {
        return Err(format!(
            "kill({pid}, {}): {}",
            signal.name,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn poll_exit(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting: {e}"))? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Target

/// A running target script, killed on drop.
pub struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Kept open after `ready` so that the target never writes into a closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
    ready: Option<Receiver<(String, BufReader<ChildStdout>)>>,
    out_path: PathBuf,
    stderr_path: PathBuf,
    label: String,
    dir: TempDir,
}

impl Target {
    /// Starts `python targets/<script> <out> <signal names>` and waits for its `ready`.
    pub fn start(interp: &Interpreter, script: &str, signals: &[Signal]) -> Result<Target> {
        let mut command = Command::new(&interp.python);
        command.args(["-E", "-s", "-B"]);
        let mut target = Target::spawn(command, script, signals, &interp.name)?;
        target.wait_ready(READY_TIMEOUT)?;
        Ok(target)
    }

    /// Starts `command targets/<script> <out> <signal names>` without waiting: `command` is
    /// whatever runs the script (an interpreter with its options, a wrapper, an embedding
    /// program). The target is labelled `<script> on <on>`.
    pub fn spawn(
        mut command: Command,
        script: &str,
        signals: &[Signal],
        on: &str,
    ) -> Result<Target> {
        let script_path = targets_dir().join(script);
        if !script_path.is_file() {
            return Err(format!("no target script {}", script_path.display()));
        }
        let dir = TempDir::new()?;
        let out_path = dir.path().join("faulthandler.txt");
        let stderr_path = dir.path().join("target.stderr");
        let stderr = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .arg(&script_path)
            .arg(&out_path)
            .args(signals.iter().map(|s| s.name))
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {program}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, ready) = mpsc::channel();
        thread::spawn(move || {
            let mut stdout = stdout;
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        Ok(Target {
            child,
            stdin,
            stdout: None,
            ready: Some(ready),
            out_path,
            stderr_path,
            label: format!("{script} on {on}"),
            dir,
        })
    }

    /// Waits for the target's first line to be `ready`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let Some(ready) = self.ready.take() else {
            return match self.stdout {
                Some(_) => Ok(()),
                None => Err(format!("{}: never printed `ready`", self.label)),
            };
        };
        match ready.recv_timeout(timeout) {
            Ok((line, stdout)) if line == "ready\n" => {
                self.stdout = Some(stdout);
                Ok(())
            }
            Ok((line, _)) => {
                let status = poll_exit(&mut self.child, Duration::from_secs(2))?;
                Err(format!(
                    "{}: expected `ready`, got {line:?} (exit: {status:?})\n{}",
                    self.label,
                    self.stderr_note()
                ))
            }
            Err(_) => Err(format!(
                "{}: no `ready` within {timeout:?}\n{}",
                self.label,
                self.stderr_note()
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn stderr_note(&self) -> String {
        match self.stderr() {
            s if s.is_empty() => "(target stderr is empty)".into(),
            s => format!("target stderr:\n{s}"),
        }
    }

    /// kill(2) to the process: the kernel normally hands it to the main thread.
    pub fn kill(&self, signal: Signal) -> Result<()> {
        send_signal(self.pid(), signal)
    }

    /// Reads the target's next line on stdout (after `ready`); an error at end of output.
    pub fn read_line(&mut self) -> Result<String> {
        self.wait_ready(READY_TIMEOUT)?;
        let stdout = self.stdout.as_mut().ok_or("stdout closed")?;
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) => Err(format!(
                "{}: output ended (exit: {:?})\n{}",
                self.label,
                self.child.try_wait().ok().flatten(),
                self.stderr_note()
            )),
            Ok(_) => Ok(line),
            Err(e) => Err(format!("{}: reading stdout: {e}", self.label)),
        }
    }

    /// Sends one line to the target's stdin.
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: writing {line:?} to stdin: {e}", self.label))
    }

    pub fn trigger(&mut self, trigger: Trigger, signal: Signal) -> Result<()> {
        match trigger {
            Trigger::Process => self.kill(signal),
            Trigger::PthreadKill => self.command(&format!("kill {}", signal.name)),
        }
    }

    /// Everything faulthandler has written so far.
    pub fn output(&self) -> Vec<u8> {
        fs::read(&self.out_path).unwrap_or_default()
    }

    /// Bytes faulthandler has written so far.
    pub fn output_len(&self) -> usize {
        fs::metadata(&self.out_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Whether the target process has ended (then its exit status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What faulthandler writes after byte `from`, once it has stopped growing.
    pub fn wait_output(&mut self, from: usize, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let (mut last, mut stable_since) = (from, Instant::now());
        loop {
            let len = fs::metadata(&self.out_path)
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            if len != last {
                (last, stable_since) = (len, Instant::now());
            } else if len > from && stable_since.elapsed() >= Duration::from_millis(300) {
                return Ok(self.output()[from..].to_vec());
            }
            if Instant::now() >= deadline {
                let status = self.child.try_wait().ok().flatten();
                return Err(format!(
                    "{}: faulthandler wrote nothing within {timeout:?} (target exit: {status:?})\n{}",
                    self.label,
                    self.stderr_note()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        poll_exit(&mut self.child, timeout)?
            .ok_or_else(|| format!("{}: still running after {timeout:?}", self.label))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// pytrace

/// A running pytrace, stopped on drop (SIGINT, then SIGKILL).
pub struct Pytrace {
    child: Child,
    args: Vec<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    stderr_lines: Receiver<String>,
    readers: Vec<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// A pytrace run that has ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    /// Its standard output and error, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

impl Pytrace {
    pub fn spawn<S: AsRef<str>>(args: &[S]) -> Result<Pytrace> {
        let binary = pytrace_binary();
        if !binary.is_file() {
            return Err(format!(
                "pytrace binary {} does not exist: build it (cargo build --release -p pyspy-user) or set PYTRACE_BIN",
                binary.display()
            ));
        }
        Pytrace::spawn_command(Command::new(&binary), args)
    }

    /// Runs `command` (pytrace, or a wrapper whose arguments end with pytrace) with `args`.
    pub fn spawn_command<S: AsRef<str>>(mut command: Command, args: &[S]) -> Result<Pytrace> {
        let binary = command.get_program().to_string_lossy().into_owned();
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {binary}: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, stderr_lines) = mpsc::channel();
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut err_pipe = BufReader::new(child.stderr.take().expect("piped stderr"));
        let out_buf = Arc::clone(&stdout);
        let err_buf = Arc::clone(&stderr);
        let readers = vec![
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = out_pipe.read(&mut chunk) {
                    out_buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }),
            thread::spawn(move || {
                let mut line = Vec::new();
                while let Ok(1..) = err_pipe.read_until(b'\n', &mut line) {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    err_buf.lock().unwrap().push_str(&text);
                    let _ = tx.send(text);
                    line.clear();
                }
            }),
        ];
        Ok(Pytrace {
            child,
            args,
            stdout,
            stderr,
            stderr_lines,
            readers,
            status: None,
        })
    }

    /// Starts pytrace and waits for it to be attached.
    pub fn attach<S: AsRef<str>>(args: &[S]) -> Result<Pytrace> {
        let mut pytrace = Pytrace::spawn(args)?;
        pytrace.wait_attached(ATTACH_TIMEOUT)?;
        Ok(pytrace)
    }

    /// Runs pytrace to completion.
    pub fn run<S: AsRef<str>>(args: &[S], timeout: Duration) -> Result<Finished> {
        Pytrace::spawn(args)?.finish(timeout)
    }

    /// Waits for pytrace to end on its own.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let status = self.wait_exit(timeout)?;
        Ok(Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        })
    }

    pub fn wait_attached(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.starts_with("pytrace: attached") => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "pytrace did not print `pytrace: attached` within {timeout:?}\n{}",
                        self.describe()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = poll_exit(&mut self.child, Duration::from_secs(5))?;
                    self.status = status;
                    return Err(format!(
                        "pytrace ended ({status:?}) before printing `pytrace: attached`\n{}",
                        self.describe()
                    ));
                }
            }
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let Some(status) = poll_exit(&mut self.child, timeout)? else {
            return Err(format!(
                "pytrace still running after {timeout:?}\n{}",
                self.describe()
            ));
        };
        self.status = Some(status);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ok(status)
    }

    /// pytrace's own PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks pytrace to stop (SIGINT, as Ctrl-C) and waits for it to exit.
    pub fn interrupt(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if self.running() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        }
        self.wait_exit(timeout)
    }

    /// Whether pytrace is still running.
    pub fn running(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn describe(&self) -> String {
        let stdout = self.stdout();
        let shown = &stdout[..stdout.len().min(4000)];
        format!(
            "pytrace {}\n--- pytrace stdout ({} bytes) ---\n{}\n--- pytrace stderr ---\n{}",
            self.args.join(" "),
            stdout.len(),
            String::from_utf8_lossy(shown),
            self.stderr()
        )
    }
}

impl Drop for Pytrace {
    fn drop(&mut self) {
        if self.running() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            if !matches!(
                poll_exit(&mut self.child, Duration::from_secs(3)),
                Ok(Some(_))
            ) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// A run that failed on its own, as pytrace's errors must: an exit code that is neither 0 nor
/// a panic's 101, exactly one line on stderr and no panic or backtrace in it, nothing on
/// stdout. Returns the code and the line; `command` names the run in messages.
pub fn plain_error(run: &Finished, command: &str) -> Result<(i32, String)> {
    let context = format!("{command}\n{}", run.describe());
    let code = run
        .status
        .code()
        .ok_or_else(|| format!("killed by a signal ({:?})\n{context}", run.status))?;
    if code == 0 || code == 101 {
        return Err(format!(
            "exit code {code}, expected a distinct error code\n{context}"
        ));
    }
    let line = run.stderr.strip_suffix('\n').unwrap_or(&run.stderr);
    if line.trim().is_empty() || line.contains('\n') {
        return Err(format!("stderr is not exactly one line\n{context}"));
    }
    let lower = line.to_lowercase();
    if lower.contains("panicked")
        || lower.contains("backtrace")
        || line.starts_with("pytrace: attached")
    {
        return Err(format!("not a plain error message\n{context}"));
    }
    if !run.stdout.is_empty() {
        return Err(format!("an error printed something on stdout\n{context}"));
    }
    Ok((code, line.to_string()))
}

/// `--signal S --pid P… --count N --format F`
pub fn watch_args(signal: Signal, pids: &[u32], count: usize, format: &str) -> Vec<String> {
    let mut args = vec!["--signal".to_string(), signal.name.to_string()];
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    args.extend([
        "--count".into(),
        count.to_string(),
        "--format".into(),
        format.into(),
    ]);
    args
}

// ---------------------------------------------------------------------------------------
// Oracle and comparison

/// Strips the `Fatal Python error: …` header (and a trailing `Extension modules:` line) that
/// faulthandler.enable() writes around the all-threads text.
pub fn strip_fatal_header(text: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(text).map_err(|e| format!("fatal output is not ASCII: {e}"))?;
    let Some(rest) = text.strip_prefix("Fatal Python error: ") else {
        return Err(format!(
            "no `Fatal Python error` header in {:?}",
            &text[..text.len().min(200)]
        ));
    };
    let (_, mut threads) = rest
        .split_once("\n\n")
        .ok_or("no empty line after the fatal header")?;
    if let Some(at) = threads.rfind("\n\nExtension modules: ") {
        threads = &threads[..at + 1];
    }
    // 3.14+ (`enable(c_stack=True)`, the default) then writes the C stack.
    if let Some(at) = threads.find("\nCurrent thread's C stack trace (most recent call first):\n") {
        threads = &threads[..at];
    }
    Ok(threads.as_bytes().to_vec())
}

/// faulthandler's own text for the signal just sent: once the file stops growing, or, for a
/// fatal signal, once the target has died; checked against the case's expected shape.
pub fn take_oracle(
    target: &mut Target,
    case: &Case,
    interp: &Interpreter,
    from: usize,
) -> Result<Vec<u8>> {
    let text = if case.watched.is_fatal() {
        let status = target.wait_exit(DUMP_TIMEOUT)?;
        use std::os::unix::process::ExitStatusExt;
        if status.signal() != Some(case.watched.number) {
            return Err(format!(
                "{}: expected death by {}, got {status:?}",
                target.label(),
                case.watched.name
            ));
        }
        strip_fatal_header(&target.output()[from..])?
    } else {
        target.wait_output(from, DUMP_TIMEOUT)?
    };
    let dump = parse_dump(&text)
        .and_then(|dump| (case.check)(interp, &dump))
        .map_err(|e| {
            format!(
                "{}: faulthandler's own output is not what the target should produce: {e}\n--- faulthandler ---\n{}",
                target.label(),
                String::from_utf8_lossy(&text)
            )
        });
    dump.map(|()| text)
}

/// Ok if pytrace's `actual` is byte for byte faulthandler's `expected`; otherwise both are
/// saved and the error shows a diff (`-` faulthandler only, `+` pytrace only).
pub fn compare(expected: &[u8], actual: &[u8], label: &str) -> Result<()> {
    compare_named(expected, actual, label, ("faulthandler", "pytrace"))
}

fn compare_named(expected: &[u8], actual: &[u8], label: &str, names: (&str, &str)) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    let dir = std::env::temp_dir().join("pytrace-test-failures").join(
        label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>(),
    );
    let saved = fs::create_dir_all(&dir)
        .and_then(|()| fs::write(dir.join(format!("{}.txt", names.0)), expected))
        .and_then(|()| fs::write(dir.join(format!("{}.txt", names.1)), actual))
        .map(|()| {
            format!(
                "saved as {0}/{1}.txt and {0}/{2}.txt",
                dir.display(),
                names.0,
                names.1
            )
        })
        .unwrap_or_else(|e| format!("(could not save the outputs: {e})"));
    let (left, right) = names;
    Err(format!(
        "{label}: {right} differs from {left} ({} vs {} bytes; - {left}, + {right}); {saved}\n{}",
        expected.len(),
        actual.len(),
        dump::line_diff(expected, actual)
    ))
}

/// Waits for pytrace to exit successfully (after its `--count`), then requires exactly one
/// dump per expected `(pid, faulthandler text)`, in any order, each equal to its text.
pub fn expect_dumps(pytrace: &mut Pytrace, expected: &[(u32, Vec<u8>)], label: &str) -> Result<()> {
    let status = pytrace.wait_exit(DUMP_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "pytrace exited with {status:?} after its --count\n{}",
            pytrace.describe()
        ));
    }
    let stdout = pytrace.stdout();
    let dumps = split_text_output(&stdout).map_err(|e| match expected {
        [(_, text)] => {
            let header = stdout
                .split_inclusive(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            let framed = [header, text.as_slice(), b"\n"].concat();
            let diff = compare_named(
                &framed,
                &stdout,
                label,
                ("expected-stdout", "pytrace-stdout"),
            );
            format!("{e}\n{}", diff.err().unwrap_or_default())
        }
        _ => format!("{e}\n{}", pytrace.describe()),
    })?;
    if dumps.len() != expected.len() {
        return Err(format!(
            "expected {} dump(s), got {}\n{}",
            expected.len(),
            dumps.len(),
            pytrace.describe()
        ));
    }
    for (pid, text) in expected {
        let mut mine = dumps.iter().filter(|d| d.pid == *pid);
        let (Some(dump), None) = (mine.next(), mine.next()) else {
            return Err(format!(
                "expected one dump for PID {pid}\n{}",
                pytrace.describe()
            ));
        };
        compare(text, &dump.body, label)?;
    }
    Ok(())
}

/// The conformance check: pytrace `--count 1` watching the target, the case's signal sent,
/// pytrace's single dump equal to what faulthandler wrote.
pub fn check_conformance(interp: &Interpreter, case: &Case) -> Result<()> {
    let mut target = Target::start(interp, case.script, case.registered)?;
    let pid = target.pid();
    let mut pytrace = Pytrace::attach(&watch_args(case.watched, &[pid], 1, "text"))?;
    let before = target.output().len();
    target.trigger(case.trigger, case.watched)?;
    let expected = take_oracle(&mut target, case, interp, before)?;
    expect_dumps(
        &mut pytrace,
        &[(pid, expected)],
        &format!("{} {}", case.name, interp.name),
    )
}

/// Fails if pytrace has printed anything or stopped within [`QUIET_PERIOD`].
pub fn expect_silence(pytrace: &mut Pytrace, why: &str) -> Result<()> {
    thread::sleep(QUIET_PERIOD);
    if !pytrace.stdout().is_empty() || !pytrace.running() {
        return Err(format!("pytrace reacted to {why}\n{}", pytrace.describe()));
    }
    Ok(())
}

/// Replaces thread ids (by order of appearance) and the work directory, which change from run
/// to run, with placeholders.
pub fn normalize(text: &[u8], work_dir: &Path) -> String {
    let text = String::from_utf8_lossy(text).replace(&*work_dir.to_string_lossy(), "<WORK_DIR>");
    let mut ids: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(" 0x") {
        let candidate = &rest[at + 3..];
        let digits = candidate.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..at + 3]);
        if digits == 16 {
            let id = &candidate[..16];
            let n = ids.iter().position(|i| i == id).unwrap_or_else(|| {
                ids.push(id.to_string());
                ids.len() - 1
            });
            out.push_str(&format!("<thread {n}>"));
            rest = &candidate[16..];
        } else {
            rest = candidate;
        }
    }
    out.push_str(rest);
    out
}

/// Without pytrace: runs the case's target twice, sending the signal itself, and requires
/// faulthandler's output to have the expected shape and to be the same both times.
pub fn check_target(interp: &Interpreter, case: &Case) -> Result<()> {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut target = Target::start(interp, case.script, case.registered)?;
        target.trigger(case.trigger, case.watched)?;
        let text = take_oracle(&mut target, case, interp, 0)?;
        runs.push(normalize(&text, target.work_dir()));
    }
    compare_named(
        runs[0].as_bytes(),
        runs[1].as_bytes(),
        &format!("{} {} determinism", case.name, interp.name),
        ("first-run", "second-run"),
    )
}
