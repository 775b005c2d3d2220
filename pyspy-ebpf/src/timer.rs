//! The timer trigger: on each CPU-clock perf event, a sample of the interrupted thread only,
//! with the sampling frame bound; samples wake user space in batches, and samples of threads
//! outside traced processes are only counted.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use pytrace_common::{trigger, Counter, SAMPLE_MAX_FRAMES};

use crate::{
    capture::{self, CaptureRequest, NoRecord},
    counters::bump,
    emit::Wake,
    maps::PROCS,
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
}
