//! The set of traced CPython processes: inspects a PID, builds the walker's table for it and
//! registers it with the kernel side and the symbolizer.

use pytrace_common::{ProcInfo, ReadWindows};

use crate::{
    backend::Backend,
    error::Error,
    process::{self, InspectError, PythonProcess},
    python::{
        debug_offsets::{self, DebugOffsets, DebugOffsetsError},
        gil::{self, GilLayout},
        layout::{builtin_layout, VersionLayout},
    },
    symbolize::{ProcessMeta, Symbolizer},
};

/// Registers processes; each registration gets a new generation number.
#[derive(Default)]
pub struct Tracker {
    generation: u32,
}

impl Tracker {
    /// Inspects `pid` and, if it is a supported CPython, makes it walkable (again, after an
    /// exec).
    pub fn register(
        &mut self,
        pid: u32,
        probes: &mut Backend,
        sym: &mut Symbolizer,
    ) -> Result<(), Error> {
        self.register_inspected(pid, process::inspect(pid), probes, sym)
    }

    /// [`register`](Self::register) of a process already inspected.
    pub fn register_inspected(
        &mut self,
        pid: u32,
        inspected: Result<PythonProcess, InspectError>,
        probes: &mut Backend,
        sym: &mut Symbolizer,
    ) -> Result<(), Error> {
        let p = inspected.map_err(inspect_error)?;
        let (layout, gil) = layout_for(&p)?;
        self.generation = self.generation.wrapping_add(1);
        let mut info = proc_info(&p, &layout, self.generation)?;
        info.gil = gil::gil_info(gil, p.runtime_addr);
        probes.add_process(pid, &info)?;
        // A process that exited between the inspection and the insert had its exit reported
        // before it was in the map: drop it here, or the entry would outlive it.
        if process::is_gone(pid) {
            probes.remove_process(pid);
            return Err(Error::NoSuchProcess(pid));
        }
        sym.add_process(
            pid,
            ProcessMeta {
                version: p.version,
                layout,
                ns_pid: p.ns_pid,
                interp_head_addr: info.interp_head_addr,
                other_thread_names_readable: crate::thread_names::names_readable_by(pid, p.ns_pid),
            },
        );
        Ok(())
    }

    /// Forgets a process (the kernel side has already dropped it on exit).
    pub fn unregister(&mut self, pid: u32, probes: &mut Backend, sym: &mut Symbolizer) {
        probes.remove_process(pid);
        sym.remove_process(pid);
    }
}

fn version_text(v: (u8, u8, u8)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// 3.13+: the target's own `_Py_DebugOffsets`; older versions: the built-in tables. With
/// where its GIL is, when known.
fn layout_for(p: &PythonProcess) -> Result<(VersionLayout, Option<GilLayout>), Error> {
    let unsupported = || Error::UnsupportedPython {
        pid: p.pid,
        version: version_text(p.version),
    };
    if (p.version.0, p.version.1) >= (3, 13) {
        let runtime = p.runtime_addr.ok_or_else(unsupported)?;
        let mut buf = vec![0u8; debug_offsets::DEBUG_OFFSETS_MAX_SIZE];
        process::read_memory(p.pid, runtime, &mut buf).map_err(|e| Error::Inspect {
            pid: p.pid,
            reason: format!("cannot read _PyRuntime debug offsets: {e}"),
        })?;
        return match debug_offsets::parse(&buf) {
            Ok(d) => checked_debug_layout(p, d),
            Err(DebugOffsetsError::UnknownVersion { version_hex }) => {
                Err(Error::UnsupportedPython {
                    pid: p.pid,
                    version: debug_offsets::version_string(version_hex),
                })
            }
            Err(e) => Err(Error::Inspect {
                pid: p.pid,
                reason: format!("bad _Py_DebugOffsets: {e}"),
            }),
        };
    }
    builtin_layout(p.version.0, p.version.1)
        .copied()
        .map(|l| (l, gil::builtin_gil(p.version.0, p.version.1)))
        .ok_or_else(unsupported)
}

/// The target's own layout, once its declared version matches the one found in its binary;
/// a built-in table for the same minor, where there is one, is compared as a cross-check.
fn checked_debug_layout(
    p: &PythonProcess,
    d: DebugOffsets,
) -> Result<(VersionLayout, Option<GilLayout>), Error> {
    let declared = ((d.version_hex >> 24) as u8, (d.version_hex >> 16) as u8);
    if declared != (p.version.0, p.version.1) {
        return Err(Error::Inspect {
            pid: p.pid,
            reason: format!(
                "_Py_DebugOffsets declares Python {} but the binary is {}",
                debug_offsets::version_string(d.version_hex),
                version_text(p.version)
            ),
        });
    }
    // The built-in tables describe builds with a GIL.
    if let Some(builtin) = builtin_layout(declared.0, declared.1).filter(|_| !d.free_threaded) {
        if *builtin != d.layout {
            eprintln!(
                "pytrace: warning: process {}: its _Py_DebugOffsets differ from the built-in {}.{} \
                 table; using the process's own",
                p.pid, declared.0, declared.1
            );
        }
    }
    Ok((d.layout, d.gil))
}

fn proc_info(
    p: &PythonProcess,
    layout: &VersionLayout,
    generation: u32,
) -> Result<ProcInfo, Error> {
    let interp_head_addr = match (
        layout.runtime_interp_head,
        p.runtime_addr,
        p.interp_head_addr,
    ) {
        (Some(off), Some(runtime), _) => runtime + off as u64,
        (None, _, Some(head)) => head,
        _ => {
            return Err(Error::Inspect {
                pid: p.pid,
                reason: format!("cannot find the interpreter list in {}", p.binary.display()),
            })
        }
    };
    let mut windows = ReadWindows::of(&layout.offsets).ok_or_else(|| Error::Inspect {
        pid: p.pid,
        reason: "its frame or code-object fields are too far apart to read in one piece".into(),
    })?;
    windows.stack = layout.frames_on_data_stack() as u32;
    Ok(ProcInfo {
        interp_head_addr,
        version_hex: p.version_hex,
        generation,
        offsets: layout.offsets,
        gil: Default::default(),
        windows,
    })
}

/// The user-facing error for a failed inspection.
pub fn inspect_error(e: InspectError) -> Error {
    match e {
        InspectError::NoSuchProcess(pid) => Error::NoSuchProcess(pid),
        InspectError::NotPython { pid, comm } => Error::NotPython { pid, comm },
        InspectError::UnsupportedVersion { pid, version } => {
            Error::UnsupportedPython { pid, version }
        }
        // pytrace has checked its capabilities at start: a refusal now is the process's own
        // (not dumpable, another user namespace's), not a lack of privileges.
        InspectError::PermissionDenied(pid) => Error::Inspect {
            pid,
            reason: "cannot inspect it: permission denied reading its /proc entries or files"
                .into(),
        },
        other => Error::Runtime(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use pytrace_common::{ReadWindows, CODE_WINDOW_MAX, FRAME_WINDOW_MAX};

    use crate::python::layout::builtin_layout;

    /// Every built-in layout can be read one frame and one code-object header at a time.
    #[test]
    fn every_builtin_layout_has_read_windows() {
        for minor in 6..=14 {
            let Some(layout) = builtin_layout(3, minor) else {
                continue;
            };
            let w = ReadWindows::of(&layout.offsets).unwrap_or_else(|| panic!("3.{minor}"));
            assert!(w.frame_len <= FRAME_WINDOW_MAX && w.code_len <= CODE_WINDOW_MAX);
        }
        assert!(builtin_layout(3, 12).is_some());
    }
}
