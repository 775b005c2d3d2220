//! Where each CPython version keeps its GIL, so a sample can say whether its thread held it:
//! a thread holds the GIL when the GIL's `locked` is set and its `last_holder` is that
//! thread's state.
//!
//! 3.7–3.11 keep one GIL in `_PyRuntime.ceval.gil`; 3.12 gives each interpreter a pointer to
//! its GIL (`interp->ceval.gil`); 3.13+ describe theirs in `_Py_DebugOffsets`. The numbers below
//! are `offsetof` values printed by `tools/cpython-offsets/gil.c` from each version's headers
//! (x86_64, default GIL build). 3.6 keeps its GIL in static variables: unknown.

use pytrace_common::{GilInfo, NO_OFFSET};

/// Where the GIL structure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GilLocation {
    /// At this offset inside `_PyRuntime`.
    Runtime(u32),
    /// Pointed to by the field at this offset of `PyInterpreterState`.
    InterpPointer(u32),
}

/// One version's GIL layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GilLayout {
    pub location: GilLocation,
    /// `_gil_runtime_state.last_holder` (a thread-state pointer).
    pub last_holder: u32,
    /// `_gil_runtime_state.locked` (an int).
    pub locked: u32,
}

/// `struct _gil_runtime_state { unsigned long interval; last_holder; locked; … }`, the same
/// from 3.7 to 3.12.
const fn gil_at(location: GilLocation) -> GilLayout {
    GilLayout {
        location,
        last_holder: 8,
        locked: 16,
    }
}

/// The built-in layout of `major.minor`, for versions that do not describe themselves.
pub fn builtin_gil(major: u8, minor: u8) -> Option<GilLayout> {
    use GilLocation::*;
    match (major, minor) {
        (3, 7) => Some(gil_at(Runtime(1264))),
        (3, 8) => Some(gil_at(Runtime(1152))),
        (3, 9) | (3, 10) => Some(gil_at(Runtime(352))),
        (3, 11) => Some(gil_at(Runtime(360))),
        (3, 12) => Some(gil_at(InterpPointer(384))),
        _ => None,
    }
}

/// From `_Py_DebugOffsets.interpreter_state` (3.13+): `ceval_gil` (the pointer), and
/// `gil_runtime_state`, `…_locked`, `…_holder`, all offsets inside `PyInterpreterState` of the
/// interpreter's own GIL structure and its fields.
pub fn from_debug_offsets(
    ceval_gil: u32,
    gil_runtime_state: u32,
    locked: u32,
    holder: u32,
) -> Option<GilLayout> {
    Some(GilLayout {
        location: GilLocation::InterpPointer(ceval_gil),
        last_holder: holder.checked_sub(gil_runtime_state)?,
        locked: locked.checked_sub(gil_runtime_state)?,
    })
}

/// What the kernel side reads, for a process whose `_PyRuntime` is at `runtime_addr`.
pub fn gil_info(layout: Option<GilLayout>, runtime_addr: Option<u64>) -> GilInfo {
    let unknown = GilInfo {
        addr: 0,
        interp_ptr: NO_OFFSET,
        last_holder: NO_OFFSET,
        locked: NO_OFFSET,
        _pad: 0,
    };
    let Some(l) = layout else {
        return unknown;
    };
    let (addr, interp_ptr) = match (l.location, runtime_addr) {
        (GilLocation::Runtime(off), Some(runtime)) => (runtime + off as u64, NO_OFFSET),
        (GilLocation::InterpPointer(off), _) => (0, off),
        (GilLocation::Runtime(_), None) => return unknown,
    };
    GilInfo {
        addr,
        interp_ptr,
        last_holder: l.last_holder,
        locked: l.locked,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_gil_is_absolute_and_interpreter_gil_is_a_pointer() {
        let g = gil_info(builtin_gil(3, 11), Some(0x1000));
        assert_eq!((g.addr, g.interp_ptr), (0x1000 + 360, NO_OFFSET));
        let g = gil_info(builtin_gil(3, 12), Some(0x1000));
        assert_eq!((g.addr, g.interp_ptr, g.locked), (0, 384, 16));
        assert_eq!(gil_info(builtin_gil(3, 6), None).last_holder, NO_OFFSET);
        // 3.13+: the field offsets are given inside the interpreter; made relative to `_gil`.
        let l = from_debug_offsets(1000, 2000, 2016, 2008).unwrap();
        assert_eq!((l.last_holder, l.locked), (8, 16));
        assert!(from_debug_offsets(1, 2000, 10, 10).is_none());
    }

    #[test]
    fn live_3_13_0_debug_offsets_locate_the_interpreter_gil() {
        let bytes = include_bytes!("../../tests/data/debug_offsets_3.13.0.bin");
        let d = crate::python::debug_offsets::parse(bytes).unwrap();
        // offsetof(PyInterpreterState, ceval.gil) = 16, `_gil` at 7752 (3.13.0's headers).
        assert_eq!(
            d.gil,
            Some(GilLayout {
                location: GilLocation::InterpPointer(16),
                last_holder: 8,
                locked: 16,
            })
        );
    }
}
