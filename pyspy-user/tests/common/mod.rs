//! Live child processes, interpreter paths and scratch directories for the process tests.

// Compiled into every test crate that declares it; each one uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pytrace::process;

/// Where pyenv installs its interpreters (shared libpython builds).
pub const PYENV: &str = "/root/.pyenv/versions";
/// Debian's static build.
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3.11";

/// Prints `ready` once the interpreter is up, then sleeps.
pub const READY_SCRIPT: &str =
    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)";

/// Installation prefix of pyenv's `version` (`3.12.1`).
pub fn pyenv_prefix(version: &str) -> PathBuf {
    Path::new(PYENV).join(version)
}

/// `bin/pythonX.Y` of pyenv's `version`.
pub fn pyenv_python(version: &str) -> PathBuf {
    let minor = version.rsplit_once('.').unwrap().0;
    pyenv_prefix(version)
        .join("bin")
        .join(format!("python{minor}"))
}

/// Whether `path` exists; if not, says that the test is skipped.
pub fn present_or_skip(path: &Path) -> bool {
    let present = path.exists();
    if !present {
        eprintln!("skipping: {} is missing", path.display());
    }
    present
}

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A child process, killed and reaped on drop.
pub struct Target(pub Child);

impl Target {
    /// Spawn `cmd` with stdin closed and stdout piped.
    pub fn spawn(cmd: &mut Command) -> Target {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Target(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The next line of the child's stdout.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn `cmd` and wait until it prints `ready`.
pub fn spawn_ready(cmd: &mut Command) -> Target {
    let mut target = Target::spawn(cmd);
    assert_eq!(target.read_line(), "ready\n");
    target
}

/// Run `READY_SCRIPT` in `python`, with `lib_dir` as `LD_LIBRARY_PATH` if given.
pub fn python_ready(python: impl AsRef<OsStr>, lib_dir: Option<&Path>) -> Target {
    let mut cmd = Command::new(python);
    cmd.args(["-c", READY_SCRIPT]);
    if let Some(dir) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    spawn_ready(&mut cmd)
}

/// `spawn` returns once the child has switched to its new address space, slightly before the
/// kernel renames it and maps the new program.
pub fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        != comm
    {
        assert!(Instant::now() < deadline, "{pid} never became {comm}");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// `sleep 30`, once it runs as `sleep`.
pub fn spawn_sleep() -> Target {
    let target = Target::spawn(Command::new("sleep").arg("30"));
    wait_for_comm(target.pid(), "sleep");
    target
}

pub fn read_u64(pid: u32, addr: u64) -> u64 {
    let mut buf = [0u8; 8];
    process::read_memory(pid, addr, &mut buf)
        .unwrap_or_else(|e| panic!("read {addr:#x} in {pid}: {e}"));
    u64::from_le_bytes(buf)
}

/// The whitespace-separated numbers of a report line.
pub fn parse_u64s(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// `pytrace-TAG-PID` in the temporary directory.
pub fn scratch_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pytrace-{tag}-{}", std::process::id()))
}

/// A fresh, empty directory, removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = scratch_path(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
