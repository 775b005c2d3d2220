//! Writes to the ring buffer. A failed write is counted here and reported by the caller in the
//! capture's end record.

use core::mem::size_of;

use crate::platform::Global;
use pytrace_common::Counter;

use crate::{counters::bump, maps::EVENTS};

/// `BPF_RB_NO_WAKEUP`: the middle of a capture does not wake the reader...
const NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`: ...the end of one that must be read at once does.
const FORCE_WAKEUP: u64 = 2;
/// `bpf_ringbuf_query` flag: bytes written and not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;

/// A batched record wakes the reader once this many bytes wait (set by the loader; the reader
/// also drains on its own clock).
#[no_mangle]
static WAKE_BATCH_BYTES: Global<u64> = Global::new(1 << 20);

/// When the reader is woken up for a record. (The kernel's adaptive default is not used: it
/// only wakes a reader that has consumed everything, which a record written without a wake-up
/// prevents.)
#[derive(Clone, Copy)]
pub enum Wake {
    /// More records of the same capture follow, or the record can wait for the next wake-up.
    Later,
    /// The last record of a capture that must be read at once (a dump).
    Now,
    /// The last record of a capture that can wait (a sample): wakes the reader only once
    /// `WAKE_BATCH_BYTES` are waiting.
    Batch,
}

impl Wake {
    #[inline(always)]
    fn flags(self) -> u64 {
        match self {
            Wake::Later => NO_WAKEUP,
            Wake::Now => FORCE_WAKEUP,
            Wake::Batch => {
                if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKE_BATCH_BYTES.load() {
                    FORCE_WAKEUP
                } else {
                    NO_WAKEUP
                }
            }
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
