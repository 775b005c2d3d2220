//! The walker's reads of per-thread bytecode copies (free-threaded CPython 3.14+): a frame
//! whose `tlbc_index` is not 0 runs its thread's own copy of the bytecode, and its instruction
//! is sent as an offset into that copy (`pytrace_common::tlbc::offset`, the same function the
//! unit tests run on memory laid out from CPython's headers). The offsets come from the
//! target's `_Py_DebugOffsets` (`PyOffsets::frame_tlbc_index`, `code_tlbc`); a layout without
//! them never comes here.

use pytrace_common::{tlbc, Counter};

use crate::read::Memory;

/// Byte offset of `instr` into copy `index` of `code`'s bytecode, or the counter to bump when
/// the copy cannot be found (the frame's line is then unknown, never computed from the wrong
/// copy). Three reads of the target at most: the array pointer, its size, the entry.
#[inline(always)]
pub fn try_offset<M: Memory>(
    mem: M,
    code: u64,
    code_tlbc: u32,
    index: u32,
    instr: u64,
) -> Result<u64, Counter> {
    tlbc::offset(|addr| mem.user_u64(addr), code, code_tlbc, index, instr).map_err(|e| match e {
        tlbc::Error::IndexInvalid => Counter::TlbcIndexInvalid,
        tlbc::Error::ReadFailed => Counter::TlbcReadFailed,
    })
}
