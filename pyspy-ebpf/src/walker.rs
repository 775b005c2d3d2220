//! The CPython walker: from the interpreter list through every interpreter's thread list down
//! every thread's frame chain (or only the chain of the thread the trigger ran in), shared by
//! every trigger.
//!
//! One `bpf_loop` drives the whole walk, one step per callback: open an interpreter, open a
//! thread, read one chain entry, or close the thread (send its record) and move to the next.
//! Every interpreter is walked (newest first, as the list runs); which one faulthandler would
//! dump is decided in user space from the thread records, each tagged with its interpreter.
//!
//! The state lives in a per-CPU map, not in the callback context: on-stack counters compared
//! to constants never finished verifying, while map state keeps the callback small (about a
//! thousand verified instructions instead of the 1,000,001-instruction limit that nested
//! loops hit).
//!
//! The capture (`capture.rs`) owns the transaction: it fills the walk state, sends the begin and
//! end records; this module only walks.

use core::{ffi::c_void, mem::size_of};

use crate::platform::{
    helpers::generated::bpf_loop,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use pytrace_common::{
    end_flags, kind, thread_flags, Counter, FrameEntry, FrameRead, ProcInfo, SampleRecord,
    ThreadHeader, MAX_CHAIN, MAX_INTERPRETERS, MAX_SCAN_THREADS, NO_OFFSET, STACK_PAGE,
    STACK_WINDOW_MAX, WALK_STEPS,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    read::{Memory, Window, WINDOWS, WINDOW_WORDS},
    symbols, tlbc,
};

/// `WalkState.scope`: every thread of the interpreter's list.
pub const SCOPE_ALL_THREADS: u32 = 0;
/// `WalkState.scope`: only the thread whose `thread_id` is the trigger's FS base.
pub const SCOPE_ONLY_THREAD: u32 = 1;

#[map]
static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

/// The thread being read (`thread`), behind the head of a one-record sample: a sample's
/// capture sends head and thread together (`WalkState.one_record`), other captures send the
/// thread alone when it is closed.
#[map]
static THREAD_SCRATCH: PerCpuArray<SampleRecord> = PerCpuArray::with_max_entries(1, 0);

/// Words of the data-stack buffer: a whole read (`STACK_WINDOW_MAX`), and room for a window
/// copied from anywhere in it.
const STACK_WORDS: usize = STACK_WINDOW_MAX as usize / 8 + WINDOW_WORDS;

/// How far below the data-stack buffer a caller's frame may lie for its page to be read whole
/// (a data-stack chunk is 16 KiB at first); a frame farther away (a generator's, another
/// chunk's) is read alone.
const STACK_REACH: u64 = 16 * 1024;

/// A thread's data stack as last read (`WalkState.stack_lo`, `stack_len`): on the stack,
/// it exceeds the 512-byte BPF stack.
#[map]
static STACK: PerCpuArray<[u64; STACK_WORDS]> = PerCpuArray::with_max_entries(1, 0);

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
    /// Interpreter whose threads are being walked.
    pub interp: u64,
    /// Next interpreter to open once `tstate` is 0; 0 at the end of the list.
    pub next_interp: u64,
    /// Interpreters opened so far (the open one is `ninterps - 1`).
    pub ninterps: u32,
    /// Threads of the open interpreter sent so far.
    pub interp_threads: u32,
    pub more_threads_mask: u32,
    pub unreadable_mask: u32,
    pub gc_mask: u32,
    pub _pad2: u32,
    pub interps: [u64; MAX_INTERPRETERS as usize],
    /// The open thread's top frame as first read (address, raw code word, previous): read
    /// again at the thread's end when the target runs during the read (`Memory::CONCURRENT`).
    pub top_frame: u64,
    pub top_code: u64,
    pub top_previous: u64,
    /// Times the open thread was read again because its stack changed under the read.
    pub retries: u32,
    /// 1: the thread record is not sent when closed; the capture sends it at its end, in one
    /// record with its begin and end (`SampleRecord`).
    pub one_record: u32,
    /// The frame whose window the frame buffer (`WINDOWS.frame`) still holds because the
    /// last entry read was left for the next step (its code object needs a full look-up,
    /// only the first entry of a step makes one); 0 for none. That entry is not read again.
    pub held_frame: u64,
    /// Target address of the data-stack buffer's (`STACK`) first byte, and how many bytes it
    /// holds (0: nothing yet for the open thread).
    pub stack_lo: u64,
    pub stack_len: u32,
    pub _pad4: u32,
}

/// A thread whose stack changed while it was read (a running target) is read again this many
/// times before it is sent without frames, marked raced.
const MAX_RACE_RETRIES: u32 = 3;

/// Walks the threads the walk state asks for and sends one thread record per thread. The
/// begin and end records are the capture's.
#[inline(always)]
pub fn walk<M: Memory>(mem: M) {
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return;
    };
    start_interpreters(mem, state);
    if state.next_interp == 0 {
        // libpython is mapped, but `Py_Initialize` has not made an interpreter (or
        // `Py_Finalize` has removed the last one).
        if state.end_flags & end_flags::INTERP_UNREADABLE == 0 {
            state.end_flags |= end_flags::NO_INTERPRETER;
        }
        return;
    }
    if state.scope == SCOPE_ONLY_THREAD {
        let key = thread_key(state);
        // SAFETY: lookup; the value is copied.
        if let Some(&cached) = unsafe { THREAD_STATES.get(&key) } {
            // Its interpreter is not known: the record says so (`interp` 0).
            state.tstate = cached;
            state.from_cache = 1;
        }
    }
    // SAFETY: `walk_step` has the callback signature bpf_loop expects; its context is `mem`'s
    // own (null, or the address of `mem`, alive for the whole loop).
    unsafe { bpf_loop(WALK_STEPS, walk_step::<M> as *mut c_void, mem.loop_ctx(), 0) };
    if let Some(s) = walk_state() {
        if s.tstate != 0 || s.next_interp != 0 {
            bump(Counter::StepsExhausted);
            s.end_flags |= end_flags::STEPS_EXHAUSTED;
        }
        if s.scope == SCOPE_ONLY_THREAD && s.thread_index == 0 && s.end_flags == 0 {
            bump(Counter::NoThreadState);
            s.end_flags |= end_flags::NO_THREAD_STATE;
        }
    }
}

/// Points the walk at the head of the interpreter list, before any interpreter is opened.
#[inline(always)]
fn start_interpreters<M: Memory>(mem: M, state: &mut WalkState) {
    state.tstate = 0;
    state.interp = 0;
    state.ninterps = 0;
    state.interp_threads = 0;
    state.more_threads_mask = 0;
    state.unreadable_mask = 0;
    state.gc_mask = 0;
    state.next_interp = match mem.field_u64(state.proc.interp_head_addr, 0) {
        Some(head) => head,
        None => {
            bump(Counter::NoInterpreter);
            state.end_flags |= end_flags::INTERP_UNREADABLE;
            0
        }
    };
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

/// This CPU's sample scratch: the capture fills its head and sends it with the thread the
/// walk left in it (`WalkState.one_record`).
#[inline(always)]
pub fn sample_scratch() -> Option<&'static mut SampleRecord> {
    // SAFETY: per-CPU scratch owned by the capture in progress on this CPU (the walk state's
    // `busy` flag guards nesting); no other reference to it is alive across this use.
    THREAD_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

extern "C" fn walk_step<M: Memory>(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `walk` passes `mem.loop_ctx()` of an `M` alive for the whole loop.
    let mem = unsafe { M::from_loop_ctx(ctx) };
    let Some(state) = walk_state() else {
        bump(Counter::NoScratch);
        return 1;
    };
    if state.thread_open == 0 && state.tstate == 0 {
        if state.next_interp == 0 {
            return 1;
        }
        open_interp(mem, state);
    } else if state.thread_open == 0 {
        open_thread(mem, state);
    } else if chain_goes_on(state) {
        // Several entries per step: a step's own cost (the callback, the state look-up) is
        // about that of reading an entry. The first may look a code object up; the others
        // only take code objects already looked at in this capture.
        read_entry::<M, true>(mem, state);
        for _ in 1..ENTRIES_PER_STEP {
            if !chain_goes_on(state) || !read_entry::<M, false>(mem, state) {
                break;
            }
        }
    } else {
        close_thread(mem, state);
    }
    0
}

/// Bit of interpreter `index` in the end record's masks.
#[inline(always)]
fn interp_bit(index: u32) -> u32 {
    1u32.checked_shl(index).unwrap_or(0)
}

/// Starts the next interpreter of the list: notes it, reads its `next`, its
/// `gc.collecting` and the head of its thread list.
#[inline(always)]
fn open_interp<M: Memory>(mem: M, state: &mut WalkState) {
    let interp = state.next_interp;
    let index = state.ninterps;
    if index >= MAX_INTERPRETERS {
        state.end_flags |= end_flags::MORE_INTERPRETERS;
        state.next_interp = 0;
        return;
    }
    let bit = interp_bit(index);
    let off = &state.proc.offsets;
    if let Some(slot) = state.interps.get_mut(index as usize) {
        *slot = interp;
    }
    state.ninterps = index + 1;
    state.interp = interp;
    state.interp_threads = 0;
    state.next_interp = match mem.field_u64(interp, off.interp_next) {
        Some(next) => next,
        None => {
            bump(Counter::NoInterpreter);
            state.unreadable_mask |= bit;
            0
        }
    };
    if off.interp_gc_collecting != NO_OFFSET {
        let collecting = mem.user_u32(interp.wrapping_add(off.interp_gc_collecting as u64));
        if collecting.unwrap_or(0) != 0 {
            state.gc_mask |= bit;
        }
    }
    state.tstate = match mem.field_u64(interp, off.interp_threads_head) {
        Some(head) => head,
        None => {
            bump(Counter::NoInterpreter);
            state.unreadable_mask |= bit;
            0
        }
    };
}

/// Chain entries read per `bpf_loop` step (at most).
const ENTRIES_PER_STEP: usize = 4;

/// Whether the open thread's chain has another entry to read.
#[inline(always)]
fn chain_goes_on(state: &WalkState) -> bool {
    state.frame != 0 && state.nreal <= state.max_frames && (state.nchain as usize) < MAX_CHAIN
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
    let hdr = unsafe { &mut (*rec).thread.hdr };
    let off = &state.proc.offsets;
    let tstate = state.tstate;
    let Some(thread_id) = mem.field_u64(tstate, off.tstate_thread_id) else {
        if state.from_cache != 0 {
            // A cached thread state that is gone: look through the list instead.
            restart_from_list(mem, state);
            return;
        }
        bump(Counter::ThreadReadFailed);
        // The rest of this interpreter's list is out of reach; the next interpreter is not.
        state.unreadable_mask |= interp_bit(state.ninterps.wrapping_sub(1));
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
    let status = if off.tstate_status != NO_OFFSET {
        match mem.user_u32(tstate.wrapping_add(off.tstate_status as u64)) {
            Some(s) => s,
            None => {
                flags |= thread_flags::STATUS_UNREADABLE;
                0
            }
        }
    } else {
        0
    };
    let frame = match top_frame(mem, tstate, &state.proc) {
        Some(f) => f,
        None => {
            bump(Counter::FrameReadFailed);
            flags |= thread_flags::READ_FAILED;
            0
        }
    };
    if state.fsbase != 0 && thread_id == state.fsbase {
        flags |= thread_flags::RECEIVER_ID;
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
        interp: state.interp,
        interp_index: state.ninterps.wrapping_sub(1),
        status,
    };
    state.frame = frame;
    state.held_frame = 0;
    state.stack_len = 0;
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

/// Reads one chain entry of the open thread (its fields in one read) and fingerprints its
/// code object. With `FULL`, a code object not yet looked at in this dump is looked up (and
/// its record sent if new); without, such an entry is left for the next step and `false`
/// returned: only one full look-up per step keeps the verified program small.
#[inline(always)]
fn read_entry<M: Memory, const FULL: bool>(mem: M, state: &mut WalkState) -> bool {
    let Some(rec) = THREAD_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.frame = 0;
        return false;
    };
    let (frame_start, frame_len) = (state.proc.windows.frame_start, state.proc.windows.frame_len);
    let Some(scratch) = WINDOWS.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        state.frame = 0;
        return false;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let buf = unsafe { &mut (*scratch).frame };
    let held = state.held_frame != 0 && state.held_frame == state.frame;
    state.held_frame = 0;
    let w = if held || from_stack(mem, state, buf) {
        // Read by the previous step's last entry, left for this one: nothing has written the
        // buffer since (the look-ups use their own); or copied from the data stack as read.
        Window::held(buf, frame_start)
    } else {
        let Some(w) = Window::read(mem, buf, state.frame, frame_start, frame_len) else {
            bump(Counter::FrameReadFailed);
            state.thread_flags |= thread_flags::READ_FAILED;
            state.frame = 0;
            return false;
        };
        w
    };
    // The frame's fields, decoded as the unit tests decode memory laid out from CPython's
    // headers (`FrameRead`).
    let mut f = FrameRead::of(&state.proc.offsets, &w);
    if state.nchain == 0 {
        state.top_code = f.raw_code;
        state.top_previous = f.previous;
    }
    let mut fingerprint = 0;
    // Frames past the capture's frame bound only show that the stack goes on: no look-up.
    if !f.shim && state.copy_code != 0 && state.nreal < state.max_frames && f.code != 0 {
        fingerprint = match symbols::seen(state.capture_id, f.code) {
            Some(fp) => fp,
            None if FULL => symbols::fingerprint(
                mem,
                state.pid,
                state.capture_id,
                f.code,
                &state.proc,
                &mut state.lost,
                !M::CONCURRENT && state.scope == SCOPE_ONLY_THREAD,
            ),
            None => match symbols::known(mem, state.pid, state.capture_id, f.code, &state.proc) {
                Some(fp) => fp,
                None => {
                    // Left for the next step, whose first entry takes the window as read.
                    state.held_frame = state.frame;
                    return false;
                }
            },
        };
    }
    // Free-threaded 3.14+: a frame running its thread's own copy of the bytecode gets its
    // instruction as an offset into that copy, read once the entry is kept (at most three
    // reads: the code object's array of copies, its size, the entry).
    if let Err(e) = tlbc::in_own_copy(mem, &mut f, state.proc.offsets.code_tlbc) {
        bump(e);
    }
    if !f.shim {
        state.nreal += 1;
    }
    // SAFETY: per-CPU scratch owned by this walk.
    let frames = unsafe { &mut (*rec).thread.frames };
    // The index is bounded here, where it is used: a check made earlier in the step is lost
    // across the code-object look-up ("R2 unbounded memory access").
    if let Some(slot) = frames.get_mut(state.nchain as usize) {
        *slot = FrameEntry {
            code: f.code,
            instr: f.instr,
            fingerprint,
            owner: f.owner,
            flags: f.flags,
        };
    }
    state.nchain += 1;
    state.frame = f.previous;
    true
}

/// Copies the open frame's window from the thread's data stack into `dst`, reading the stack
/// first when the frame is not in what was read: from the start of the frame's page (mapped
/// whenever the frame is) to the end of its window, so its callers below it in the page come
/// with it. Only for versions whose frames live there (`ReadWindows::stack`), and only for
/// the thread's first frame or a frame just below what was read (its callers'); any other
/// frame (a generator's, a shim's on the C stack) is left to a read of its own (`false`).
#[inline(always)]
fn from_stack<M: Memory>(mem: M, state: &mut WalkState, dst: &mut [u64; WINDOW_WORDS]) -> bool {
    let win = &state.proc.windows;
    if win.stack == 0 {
        return false;
    }
    let Some(stack) = STACK.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let stack = unsafe { &mut *stack };
    let start = state.frame.wrapping_add(win.frame_start as u64);
    let end = start.wrapping_add(win.frame_len as u64);
    if start & 7 != 0 || end < start {
        return false;
    }
    let held = state.stack_len != 0
        && start >= state.stack_lo
        && end <= state.stack_lo.wrapping_add(state.stack_len as u64);
    if !held {
        let below = start < state.stack_lo && state.stack_lo - start <= STACK_REACH;
        if state.stack_len != 0 && !below {
            return false;
        }
        let lo = start & !(STACK_PAGE - 1);
        let len = end - lo;
        // "R2 unbounded memory access": the length is bounded where the verifier sees it.
        if len > STACK_WINDOW_MAX as u64 {
            return false;
        }
        if !mem.user_bytes(stack.as_mut_ptr() as *mut u8, len as u32, lo) {
            // The frame's own read says what failed.
            state.stack_len = 0;
            return false;
        }
        state.stack_lo = lo;
        state.stack_len = len as u32;
    }
    let first = ((start - state.stack_lo) / 8) as usize;
    if first > STACK_WORDS - WINDOW_WORDS {
        return false;
    }
    for (k, word) in dst.iter_mut().enumerate() {
        // Bytes past the window read as 0, as after `Window::read`.
        *word = if (k as u32) * 8 < win.frame_len {
            stack.get(first + k).copied().unwrap_or(0)
        } else {
            0
        };
    }
    true
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
        let rec = unsafe { &mut (*rec).thread };
        rec.hdr.flags = state.thread_flags;
        rec.hdr.nframes = state.nchain;
        let len = size_of::<ThreadHeader>() + state.nchain as usize * size_of::<FrameEntry>();
        if state.one_record == 0 && !emit::prefix(rec, len, Wake::Later) {
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
        state.next_interp = 0;
        return;
    }
    state.interp_threads += 1;
    let bit = interp_bit(state.ninterps.wrapping_sub(1));
    let next = match mem.field_u64(state.tstate, state.proc.offsets.tstate_next) {
        Some(n) => n,
        None => {
            bump(Counter::ThreadReadFailed);
            state.unreadable_mask |= bit;
            0
        }
    };
    if next != 0 && state.interp_threads >= state.max_threads {
        bump(Counter::ThreadLimit);
        state.end_flags |= end_flags::MORE_THREADS;
        state.more_threads_mask |= bit;
        state.tstate = 0;
        return;
    }
    // 0 at the end of the list: the next step opens the next interpreter.
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
    mem.field_u64(frame, off.frame_code) == Some(state.top_code)
        && mem.field_u64(frame, off.frame_previous) == Some(state.top_previous)
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
        state.next_interp = 0;
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

/// Drops a stale cache entry and scans the interpreters' thread lists from the head.
#[inline(always)]
fn restart_from_list<M: Memory>(mem: M, state: &mut WalkState) {
    let _ = THREAD_STATES.remove(&thread_key(state));
    state.from_cache = 0;
    start_interpreters(mem, state);
}
