//! Bounded reads of the target's memory. Every read may fail (unmapped or non-resident page:
//! in `signal_deliver` no page fault can be taken) and returns `None` then.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_probe_read_user as raw_read_user,
    },
    macros::map,
    maps::PerCpuArray,
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

/// Words of a frame or code-object window (`FRAME_WINDOW_MAX`, `CODE_WINDOW_MAX`).
pub const WINDOW_WORDS: usize = 16;
/// Words of an object header window (`HEADER_WINDOW_MAX`).
pub const HEADER_WORDS: usize = 5;

/// Buffers of the one-piece reads ([`Window`]).
#[map]
pub static WINDOWS: PerCpuArray<WindowScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WindowScratch {
    pub frame: [u64; WINDOW_WORDS],
    pub code: [u64; WINDOW_WORDS],
    pub filename: [u64; HEADER_WORDS],
    pub name: [u64; HEADER_WORDS],
    pub linetable: [u64; HEADER_WORDS],
}

/// Fields of a target structure read with ONE user-memory read: `len` bytes from
/// `base + start`, where `start` is 8-byte aligned (`ReadWindows`). A read per field costs a
/// helper call each; at delivery every one of them is time the receiving thread waits. The
/// buffer is per-CPU scratch (`WINDOWS`): on the stack, the windows of one step exceed
/// the 512-byte BPF stack ("Looks like the BPF stack limit is exceeded").
pub struct Window<'a, const N: usize> {
    words: &'a [u64; N],
    start: u32,
}

impl<'a, const N: usize> Window<'a, N> {
    /// Reads the window into `buf`; `None` when `len` exceeds it or the read fails.
    #[inline(always)]
    pub fn read(buf: &'a mut [u64; N], base: u64, start: u32, len: u32) -> Option<Self> {
        // "R2 unbounded memory access": the length must be bounded by the buffer's size
        // where the verifier can see it.
        if len > (N * 8) as u32 {
            return None;
        }
        // Bytes past `len` read as 0, not as a previous window's.
        *buf = [0; N];
        if !user_bytes(
            buf.as_mut_ptr() as *mut u8,
            len,
            base.wrapping_add(start as u64),
        ) {
            return None;
        }
        Some(Window { words: buf, start })
    }

    /// The pointer-sized field at structure offset `off` (8-byte aligned); 0 outside.
    #[inline(always)]
    pub fn u64_at(&self, off: u32) -> u64 {
        // 64-bit throughout: a bound checked on a 32-bit copy of the index is lost for the
        // access ("R2 unbounded memory access, make sure to bounds check any such access").
        // The bound is on the byte offset, which the verifier tracks (it does not narrow
        // `byte & !7` from `byte < N * 8`: "R2 max value is outside of the allowed memory
        // range").
        let byte = (off as u64).wrapping_sub(self.start as u64);
        if byte > ((N - 1) * 8) as u64 {
            return 0;
        }
        let i = (byte / 8) as usize;
        match self.words.get(i) {
            Some(&v) => v,
            None => 0,
        }
    }

    /// The 4-byte field at structure offset `off` (4-byte aligned); 0 outside.
    #[inline(always)]
    pub fn u32_at(&self, off: u32) -> u32 {
        let word = self.u64_at(off & !7);
        (word >> ((off & 4) * 8)) as u32
    }

    /// The byte at structure offset `off`; 0 outside.
    #[inline(always)]
    pub fn u8_at(&self, off: u32) -> u8 {
        let word = self.u64_at(off & !7);
        (word >> ((off & 7) * 8)) as u8
    }

    /// Mixes the first `len` bytes (whole words, as read) into `h`.
    #[inline(always)]
    pub fn mix_into(&self, mut h: u64, len: u32) -> u64 {
        for i in 0..N {
            if (i as u32) * 8 >= len {
                break;
            }
            h = mix(h, self.words[i]);
        }
        h
    }
}

/// One step of the fingerprint hash (multiply–xorshift; not cryptographic: it tells apart
/// objects by accident, not against an adversary who controls the target's memory).
#[inline(always)]
pub fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}
