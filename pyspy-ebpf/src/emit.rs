//! Writes to the ring buffer. A failed write is counted here and reported by the caller in the
//! dump's end record.

use core::mem::size_of;

use pytrace_common::Counter;

use crate::{counters::bump, maps::EVENTS};

/// `BPF_RB_NO_WAKEUP`: the middle of a dump does not wake the reader...
const NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`: ...its end does.
const FORCE_WAKEUP: u64 = 2;

/// When the reader is woken up for a record. (The kernel's adaptive default is not used: it
/// only wakes a reader that has consumed everything, which a record written without a wake-up
/// prevents.)
#[derive(Clone, Copy)]
pub enum Wake {
    /// More records of the same dump follow.
    Later,
    /// The last record of a dump.
    Now,
}

impl Wake {
    #[inline(always)]
    fn flags(self) -> u64 {
        match self {
            Wake::Later => NO_WAKEUP,
            Wake::Now => FORCE_WAKEUP,
        }
    }
}

/// Sends a whole fixed-size record.
#[inline(always)]
pub fn record<T>(value: &T, wake: Wake) -> bool {
    prefix(value, size_of::<T>(), wake)
}

/// Sends the first `len` bytes of `value` (clamped to its size).
#[inline(always)]
pub fn prefix<T>(value: &T, len: usize, wake: Wake) -> bool {
    let max = size_of::<T>();
    let len = if len > max { max } else { len };
    // SAFETY: `value` is valid for `size_of::<T>()` bytes and `len` is at most that.
    let bytes = unsafe { core::slice::from_raw_parts(value as *const T as *const u8, len) };
    if EVENTS.output::<[u8]>(bytes, wake.flags()).is_err() {
        bump(Counter::RingbufFull);
        return false;
    }
    true
}
