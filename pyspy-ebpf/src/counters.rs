//! One per-CPU counter per early exit or notable event.

use pytrace_common::Counter;

use crate::maps::COUNTERS;

#[inline(always)]
pub fn bump(counter: Counter) {
    add(counter, 1);
}

#[inline(always)]
pub fn add(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, touched only by programs on this CPU.
        unsafe { *slot += n };
    }
}
