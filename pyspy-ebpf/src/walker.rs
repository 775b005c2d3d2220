//! The CPython walker: from the interpreter's thread list down every thread's frame chain,
//! shared by every trigger.
//!
//! One `bpf_loop` drives the whole walk, one step per callback: open a thread, read one chain
//! entry, or close the thread (send its record) and move to the next. The state lives in a
//! per-CPU map, not in the callback context: on-stack counters compared to constants never
//! finished verifying, while map state keeps the callback small (about a thousand verified
//! instructions instead of the 1,000,001-instruction limit that nested loops hit).

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::helpers::generated::bpf_loop;
use pytrace_common::{
    end_flags, kind, thread_flags, Counter, DumpEnd, FrameEntry, ProcInfo, ThreadHeader, MAX_CHAIN,
    MAX_FRAMES, MAX_THREADS, NO_OFFSET, WALK_STEPS,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    maps::{THREAD_SCRATCH, WALK, WINDOWS},
    read::{field_u64, Window},
    symbols,
};

/// Code objects are at least 8-byte aligned; 3.14 keeps tag bits in `f_executable`.
const CODE_TAG_MASK: u64 = !0b111;

/// Per-CPU state of the walk in progress.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkState {
    pub proc: ProcInfo,
    pub dump_id: u64,
    /// `pthread_self()` of the receiving thread: its thread state is "Current".
    pub fsbase: u64,
    /// Thread state being walked; 0 when the walk is over.
    pub tstate: u64,
    /// Next frame of the open thread's chain; 0 at the end of the chain.
    pub frame: u64,
    pub pid: u32,
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
    pub _pad: u32,
}

/// Walks every thread of the process described by the walk state and sends one thread record
/// per thread. The begin record is the caller's; [`finish`] sends the end.
#[inline(always)]
pub fn walk() {
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return;
    };
    let first = match field_u64(state.proc.interp_head_addr, 0)
        .filter(|&interp| interp != 0)
        .and_then(|interp| field_u64(interp, state.proc.offsets.interp_threads_head))
    {
        Some(t) => t,
        None => {
            bump(Counter::NoInterpreter);
            state.end_flags |= end_flags::NO_INTERPRETER;
            0
        }
    };
    state.tstate = first;
    state.thread_index = 0;
    state.thread_open = 0;
    if first == 0 {
        return;
    }
    // SAFETY: `walk_step` has the callback signature bpf_loop expects; its context is unused.
    unsafe {
        bpf_loop(
            WALK_STEPS,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if let Some(s) = walk_state() {
        if s.tstate != 0 {
            bump(Counter::StepsExhausted);
            s.end_flags |= end_flags::STEPS_EXHAUSTED;
        }
    }
}

/// A fresh reference to this CPU's walk state. Each phase takes its own, and none is held
/// across `bpf_loop`, whose callback changes the state.
#[inline(always)]
fn walk_state() -> Option<&'static mut WalkState> {
    // SAFETY: per-CPU value; programs on one CPU do not interleave (the `busy` flag guards
    // nesting between triggers), and callers do not keep two references alive at once.
    WALK.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Sends the end record of the dump and releases the walk state.
#[inline(always)]
pub fn finish() {
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return;
    };
    let end = DumpEnd {
        kind: kind::DUMP_END,
        flags: state.end_flags,
        dump_id: state.dump_id,
        nthreads: state.thread_index,
        lost_records: state.lost,
    };
    if !emit::record(&end, Wake::Now) {
        state.lost += 1;
    }
    state.busy = 0;
}

extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return 1;
    };
    if state.tstate == 0 {
        return 1;
    }
    if state.thread_open == 0 {
        open_thread(state);
    } else if chain_goes_on(state) {
        // Several entries per step: a step's own cost (the callback, the state look-up) is
        // about that of reading an entry. The first may look a code object up; the others
        // only take code objects already looked at in this dump.
        read_entry::<true>(state);
        for _ in 1..ENTRIES_PER_STEP {
            if !chain_goes_on(state) || !read_entry::<false>(state) {
                break;
            }
        }
    } else {
        close_thread(state);
    }
    0
}

/// Chain entries read per `bpf_loop` step (at most).
const ENTRIES_PER_STEP: usize = 4;

/// Whether the open thread's chain has another entry to read.
#[inline(always)]
fn chain_goes_on(state: &WalkState) -> bool {
    state.frame != 0 && state.nreal <= MAX_FRAMES && (state.nchain as usize) < MAX_CHAIN
}

/// Reads the thread state's identity and the top of its frame chain.
#[inline(always)]
fn open_thread(state: &mut WalkState) {
    let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.tstate = 0;
        return;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let hdr = unsafe { &mut (*rec).hdr };
    let off = &state.proc.offsets;
    let tstate = state.tstate;
    let Some(thread_id) = field_u64(tstate, off.tstate_thread_id) else {
        bump(Counter::ThreadReadFailed);
        state.tstate = 0;
        return;
    };
    let native_id = if off.tstate_native_thread_id != NO_OFFSET {
        field_u64(tstate, off.tstate_native_thread_id).unwrap_or(0)
    } else {
        0
    };
    let mut flags = 0;
    let frame = match top_frame(tstate, &state.proc) {
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
    *hdr = ThreadHeader {
        kind: kind::THREAD,
        flags,
        dump_id: state.dump_id,
        thread_id,
        native_id,
        tstate,
        index: state.thread_index,
        nframes: 0,
    };
    state.frame = frame;
    state.nchain = 0;
    state.nreal = 0;
    state.thread_flags = flags;
    state.thread_open = 1;
}

/// `tstate->frame`, `tstate->cframe->current_frame` or `tstate->current_frame`.
#[inline(always)]
fn top_frame(tstate: u64, proc: &ProcInfo) -> Option<u64> {
    let off = &proc.offsets;
    let first = field_u64(tstate, off.tstate_frame)?;
    if off.cframe_current_frame == NO_OFFSET || first == 0 {
        return Some(first);
    }
    field_u64(first, off.cframe_current_frame)
}

/// Reads one chain entry of the open thread (its fields in one read) and fingerprints its
/// code object. With `FULL`, a code object not yet looked at in this dump is looked up (and
/// its record sent if new); without, such an entry is left for the next step and `false`
/// returned: only one full look-up per step keeps the verified program small.
#[inline(always)]
fn read_entry<const FULL: bool>(state: &mut WalkState) -> bool {
    let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.frame = 0;
        return false;
    };
    let off = &state.proc.offsets;
    let win = &state.proc.windows;
    let Some(scratch) = WINDOWS.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.frame = 0;
        return false;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let buf = unsafe { &mut (*scratch).frame };
    let Some(w) = Window::read(buf, state.frame, win.frame_start, win.frame_len) else {
        bump(Counter::FrameReadFailed);
        state.thread_flags |= thread_flags::READ_FAILED;
        state.frame = 0;
        return false;
    };
    let code = w.u64_at(off.frame_code);
    let instr = w.u64_at(off.frame_instr);
    let previous = w.u64_at(off.frame_previous);
    let owner = if off.frame_owner != NO_OFFSET {
        w.u8_at(off.frame_owner) as u32
    } else {
        0
    };
    let shim = off.frame_owner_shim_min != NO_OFFSET && owner >= off.frame_owner_shim_min;
    let code = if shim { 0 } else { code & CODE_TAG_MASK };
    let mut fingerprint = 0;
    // Frames past faulthandler's limit only show that the stack goes on: no look-up.
    if !shim && state.nreal < MAX_FRAMES && code != 0 {
        fingerprint = match symbols::seen(state.dump_id, code) {
            Some(fp) => fp,
            None if FULL => {
                symbols::fingerprint(state.pid, state.dump_id, code, &state.proc, &mut state.lost)
            }
            None => return false,
        };
    }
    if !shim {
        state.nreal += 1;
    }
    // SAFETY: per-CPU scratch owned by this walk.
    let frames = unsafe { &mut (*rec).frames };
    // The index is bounded here, where it is used: a check made earlier in the step is lost
    // across the code-object look-up ("R2 unbounded memory access").
    if let Some(slot) = frames.get_mut(state.nchain as usize) {
        *slot = FrameEntry {
            code,
            instr,
            fingerprint,
            owner,
            flags: 0,
        };
    }
    state.nchain += 1;
    state.frame = previous;
    true
}

/// Sends the open thread's record and moves to the next thread state.
#[inline(always)]
fn close_thread(state: &mut WalkState) {
    if state.frame != 0 {
        state.thread_flags |= thread_flags::CHAIN_CONTINUES;
        if state.nreal <= MAX_FRAMES {
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
    let next = match field_u64(state.tstate, state.proc.offsets.tstate_next) {
        Some(n) => n,
        None => {
            bump(Counter::ThreadReadFailed);
            0
        }
    };
    if next != 0 && state.thread_index >= MAX_THREADS {
        bump(Counter::ThreadLimit);
        state.end_flags |= end_flags::MORE_THREADS;
        state.tstate = 0;
        return;
    }
    state.tstate = next;
}
