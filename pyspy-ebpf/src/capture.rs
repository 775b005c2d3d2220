//! One capture, whatever triggered it. A trigger adapter describes what it wants in a
//! [`CaptureRequest`]; [`run`] looks the process up, owns the per-CPU walk state for the whole
//! transaction (busy guard, every field set), sends the begin record and the trigger's own
//! record, walks, sends the end record and releases the state. A capture of one thread can
//! instead send begin, thread and end as one record at its end (`SampleRecord`).

use crate::platform::{
    helpers::{bpf_get_current_task, bpf_ktime_get_boot_ns, generated::bpf_get_smp_processor_id},
    macros::map,
    maps::PerCpuArray,
    Global,
};
use core::mem::size_of;

use pytrace_common::{
    begin_flags, kind, trigger, CaptureBegin, CaptureEnd, Counter, FrameEntry, ProcInfo,
    SampleHeader, ThreadHeader, MAX_FRAMES, MAX_INTERPRETERS, MAX_THREADS, NO_OFFSET,
};

use crate::platform::debug;

use crate::{
    counters::{add, bump},
    emit::{self, Wake},
    maps::{FSBASE_OFFSET, PID_FILTER, PROCS},
    read::{kernel_u64, CurrentTask, Memory},
    walker,
};

/// The end record is built here, not on the stack: with the begin record and the trigger's
/// own, the signal program's stack exceeds 512 bytes ("Looks like the BPF stack limit is
/// exceeded").
#[map]
static END_SCRATCH: PerCpuArray<CaptureEnd> = PerCpuArray::with_max_entries(1, 0);

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
    /// Note which thread holds the GIL.
    pub read_gil: bool,
    /// How the end record wakes the reader.
    pub wake: Wake,
    /// Send begin, thread and end as one record once the walk is over (`SampleRecord`), for a
    /// capture of one thread with no trigger record: one ring-buffer write instead of three.
    pub one_record: bool,
}

impl CaptureRequest {
    /// An on-demand dump of process `pid` (from its task `tid`): every thread with
    /// faulthandler's bounds, code objects copied, and the GIL's holder noted, since it is
    /// faulthandler's current thread in such a dump. The kernel's task iterator and the
    /// host's `process_vm_readv` walk make the same request.
    #[inline(always)]
    pub fn on_demand(pid: u32, tid: u32) -> Self {
        CaptureRequest {
            trigger: trigger::ON_DEMAND,
            pid,
            tid,
            fsbase: 0,
            scope: walker::SCOPE_ALL_THREADS,
            max_threads: MAX_THREADS,
            max_frames: MAX_FRAMES,
            copy_code: true,
            read_gil: true,
            wake: Wake::Later,
            one_record: false,
        }
    }
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
    let t0 = phase_clock();
    let counter = match begin(mem, req, extra) {
        BEGUN => None,
        NOT_BEGUN => Some(Counter::NotBegun),
        counter => Some(
            Counter::ALL
                .get(counter as usize)
                .copied()
                .unwrap_or(Counter::NoScratch),
        ),
    };
    if let Some(counter) = counter {
        if !matches!(counter, Counter::NotPython | Counter::PidFiltered) {
            log_not_begun(req, counter);
        }
        return Err(counter);
    }
    // No reference to the walk state is held across the walk: the loop's callback changes it
    // through its own look-up.
    let t1 = phase_clock();
    walker::walk(mem);
    let t2 = phase_clock();
    let result = finish(req);
    if TIME_PHASES.load() != 0 {
        let t3 = phase_clock();
        add(Counter::PhaseTimed, 1);
        add(Counter::PhaseBeginNs, t1.wrapping_sub(t0));
        add(Counter::PhaseWalkNs, t2.wrapping_sub(t1));
        add(Counter::PhaseFinishNs, t3.wrapping_sub(t2));
    }
    result
}

/// `record --time-phases` (hidden, for the benchmark): each capture's begin, walk and finish
/// are timed into counters. Set by the loader; 0 (read-only data the verifier knows) drops
/// the clock reads as dead code.
#[no_mangle]
static TIME_PHASES: Global<u32> = Global::new(0);

/// The clock the phases are timed with; 0 when they are not timed.
#[inline(always)]
fn phase_clock() -> u64 {
    if TIME_PHASES.load() == 0 {
        return 0;
    }
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// `begin`'s results besides a counter index: the walk may start, or the begin record did
/// not fit (nothing to walk).
const BEGUN: u32 = u32::MAX;
const NOT_BEGUN: u32 = u32::MAX - 1;

/// Takes the walk state and sends the begin and trigger records. Returns `BEGUN`,
/// `NOT_BEGUN`, or the index of the counter to bump. Not inlined: its stack is not added to
/// the walk callback's, and the two together must stay within 512 bytes ("stack depth
/// 432+64+0+0+232" in the task iterator).
#[inline(never)]
fn begin<M: Memory, R: TriggerRecord>(mem: M, req: &CaptureRequest, extra: &mut R) -> u32 {
    // SAFETY: map lookup; the value is copied into the walk state below, never onto the
    // stack (with the walk state's other fields it exceeds the 512-byte BPF stack: "Looks
    // like the BPF stack limit is exceeded").
    let Some(proc) = (unsafe { PROCS.get(&req.pid) }) else {
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
    if req.trigger != trigger::TIMER {
        // Samples are counted by their trigger, nested ones included.
        bump(Counter::Dumps);
    }
    // SAFETY: helpers without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let gil_holder = if req.read_gil {
        read_gil_holder(mem, proc)
    } else {
        None
    };
    let capture_id = (now << 8) | (cpu as u64 & 0xff);
    // Field by field: a `WalkState` literal is built on the stack first, and the whole struct
    // does not fit in it ("Looks like the BPF stack limit is exceeded").
    state.proc = *proc;
    state.capture_id = capture_id;
    state.fsbase = req.fsbase;
    state.tstate = 0;
    state.frame = 0;
    state.gil_holder = gil_holder.unwrap_or(0);
    state.pid = req.pid;
    state.tid = req.tid;
    state.thread_index = 0;
    state.nchain = 0;
    state.nreal = 0;
    state.thread_open = 0;
    state.thread_flags = 0;
    state.end_flags = 0;
    state.lost = 0;
    state.busy = 1;
    state.scope = req.scope;
    state.max_threads = req.max_threads;
    state.max_frames = req.max_frames;
    state.copy_code = req.copy_code as u32;
    state.from_cache = 0;
    state.scanned = 0;
    state.interp = 0;
    state.next_interp = 0;
    state.ninterps = 0;
    state.interp_threads = 0;
    state.more_threads_mask = 0;
    state.unreadable_mask = 0;
    state.gc_mask = 0;
    state._pad2 = 0;
    state.interps = [0; MAX_INTERPRETERS as usize];
    state.top_frame = 0;
    state.top_code = 0;
    state.top_previous = 0;
    state.retries = 0;
    state.one_record = req.one_record as u32;
    state.held_frame = 0;
    state.stack_lo = 0;
    state.stack_len = 0;
    state._pad4 = 0;
    let begin = CaptureBegin {
        kind: kind::CAPTURE_BEGIN,
        trigger: req.trigger,
        capture_id,
        boot_ns: now,
        pid: req.pid,
        tid: req.tid,
        cpu,
        version_hex: proc.version_hex,
        flags: if gil_holder.is_some() {
            begin_flags::GIL_KNOWN
        } else {
            0
        },
        _pad: 0,
        fsbase: req.fsbase,
        comm: mem.comm(),
    };
    if req.one_record {
        // Sent with the thread and the end, in `finish`.
        let Some(rec) = walker::sample_scratch() else {
            state.busy = 0;
            return Counter::NoScratch as u32;
        };
        rec.head.begin = begin;
    } else if !emit::record(&begin, Wake::Later) {
        state.busy = 0;
        return NOT_BEGUN;
    }
    if !extra.send(capture_id) {
        state.lost += 1;
    }
    BEGUN
}

/// Sends the end record (a sample's one record) and releases the walk state.
#[inline(always)]
fn finish(req: &CaptureRequest) -> Result<(), Counter> {
    let state = walker::state().ok_or(Counter::NoScratch)?;
    let end: &CaptureEnd = if req.one_record {
        let Some(rec) = walker::sample_scratch() else {
            state.busy = 0;
            return Err(Counter::NoScratch);
        };
        fill_end(&mut rec.head.end, state);
        rec.head.kind = kind::SAMPLE;
        rec.head._pad = 0;
        // Cut after the thread's last entry, or after the head when no thread was sent.
        let len = if state.thread_index != 0 {
            size_of::<SampleHeader>()
                + size_of::<ThreadHeader>()
                + state.nchain as usize * size_of::<FrameEntry>()
        } else {
            size_of::<SampleHeader>()
        };
        if !emit::prefix(rec, len, req.wake) {
            // The whole sample is lost, as when a begin record does not fit.
            bump(Counter::NotBegun);
        }
        &rec.head.end
    } else {
        let Some(end) = END_SCRATCH.get_ptr_mut(0) else {
            state.busy = 0;
            return Err(Counter::NoScratch);
        };
        // SAFETY: per-CPU scratch owned by this capture.
        let end = unsafe { &mut *end };
        fill_end(end, state);
        if !emit::record(end, req.wake) {
            state.lost += 1;
        }
        end
    };
    // Every dump, but only the samples that went wrong (at up to --hz per CPU).
    if req.trigger != trigger::TIMER || end.flags != 0 || end.lost_records != 0 {
        log_end(req, end);
    }
    state.busy = 0;
    Ok(())
}

/// The end record of the capture the walk state describes.
#[inline(always)]
fn fill_end(end: &mut CaptureEnd, state: &walker::WalkState) {
    end.kind = kind::CAPTURE_END;
    end.flags = state.end_flags;
    end.capture_id = state.capture_id;
    end.nthreads = state.thread_index;
    end.lost_records = state.lost;
    end.ninterps = state.ninterps;
    end.more_threads_mask = state.more_threads_mask;
    end.unreadable_mask = state.unreadable_mask;
    end.gc_mask = state.gc_mask;
    end.interps = state.interps;
}

/// `-vv`: why a capture did not begin. Not inlined, as [`log_end`].
#[inline(never)]
fn log_not_begun(req: &CaptureRequest, counter: Counter) {
    debug!(
        &(),
        "capture (trigger {}) of pid {} tid {} not begun: {}",
        req.trigger,
        req.pid,
        req.tid,
        counter.name()
    );
}

/// `-vv`: how a capture ended. Not inlined: a message's stack is not added to the walk's,
/// and the sleepable task iterator's would exceed 512 bytes ("stack depth
/// 128+64+0+392+0+56+256").
#[inline(never)]
fn log_end(req: &CaptureRequest, end: &CaptureEnd) {
    debug!(
        &(),
        "capture (trigger {}) of pid {} tid {}: {} thread(s), end flags {:x}, {} record(s) lost",
        req.trigger,
        req.pid,
        req.tid,
        end.nthreads,
        end.flags,
        end.lost_records
    );
}

/// The FS base of the current task (= `pthread_self()` on glibc x86_64), 0 if unreadable.
#[inline(always)]
pub fn current_fsbase() -> u64 {
    // SAFETY: no preconditions; the task pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    kernel_u64(task + FSBASE_OFFSET.load()).unwrap_or(0)
}

/// The thread state holding the GIL (0 when nobody does), `None` when unknown or unreadable.
#[inline(always)]
fn read_gil_holder<M: Memory>(mem: M, proc: &ProcInfo) -> Option<u64> {
    let gil = &proc.gil;
    if gil.last_holder == NO_OFFSET {
        return None;
    }
    let base = if gil.addr != 0 {
        gil.addr
    } else if gil.interp_ptr != NO_OFFSET {
        let interp = mem
            .field_u64(proc.interp_head_addr, 0)
            .filter(|&i| i != 0)?;
        mem.field_u64(interp, gil.interp_ptr).filter(|&g| g != 0)?
    } else {
        return None;
    };
    let locked = mem.user_u32(base.wrapping_add(gil.locked as u64))?;
    let holder = mem.field_u64(base, gil.last_holder)?;
    Some(if locked != 0 { holder } else { 0 })
}
