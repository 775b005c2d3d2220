//! Bounded reads of the target's memory, through [`Memory`]: the walker and the symbol copier
//! are generic over it and monomorphized per program, so a sleepable-only helper never appears
//! in a non-sleepable program.
//!
//! - [`CurrentTask`]: the task the program runs in (signal delivery, a timer tick), with
//!   `bpf_probe_read_user`. No page fault can be taken there: a non-resident page is a failed
//!   read (`None`).
//! - [`Task`]: another task, from a sleepable program (the on-demand task iterator), with
//!   `bpf_copy_from_user_task`, which faults pages in (swapped out, never touched).
//!
//! Kernel memory is read with the free functions; target structures are read in one piece
//! with [`Window`].

use crate::platform::{
    bindings::task_struct,
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_copy_from_user_task, bpf_probe_read_user as raw_read_user},
    },
    macros::map,
    maps::PerCpuArray,
};
use core::ffi::c_void;

use pytrace_common::Fields;

use crate::maps::TASK_COMM_OFFSET;

/// Where the walk reads the target's memory.
pub trait Memory: Copy {
    /// The target runs while it is read (another task's memory, read from a sleepable
    /// program): the walker checks each thread's stack did not change under it.
    const CONCURRENT: bool;

    /// Copies `len` bytes (already bounded by the caller to `dst`'s size) from the target.
    fn user_bytes(self, dst: *mut u8, len: u32, addr: u64) -> bool;

    /// The `bpf_loop` context that carries this memory into the loop's callback (null when
    /// there is nothing to carry).
    fn loop_ctx(&self) -> *mut c_void;

    /// The memory the walk's `bpf_loop` callback reads, from the context `loop_ctx` gave.
    ///
    /// # Safety
    /// `ctx` must be the `loop_ctx()` of a live value of this type.
    unsafe fn from_loop_ctx(ctx: *mut c_void) -> Self;

    /// The target task's `comm`.
    fn comm(self) -> [u8; 16];

    #[inline(always)]
    fn user_u64(self, addr: u64) -> Option<u64> {
        let mut v = 0u64;
        self.user_bytes(&mut v as *mut u64 as *mut u8, 8, addr)
            .then_some(v)
    }

    #[inline(always)]
    fn user_u32(self, addr: u64) -> Option<u32> {
        let mut v = 0u32;
        self.user_bytes(&mut v as *mut u32 as *mut u8, 4, addr)
            .then_some(v)
    }

    /// Reads a pointer-sized field at `base + off`.
    #[inline(always)]
    fn field_u64(self, base: u64, off: u32) -> Option<u64> {
        self.user_u64(base.wrapping_add(off as u64))
    }
}

/// The task the program runs in.
#[derive(Clone, Copy)]
pub struct CurrentTask;

impl Memory for CurrentTask {
    // Signal delivery and timer ticks read the thread the program runs in; the other threads
    // of the process may run, as they do for faulthandler itself.
    const CONCURRENT: bool = false;

    #[inline(always)]
    fn user_bytes(self, dst: *mut u8, len: u32, addr: u64) -> bool {
        // SAFETY: `dst` points into memory at least `len` bytes long (checked by the caller
        // and by the verifier); the read itself never faults.
        unsafe { raw_read_user(dst as *mut c_void, len, addr as *const c_void) == 0 }
    }

    #[inline(always)]
    fn loop_ctx(&self) -> *mut c_void {
        core::ptr::null_mut()
    }

    #[inline(always)]
    unsafe fn from_loop_ctx(_ctx: *mut c_void) -> Self {
        CurrentTask
    }

    #[inline(always)]
    fn comm(self) -> [u8; 16] {
        bpf_get_current_comm().unwrap_or([0; 16])
    }

    #[inline(always)]
    fn user_u64(self, addr: u64) -> Option<u64> {
        // SAFETY: bpf_probe_read_user checks the address and never faults.
        unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
    }

    #[inline(always)]
    fn user_u32(self, addr: u64) -> Option<u32> {
        // SAFETY: as above.
        unsafe { bpf_probe_read_user(addr as *const u32) }.ok()
    }
}

/// Another task, read from a sleepable program. The pointer must be one the verifier knows
/// as a `task_struct` (the task iterator's): the value is kept in one stack slot and passed to
/// the loop callback by address, so the verifier still sees a trusted task pointer there
/// (a task pointer taken from a map is a plain scalar: "R4 type=scalar expected=ptr_").
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Task(pub *mut task_struct);

impl Memory for Task {
    const CONCURRENT: bool = true;

    #[inline(always)]
    fn user_bytes(self, dst: *mut u8, len: u32, addr: u64) -> bool {
        // SAFETY: `dst` points into memory at least `len` bytes long (checked by the caller
        // and by the verifier); the helper checks the address and may sleep to fault pages in,
        // which this (sleepable) program allows.
        unsafe {
            bpf_copy_from_user_task(dst as *mut c_void, len, addr as *const c_void, self.0, 0) == 0
        }
    }

    #[inline(always)]
    fn loop_ctx(&self) -> *mut c_void {
        self as *const Task as *mut c_void
    }

    #[inline(always)]
    unsafe fn from_loop_ctx(ctx: *mut c_void) -> Self {
        // SAFETY: the caller passes the address of a live `Task` (its `loop_ctx`).
        unsafe { *(ctx as *const Task) }
    }

    #[inline(always)]
    fn comm(self) -> [u8; 16] {
        // SAFETY: bpf_probe_read_kernel checks the address and never faults.
        unsafe {
            bpf_probe_read_kernel((self.0 as u64 + TASK_COMM_OFFSET.load()) as *const [u8; 16])
        }
        .unwrap_or([0; 16])
    }
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
    /// The `str` whose header `filename` holds, read by the capture `filename_capture` (0:
    /// none): a sample's code objects share their module's file name (`symbols::read_fields`).
    pub filename_addr: u64,
    pub filename_capture: u64,
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
    pub fn read<M: Memory>(
        mem: M,
        buf: &'a mut [u64; N],
        base: u64,
        start: u32,
        len: u32,
    ) -> Option<Self> {
        // "R2 unbounded memory access": the length must be bounded by the buffer's size
        // where the verifier can see it.
        if len > (N * 8) as u32 {
            return None;
        }
        // Bytes past `len` read as 0, not as a previous window's.
        *buf = [0; N];
        if !mem.user_bytes(
            buf.as_mut_ptr() as *mut u8,
            len,
            base.wrapping_add(start as u64),
        ) {
            return None;
        }
        Some(Window { words: buf, start })
    }

    /// The window a [`Window::read`] of the same `start` left in `buf`, without reading the
    /// target again: for a caller that knows `buf` still holds it (nothing has written it
    /// since, and the structure is the same one, read in the same capture).
    #[inline(always)]
    pub fn held(buf: &'a [u64; N], start: u32) -> Self {
        Window { words: buf, start }
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

impl<const N: usize> Fields for Window<'_, N> {
    #[inline(always)]
    fn u64_at(&self, off: u32) -> u64 {
        Window::u64_at(self, off)
    }

    #[inline(always)]
    fn u32_at(&self, off: u32) -> u32 {
        Window::u32_at(self, off)
    }

    #[inline(always)]
    fn u8_at(&self, off: u32) -> u8 {
        Window::u8_at(self, off)
    }
}

/// One step of the fingerprint hash (multiply–xorshift; not cryptographic: it tells apart
/// objects by accident, not against an adversary who controls the target's memory).
#[inline(always)]
pub fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}
