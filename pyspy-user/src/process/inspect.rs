//! Deciding whether a PID is CPython, which version, and where its runtime is.
//!
//! The ELF holding the interpreter is a mapped versioned libpython if there is one, else the main
//! executable (static builds such as Debian's `/usr/bin/python3.11`). It is CPython when it
//! defines `Py_GetVersion`, `Py_Version` or `_PyRuntime`, or has a `.PyRuntime` section.
//!
//! Version: `Py_Version` (3.11+, read from the file) is exact. Otherwise `major.minor` comes from
//! the `"cpython-3X"` cache tag in `.rodata` (3.3+), else the file name, and the micro from the
//! `PY_VERSION` literal in `.rodata`. 2.x is recognised by its name or its `Py_InitModule4_64`
//! symbol.
//!
//! Runtime: `_PyRuntime` (3.7+) from the symbol tables, the `.PyRuntime` section, or (3.13+) the
//! `xdebugpy` cookie; `interp_head` (3.6) from `.symtab`. The load bias comes from the file's
//! mappings and its `PT_LOAD` segments.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::elf::{load_bias, ElfImage};
use super::maps::Mapping;
use super::procfs;
use super::version::{self, Version};
use super::{InspectError, PythonProcess};

/// Oldest supported CPython.
const MIN_SUPPORTED: (u8, u8) = (3, 6);

/// Describe `pid` as a CPython process.
pub fn inspect(pid: u32) -> Result<PythonProcess, InspectError> {
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
        let Some(image) = open_image(pid, file, same_root)? else {
            continue;
        };
        let Some(found) = examine(&image, file, &exe).map_err(|e| io_error(pid, e))? else {
            continue;
        };
        return resolve(pid, &status, comm, &maps, file, image, found);
    }
    // The process may have exited while its files were being read.
    match procfs::read_status(pid) {
        Ok(s) if !s.is_gone() => Err(InspectError::NotPython { pid, comm }),
        _ => Err(InspectError::NoSuchProcess(pid)),
    }
}

/// Every PID whose executable or mapped libraries look like a CPython interpreter, judged by
/// file names only: the `/proc/PID/exe` name, then a scan of `/proc/PID/maps` for a versioned
/// libpython. Processes that cannot be read are left out.
pub fn candidate_pids() -> Vec<u32> {
    procfs::all_pids()
        .into_iter()
        .filter(|&pid| is_candidate(pid))
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

/// What the interpreter file says about itself.
struct Found {
    version: Version,
    /// The micro version is known (from `Py_Version` or a version string), not assumed 0.
    exact: bool,
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

/// Open the file behind a mapping through the first host path that parses as ELF.
/// Files that are not 64-bit ELF (or have vanished) give `Ok(None)`.
fn open_image(pid: u32, file: &Mapping, same_root: bool) -> Result<Option<ElfImage>, InspectError> {
    let mut denied = false;
    for path in procfs::host_paths(pid, file, same_root) {
        match ElfImage::open(&path) {
            Ok(image) => return Ok(Some(image)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied = true,
            Err(_) => {}
        }
    }
    if denied {
        return Err(InspectError::PermissionDenied(pid));
    }
    Ok(None)
}

fn io_error(pid: u32, source: io::Error) -> InspectError {
    InspectError::Io { pid, source }
}

/// Whether `image` is a CPython interpreter, and its version.
fn examine(image: &ElfImage, file: &Mapping, exe: &Path) -> io::Result<Option<Found>> {
    let symbols = image.symbol_addresses(&[
        "Py_GetVersion",
        "Py_Version",
        "_PyRuntime",
        "Py_InitModule4_64",
    ])?;
    let (get_version, py_version, runtime, init_module2) =
        (symbols[0], symbols[1], symbols[2], symbols[3]);
    let has_section = image.section_address(".PyRuntime")?.is_some();
    if get_version.is_none() && py_version.is_none() && runtime.is_none() && !has_section {
        return Ok(None);
    }

    if let Some(addr) = py_version {
        if let Some(hex) = image.read_u64_at(addr)? {
            let v = Version::from_hex(hex as u32);
            if v.major == 3 {
                return Ok(Some(Found {
                    version: v,
                    exact: true,
                }));
            }
        }
    }

    let name_version = file
        .file_name()
        .and_then(|n| version::from_library_name(n).or_else(|| version::from_executable_name(n)))
        .or_else(|| {
            exe.file_name()
                .and_then(|n| version::from_executable_name(n.as_bytes()))
        });
    let rodata = image.read_only_data()?;
    let major_minor = if init_module2.is_some() {
        Some(name_version.filter(|v| v.0 == 2).unwrap_or((2, 7)))
    } else {
        version::cache_tag_version(&rodata).or(name_version)
    };
    let Some((major, minor)) = major_minor else {
        // CPython, but of a version that leaves no trace this code knows (before 3.3).
        return Ok(Some(Found {
            version: Version::new(0, 0, 0),
            exact: false,
        }));
    };
    Ok(Some(
        match version::scan_version_string(&rodata, major, minor) {
            Some(v) => Found {
                version: v,
                exact: true,
            },
            None => Found {
                version: Version::new(major, minor, 0),
                exact: false,
            },
        },
    ))
}

/// Turn the findings about the interpreter file into a [`PythonProcess`].
fn resolve(
    pid: u32,
    status: &procfs::Status,
    comm: String,
    maps: &[Mapping],
    file: &Mapping,
    image: ElfImage,
    found: Found,
) -> Result<PythonProcess, InspectError> {
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
    let binary = image.path().to_owned();
    let no_runtime = || InspectError::NoRuntime {
        pid,
        binary: binary.clone(),
    };

    let link_addr = if (v.major, v.minor) >= (3, 7) {
        image
            .find_runtime((v.major, v.minor) >= (3, 13))
            .map_err(|e| io_error(pid, e))?
            .map(|(addr, _)| addr)
    } else {
        image
            .symbol_address("interp_head")
            .map_err(|e| io_error(pid, e))?
    };
    let link_addr = link_addr.ok_or_else(no_runtime)?;

    let segments = image.load_segments().map_err(|e| io_error(pid, e))?;
    let file_maps: Vec<&Mapping> = maps.iter().filter(|m| same_file(m, file)).collect();
    let bias = load_bias(&segments, &file_maps, procfs::page_size()).ok_or_else(no_runtime)?;
    let addr = link_addr.wrapping_add(bias);
    if !maps.iter().any(|m| m.contains(addr)) {
        return Err(no_runtime());
    }

    let is_36 = (v.major, v.minor) < (3, 7);
    Ok(PythonProcess {
        pid,
        ns_pid: status.ns_pid(pid),
        version: v.triple(),
        version_hex: v.hex(),
        binary,
        runtime_addr: (!is_36).then_some(addr),
        interp_head_addr: is_36.then_some(addr),
        comm,
    })
}
