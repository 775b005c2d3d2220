//! Deciding whether a PID is CPython, which version, and where its runtime is.
//!
//! The ELF holding the interpreter is a mapped versioned libpython if there is one, else the main
//! executable (static builds such as Debian's `/usr/bin/python3.11`). What the file says about
//! itself ([`analysis`](super::analysis)) is computed once per file and kept in a bounded cache
//! keyed by the file's identity ([`FileKey`]: device, inode, size, modification time, from `stat`
//! of the host path the file is reached through), negative results included. Inspecting another
//! process that maps the same file then costs only its `/proc/PID` files and the load bias, which
//! comes from the file's mappings and its `PT_LOAD` segments.

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use super::analysis::{analyse, FileAnalysis, PythonFile};
use super::cache::{CacheStats, FileKey, Lru};
use super::elf::{load_bias, ElfImage};
use super::maps::Mapping;
use super::procfs;
use super::version::{self, Version};
use super::{InspectError, PythonProcess};

/// Oldest supported CPython.
const MIN_SUPPORTED: (u8, u8) = (3, 6);

/// Files whose analysis [`inspect()`] keeps.
pub const DEFAULT_CACHE_CAPACITY: usize = 256;

/// Inspects processes, remembering what it learnt about each interpreter file.
///
/// Safe to share between threads; the cache lock is not held while a file is analysed.
#[derive(Debug)]
pub struct Inspector {
    files: Mutex<Lru<FileKey, Arc<FileAnalysis>>>,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new(DEFAULT_CACHE_CAPACITY)
    }
}

/// The inspector behind [`inspect()`].
static SHARED: LazyLock<Inspector> = LazyLock::new(Inspector::default);

/// Describe `pid` as a CPython process, with the process-wide file cache.
pub fn inspect(pid: u32) -> Result<PythonProcess, InspectError> {
    SHARED.inspect(pid)
}

/// Counters of the file cache used by [`inspect()`]: `inserts` counts the files analysed.
pub fn cache_stats() -> CacheStats {
    SHARED.cache_stats()
}

/// What one host path of an interpreter file led to.
enum Reached {
    Analysis(Arc<FileAnalysis>),
    /// Vanished or unreadable for a reason other than permissions.
    Skip,
    Denied,
}

impl Inspector {
    /// An inspector caching at most `capacity` file analyses.
    pub fn new(capacity: usize) -> Self {
        Inspector {
            files: Mutex::new(Lru::new(capacity)),
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    }

    /// Describe `pid` as a CPython process.
    pub fn inspect(&self, pid: u32) -> Result<PythonProcess, InspectError> {
        let status = procfs::read_status(pid).map_err(|e| InspectError::from_io(pid, e))?;
        if status.is_gone() {
            return Err(InspectError::NoSuchProcess(pid));
        }
        let comm = procfs::read_comm(pid).unwrap_or_else(|_| status.name.clone());
        let maps = procfs::read_maps(pid).map_err(|e| InspectError::from_io(pid, e))?;
        if maps.is_empty() {
            // Kernel threads have no mappings; a process that exited meanwhile has none either.
            return Err(match procfs::read_status(pid) {
                Ok(s) if !s.is_gone() => InspectError::NotPython { pid, comm },
                _ => InspectError::NoSuchProcess(pid),
            });
        }
        let exe = procfs::exe_path(pid).map_err(|e| InspectError::from_io(pid, e))?;
        let same_root = procfs::same_root(pid);

        for file in interpreter_files(&maps, &exe) {
            let Some((binary, analysis)) = self.interpreter_file(pid, file, same_root)? else {
                continue;
            };
            let FileAnalysis::Python(python) = &*analysis else {
                continue;
            };
            let (v, addr) = locate(pid, &maps, file, &binary, python, name_version(file, &exe))?;
            let is_36 = (v.major, v.minor) < (3, 7);
            return Ok(PythonProcess {
                pid,
                ns_pid: status.ns_pid(pid),
                version: v.triple(),
                version_hex: v.hex(),
                binary,
                runtime_addr: (!is_36).then_some(addr),
                interp_head_addr: is_36.then_some(addr),
                comm,
            });
        }
        // The process may have exited while its files were being read.
        match procfs::read_status(pid) {
            Ok(s) if !s.is_gone() => Err(InspectError::NotPython { pid, comm }),
            _ => Err(InspectError::NoSuchProcess(pid)),
        }
    }

    /// The analysis of the file behind a mapping, through the first host path that leads to an
    /// ELF file, with that path. `Ok(None)` when that file is not CPython, or when no path leads
    /// to an ELF file.
    fn interpreter_file(
        &self,
        pid: u32,
        file: &Mapping,
        same_root: bool,
    ) -> Result<Option<(PathBuf, Arc<FileAnalysis>)>, InspectError> {
        let mut denied = false;
        for path in procfs::host_paths(pid, file, same_root) {
            match self.reach(&path).map_err(|e| io_error(pid, e))? {
                Reached::Analysis(analysis) => match *analysis {
                    FileAnalysis::NotElf => {}
                    FileAnalysis::NotPython => return Ok(None),
                    FileAnalysis::Python(_) => return Ok(Some((path, analysis))),
                },
                Reached::Skip => {}
                Reached::Denied => denied = true,
            }
        }
        if denied {
            return Err(InspectError::PermissionDenied(pid));
        }
        Ok(None)
    }

    /// The analysis of the file at `path`, from the cache or by reading the file. Errors are
    /// those met while analysing a file that opened as ELF.
    fn reach(&self, path: &Path) -> io::Result<Reached> {
        let classify = |e: io::Error| match e.kind() {
            io::ErrorKind::PermissionDenied => Reached::Denied,
            _ => Reached::Skip,
        };
        let key = match fs::metadata(path) {
            Ok(meta) => FileKey::of(&meta),
            Err(e) => return Ok(classify(e)),
        };
        if let Some(analysis) = self.cached(&key) {
            return Ok(Reached::Analysis(analysis));
        }
        let opened = File::open(path).and_then(|f| Ok((FileKey::of(&f.metadata()?), f)));
        let (key, file) = match opened {
            Ok(opened) => opened,
            Err(e) => return Ok(classify(e)),
        };
        let analysis = match ElfImage::from_file(path, file) {
            Ok(image) => analyse(&image)?,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => FileAnalysis::NotElf,
            Err(e) => return Ok(classify(e)),
        };
        let analysis = Arc::new(analysis);
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&analysis));
        Ok(Reached::Analysis(analysis))
    }

    fn cached(&self, key: &FileKey) -> Option<Arc<FileAnalysis>> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
    }
}

/// [`inspect`] of each PID, in order, spread over the CPUs: most of a host-wide dump's time
/// before anything is read goes here, waiting on `/proc` and file reads. A file two workers
/// meet at once may be analysed twice; the cache keeps one.
pub fn inspect_all(pids: &[u32]) -> Vec<Result<PythonProcess, InspectError>> {
    over_cpus(pids, inspect, |pid| {
        Err(InspectError::Io {
            pid,
            source: std::io::Error::other("inspection failed"),
        })
    })
}

/// Threads [`over_cpus`] uses at most.
const MAX_WORKERS: usize = 8;

/// `f` of each PID, in order, on up to one thread per CPU. A worker that panicked (a bug)
/// gives `failed` for each of its PIDs.
fn over_cpus<T: Send>(pids: &[u32], f: fn(u32) -> T, failed: fn(u32) -> T) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
        .min(pids.len());
    if workers <= 1 {
        return pids.iter().map(|&pid| f(pid)).collect();
    }
    let chunk = pids.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|&pid| f(pid)).collect::<Vec<T>>()))
            .collect();
        handles
            .into_iter()
            .zip(pids.chunks(chunk))
            .flat_map(|(h, part)| {
                h.join()
                    .unwrap_or_else(|_| part.iter().map(|&pid| failed(pid)).collect())
            })
            .collect()
    })
}

/// Every PID whose executable or mapped libraries look like a CPython interpreter, judged by
/// file names only: the `/proc/PID/exe` name, then a scan of `/proc/PID/maps` for a versioned
/// libpython. Processes that cannot be read are left out.
pub fn candidate_pids() -> Vec<u32> {
    let pids = procfs::all_pids();
    let keep = over_cpus(&pids, is_candidate, |_| false);
    pids.into_iter()
        .zip(keep)
        .filter_map(|(pid, keep)| keep.then_some(pid))
        .collect()
}

/// Whether `pid` looks like a CPython process by file names alone (cheap: no ELF parsing).
pub fn is_candidate(pid: u32) -> bool {
    if let Ok(exe) = procfs::exe_path(pid) {
        if exe
            .file_name()
            .is_some_and(|n| version::is_interpreter_file_name(n.as_bytes()))
        {
            return true;
        }
    }
    let Ok(raw) = std::fs::read(procfs::proc_dir(pid).join("maps")) else {
        return false;
    };
    if !raw.windows(10).any(|w| w == b"/libpython") {
        return false;
    }
    super::maps::parse_maps(&raw).iter().any(|m| {
        m.is_file()
            && m.file_name()
                .is_some_and(|n| version::from_library_name(n).is_some())
    })
}

/// The files that may hold the interpreter, best first: mapped versioned libpythons, then the
/// main executable. Each file is represented by its first mapping.
fn interpreter_files<'a>(maps: &'a [Mapping], exe: &Path) -> Vec<&'a Mapping> {
    let mut files: Vec<&Mapping> = Vec::new();
    let push = |m: &'a Mapping, files: &mut Vec<&'a Mapping>| {
        if !files.iter().any(|f| same_file(f, m)) {
            files.push(m);
        }
    };
    for m in maps.iter().filter(|m| m.is_file()) {
        if m.file_name()
            .is_some_and(|n| version::from_library_name(n).is_some())
        {
            push(m, &mut files);
        }
    }
    let exe_mapping = maps
        .iter()
        .filter(|m| m.is_file())
        .find(|m| m.path.as_deref() == Some(exe))
        .or_else(|| maps.iter().find(|m| m.is_file()));
    if let Some(m) = exe_mapping {
        push(m, &mut files);
    }
    files
}

fn same_file(a: &Mapping, b: &Mapping) -> bool {
    a.inode == b.inode
        && a.dev_major == b.dev_major
        && a.dev_minor == b.dev_minor
        && a.path == b.path
}

fn io_error(pid: u32, source: io::Error) -> InspectError {
    InspectError::Io { pid, source }
}

/// `major.minor` suggested by the file's name, else by the executable's.
fn name_version(file: &Mapping, exe: &Path) -> Option<(u8, u8)> {
    file.file_name()
        .and_then(|n| version::from_library_name(n).or_else(|| version::from_executable_name(n)))
        .or_else(|| {
            exe.file_name()
                .and_then(|n| version::from_executable_name(n.as_bytes()))
        })
}

/// The version of the interpreter in `file` and the absolute address of its runtime state
/// (`_PyRuntime`, or `interp_head` for 3.6) in process `pid`.
fn locate(
    pid: u32,
    maps: &[Mapping],
    file: &Mapping,
    binary: &Path,
    python: &PythonFile,
    name_version: Option<(u8, u8)>,
) -> Result<(Version, u64), InspectError> {
    let found = python.version(name_version);
    let v = found.version;
    if v.major == 0 {
        return Err(InspectError::UnsupportedVersion {
            pid,
            version: "unknown".into(),
        });
    }
    if (v.major, v.minor) < MIN_SUPPORTED || v.major > 3 {
        let version = if found.exact {
            v.display()
        } else {
            format!("{}.{}", v.major, v.minor)
        };
        return Err(InspectError::UnsupportedVersion { pid, version });
    }
    let no_runtime = || InspectError::NoRuntime {
        pid,
        binary: binary.to_owned(),
    };

    let link_addr = python
        .runtime_link_address(v.major, v.minor)
        .ok_or_else(no_runtime)?;
    let file_maps: Vec<&Mapping> = maps.iter().filter(|m| same_file(m, file)).collect();
    let bias =
        load_bias(&python.segments, &file_maps, procfs::page_size()).ok_or_else(no_runtime)?;
    let addr = link_addr.wrapping_add(bias);
    if !maps.iter().any(|m| m.contains(addr)) {
        return Err(no_runtime());
    }
    Ok((v, addr))
}
