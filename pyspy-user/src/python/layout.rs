//! Built-in CPython structure layouts, one table per minor version (x86_64 Linux, default
//! non-debug GIL build).
//!
//! The numbers are `offsetof`/`sizeof` values printed by `tools/cpython-offsets/gen.sh`
//! from each version's installed headers; `tests/layout_tables.rs` recompiles the generator
//! against every installed version and compares field by field. 3.13+ also describe
//! themselves at run time (see `debug_offsets`).
use pytrace_common::{PyOffsets, NO_OFFSET};

/// How a frame records its position in the bytecode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrKind {
    /// ≤3.9: `f_lasti` is a byte offset into `co_code`.
    LastiBytes,
    /// 3.10: `f_lasti` counts 2-byte code units.
    LastiCodeUnits,
    /// 3.11+: a pointer into the code object's `co_code_adaptive`, which starts at
    /// `code_adaptive` bytes into `PyCodeObject`.
    InstrPtr { code_adaptive: u32 },
}

/// Encoding of the code object's line table (`code_linetable`).
pub use super::linetable::LineTableKind;

/// Everything pytrace needs to know about one CPython minor version's memory layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionLayout {
    pub major: u8,
    pub minor: u8,
    /// Offset of `interpreters.head` inside `_PyRuntime`; `None` where there is no
    /// `_PyRuntime` (3.6: the static `interp_head` symbol is used).
    pub runtime_interp_head: Option<u32>,
    pub offsets: PyOffsets,
    pub instr: InstrKind,
    pub line_table: LineTableKind,
    /// The `bound_gilstate` bit of `PyThreadState._status` (3.12+): set on the one thread
    /// state `PyGILState_GetThisThreadState()` returns in the OS thread it is bound to.
    /// `None` where there is no such bit (≤3.11: that thread state is the first one made in
    /// the thread, and thread-state swaps do not move it).
    pub gilstate_bound_mask: Option<u32>,
}

impl VersionLayout {
    /// Whether a thread's frames are pushed on its data stack, each right above its caller
    /// (3.11+, the `_PyInterpreterFrame`s that came with instruction pointers; frames owned by
    /// a generator or by the C stack lie elsewhere). Before 3.11 each frame is an object of
    /// its own.
    pub fn frames_on_data_stack(&self) -> bool {
        matches!(self.instr, InstrKind::InstrPtr { .. })
    }
}

static PY_3_6: VersionLayout = VersionLayout {
    major: 3,
    minor: 6,
    runtime_interp_head: None,
    offsets: PyOffsets {
        interp_threads_head: 8,
        interp_gc_collecting: NO_OFFSET,
        tstate_next: 8,
        tstate_thread_id: 152,
        tstate_native_thread_id: NO_OFFSET,
        tstate_frame: 24,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 24,
        frame_code: 32,
        frame_instr: 120,
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 96,
        code_name: 104,
        code_linetable: 112,
        code_firstlineno: 36,
        unicode_length: 16,
        unicode_state: 32,
        // PyASCIIObject still carries the `wstr` pointer (until 3.12).
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::LastiBytes,
    line_table: LineTableKind::Lnotab,
    gilstate_bound_mask: None,
};

static PY_3_7: VersionLayout = VersionLayout {
    major: 3,
    minor: 7,
    runtime_interp_head: Some(24),
    offsets: PyOffsets {
        interp_threads_head: 8,
        interp_gc_collecting: NO_OFFSET,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: NO_OFFSET,
        tstate_frame: 24,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 24,
        frame_code: 32,
        frame_instr: 104,
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 96,
        code_name: 104,
        code_linetable: 112,
        code_firstlineno: 36,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::LastiBytes,
    line_table: LineTableKind::Lnotab,
    gilstate_bound_mask: None,
};

static PY_3_8: VersionLayout = VersionLayout {
    major: 3,
    minor: 8,
    runtime_interp_head: Some(32),
    offsets: PyOffsets {
        interp_threads_head: 8,
        interp_gc_collecting: NO_OFFSET,
        tstate_next: 8,
        tstate_thread_id: 176,
        // `threading.get_native_id()` exists, but the thread state stores it only from 3.11.
        tstate_native_thread_id: NO_OFFSET,
        tstate_frame: 24,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 24,
        frame_code: 32,
        frame_instr: 104,
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 104,
        code_name: 112,
        code_linetable: 120,
        code_firstlineno: 40,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::LastiBytes,
    line_table: LineTableKind::Lnotab,
    gilstate_bound_mask: None,
};

static PY_3_9: VersionLayout = VersionLayout {
    major: 3,
    minor: 9,
    runtime_interp_head: Some(32),
    offsets: PyOffsets {
        interp_threads_head: 8,
        interp_gc_collecting: NO_OFFSET,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: NO_OFFSET,
        tstate_frame: 24,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 24,
        frame_code: 32,
        frame_instr: 104,
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 104,
        code_name: 112,
        code_linetable: 120,
        code_firstlineno: 40,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::LastiBytes,
    line_table: LineTableKind::Lnotab,
    gilstate_bound_mask: None,
};

static PY_3_10: VersionLayout = VersionLayout {
    major: 3,
    minor: 10,
    runtime_interp_head: Some(32),
    offsets: PyOffsets {
        interp_threads_head: 8,
        // `interp->gc.collecting`: the first version whose faulthandler prints it.
        interp_gc_collecting: 816,
        tstate_next: 8,
        tstate_thread_id: 176,
        tstate_native_thread_id: NO_OFFSET,
        tstate_frame: 24,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 24,
        frame_code: 32,
        frame_instr: 96,
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 104,
        code_name: 112,
        code_linetable: 120,
        code_firstlineno: 40,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::LastiCodeUnits,
    line_table: LineTableKind::Linetable310,
    gilstate_bound_mask: None,
};

static PY_3_11: VersionLayout = VersionLayout {
    major: 3,
    minor: 11,
    runtime_interp_head: Some(40),
    offsets: PyOffsets {
        interp_threads_head: 16,
        interp_gc_collecting: 848,
        tstate_next: 8,
        tstate_thread_id: 152,
        tstate_native_thread_id: 160,
        // `tstate->cframe`, then `cframe->current_frame` (a `_PyInterpreterFrame`).
        tstate_frame: 56,
        cframe_current_frame: 8,
        frame_previous: 48,
        frame_code: 32,
        // `prev_instr`.
        frame_instr: 56,
        // 3.11 frames have `owner` but no shim frames; faulthandler prints every frame.
        frame_owner: NO_OFFSET,
        frame_owner_shim_min: NO_OFFSET,
        code_filename: 112,
        code_name: 120,
        code_linetable: 136,
        code_firstlineno: 72,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: NO_OFFSET,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: NO_OFFSET,
    },
    instr: InstrKind::InstrPtr { code_adaptive: 184 },
    line_table: LineTableKind::Locations311,
    gilstate_bound_mask: None,
};

static PY_3_12: VersionLayout = VersionLayout {
    major: 3,
    minor: 12,
    runtime_interp_head: Some(40),
    offsets: PyOffsets {
        interp_threads_head: 72,
        interp_gc_collecting: 312,
        tstate_next: 8,
        tstate_thread_id: 136,
        tstate_native_thread_id: 144,
        tstate_frame: 56,
        cframe_current_frame: 0,
        frame_previous: 8,
        frame_code: 0,
        // `prev_instr`.
        frame_instr: 56,
        frame_owner: 70,
        // FRAME_OWNED_BY_CSTACK.
        frame_owner_shim_min: 3,
        code_filename: 112,
        code_name: 120,
        code_linetable: 136,
        code_firstlineno: 68,
        unicode_length: 16,
        unicode_state: 32,
        // `wstr` is gone from 3.12 on.
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 0,
        tstate_status: 24,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: 92,
    },
    instr: InstrKind::InstrPtr { code_adaptive: 192 },
    line_table: LineTableKind::Locations311,
    gilstate_bound_mask: Some(8),
};

static PY_3_13: VersionLayout = VersionLayout {
    major: 3,
    minor: 13,
    // `_PyRuntime` starts with the 584-byte `_Py_DebugOffsets`.
    runtime_interp_head: Some(632),
    offsets: PyOffsets {
        interp_threads_head: 7344,
        interp_gc_collecting: 7600,
        tstate_next: 8,
        tstate_thread_id: 152,
        tstate_native_thread_id: 160,
        // `current_frame`, directly.
        tstate_frame: 72,
        cframe_current_frame: NO_OFFSET,
        frame_previous: 8,
        // `f_executable`.
        frame_code: 0,
        // `instr_ptr`.
        frame_instr: 56,
        frame_owner: 70,
        // FRAME_OWNED_BY_CSTACK.
        frame_owner_shim_min: 3,
        code_filename: 112,
        code_name: 120,
        code_linetable: 136,
        code_firstlineno: 68,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        bytes_size: 16,
        bytes_data: 32,
        interp_next: 7264,
        tstate_status: 32,
        unicode_state_shift: 0,
        frame_tlbc_index: NO_OFFSET,
        code_tlbc: NO_OFFSET,
        code_version: 92,
    },
    instr: InstrKind::InstrPtr { code_adaptive: 200 },
    line_table: LineTableKind::Locations311,
    gilstate_bound_mask: Some(8),
};

static BUILTIN: [&VersionLayout; 8] = [
    &PY_3_6, &PY_3_7, &PY_3_8, &PY_3_9, &PY_3_10, &PY_3_11, &PY_3_12, &PY_3_13,
];

/// The built-in table for `major.minor`, if there is one.
pub fn builtin_layout(major: u8, minor: u8) -> Option<&'static VersionLayout> {
    BUILTIN
        .iter()
        .copied()
        .find(|l| l.major == major && l.minor == minor)
}

/// The `(major, minor)` versions that have a built-in table, oldest first.
pub fn supported_versions() -> impl Iterator<Item = (u8, u8)> {
    BUILTIN.iter().map(|l| (l.major, l.minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_found_by_their_own_version() {
        let versions: Vec<_> = supported_versions().collect();
        assert_eq!(versions, (6..=13).map(|m| (3, m)).collect::<Vec<_>>());
        for (major, minor) in versions {
            let l = builtin_layout(major, minor).unwrap();
            assert_eq!((l.major, l.minor), (major, minor));
        }
        assert!(builtin_layout(3, 5).is_none());
        assert!(builtin_layout(3, 14).is_none());
        assert!(builtin_layout(2, 7).is_none());
    }

    #[test]
    fn version_dependent_fields_follow_the_version() {
        for (major, minor) in supported_versions() {
            let l = builtin_layout(major, minor).unwrap();
            let o = &l.offsets;
            assert_eq!(l.runtime_interp_head.is_none(), minor == 6, "3.{minor}");
            assert_eq!(
                o.interp_gc_collecting != NO_OFFSET,
                minor >= 10,
                "3.{minor}"
            );
            assert_eq!(
                o.tstate_native_thread_id != NO_OFFSET,
                minor >= 11,
                "3.{minor}"
            );
            assert_eq!(
                o.cframe_current_frame != NO_OFFSET,
                minor == 11 || minor == 12
            );
            assert_eq!(o.frame_owner != NO_OFFSET, minor >= 12, "3.{minor}");
            assert_eq!(
                o.frame_owner_shim_min != NO_OFFSET,
                minor >= 12,
                "3.{minor}"
            );
            let instr_ok = match l.instr {
                InstrKind::LastiBytes => minor <= 9,
                InstrKind::LastiCodeUnits => minor == 10,
                InstrKind::InstrPtr { .. } => minor >= 11,
            };
            assert!(instr_ok, "3.{minor}: {:?}", l.instr);
            let table_ok = match l.line_table {
                LineTableKind::Lnotab => minor <= 9,
                LineTableKind::Linetable310 => minor == 10,
                LineTableKind::Locations311 => minor >= 11,
            };
            assert!(table_ok, "3.{minor}: {:?}", l.line_table);
        }
    }
}
