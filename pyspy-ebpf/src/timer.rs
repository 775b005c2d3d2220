//! The timer trigger: on each CPU-clock perf event, a sample of the interrupted thread only,
//! with the sampling frame bound; samples wake user space in batches, and samples of threads
//! outside traced processes are only counted.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use pytrace_common::{trigger, Counter, SAMPLE_MAX_FRAMES};

use crate::platform::{helpers::generated::bpf_loop, Global};

use crate::{
    capture::{self, CaptureRequest, NoRecord},
    counters::bump,
    emit::Wake,
    maps::PROCS,
    read::{CurrentTask, Memory},
    walker::SCOPE_ONLY_THREAD,
};

#[inline(always)]
pub fn on_tick() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    if pid == 0 {
        // The idle task or a kernel thread on this CPU.
        return;
    }
    // Most ticks interrupt a task outside the traced processes: one look-up, and not the read
    // of the task's FS base the request needs (the capture looks the process up again).
    // SAFETY: lookup only; the value is not used.
    if unsafe { PROCS.get(&pid) }.is_none() {
        bump(Counter::SampleNotPython);
        return;
    }
    let req = CaptureRequest {
        trigger: trigger::TIMER,
        pid,
        tid: pid_tgid as u32,
        fsbase: capture::current_fsbase(),
        scope: SCOPE_ONLY_THREAD,
        max_threads: 1,
        max_frames: SAMPLE_MAX_FRAMES,
        copy_code: true,
        read_gil: true,
        wake: Wake::Batch,
        one_record: true,
    };
    let result = capture::run(&req, &mut NoRecord);
    if let Err(Counter::NotPython | Counter::PidFiltered) = result {
        bump(Counter::SampleNotPython);
        return;
    }
    bump(Counter::Samples);
    if let Err(c) = result {
        bump(c);
    }
    calibrate();
}

/// Reads of the sampled thread's memory added to each sample (`pytrace record
/// --calibrate-reads`, for the benchmark): what one read of a target's memory costs here, the
/// unit of a sample's cost. Set by the loader; 0 (read-only data the verifier knows) drops the
/// code below as dead.
#[no_mangle]
static CALIBRATE_READS: Global<u32> = Global::new(0);

/// Most calibration reads per sample.
const MAX_CALIBRATE_READS: u32 = 4096;

#[inline(always)]
fn calibrate() {
    let n = CALIBRATE_READS.load();
    if n == 0 {
        return;
    }
    // Read again rather than kept from the request: the FS base kept live across the
    // capture and tested here doubled the instructions the verifier checks (36k to 73k: the
    // capture explored once with it 0, once not).
    let addr = capture::current_fsbase();
    // SAFETY: the callback has bpf_loop's signature; its context is `addr`, alive for the
    // whole loop.
    unsafe {
        bpf_loop(
            n.min(MAX_CALIBRATE_READS),
            calibration_read as *mut c_void,
            &addr as *const u64 as *mut c_void,
            0,
        )
    };
}

/// One calibration read: the word at the thread's FS base (its TLS block's first word, the
/// thread control block's self pointer: mapped and resident while the thread runs).
extern "C" fn calibration_read(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `calibrate` passes the address of a live `u64`.
    let addr = unsafe { *(ctx as *const u64) };
    let _ = CurrentTask.user_u64(addr);
    0
}
