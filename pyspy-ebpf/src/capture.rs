//! One capture, whatever triggered it. A trigger adapter describes what it wants in a
//! [`CaptureRequest`]; [`run`] looks the process up, owns the per-CPU walk state for the whole
//! transaction (busy guard, every field set), sends the begin record and the trigger's own
//! record, walks, sends the end record and releases the state.

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_ktime_get_boot_ns, generated::bpf_get_smp_processor_id,
};
use pytrace_common::{kind, CaptureBegin, CaptureEnd, Counter, ProcInfo, NO_OFFSET};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{FSBASE_OFFSET, PID_FILTER, PROCS},
    read::{kernel_u64, CurrentTask, Memory},
    walker::{self, WalkState},
};

/// What a trigger asks of a capture.
pub struct CaptureRequest {
    /// A `pytrace_common::trigger` value.
    pub trigger: u32,
    /// Host tgid and tid of the thread the trigger runs in.
    pub pid: u32,
    pub tid: u32,
    /// That thread's FS base (its `pthread_self()`), 0 if unknown.
    pub fsbase: u64,
    /// `walker::SCOPE_ALL_THREADS` or `walker::SCOPE_ONLY_THREAD`.
    pub scope: u32,
    pub max_threads: u32,
    pub max_frames: u32,
    /// Send the records of code objects not sent before.
    pub copy_code: bool,
    /// How the end record wakes the reader.
    pub wake: Wake,
}

/// A trigger's own record, sent right after the begin record with the capture's id.
pub trait TriggerRecord {
    /// Sends the record; false when it did not fit in the ring buffer.
    fn send(&mut self, capture_id: u64) -> bool;
}

/// For triggers that add nothing to the begin record.
pub struct NoRecord;

impl TriggerRecord for NoRecord {
    #[inline(always)]
    fn send(&mut self, _capture_id: u64) -> bool {
        true
    }
}

/// Captures the process `req.pid`, reading the task the program runs in. A process without a
/// table is `Err(NotPython)` (or `Err(PidFiltered)` under `--pid`): what to do about it is the
/// trigger's choice. Other early exits return the counter to bump.
#[inline(always)]
pub fn run<R: TriggerRecord>(req: &CaptureRequest, extra: &mut R) -> Result<(), Counter> {
    run_in(CurrentTask, req, extra)
}

/// [`run`], reading the target's memory through `mem`.
#[inline(always)]
pub fn run_in<M: Memory, R: TriggerRecord>(
    mem: M,
    req: &CaptureRequest,
    extra: &mut R,
) -> Result<(), Counter> {
    match begin(mem, req, extra) {
        BEGUN => {}
        NOT_BEGUN => return Ok(()),
        counter => {
            return Err(Counter::ALL
                .get(counter as usize)
                .copied()
                .unwrap_or(Counter::NoScratch))
        }
    }
    // No reference to the walk state is held across the walk: the loop's callback changes it
    // through its own look-up.
    walker::walk(mem);
    finish(req.wake)
}

/// `begin`'s results besides a counter index: the walk may start, or the begin record did
/// not fit (nothing to walk).
const BEGUN: u32 = u32::MAX;
const NOT_BEGUN: u32 = u32::MAX - 1;

/// Takes the walk state and sends the begin and trigger records. Returns `BEGUN`,
/// `NOT_BEGUN`, or the index of the counter to bump. Not inlined: its stack is not added to
/// the walk callback's, and the two together must stay within 512 bytes ("combined stack
/// size of 2 calls is 528. Too large" in the task iterator).
#[inline(never)]
fn begin<M: Memory, R: TriggerRecord>(mem: M, req: &CaptureRequest, extra: &mut R) -> u32 {
    // SAFETY: map lookup; the value is copied out at once.
    let Some(proc) = (unsafe { PROCS.get(&req.pid) }).copied() else {
        return if PID_FILTER.load() != 0 {
            Counter::PidFiltered as u32
        } else {
            Counter::NotPython as u32
        };
    };
    let Some(state) = walker::state() else {
        return Counter::NoScratch as u32;
    };
    if state.busy != 0 {
        return Counter::Nested as u32;
    }
    bump(Counter::Dumps);
    // SAFETY: helpers without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let gc_collecting = read_gc_collecting(mem, &proc);
    let capture_id = (now << 8) | (cpu as u64 & 0xff);
    *state = WalkState {
        proc,
        capture_id,
        fsbase: req.fsbase,
        tstate: 0,
        frame: 0,
        gil_holder: 0,
        pid: req.pid,
        tid: req.tid,
        thread_index: 0,
        nchain: 0,
        nreal: 0,
        thread_open: 0,
        thread_flags: 0,
        end_flags: 0,
        lost: 0,
        busy: 1,
        scope: req.scope,
        max_threads: req.max_threads,
        max_frames: req.max_frames,
        copy_code: req.copy_code as u32,
        from_cache: 0,
        scanned: 0,
        last_code: 0,
        top_frame: 0,
        top_code: 0,
        top_previous: 0,
        retries: 0,
        _pad: 0,
    };
    let begin = CaptureBegin {
        kind: kind::CAPTURE_BEGIN,
        trigger: req.trigger,
        capture_id,
        boot_ns: now,
        pid: req.pid,
        tid: req.tid,
        cpu,
        gc_collecting,
        version_hex: proc.version_hex,
        flags: 0,
        fsbase: req.fsbase,
        comm: mem.comm(),
    };
    if !emit::record(&begin, Wake::Later) {
        state.busy = 0;
        return NOT_BEGUN;
    }
    if !extra.send(capture_id) {
        state.lost += 1;
    }
    BEGUN
}

/// Sends the end record and releases the walk state.
#[inline(always)]
fn finish(wake: Wake) -> Result<(), Counter> {
    let state = walker::state().ok_or(Counter::NoScratch)?;
    let end = CaptureEnd {
        kind: kind::CAPTURE_END,
        flags: state.end_flags,
        capture_id: state.capture_id,
        nthreads: state.thread_index,
        lost_records: state.lost,
    };
    if !emit::record(&end, wake) {
        state.lost += 1;
    }
    state.busy = 0;
    Ok(())
}

/// The FS base of the current task (= `pthread_self()` on glibc x86_64), 0 if unreadable.
#[inline(always)]
pub fn current_fsbase() -> u64 {
    // SAFETY: no preconditions; the task pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    kernel_u64(task + FSBASE_OFFSET.load()).unwrap_or(0)
}

/// `interp->gc.collecting`, where the version prints a "Garbage-collecting" line.
#[inline(always)]
fn read_gc_collecting<M: Memory>(mem: M, proc: &ProcInfo) -> u32 {
    if proc.offsets.interp_gc_collecting == NO_OFFSET {
        return 0;
    }
    mem.field_u64(proc.interp_head_addr, 0)
        .filter(|&i| i != 0)
        .and_then(|interp| {
            mem.user_u32(interp.wrapping_add(proc.offsets.interp_gc_collecting as u64))
        })
        .unwrap_or(0)
}
