//! Bounded reads of the target's memory. Every read may fail (unmapped or non-resident page:
//! in `signal_deliver` no page fault can be taken) and returns `None` then.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_probe_read_user as raw_read_user,
};
use core::ffi::c_void;

#[inline(always)]
pub fn user_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user checks the address and never faults.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[inline(always)]
pub fn user_u32(addr: u64) -> Option<u32> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_user(addr as *const u32) }.ok()
}

#[inline(always)]
pub fn user_u8(addr: u64) -> Option<u8> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_user(addr as *const u8) }.ok()
}

/// Reads a pointer-sized field at `base + off`.
#[inline(always)]
pub fn field_u64(base: u64, off: u32) -> Option<u64> {
    user_u64(base.wrapping_add(off as u64))
}

/// Copies `len` bytes (already bounded by the caller to `dst`'s size) from the target.
#[inline(always)]
pub fn user_bytes(dst: *mut u8, len: u32, addr: u64) -> bool {
    // SAFETY: `dst` points into a map value at least `len` bytes long (checked by the caller
    // and by the verifier); the read itself never faults.
    unsafe { raw_read_user(dst as *mut c_void, len, addr as *const c_void) == 0 }
}

#[inline(always)]
pub fn kernel_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_kernel checks the address and never faults.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}

#[inline(always)]
pub fn kernel_i32(addr: u64) -> Option<i32> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const i32) }.ok()
}
