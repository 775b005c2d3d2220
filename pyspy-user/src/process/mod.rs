//! From a PID to a CPython process description: which interpreter, where its runtime is.
//!
//! - [`maps`]: `/proc/PID/maps` parser.
//! - [`procfs`]: the other `/proc/PID` files (status, comm, exe, root, map_files).
//! - [`elf`]: symbols, load segments and data of the interpreter file on disk.
//! - [`version`]: version numbers from `Py_Version`, file names and read-only data.
//! - [`analysis`]: what an interpreter file says about itself, whatever process maps it.
//! - [`cache`]: the bounded cache of those analyses, keyed by file identity.
//! - [`inspect`](mod@inspect): the decision logic behind [`inspect()`] and [`candidate_pids`].
//! - [`memory`]: reading the target's memory.
//! - [`loaders`]: the dynamic loaders running processes map (for the library-load probe).

use std::path::PathBuf;

pub mod analysis;
pub mod cache;
pub mod elf;
pub mod inspect;
pub mod loaders;
pub mod maps;
pub mod memory;
pub mod procfs;
pub mod version;

pub use cache::CacheStats;
pub use inspect::{cache_stats, candidate_pids, inspect, inspect_all, is_candidate, Inspector};
pub use memory::read_memory;
pub use procfs::is_gone;

/// A running CPython interpreter and where its runtime state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonProcess {
    /// Host pid.
    pub pid: u32,
    /// Pid inside the process's own PID namespace (`NSpid` of `/proc/PID/status`), when different.
    pub ns_pid: Option<u32>,
    /// Major, minor, micro.
    pub version: (u8, u8, u8),
    /// `PY_VERSION_HEX`: exact when read from `Py_Version` (3.11+); otherwise from the version
    /// string found in the binary (release level included), or the triple with level final.
    pub version_hex: u32,
    /// The ELF that holds the runtime (libpython or the executable), as a path valid on the host
    /// (through `/proc/PID/root` for containers, `/proc/PID/map_files` for unlinked files).
    pub binary: PathBuf,
    /// Absolute address of `_PyRuntime` in the target (3.7+).
    pub runtime_addr: Option<u64>,
    /// Absolute address of the static `interp_head` (3.6 only, from `.symtab`).
    pub interp_head_addr: Option<u64>,
    pub comm: String,
}

/// Why a PID cannot be described as a CPython process.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("process {pid} ({comm}) is not a CPython process")]
    NotPython { pid: u32, comm: String },
    #[error("permission denied inspecting process {0} (root or CAP_SYS_PTRACE needed)")]
    PermissionDenied(u32),
    #[error("process {pid} runs Python {version}, which is not supported (3.6 or newer is)")]
    UnsupportedVersion { pid: u32, version: String },
    #[error("process {pid}: cannot locate the interpreter runtime in {}", binary.display())]
    NoRuntime { pid: u32, binary: PathBuf },
    #[error("process {pid}: {source}")]
    Io { pid: u32, source: std::io::Error },
}

impl InspectError {
    /// Classify an I/O error met while reading `/proc/PID/...` or the process's files.
    pub fn from_io(pid: u32, err: std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => InspectError::NoSuchProcess(pid),
            Some(libc::EACCES) | Some(libc::EPERM) => InspectError::PermissionDenied(pid),
            _ => InspectError::Io { pid, source: err },
        }
    }
}
