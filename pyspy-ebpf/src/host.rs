//! The walker's host entry: `pytrace dump --reader process-vm` runs the kernel's own capture
//! (`capture::run_in`, the walker, the code-object copier) in user space, reading the target
//! with `process_vm_readv` ([`ProcessVm`]) instead of `bpf_copy_from_user_task`. The maps and
//! helpers are `platform`'s host shims; the records the capture writes to its ring buffer are
//! handed to the caller ([`drain`]), who decodes them exactly as it decodes the kernel's.
//!
//! One walk at a time: every function here holds [`LOCK`] while it touches the shims (the
//! walker's per-CPU state is one set of statics, as one CPU's maps are in the kernel).

use core::ffi::c_void;
use std::sync::{Mutex, MutexGuard};

use pytrace_common::{CodeKey, Counter, ProcInfo, COUNTER_COUNT};

use crate::{
    capture::{self, CaptureRequest, NoRecord},
    counters::bump,
    maps::{COUNTERS, EVENTS, PROCS},
    read::Memory,
    symbols::{CODES_EPOCH, SENT_CODES},
};

/// Held for every use of the host shims (see the module's header).
static LOCK: Mutex<()> = Mutex::new(());

fn locked() -> MutexGuard<'static, ()> {
    // A panic while walking cannot leave the shims in a state a later walk misreads: every
    // capture sets all of its walk state before it starts. So a poisoned lock is taken anyway.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Another process's memory, read with `process_vm_readv`. The target runs while it is read
/// (`CONCURRENT`): the walker re-reads each thread's top frame, as for the task iterator.
/// `process_vm_readv` needs ptrace read access to the target (`CAP_SYS_PTRACE` for another
/// user's process, and Yama's `ptrace_scope` below 3); it reads pages that are swapped out by
/// faulting them in, as `bpf_copy_from_user_task` does.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ProcessVm {
    pub pid: u32,
}

impl ProcessVm {
    /// Reads `len` bytes at `addr` into `dst`: `Ok` when all were read, else the errno
    /// (`EFAULT` for a partial read: an unmapped page).
    pub fn read(self, dst: *mut u8, len: usize, addr: u64) -> Result<(), i32> {
        let local = libc::iovec {
            iov_base: dst as *mut c_void,
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut c_void,
            iov_len: len,
        };
        // SAFETY: `local` describes `len` writable bytes at `dst` (the caller's contract, as
        // for `Memory::user_bytes`); `remote` is only read by the kernel, which checks it.
        let n = unsafe { libc::process_vm_readv(self.pid as i32, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        if n as usize != len {
            return Err(libc::EFAULT);
        }
        Ok(())
    }
}

impl Memory for ProcessVm {
    const CONCURRENT: bool = true;

    fn user_bytes(self, dst: *mut u8, len: u32, addr: u64) -> bool {
        self.read(dst, len as usize, addr).is_ok()
    }

    fn loop_ctx(&self) -> *mut c_void {
        self as *const ProcessVm as *mut c_void
    }

    unsafe fn from_loop_ctx(ctx: *mut c_void) -> Self {
        // SAFETY: the caller passes the address of a live `ProcessVm` (its `loop_ctx`).
        unsafe { *(ctx as *const ProcessVm) }
    }

    /// `/proc/PID/comm` (the main thread's name, as the kernel's `comm` of the task the
    /// iterator captures from); zeros when the process is gone.
    fn comm(self) -> [u8; 16] {
        let mut comm = [0u8; 16];
        if let Ok(text) = std::fs::read(format!("/proc/{}/comm", self.pid)) {
            let text = text.strip_suffix(b"\n").unwrap_or(&text);
            let n = text.len().min(15);
            comm[..n].copy_from_slice(&text[..n]);
        }
        comm
    }
}

/// Makes a process walkable (its table, as in the kernel's `PROCS`).
pub fn add_process(pid: u32, info: &ProcInfo) -> Result<(), i32> {
    let _lock = locked();
    PROCS.insert(pid, info, 0)
}

pub fn remove_process(pid: u32) {
    let _lock = locked();
    let _ = PROCS.remove(pid);
}

/// User space dropped these code records: they are sent again when next needed.
pub fn forget_codes(keys: &[CodeKey]) {
    let _lock = locked();
    for key in keys {
        let _ = SENT_CODES.remove(key);
    }
    // As `bpf::Probes::forget_codes` does: slots proven before no longer vouch for a record.
    let epoch = CODES_EPOCH.get(0).copied().unwrap_or(0);
    let _ = CODES_EPOCH.set(0, epoch.wrapping_add(1) % u64::MAX, 0);
}

/// Why a process could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpError {
    /// The capture did not begin: this counter was bumped (as the task iterator does).
    NotBegun(Counter),
    /// `process_vm_readv` refused the process itself (`EPERM`: no ptrace access; `ESRCH`:
    /// gone), before anything was read.
    Refused(i32),
}

/// Captures every thread of `pid` with faulthandler's bounds, code objects copied and the GIL
/// read: the request `ondemand.rs` makes for the first task of a process. Its records wait
/// for [`drain`].
pub fn dump(pid: u32) -> Result<(), DumpError> {
    let _lock = locked();
    let mem = ProcessVm { pid };
    // One read first, of the interpreter list's head: a process this reader may not read at
    // all is a clear error, not a capture of nothing but failed reads.
    // SAFETY: lookup; the value is copied.
    if let Some(proc) = unsafe { PROCS.get(pid) } {
        let mut head = 0u64;
        if let Err(errno) = mem.read(&mut head as *mut u64 as *mut u8, 8, proc.interp_head_addr) {
            if errno == libc::EPERM || errno == libc::ESRCH {
                return Err(DumpError::Refused(errno));
            }
        }
    }
    let req = CaptureRequest::on_demand(pid, pid);
    capture::run_in(mem, &req, &mut NoRecord).map_err(|c| {
        bump(c);
        DumpError::NotBegun(c)
    })
}

/// Every record written since the last drain, oldest first: the bytes the kernel's ring
/// buffer would hold.
pub fn drain() -> Vec<Vec<u8>> {
    let _lock = locked();
    EVENTS.drain()
}

/// The counters (one "CPU"), in `Counter::ALL` order.
pub fn counters() -> [u64; COUNTER_COUNT as usize] {
    let _lock = locked();
    let mut all = [0u64; COUNTER_COUNT as usize];
    for (i, slot) in all.iter_mut().enumerate() {
        *slot = COUNTERS.get(i as u32).copied().unwrap_or(0);
    }
    all
}
