//! The CPython walker: from the interpreter's thread list down every thread's frame chain (or
//! only the chain of the thread the trigger ran in), shared by every trigger.
//!
//! One `bpf_loop` drives the whole walk, one step per callback: open a thread, read one chain
//! entry, or close the thread (send its record) and move to the next. The state lives in a
//! per-CPU map, not in the callback context: on-stack counters compared to constants never
//! finished verifying, while map state keeps the callback small (about a thousand verified
//! instructions instead of the 1,000,001-instruction limit that nested loops hit).
//!
//! The capture (`capture.rs`) owns the transaction: it fills the walk state, sends the begin and
//! end records; this module only walks.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    helpers::generated::bpf_loop,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use pytrace_common::{
    end_flags, kind, thread_flags, Counter, FrameEntry, ProcInfo, ThreadHeader, ThreadRecord,
    MAX_CHAIN, MAX_SCAN_THREADS, NO_OFFSET, WALK_STEPS,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    read::Memory,
    symbols,
};

/// A thread whose stack changed while it was read (a running target) is read again this many
/// times before it is sent without frames, marked raced.
const MAX_RACE_RETRIES: u32 = 3;

/// Code objects are at least 8-byte aligned; 3.14 keeps tag bits in `f_executable`.
const CODE_TAG_MASK: u64 = !0b111;

/// `WalkState.scope`: every thread of the interpreter's list.
pub const SCOPE_ALL_THREADS: u32 = 0;
/// `WalkState.scope`: only the thread whose `thread_id` is the trigger's FS base.
pub const SCOPE_ONLY_THREAD: u32 = 1;

#[map]
static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

#[map]
static THREAD_SCRATCH: PerCpuArray<ThreadRecord> = PerCpuArray::with_max_entries(1, 0);

/// Thread state last found for a thread, by host (tgid << 32 | tid): a capture of one thread
/// starts there instead of scanning the list. Checked on use (its `thread_id` must still be the
/// thread's FS base), so a stale entry only costs a scan.
#[map]
static THREAD_STATES: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU state of the walk in progress. Every field is set by the capture before a walk.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkState {
    pub proc: ProcInfo,
    pub capture_id: u64,
    /// `pthread_self()` of the thread the trigger ran in: its thread state is "Current".
    pub fsbase: u64,
    /// Thread state being walked; 0 when the walk is over.
    pub tstate: u64,
    /// Next frame of the open thread's chain; 0 at the end of the chain.
    pub frame: u64,
    /// Thread state holding the GIL at the event, 0 when none or unknown.
    pub gil_holder: u64,
    pub pid: u32,
    /// Host tid of the thread the trigger ran in.
    pub tid: u32,
    pub thread_index: u32,
    /// Chain entries stored for the open thread.
    pub nchain: u32,
    /// Real (non-shim) frames read for the open thread.
    pub nreal: u32,
    pub thread_open: u32,
    pub thread_flags: u32,
    pub end_flags: u32,
    pub lost: u32,
    pub busy: u32,
    /// `SCOPE_ALL_THREADS` or `SCOPE_ONLY_THREAD`.
    pub scope: u32,
    /// Threads sent at most; the list going on past them sets `MORE_THREADS`.
    pub max_threads: u32,
    /// Real frames kept per thread; one more is read to know whether the stack goes on.
    pub max_frames: u32,
    /// 1: send each new code object's record.
    pub copy_code: u32,
    /// 1: the open thread state came from `THREAD_STATES`, not from the list.
    pub from_cache: u32,
    /// Threads passed over looking for the trigger's thread.
    pub scanned: u32,
    /// Code object whose record was last checked in this walk: recursion repeats one code
    /// object many times, and it needs no second look-up.
    pub last_code: u64,
    /// The open thread's top frame as first read (address, code, previous):
    /// read again at the thread's end when the target runs during the read.
    pub top_frame: u64,
    pub top_code: u64,
    pub top_previous: u64,
    /// Times the open thread was read again because its stack changed under the read.
    pub retries: u32,
    pub _pad: u32,
}

/// Walks the threads the walk state asks for and sends one thread record per thread. The
/// begin and end records are the capture's.
#[inline(always)]
pub fn walk<M: Memory>(mem: M) {
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return;
    };
    let first = match first_thread(mem, &state.proc) {
        Some(t) => t,
        None => {
            bump(Counter::NoInterpreter);
            state.end_flags |= end_flags::NO_INTERPRETER;
            0
        }
    };
    state.tstate = first;
    if first == 0 {
        return;
    }
    if state.scope == SCOPE_ONLY_THREAD {
        let key = thread_key(state);
        // SAFETY: lookup; the value is copied.
        if let Some(&cached) = unsafe { THREAD_STATES.get(&key) } {
            state.tstate = cached;
            state.from_cache = 1;
        }
    }
    // SAFETY: `walk_step` has the callback signature bpf_loop expects; its context is `mem`'s
    // own (null, or the address of `mem`, alive for the whole loop).
    unsafe { bpf_loop(WALK_STEPS, walk_step::<M> as *mut c_void, mem.loop_ctx(), 0) };
    if let Some(s) = walk_state() {
        if s.tstate != 0 {
            bump(Counter::StepsExhausted);
            s.end_flags |= end_flags::STEPS_EXHAUSTED;
        }
        if s.scope == SCOPE_ONLY_THREAD && s.thread_index == 0 && s.end_flags == 0 {
            bump(Counter::NoThreadState);
            s.end_flags |= end_flags::NO_THREAD_STATE;
        }
    }
}

/// The head of the (first) interpreter's thread list.
#[inline(always)]
fn first_thread<M: Memory>(mem: M, proc: &ProcInfo) -> Option<u64> {
    mem.field_u64(proc.interp_head_addr, 0)
        .filter(|&interp| interp != 0)
        .and_then(|interp| mem.field_u64(interp, proc.offsets.interp_threads_head))
}

#[inline(always)]
fn thread_key(state: &WalkState) -> u64 {
    ((state.pid as u64) << 32) | state.tid as u64
}

/// A fresh reference to this CPU's walk state. Each phase takes its own, and none is held
/// across `bpf_loop`, whose callback changes the state.
#[inline(always)]
fn walk_state() -> Option<&'static mut WalkState> {
    // SAFETY: per-CPU value; programs on one CPU do not interleave (the `busy` flag guards
    // nesting between triggers), and callers do not keep two references alive at once.
    WALK.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// This CPU's walk state, for the capture that owns it.
#[inline(always)]
pub fn state() -> Option<&'static mut WalkState> {
    walk_state()
}

extern "C" fn walk_step<M: Memory>(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `walk` passes `mem.loop_ctx()` of a `M` alive for the whole loop.
    let mem = unsafe { M::from_loop_ctx(ctx) };
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return 1;
    };
    if state.tstate == 0 {
        return 1;
    }
    if state.thread_open == 0 {
        open_thread(mem, state);
    } else if state.frame != 0
        && state.nreal <= state.max_frames
        && (state.nchain as usize) < MAX_CHAIN
    {
        read_entry(mem, state);
    } else {
        close_thread(mem, state);
    }
    0
}

/// Reads the thread state's identity and the top of its frame chain.
#[inline(always)]
fn open_thread<M: Memory>(mem: M, state: &mut WalkState) {
    let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.tstate = 0;
        return;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let hdr = unsafe { &mut (*rec).hdr };
    let off = &state.proc.offsets;
    let tstate = state.tstate;
    let Some(thread_id) = mem.field_u64(tstate, off.tstate_thread_id) else {
        if state.from_cache != 0 {
            // A cached thread state that is gone: look through the list instead.
            restart_from_list(mem, state);
            return;
        }
        bump(Counter::ThreadReadFailed);
        state.tstate = 0;
        return;
    };
    let native_id = if off.tstate_native_thread_id != NO_OFFSET {
        mem.field_u64(tstate, off.tstate_native_thread_id)
            .unwrap_or(0)
    } else {
        0
    };
    if state.scope == SCOPE_ONLY_THREAD && !(state.fsbase != 0 && thread_id == state.fsbase) {
        pass_over(mem, state);
        return;
    }
    let mut flags = 0;
    let frame = match top_frame(mem, tstate, &state.proc) {
        Some(f) => f,
        None => {
            bump(Counter::FrameReadFailed);
            flags |= thread_flags::READ_FAILED;
            0
        }
    };
    if state.fsbase != 0 && thread_id == state.fsbase {
        flags |= thread_flags::CURRENT;
    }
    if state.gil_holder != 0 && tstate == state.gil_holder {
        flags |= thread_flags::HOLDS_GIL;
    }
    *hdr = ThreadHeader {
        kind: kind::THREAD,
        flags,
        capture_id: state.capture_id,
        thread_id,
        native_id,
        tstate,
        index: state.thread_index,
        nframes: 0,
    };
    state.frame = frame;
    state.top_frame = frame;
    state.nchain = 0;
    state.nreal = 0;
    state.thread_flags = flags;
    state.thread_open = 1;
}

/// `tstate->frame`, `tstate->cframe->current_frame` or `tstate->current_frame`.
#[inline(always)]
fn top_frame<M: Memory>(mem: M, tstate: u64, proc: &ProcInfo) -> Option<u64> {
    let off = &proc.offsets;
    let first = mem.field_u64(tstate, off.tstate_frame)?;
    if off.cframe_current_frame == NO_OFFSET || first == 0 {
        return Some(first);
    }
    mem.field_u64(first, off.cframe_current_frame)
}

/// Reads one chain entry of the open thread and sends its code object if new.
#[inline(always)]
fn read_entry<M: Memory>(mem: M, state: &mut WalkState) {
    let idx = state.nchain as usize;
    if idx >= MAX_CHAIN {
        return;
    }
    let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.frame = 0;
        return;
    };
    let off = state.proc.offsets;
    let frame = state.frame;
    let (Some(code), Some(instr), Some(previous)) = (
        mem.field_u64(frame, off.frame_code),
        mem.field_u64(frame, off.frame_instr),
        mem.field_u64(frame, off.frame_previous),
    ) else {
        bump(Counter::FrameReadFailed);
        state.thread_flags |= thread_flags::READ_FAILED;
        state.frame = 0;
        return;
    };
    let owner = if off.frame_owner != NO_OFFSET {
        match mem.user_u8(frame.wrapping_add(off.frame_owner as u64)) {
            Some(o) => o as u32,
            None => {
                bump(Counter::FrameReadFailed);
                state.thread_flags |= thread_flags::READ_FAILED;
                state.frame = 0;
                return;
            }
        }
    } else {
        0
    };
    if idx == 0 {
        state.top_code = code;
        state.top_previous = previous;
    }
    let shim = off.frame_owner_shim_min != NO_OFFSET && owner >= off.frame_owner_shim_min;
    let code = if shim { 0 } else { code & CODE_TAG_MASK };
    if !shim {
        state.nreal += 1;
        if state.copy_code != 0
            && state.nreal <= state.max_frames
            && code != 0
            && code != state.last_code
        {
            symbols::send_code(mem, state.pid, code, &state.proc, &mut state.lost);
            state.last_code = code;
        }
    }
    // SAFETY: per-CPU scratch owned by this walk; `idx < MAX_CHAIN` checked above.
    let frames = unsafe { &mut (*rec).frames };
    if let Some(slot) = frames.get_mut(idx) {
        *slot = FrameEntry {
            code,
            instr,
            owner,
            flags: 0,
        };
    }
    state.nchain += 1;
    state.frame = previous;
}

/// Sends the open thread's record and moves to the next thread state.
#[inline(always)]
fn close_thread<M: Memory>(mem: M, state: &mut WalkState) {
    if M::CONCURRENT && !top_unchanged(mem, state) {
        if state.retries < MAX_RACE_RETRIES {
            bump(Counter::ThreadRetried);
            state.retries += 1;
            // The next step opens the same thread state again.
            state.thread_open = 0;
            return;
        }
        bump(Counter::ThreadRaced);
        state.thread_flags |= thread_flags::RACED;
        state.nchain = 0;
        state.frame = 0;
    }
    state.retries = 0;
    if state.frame != 0 {
        state.thread_flags |= thread_flags::CHAIN_CONTINUES;
        if state.nreal <= state.max_frames {
            bump(Counter::ChainTooLong);
        }
    }
    if let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU scratch owned by this walk.
        let rec = unsafe { &mut *rec };
        rec.hdr.flags = state.thread_flags;
        rec.hdr.nframes = state.nchain;
        let len = size_of::<ThreadHeader>() + state.nchain as usize * size_of::<FrameEntry>();
        if !emit::prefix(rec, len, Wake::Later) {
            state.lost += 1;
        }
    }
    state.thread_open = 0;
    state.thread_index += 1;
    if state.scope == SCOPE_ONLY_THREAD {
        // The one thread asked for: remember where it was found, and stop.
        if state.from_cache == 0 {
            let _ = THREAD_STATES.insert(&thread_key(state), &state.tstate, 0);
        }
        state.tstate = 0;
        return;
    }
    let next = match mem.field_u64(state.tstate, state.proc.offsets.tstate_next) {
        Some(n) => n,
        None => {
            bump(Counter::ThreadReadFailed);
            0
        }
    };
    if next != 0 && state.thread_index >= state.max_threads {
        bump(Counter::ThreadLimit);
        state.end_flags |= end_flags::MORE_THREADS;
        state.tstate = 0;
        return;
    }
    state.tstate = next;
}

/// Whether the open thread's top frame, as first read, is still its top frame, with the same
/// code and caller: then the frames read below it did not change (a frame's callers wait
/// while it runs), and the chain is one moment's, the top frame's line being the one first
/// read. A thread that returned or called meanwhile has another top frame, or a reused frame
/// with another code or caller: it is read again.
#[inline(always)]
fn top_unchanged<M: Memory>(mem: M, state: &WalkState) -> bool {
    if state.nchain == 0 || state.thread_flags & thread_flags::READ_FAILED != 0 {
        // Nothing read, or already marked incomplete.
        return true;
    }
    let off = &state.proc.offsets;
    let frame = state.top_frame;
    let code = match mem.field_u64(frame, off.frame_code) {
        Some(c) => c,
        None => return false,
    };
    let code = if state.top_code == 0 {
        0
    } else {
        code & CODE_TAG_MASK
    };
    mem.field_u64(frame, off.frame_previous) == Some(state.top_previous)
        && code == state.top_code
        && top_frame(mem, state.tstate, &state.proc) == Some(frame)
}

/// Moves past a thread state that is not the one a capture of one thread looks for.
#[inline(always)]
fn pass_over<M: Memory>(mem: M, state: &mut WalkState) {
    if state.from_cache != 0 {
        // The cached thread state now belongs to another thread.
        restart_from_list(mem, state);
        return;
    }
    state.scanned += 1;
    if state.scanned >= MAX_SCAN_THREADS {
        state.tstate = 0;
        return;
    }
    state.tstate = match mem.field_u64(state.tstate, state.proc.offsets.tstate_next) {
        Some(n) => n,
        None => {
            bump(Counter::ThreadReadFailed);
            0
        }
    };
}

/// Drops a stale cache entry and scans the thread list from its head.
#[inline(always)]
fn restart_from_list<M: Memory>(mem: M, state: &mut WalkState) {
    let _ = THREAD_STATES.remove(&thread_key(state));
    state.from_cache = 0;
    state.tstate = first_thread(mem, &state.proc).unwrap_or(0);
}
