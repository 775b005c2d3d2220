//! Parser for `_Py_DebugOffsets`, the table of structure offsets that CPython 3.13+ keeps as
//! the first member of `_PyRuntime`, turned into a [`VersionLayout`].
//!
//! The table's own layout changes between minor versions, so each known minor is described
//! here as data: its sections and their `uint64_t` fields in declaration order (field names
//! as in `pycore_runtime.h` for 3.13 and `pycore_debug_offsets.h` for 3.14 and 3.15). What the table
//! does not carry — the shim owner value and `sizeof(PyCompactUnicodeObject)` — comes from
//! per-minor constants. Only release candidates and final releases are trusted: a minor's
//! table may still change during its alphas and betas.
use crate::python::layout::{InstrKind, LineTableKind, VersionLayout};
use pytrace_common::{PyOffsets, NO_OFFSET};

/// The 8 bytes every `_Py_DebugOffsets` starts with.
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Bytes from the start of `_PyRuntime` the caller must read: the largest known table.
pub const DEBUG_OFFSETS_MAX_SIZE: usize = max_size();

/// A parsed table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOffsets {
    /// `PY_VERSION_HEX` of the process.
    pub version_hex: u32,
    /// A free-threaded build (`Py_GIL_DISABLED`: 3.13t, 3.14t, 3.15t).
    pub free_threaded: bool,
    pub layout: VersionLayout,
    /// Where the interpreter's GIL is; `None` if the table does not say plausibly.
    pub gil: Option<super::gil::GilLayout>,
}

#[derive(Debug, thiserror::Error)]
pub enum DebugOffsetsError {
    #[error("no _Py_DebugOffsets: the cookie is not \"xdebugpy\"")]
    BadCookie,
    #[error("too few bytes for _Py_DebugOffsets")]
    Truncated,
    #[error("no known _Py_DebugOffsets layout for CPython {}", version_string(*.version_hex))]
    UnknownVersion { version_hex: u32 },
    #[error("implausible _Py_DebugOffsets: {0}")]
    Inconsistent(String),
}

/// `"3.13.0"`, `"3.14.0rc2"`, … as `sys.version` spells a `PY_VERSION_HEX`.
pub fn version_string(hex: u32) -> String {
    let (major, minor, micro) = (hex >> 24, (hex >> 16) & 0xff, (hex >> 8) & 0xff);
    let serial = hex & 0xf;
    let level = match (hex >> 4) & 0xf {
        0xa => "a",
        0xb => "b",
        0xc => "rc",
        _ => "",
    };
    if level.is_empty() {
        format!("{major}.{minor}.{micro}")
    } else {
        format!("{major}.{minor}.{micro}{level}{serial}")
    }
}

/// One section of the table: its name and its `uint64_t` fields in order, separated by
/// spaces.
type Section = (&'static str, &'static str);

/// One minor version's table.
struct Format {
    minor: u8,
    /// Sections after the 24-byte header (cookie, version, free_threaded).
    sections: &'static [Section],
    /// `FRAME_OWNED_BY_*` values from this one up mark frames faulthandler skips.
    shim_owner_min: u32,
    /// The `bound_gilstate` bit of `PyThreadState._status` (the table gives the word's
    /// offset, not its bit fields).
    gilstate_bound_mask: u32,
    /// `co_version` (see `PyOffsets::code_version`), which the table does not give, as a
    /// distance after `co_firstlineno` (which it does): the ints between them are the same in
    /// both builds. `None` where not checked against the version's headers.
    code_version_after_firstlineno: Option<u32>,
}

/// Header: `char cookie[8]`, `uint64_t version`, `uint64_t free_threaded`.
const HEADER_SIZE: usize = 24;
const VERSION_AT: usize = 8;
const FREE_THREADED_AT: usize = 16;
/// `sizeof(PyCompactUnicodeObject) - sizeof(PyASCIIObject)`: `utf8_length` and `utf8`
/// (3.12 to 3.14; 3.15's table gives the size itself).
const COMPACT_UNICODE_EXTRA: u32 = 16;
/// Free-threaded builds: `PyASCIIObject.state` starts with a whole byte for `interned`, so the
/// kind, compact and ascii bits sit 6 bits higher than with a GIL (2-bit `interned`).
const FREE_THREADED_STATE_SHIFT: u32 = 6;
/// Offsets above this are taken as garbage rather than as a structure offset.
const MAX_PLAUSIBLE: u64 = 1 << 24;
/// Release level from which a minor's table is frozen (`0xc` = release candidate).
const FROZEN_FROM_LEVEL: u32 = 0xc;

const RUNTIME_STATE: Section = ("runtime_state", "size finalizing interpreters_head");
const THREAD_STATE: Section = (
    "thread_state",
    "size prev next interp current_frame thread_id native_thread_id datastack_chunk status",
);
const PYOBJECT: Section = ("pyobject", "size ob_type");
const TYPE_OBJECT: Section = ("type_object", "size tp_name tp_repr tp_flags");
const TUPLE_OBJECT: Section = ("tuple_object", "size ob_item ob_size");
const LIST_OBJECT: Section = ("list_object", "size ob_item ob_size");
const DICT_OBJECT: Section = ("dict_object", "size ma_keys ma_values");
const FLOAT_OBJECT: Section = ("float_object", "size ob_fval");
const LONG_OBJECT: Section = ("long_object", "size lv_tag ob_digit");
const BYTES_OBJECT: Section = ("bytes_object", "size ob_size ob_sval");
const UNICODE_OBJECT: Section = ("unicode_object", "size state length asciiobject_size");
const GC: Section = ("gc", "size collecting");

const FORMAT_3_13: Format = Format {
    minor: 13,
    sections: &[
        RUNTIME_STATE,
        (
            "interpreter_state",
            "size id next threads_head gc imports_modules sysdict builtins ceval_gil \
             gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder",
        ),
        THREAD_STATE,
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive",
        ),
        PYOBJECT,
        TYPE_OBJECT,
        TUPLE_OBJECT,
        LIST_OBJECT,
        DICT_OBJECT,
        FLOAT_OBJECT,
        LONG_OBJECT,
        BYTES_OBJECT,
        UNICODE_OBJECT,
        GC,
    ],
    // FRAME_OWNED_BY_CSTACK.
    shim_owner_min: 3,
    // `initialized`, `bound`, `unbound`, then `bound_gilstate`.
    gilstate_bound_mask: 1 << 3,
    // co_nlocalsplus, co_framesize, co_nlocals, co_ncellvars, co_nfreevars, then co_version.
    code_version_after_firstlineno: Some(24),
};

const FORMAT_3_14: Format = Format {
    minor: 14,
    sections: &[
        RUNTIME_STATE,
        (
            "interpreter_state",
            "size id next threads_head threads_main gc imports_modules sysdict builtins \
             ceval_gil gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder code_object_generation tlbc_generation",
        ),
        THREAD_STATE,
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner stackpointer tlbc_index",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive co_tlbc",
        ),
        PYOBJECT,
        TYPE_OBJECT,
        TUPLE_OBJECT,
        LIST_OBJECT,
        ("set_object", "size used table mask"),
        DICT_OBJECT,
        FLOAT_OBJECT,
        LONG_OBJECT,
        BYTES_OBJECT,
        UNICODE_OBJECT,
        GC,
        ("gen_object", "size gi_name gi_iframe gi_frame_state"),
        ("llist_node", "next prev"),
        (
            "debugger_support",
            "eval_breaker remote_debugger_support remote_debugging_enabled \
             debugger_pending_call debugger_script_path debugger_script_path_size",
        ),
    ],
    // FRAME_OWNED_BY_INTERPRETER = 3 and FRAME_OWNED_BY_CSTACK = 4.
    shim_owner_min: 3,
    gilstate_bound_mask: 1 << 3,
    code_version_after_firstlineno: None,
};

const FORMAT_3_15: Format = Format {
    minor: 15,
    sections: &[
        RUNTIME_STATE,
        (
            "interpreter_state",
            "size id next threads_head threads_main gc imports_modules sysdict builtins \
             ceval_gil gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder code_object_generation tlbc_generation",
        ),
        (
            "thread_state",
            "size prev next interp current_frame base_frame last_profiled_frame \
             last_profiled_frame_seq thread_id native_thread_id datastack_chunk status \
             holds_gil gil_requested current_exception exc_state",
        ),
        ("err_stackitem", "exc_value"),
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner stackpointer tlbc_index",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive co_tlbc",
        ),
        PYOBJECT,
        (
            "type_object",
            "size tp_name tp_repr tp_flags tp_basicsize tp_dictoffset",
        ),
        ("heap_type_object", "size ht_cached_keys"),
        TUPLE_OBJECT,
        LIST_OBJECT,
        ("set_object", "size used table mask"),
        DICT_OBJECT,
        FLOAT_OBJECT,
        LONG_OBJECT,
        BYTES_OBJECT,
        (
            "unicode_object",
            "size state length asciiobject_size compactunicodeobject_size",
        ),
        (
            "gc",
            "size collecting frame generation_stats_size generation_stats",
        ),
        ("gen_object", "size gi_name gi_iframe gi_frame_state"),
        ("llist_node", "next prev"),
        (
            "debugger_support",
            "eval_breaker remote_debugger_support remote_debugging_enabled \
             debugger_pending_call debugger_script_path debugger_script_path_size",
        ),
    ],
    // FRAME_OWNED_BY_INTERPRETER = 3 (trampolines and each thread's base frame); 3.15 has
    // no FRAME_OWNED_BY_CSTACK.
    shim_owner_min: 3,
    // `_status` keeps the same bit fields: `initialized`, `bound`, `unbound`, `bound_gilstate`.
    gilstate_bound_mask: 1 << 3,
    code_version_after_firstlineno: None,
};

const FORMATS: &[Format] = &[FORMAT_3_13, FORMAT_3_14, FORMAT_3_15];

/// Number of space-separated words in `s`.
const fn word_count(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut count, mut in_word, mut i) = (0, false, 0);
    while i < bytes.len() {
        let space = bytes[i].is_ascii_whitespace();
        if !space && !in_word {
            count += 1;
        }
        in_word = !space;
        i += 1;
    }
    count
}

impl Format {
    /// `sizeof(_Py_DebugOffsets)`.
    const fn size(&self) -> usize {
        let (mut fields, mut i) = (0, 0);
        while i < self.sections.len() {
            fields += word_count(self.sections[i].1);
            i += 1;
        }
        HEADER_SIZE + 8 * fields
    }

    /// Byte position of `section.field` in the table.
    fn position(&self, section: &str, field: &str) -> Option<usize> {
        let mut at = HEADER_SIZE;
        for (name, fields) in self.sections {
            if *name == section {
                return fields
                    .split_whitespace()
                    .position(|f| f == field)
                    .map(|i| at + 8 * i);
            }
            at += 8 * word_count(fields);
        }
        None
    }
}

const fn max_size() -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < FORMATS.len() {
        let size = FORMATS[i].size();
        if size > max {
            max = size;
        }
        i += 1;
    }
    max
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

/// Field reads from one table, with the plausibility checks.
struct Table<'a> {
    bytes: &'a [u8],
    format: &'a Format,
}

impl Table<'_> {
    fn get(&self, section: &str, field: &str) -> Result<u32, DebugOffsetsError> {
        let at = self.format.position(section, field).ok_or_else(|| {
            DebugOffsetsError::Inconsistent(format!(
                "3.{} table has no {section}.{field}",
                self.format.minor
            ))
        })?;
        let value = read_u64(self.bytes, at).ok_or(DebugOffsetsError::Truncated)?;
        if value >= MAX_PLAUSIBLE {
            return Err(DebugOffsetsError::Inconsistent(format!(
                "{section}.{field} = {value:#x}"
            )));
        }
        Ok(value as u32)
    }

    /// `section.field`, checked to leave `width` bytes inside `section.size`.
    fn member(&self, section: &str, field: &str, width: u32) -> Result<u32, DebugOffsetsError> {
        let offset = self.get(section, field)?;
        fits(
            offset,
            width,
            self.get(section, "size")?,
            &format!("{section}.{field}"),
        )
    }
}

/// `offset` of `what`, if `width` bytes from it fit in `size`.
fn fits(offset: u32, width: u32, size: u32, what: &str) -> Result<u32, DebugOffsetsError> {
    if u64::from(offset) + u64::from(width) > u64::from(size) {
        return Err(DebugOffsetsError::Inconsistent(format!(
            "{what} = {offset} does not fit in {size} bytes"
        )));
    }
    Ok(offset)
}

/// Parses `bytes`, read from the start of `_PyRuntime` (at least `DEBUG_OFFSETS_MAX_SIZE`
/// bytes when available; the table of the process's minor version must be complete).
pub fn parse(bytes: &[u8]) -> Result<DebugOffsets, DebugOffsetsError> {
    use DebugOffsetsError as E;
    if bytes.len() < COOKIE.len() {
        return Err(E::Truncated);
    }
    if &bytes[..COOKIE.len()] != COOKIE {
        return Err(E::BadCookie);
    }
    let version = read_u64(bytes, VERSION_AT).ok_or(E::Truncated)?;
    let version_hex =
        u32::try_from(version).map_err(|_| E::Inconsistent(format!("version = {version:#x}")))?;
    let (major, minor) = ((version_hex >> 24) as u8, (version_hex >> 16) as u8);
    let frozen = ((version_hex >> 4) & 0xf) >= FROZEN_FROM_LEVEL;
    let format = FORMATS
        .iter()
        .find(|f| major == 3 && f.minor == minor && frozen)
        .ok_or(E::UnknownVersion { version_hex })?;
    if bytes.len() < format.size() {
        return Err(E::Truncated);
    }
    let free_threaded = match read_u64(bytes, FREE_THREADED_AT).ok_or(E::Truncated)? {
        0 => false,
        1 => true,
        other => return Err(E::Inconsistent(format!("free_threaded = {other}"))),
    };

    let t = Table { bytes, format };
    let interp_size = t.get("interpreter_state", "size")?;
    let gc = t.member("interpreter_state", "gc", 0)? + t.member("gc", "collecting", 4)?;
    let interp_gc_collecting = fits(gc, 4, interp_size, "interpreter_state.gc.collecting")?;
    let ascii_size = t.member("unicode_object", "asciiobject_size", 0)?;
    // 3.15 carries `sizeof(PyCompactUnicodeObject)`; earlier tables do not.
    let compact_size = match format.position("unicode_object", "compactunicodeobject_size") {
        Some(_) => t.member("unicode_object", "compactunicodeobject_size", 0)?,
        None => ascii_size + COMPACT_UNICODE_EXTRA,
    };
    if compact_size < ascii_size {
        return Err(E::Inconsistent(format!(
            "unicode_object.compactunicodeobject_size = {compact_size} < {ascii_size}"
        )));
    }
    let unicode_length = t.get("unicode_object", "length")?;
    let unicode_state = t.get("unicode_object", "state")?;
    fits(unicode_length, 8, ascii_size, "unicode_object.length")?;
    fits(unicode_state, 4, ascii_size, "unicode_object.state")?;

    // Free-threaded 3.14+ frames run a per-thread copy of the bytecode: the table says where
    // the frame keeps which copy and where the code object keeps the copies (a build with a
    // GIL has neither: its table gives 0 for both). 3.13t's table has neither field.
    let has_tlbc = free_threaded && format.position("code_object", "co_tlbc").is_some();
    let (frame_tlbc_index, code_tlbc) = if has_tlbc {
        (
            t.member("interpreter_frame", "tlbc_index", 4)?,
            t.member("code_object", "co_tlbc", 8)?,
        )
    } else {
        (NO_OFFSET, NO_OFFSET)
    };
    let code_firstlineno = t.member("code_object", "firstlineno", 4)?;
    let code_version = match format.code_version_after_firstlineno {
        Some(d) => code_firstlineno + d,
        None => NO_OFFSET,
    };
    let offsets = PyOffsets {
        interp_threads_head: t.member("interpreter_state", "threads_head", 8)?,
        interp_gc_collecting,
        tstate_next: t.member("thread_state", "next", 8)?,
        tstate_thread_id: t.member("thread_state", "thread_id", 8)?,
        tstate_native_thread_id: t.member("thread_state", "native_thread_id", 8)?,
        tstate_frame: t.member("thread_state", "current_frame", 8)?,
        cframe_current_frame: NO_OFFSET,
        frame_previous: t.member("interpreter_frame", "previous", 8)?,
        frame_code: t.member("interpreter_frame", "executable", 8)?,
        frame_instr: t.member("interpreter_frame", "instr_ptr", 8)?,
        frame_owner: t.member("interpreter_frame", "owner", 1)?,
        frame_owner_shim_min: format.shim_owner_min,
        code_filename: t.member("code_object", "filename", 8)?,
        code_name: t.member("code_object", "name", 8)?,
        code_linetable: t.member("code_object", "linetable", 8)?,
        code_firstlineno,
        unicode_length,
        unicode_state,
        unicode_ascii_data: ascii_size,
        unicode_compact_data: compact_size,
        bytes_size: t.member("bytes_object", "ob_size", 8)?,
        bytes_data: t.member("bytes_object", "ob_sval", 1)?,
        interp_next: t.member("interpreter_state", "next", 8)?,
        tstate_status: t.member("thread_state", "status", 4)?,
        unicode_state_shift: if free_threaded {
            FREE_THREADED_STATE_SHIFT
        } else {
            0
        },
        frame_tlbc_index,
        code_tlbc,
        code_version,
    };
    let layout = VersionLayout {
        major,
        minor,
        runtime_interp_head: Some(t.member("runtime_state", "interpreters_head", 8)?),
        offsets,
        instr: InstrKind::InstrPtr {
            code_adaptive: t.member("code_object", "co_code_adaptive", 1)?,
        },
        line_table: LineTableKind::Locations311,
        gilstate_bound_mask: Some(format.gilstate_bound_mask),
    };
    let gil = (|| {
        let m = |f| t.member("interpreter_state", f, 8).ok();
        super::gil::from_debug_offsets(
            m("ceval_gil")?,
            m("gil_runtime_state")?,
            t.member("interpreter_state", "gil_runtime_state_locked", 4)
                .ok()?,
            m("gil_runtime_state_holder")?,
        )
    })();
    Ok(DebugOffsets {
        version_hex,
        free_threaded,
        layout,
        gil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::layout::builtin_layout;

    /// The first 1024 bytes of `_PyRuntime`, read from a running CPython 3.13.0.
    const LIVE_3_13_0: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.13.0.bin");

    /// The first 1024 bytes of `.PyRuntime` in Debian sid's `python3.14` 3.14.10-1 and
    /// `python3.15` 3.15.2-1 (the table is initialized data: the file holds it as the process
    /// starts with it).
    const LIVE_3_14_10: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.14.10.bin");
    const LIVE_3_15_2: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.15.2.bin");

    /// `_Py_DebugOffsets` of 3.14 after the header, in declaration order.
    const FIELDS_3_14: &str = "
        runtime_state.size runtime_state.finalizing runtime_state.interpreters_head
        interpreter_state.size interpreter_state.id interpreter_state.next
        interpreter_state.threads_head interpreter_state.threads_main interpreter_state.gc
        interpreter_state.imports_modules interpreter_state.sysdict interpreter_state.builtins
        interpreter_state.ceval_gil interpreter_state.gil_runtime_state
        interpreter_state.gil_runtime_state_enabled interpreter_state.gil_runtime_state_locked
        interpreter_state.gil_runtime_state_holder interpreter_state.code_object_generation
        interpreter_state.tlbc_generation
        thread_state.size thread_state.prev thread_state.next thread_state.interp
        thread_state.current_frame thread_state.thread_id thread_state.native_thread_id
        thread_state.datastack_chunk thread_state.status
        interpreter_frame.size interpreter_frame.previous interpreter_frame.executable
        interpreter_frame.instr_ptr interpreter_frame.localsplus interpreter_frame.owner
        interpreter_frame.stackpointer interpreter_frame.tlbc_index
        code_object.size code_object.filename code_object.name code_object.qualname
        code_object.linetable code_object.firstlineno code_object.argcount
        code_object.localsplusnames code_object.localspluskinds code_object.co_code_adaptive
        code_object.co_tlbc
        pyobject.size pyobject.ob_type
        type_object.size type_object.tp_name type_object.tp_repr type_object.tp_flags
        tuple_object.size tuple_object.ob_item tuple_object.ob_size
        list_object.size list_object.ob_item list_object.ob_size
        set_object.size set_object.used set_object.table set_object.mask
        dict_object.size dict_object.ma_keys dict_object.ma_values
        float_object.size float_object.ob_fval
        long_object.size long_object.lv_tag long_object.ob_digit
        bytes_object.size bytes_object.ob_size bytes_object.ob_sval
        unicode_object.size unicode_object.state unicode_object.length
        unicode_object.asciiobject_size
        gc.size gc.collecting
        gen_object.size gen_object.gi_name gen_object.gi_iframe gen_object.gi_frame_state
        llist_node.next llist_node.prev
        debugger_support.eval_breaker debugger_support.remote_debugger_support
        debugger_support.remote_debugging_enabled debugger_support.debugger_pending_call
        debugger_support.debugger_script_path debugger_support.debugger_script_path_size
    ";

    /// Distinctive values for the fields the parser reads (every other field gets a filler
    /// that would stand out).
    const VALUES_3_14: &[(&str, u64)] = &[
        ("runtime_state.size", 0x5_0000),
        ("runtime_state.interpreters_head", 0x318),
        ("interpreter_state.size", 0x4_0000),
        ("interpreter_state.next", 0x1c0),
        ("interpreter_state.threads_head", 0x1d28),
        ("interpreter_state.threads_main", 0x1d30),
        ("interpreter_state.gc", 0x1e08),
        ("thread_state.size", 0x3f0),
        ("thread_state.next", 0x18),
        ("thread_state.current_frame", 0x50),
        ("thread_state.thread_id", 0xa0),
        ("thread_state.native_thread_id", 0xa8),
        ("thread_state.status", 0x20),
        ("interpreter_frame.size", 0x58),
        ("interpreter_frame.previous", 0x10),
        ("interpreter_frame.executable", 0x08),
        ("interpreter_frame.instr_ptr", 0x40),
        ("interpreter_frame.owner", 0x4a),
        ("code_object.size", 0x118),
        ("code_object.filename", 0x78),
        ("code_object.name", 0x80),
        ("code_object.linetable", 0x90),
        ("code_object.firstlineno", 0x4c),
        ("code_object.co_code_adaptive", 0xd8),
        ("unicode_object.size", 0x50),
        ("unicode_object.state", 0x24),
        ("unicode_object.length", 0x18),
        ("unicode_object.asciiobject_size", 0x30),
        ("bytes_object.size", 0x30),
        ("bytes_object.ob_size", 0x18),
        ("bytes_object.ob_sval", 0x28),
        ("gc.size", 0x110),
        ("gc.collecting", 0xd4),
    ];

    const FILLER: u64 = 0xdead;

    fn image(version_hex: u64, fields: &str, values: &[(&str, u64)]) -> Vec<u8> {
        let fields: Vec<&str> = fields.split_whitespace().collect();
        for (name, _) in values {
            assert!(fields.contains(name), "{name} is not a field");
        }
        let mut out = Vec::new();
        out.extend_from_slice(COOKIE);
        out.extend_from_slice(&version_hex.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        for field in &fields {
            let value = values
                .iter()
                .find(|(n, _)| n == field)
                .map_or(FILLER, |v| v.1);
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    fn image_3_14() -> Vec<u8> {
        image(0x030E_00F0, FIELDS_3_14, VALUES_3_14)
    }

    fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn sizes_match_the_headers() {
        assert_eq!(FORMAT_3_13.size(), 584);
        assert_eq!(
            FORMAT_3_14.size(),
            HEADER_SIZE + 8 * word_count(FIELDS_3_14)
        );
        assert_eq!(FORMAT_3_14.size(), 760);
        // 3.15 adds 3 + 4 thread-state fields, err_stackitem (1), 2 type-object fields,
        // heap_type_object (2), compactunicodeobject_size (1) and 3 gc fields.
        assert_eq!(FORMAT_3_15.size(), 760 + 8 * 16);
        assert_eq!(DEBUG_OFFSETS_MAX_SIZE, 888);
    }

    /// Offsets of a real table: the fields of 3.14 and 3.15 that pytrace reads, as CPython's
    /// own `offsetof` gave them in Debian's builds (checked against the headers: the frame
    /// and code fields did not move between 3.14 and 3.15, the thread state's did).
    #[test]
    fn live_3_14_and_3_15_tables() {
        let p14 = parse(LIVE_3_14_10).unwrap();
        assert_eq!(p14.version_hex, 0x030E_0AF0);
        let p15 = parse(LIVE_3_15_2).unwrap();
        assert_eq!(p15.version_hex, 0x030F_02F0);
        for p in [&p14, &p15] {
            let o = &p.layout.offsets;
            assert_eq!((o.frame_previous, o.frame_code), (8, 0));
            assert_eq!(o.frame_owner_shim_min, 3);
            assert_eq!(o.tstate_next, 8);
            assert_eq!(o.unicode_compact_data, o.unicode_ascii_data + 16);
            assert_eq!(p.layout.line_table, LineTableKind::Locations311);
        }
        let (o14, o15) = (&p14.layout.offsets, &p15.layout.offsets);
        assert_eq!((o14.tstate_frame, o14.tstate_thread_id), (72, 152));
        assert_eq!(o14.frame_owner, 74);
        // 3.15 inserted `base_frame` and the profiling fields before `thread_id`.
        assert!(o15.tstate_thread_id > o14.tstate_thread_id);
        assert_eq!(o15.tstate_native_thread_id, o15.tstate_thread_id + 8);
        assert_eq!(
            FORMAT_3_15.position("unicode_object", "compactunicodeobject_size"),
            FORMAT_3_15
                .position("unicode_object", "asciiobject_size")
                .map(|p| p + 8)
        );
    }

    #[test]
    fn live_3_13_0_matches_the_builtin_table() {
        let parsed = parse(LIVE_3_13_0).unwrap();
        assert_eq!(parsed.version_hex, 0x030D_00F0);
        assert!(!parsed.free_threaded);
        assert_eq!(parsed.layout, *builtin_layout(3, 13).unwrap());
        let head_at = parsed.layout.runtime_interp_head.unwrap() as usize;
        assert_ne!(
            read_u64(LIVE_3_13_0, head_at),
            Some(0),
            "interpreters.head was set"
        );
    }

    #[test]
    fn a_3_14_image_gives_every_field() {
        let parsed = parse(&image_3_14()).unwrap();
        assert_eq!(parsed.version_hex, 0x030E_00F0);
        let l = parsed.layout;
        assert_eq!((l.major, l.minor), (3, 14));
        assert_eq!(l.runtime_interp_head, Some(0x318));
        assert_eq!(
            l.instr,
            InstrKind::InstrPtr {
                code_adaptive: 0xd8
            }
        );
        assert_eq!(l.line_table, LineTableKind::Locations311);
        let expected = PyOffsets {
            interp_threads_head: 0x1d28,
            interp_gc_collecting: 0x1e08 + 0xd4,
            tstate_next: 0x18,
            tstate_thread_id: 0xa0,
            tstate_native_thread_id: 0xa8,
            tstate_frame: 0x50,
            cframe_current_frame: NO_OFFSET,
            frame_previous: 0x10,
            frame_code: 0x08,
            frame_instr: 0x40,
            frame_owner: 0x4a,
            frame_owner_shim_min: 3,
            code_filename: 0x78,
            code_name: 0x80,
            code_linetable: 0x90,
            code_firstlineno: 0x4c,
            unicode_length: 0x18,
            unicode_state: 0x24,
            unicode_ascii_data: 0x30,
            unicode_compact_data: 0x40,
            bytes_size: 0x18,
            bytes_data: 0x28,
            interp_next: 0x1c0,
            tstate_status: 0x20,
            unicode_state_shift: 0,
            // A build with a GIL runs no per-thread bytecode copies.
            frame_tlbc_index: NO_OFFSET,
            code_tlbc: NO_OFFSET,
            code_version: NO_OFFSET,
        };
        assert_eq!(l.offsets, expected);
        assert_eq!(l.gilstate_bound_mask, Some(8));
    }

    #[test]
    fn unknown_minor_names_the_version() {
        let bytes = image(0x0310_00F0, FIELDS_3_14, VALUES_3_14);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(
            err,
            DebugOffsetsError::UnknownVersion {
                version_hex: 0x0310_00F0
            }
        ));
        assert!(err.to_string().contains("3.16.0"), "{err}");

        let mut bytes = LIVE_3_13_0.to_vec();
        put_u64(&mut bytes, VERSION_AT, 0x030C_01F0);
        assert!(parse(&bytes).unwrap_err().to_string().contains("3.12.1"));
    }

    #[test]
    fn pre_release_tables_are_not_trusted() {
        let bytes = image(0x030E_00B1, FIELDS_3_14, VALUES_3_14);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, DebugOffsetsError::UnknownVersion { .. }));
        assert!(err.to_string().contains("3.14.0b1"), "{err}");
        assert!(parse(&image(0x030E_00C1, FIELDS_3_14, VALUES_3_14)).is_ok());
    }

    #[test]
    fn bad_cookie() {
        let mut bytes = LIVE_3_13_0.to_vec();
        bytes[0] = b'X';
        assert!(matches!(parse(&bytes), Err(DebugOffsetsError::BadCookie)));
        assert!(matches!(
            parse(&[0u8; 1024]),
            Err(DebugOffsetsError::BadCookie)
        ));
    }

    /// `_Py_DebugOffsets` of free-threaded builds, as CPython's own initializer lays them out:
    /// `tools/cpython-offsets/debug_offsets_ft.sh` compiles it with `Py_GIL_DISABLED` against
    /// pyenv 3.13.0's and Debian's 3.14.10 headers (without it, the same program reproduces
    /// the live 3.13.0 and 3.14.10 tables byte for byte). No free-threaded build runs here.
    const FT_3_13_0: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.13.0t.bin");
    const FT_3_14_10: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.14.10t.bin");
    /// Likewise from Debian's 3.15.2 headers (without `Py_GIL_DISABLED` the same program
    /// gives the live 3.15.2 table except `runtime_state.size` and `interpreter_state.size`,
    /// 8 bytes smaller than the live ones, used only as plausibility bounds; no offset pytrace
    /// reads differs).
    const FT_3_15_2: &[u8] = include_bytes!("../../tests/data/debug_offsets_3.15.2t.bin");

    #[test]
    fn free_threaded_3_13_reads_like_3_13_with_its_own_offsets() {
        let ft = parse(FT_3_13_0).unwrap();
        let gil = parse(LIVE_3_13_0).unwrap();
        assert!(ft.free_threaded && !gil.free_threaded);
        assert_eq!(ft.version_hex, 0x030D_00F0);
        let (o, g) = (&ft.layout.offsets, &gil.layout.offsets);
        // PyObject grows from 16 to 32 bytes (ob_tid, ob_ref_local, ob_ref_shared, ...).
        assert_eq!(o.unicode_ascii_data, 56);
        assert_eq!(o.unicode_compact_data, 72);
        assert_eq!(o.unicode_length, g.unicode_length + 16);
        assert_eq!(o.code_filename, g.code_filename + 16);
        assert_eq!(o.code_name, g.code_name + 16);
        assert_eq!(o.bytes_data, g.bytes_data + 16);
        // `interned` is a whole byte: the kind bits move up by 6.
        assert_eq!((o.unicode_state_shift, g.unicode_state_shift), (6, 0));
        // Frames are not objects: same layout, same shim owner.
        assert_eq!(
            (o.frame_previous, o.frame_code, o.frame_instr, o.frame_owner),
            (g.frame_previous, g.frame_code, g.frame_instr, g.frame_owner)
        );
        assert_eq!(o.frame_owner_shim_min, 3);
        assert!(
            matches!(ft.layout.instr, InstrKind::InstrPtr { code_adaptive } if code_adaptive > 0)
        );
    }

    /// 3.14t and 3.15t: as 3.13t for objects, plus where a frame keeps the index of its
    /// thread's bytecode copy and where the code object keeps the copies (the headers:
    /// `int32_t tlbc_index` after `stackpointer` in `_PyInterpreterFrame`, `_PyCodeArray
    /// *co_tlbc` right before `co_code_adaptive` in `PyCodeObject`).
    #[test]
    fn free_threaded_3_14_and_3_15_read_their_bytecode_copies() {
        for (ft_bytes, gil_bytes, version_hex) in [
            (FT_3_14_10, LIVE_3_14_10, 0x030E_0AF0),
            (FT_3_15_2, LIVE_3_15_2, 0x030F_02F0),
        ] {
            let ft = parse(ft_bytes).unwrap();
            let gil = parse(gil_bytes).unwrap();
            assert!(ft.free_threaded && !gil.free_threaded);
            assert_eq!(ft.version_hex, version_hex);
            let (o, g) = (&ft.layout.offsets, &gil.layout.offsets);
            assert_eq!((g.frame_tlbc_index, g.code_tlbc), (NO_OFFSET, NO_OFFSET));
            // `stackpointer` (64) then `int32_t tlbc_index`, which pushes `owner` by 4.
            assert_eq!(o.frame_tlbc_index, 72);
            assert_eq!(o.frame_owner, g.frame_owner + 4);
            assert_eq!(
                (o.frame_previous, o.frame_code, o.frame_instr),
                (g.frame_previous, g.frame_code, g.frame_instr)
            );
            let InstrKind::InstrPtr { code_adaptive } = ft.layout.instr else {
                panic!("{:?}", ft.layout.instr)
            };
            assert_eq!(o.code_tlbc + 8, code_adaptive);
            assert_eq!(o.unicode_state_shift, 6);
            assert_eq!(o.frame_owner_shim_min, 3);
            // The walker reads the index with the frame's other fields.
            let w = pytrace_common::ReadWindows::of(o).unwrap();
            assert!(w.frame_start <= o.frame_tlbc_index);
            assert!(w.frame_start + w.frame_len >= o.frame_tlbc_index + 4);
        }
        let ft13 = parse(FT_3_13_0).unwrap();
        assert_eq!(ft13.layout.offsets.frame_tlbc_index, NO_OFFSET);
    }

    #[test]
    fn a_free_threaded_table_with_implausible_copy_offsets_is_refused() {
        let mut bytes = image_3_14();
        put_u64(&mut bytes, FREE_THREADED_AT, 1);
        // The image's filler (0xdead) for `tlbc_index` lies outside the frame.
        assert!(matches!(
            parse(&bytes),
            Err(DebugOffsetsError::Inconsistent(_))
        ));
        let at = |f| FORMAT_3_14.position("interpreter_frame", f).unwrap();
        put_u64(&mut bytes, at("tlbc_index"), 0x48);
        let code_at = FORMAT_3_14.position("code_object", "co_tlbc").unwrap();
        put_u64(&mut bytes, code_at, 0xd0);
        let parsed = parse(&bytes).unwrap();
        assert!(parsed.free_threaded);
        let o = parsed.layout.offsets;
        assert_eq!((o.frame_tlbc_index, o.code_tlbc), (0x48, 0xd0));
    }

    #[test]
    fn offsets_outside_their_structure_are_inconsistent() {
        let mut bytes = LIVE_3_13_0.to_vec();
        let at = FORMAT_3_13
            .position("thread_state", "current_frame")
            .unwrap();
        put_u64(&mut bytes, at, 0x10_0000);
        assert!(matches!(
            parse(&bytes),
            Err(DebugOffsetsError::Inconsistent(_))
        ));
        put_u64(&mut bytes, at, u64::MAX);
        assert!(matches!(
            parse(&bytes),
            Err(DebugOffsetsError::Inconsistent(_))
        ));
    }

    #[test]
    fn truncated_input_is_an_error_never_a_panic() {
        for len in 0..FORMAT_3_13.size() {
            let r = parse(&LIVE_3_13_0[..len]);
            assert!(
                matches!(r, Err(DebugOffsetsError::Truncated)),
                "len {len}: {r:?}"
            );
        }
        assert!(parse(&LIVE_3_13_0[..FORMAT_3_13.size()]).is_ok());
        let full = image_3_14();
        for len in 0..full.len() {
            assert!(matches!(
                parse(&full[..len]),
                Err(DebugOffsetsError::Truncated)
            ));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = [LIVE_3_13_0.to_vec(), image_3_14()];
        for round in 0..4000 {
            let mut bytes = if round % 2 == 0 {
                // A valid table with a few fields overwritten.
                let mut bytes = valid[round / 2 % 2].clone();
                for _ in 0..1 + next() % 3 {
                    let slots = (bytes.len().min(DEBUG_OFFSETS_MAX_SIZE) - HEADER_SIZE) / 8;
                    let at = HEADER_SIZE + 8 * (next() as usize % slots);
                    let v = next();
                    put_u64(&mut bytes, at, if v % 4 == 0 { v } else { v % 0x2_0000 });
                }
                bytes
            } else {
                let mut bytes: Vec<u8> =
                    (0..DEBUG_OFFSETS_MAX_SIZE).map(|_| next() as u8).collect();
                bytes[..8].copy_from_slice(COOKIE);
                let version: u64 = if round % 4 == 1 {
                    0x030D_00F0
                } else {
                    0x030E_02F0
                };
                put_u64(&mut bytes, VERSION_AT, version);
                put_u64(&mut bytes, FREE_THREADED_AT, 0);
                bytes
            };
            let len = bytes.len() - next() as usize % 2 * (next() as usize % bytes.len());
            bytes.truncate(len);
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn version_strings() {
        assert_eq!(version_string(0x030D_00F0), "3.13.0");
        assert_eq!(version_string(0x030C_07F0), "3.12.7");
        assert_eq!(version_string(0x030E_00A3), "3.14.0a3");
        assert_eq!(version_string(0x030E_00B1), "3.14.0b1");
        assert_eq!(version_string(0x030E_00C2), "3.14.0rc2");
        assert_eq!(version_string(0x030F_00F0), "3.15.0");
    }
}
