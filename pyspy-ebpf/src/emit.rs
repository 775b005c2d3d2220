//! Writes to the ring buffer. A failed write is counted here and reported by the caller in the
//! dump's end record.

use core::mem::size_of;

use pytrace_common::Counter;

use crate::{counters::bump, maps::EVENTS};

/// Sends a whole fixed-size record.
#[inline(always)]
pub fn record<T>(value: &T) -> bool {
    prefix(value, size_of::<T>())
}

/// Sends the first `len` bytes of `value` (clamped to its size).
#[inline(always)]
pub fn prefix<T>(value: &T, len: usize) -> bool {
    let max = size_of::<T>();
    let len = if len > max { max } else { len };
    // SAFETY: `value` is valid for `size_of::<T>()` bytes and `len` is at most that.
    let bytes = unsafe { core::slice::from_raw_parts(value as *const T as *const u8, len) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        bump(Counter::RingbufFull);
        return false;
    }
    true
}
