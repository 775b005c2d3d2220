//! The walker's reads of per-thread bytecode copies (free-threaded CPython 3.14+): a frame
//! whose `tlbc_index` is not 0 runs its thread's own copy of the bytecode, and its instruction
//! is sent as an offset into that copy (`FrameRead::in_own_copy`, `pytrace_common::tlbc`: the
//! same code the unit tests run on memory laid out from CPython's headers). The offsets come
//! from the target's `_Py_DebugOffsets` (`PyOffsets::frame_tlbc_index`, `code_tlbc`); with a
//! layout without them every frame's index reads as 0 and nothing is read here.

use pytrace_common::{tlbc, Counter, FrameRead};

use crate::read::Memory;

/// Makes `frame`'s instruction an offset into its thread's bytecode copy, or marks its line
/// unknown and gives the counter to bump when the copy cannot be found (never a line computed
/// from the wrong copy). Three reads of the target at most: the array pointer, its size, the
/// entry.
#[inline(always)]
pub fn in_own_copy<M: Memory>(
    mem: M,
    frame: &mut FrameRead,
    code_tlbc: u32,
) -> Result<(), Counter> {
    frame
        .in_own_copy(code_tlbc, |addr| mem.user_u64(addr))
        .map_err(|e| match e {
            tlbc::Error::IndexInvalid => Counter::TlbcIndexInvalid,
            tlbc::Error::ReadFailed => Counter::TlbcReadFailed,
        })
}
