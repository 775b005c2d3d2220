//! Raw captures → [`Capture`]s: code addresses become file, name and line, using the code
//! records the kernel copied for each process.
//!
//! Records are kept per process, by (code address, fingerprint) — the same key the frames
//! carry, so a frame is never paired with a record of another object that had the same
//! address — in a least-recently-used cache bounded per process and in total. A dropped
//! record's kernel key is handed back ([`Symbolizer::take_evicted`]) so the kernel sends it
//! again when a frame needs it; an exited process's records are dropped at once.

use std::{collections::HashMap, mem::size_of};

use lru::LruCache;
use pytrace_common::{
    begin_flags, end_flags, frame_flags, signal_action, signal_flags, thread_flags, trigger,
    CodeKey, FrameEntry, SignalInfo, ThreadHeader, MAX_FRAMES, MAX_THREADS, SAMPLE_MAX_FRAMES,
};

use crate::{
    decode::{CodeChunkInfo, CodeInfo, RawCapture},
    model::{
        Capture, ChainEntry, Frame, Interpreter, InterpreterState, PyText, SignalAction,
        ThreadStack, TriggerInfo,
    },
    python::{
        layout::{InstrKind, VersionLayout},
        linetable,
    },
    receiver::{self, ListFacts, Seen},
    thread_names,
};
/// Code records kept per process: at least one dump's worth (every frame of every thread a
/// different code object), so a dump's own records are never dropped before it is printed.
pub const MAX_CODES_PER_PROCESS: usize = 2 * (MAX_THREADS * MAX_FRAMES) as usize;
/// Bytes of code records kept per process, and for all processes together.
pub const MAX_BYTES_PER_PROCESS: usize = 64 << 20;
pub const MAX_BYTES_TOTAL: usize = 256 << 20;

/// What the symbolizer needs to know about one traced process.
#[derive(Clone, Debug)]
pub struct ProcessMeta {
    pub version: (u8, u8, u8),
    pub layout: VersionLayout,
    pub ns_pid: Option<u32>,
    /// Address of the interpreter list's head pointer in the target.
    pub interp_head_addr: u64,
    /// The target can read its other threads' names (`/proc/self/task/TID/comm`, where
    /// glibc's `pthread_getname_np` looks): see [`thread_names::names_readable_by`].
    pub other_thread_names_readable: bool,
}

/// (code address, fingerprint).
type CodeId = (u64, u64);

struct ProcState {
    meta: ProcessMeta,
    codes: LruCache<CodeId, CodeInfo>,
    /// Bytes held by `codes` (as [`cost`] counts them).
    bytes: usize,
}

#[derive(Default)]
pub struct Symbolizer {
    procs: HashMap<u32, ProcState>,
    /// Bytes held by every process's records.
    bytes: usize,
    /// Kernel keys of dropped records, for the caller to remove from the kernel's cache.
    evicted: Vec<CodeKey>,
    /// Code records for processes never registered.
    pub stray_codes: u64,
    /// Line-table pieces that matched no record (their record was dropped or lost).
    pub stray_chunks: u64,
    /// Records dropped to keep within the bounds.
    pub dropped_codes: u64,
}

/// `si_code` values at or below this were sent by a process (`SI_USER`, `SI_QUEUE`,
/// `SI_TKILL`, …), so `si_pid` names the sender.
const SI_USER: i32 = 0;

/// Heap bytes a record holds, with a fixed allowance for the cache's own node.
fn cost(c: &CodeInfo) -> usize {
    let text = |t: &Option<PyText>| t.as_ref().map_or(0, |t| t.codepoints.capacity() * 4);
    size_of::<CodeInfo>() + 64 + c.linetable.capacity() + text(&c.filename) + text(&c.name)
}

impl Symbolizer {
    pub fn add_process(&mut self, pid: u32, meta: ProcessMeta) {
        self.remove_process(pid);
        self.procs.insert(
            pid,
            ProcState {
                meta,
                codes: LruCache::unbounded(),
                bytes: 0,
            },
        );
    }

    /// A forked child shares its parent's layout (its own code records arrive separately).
    pub fn fork_process(&mut self, parent: u32, child: u32) -> bool {
        let Some(meta) = self.procs.get(&parent).map(|p| p.meta.clone()) else {
            return false;
        };
        self.add_process(child, meta);
        true
    }

    /// Drops a process's state (its records go back to the allocator, and through it to the
    /// system).
    pub fn remove_process(&mut self, pid: u32) {
        if let Some(p) = self.procs.remove(&pid) {
            self.bytes -= p.bytes;
            drop(p);
            release_free_memory();
        }
    }

    /// Address of `pid`'s interpreter-list head pointer, if it is registered.
    pub fn interp_head_addr(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|p| p.meta.interp_head_addr)
    }

    pub fn has_process(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    /// Processes for which code records are held.
    pub fn pids_with_codes(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.codes.is_empty())
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// Records held, and their bytes, over all processes.
    pub fn cached(&self) -> (usize, usize) {
        (self.procs.values().map(|p| p.codes.len()).sum(), self.bytes)
    }

    /// Kernel keys of the records dropped since the last call.
    pub fn take_evicted(&mut self) -> Vec<CodeKey> {
        std::mem::take(&mut self.evicted)
    }

    pub fn add_code(&mut self, code: CodeInfo) {
        let pid = code.pid;
        let Some(p) = self.procs.get_mut(&pid) else {
            self.stray_codes += 1;
            return;
        };
        let added = cost(&code);
        if let Some(old) = p.codes.put((code.code, code.fingerprint), code) {
            let c = cost(&old);
            p.bytes -= c;
            self.bytes -= c;
        }
        p.bytes += added;
        self.bytes += added;
        self.enforce_bounds(pid);
    }

    /// Appends a continuation piece to its record's line table (in order; a gap means a
    /// piece was lost, and the table stays as far as it is known).
    pub fn add_chunk(&mut self, chunk: CodeChunkInfo) {
        let Some(p) = self.procs.get_mut(&chunk.pid) else {
            self.stray_chunks += 1;
            return;
        };
        let Some(code) = p.codes.peek_mut(&(chunk.code, chunk.fingerprint)) else {
            self.stray_chunks += 1;
            return;
        };
        let fits = code
            .linetable_len
            .is_some_and(|len| chunk.offset as u64 + chunk.data.len() as u64 <= len);
        if code.linetable.len() != chunk.offset as usize || !fits {
            self.stray_chunks += 1;
            return;
        }
        let before = code.linetable.capacity();
        code.linetable.extend_from_slice(&chunk.data);
        let grown = code.linetable.capacity() - before;
        p.bytes += grown;
        self.bytes += grown;
        self.enforce_bounds(chunk.pid);
    }

    /// Drops least recently used records: of `pid` while it is over its bounds, then of the
    /// process holding the most while all are over theirs.
    fn enforce_bounds(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            while p.codes.len() > 1
                && (p.codes.len() > MAX_CODES_PER_PROCESS || p.bytes > MAX_BYTES_PER_PROCESS)
            {
                let Some((_, old)) = p.codes.pop_lru() else {
                    break;
                };
                let c = cost(&old);
                p.bytes -= c;
                self.bytes -= c;
                self.dropped_codes += 1;
                self.evicted.push(kernel_key(&old));
            }
        }
        while self.bytes > MAX_BYTES_TOTAL {
            let Some(p) = self.procs.values_mut().max_by_key(|p| p.bytes) else {
                break;
            };
            let Some((_, old)) = p.codes.pop_lru() else {
                break;
            };
            let c = cost(&old);
            p.bytes -= c;
            self.bytes -= c;
            self.dropped_codes += 1;
            self.evicted.push(kernel_key(&old));
        }
    }

    /// Symbolizes a capture. `boot_to_epoch_ns` converts the kernel's boot-time clock to wall
    /// time.
    pub fn symbolize(&mut self, raw: &RawCapture, boot_to_epoch_ns: i128) -> Capture {
        let b = &raw.begin;
        let mut proc = self.procs.get_mut(&b.pid);
        let trigger = match (b.trigger, &raw.signal) {
            (trigger::TIMER, _) => TriggerInfo::Timer { cpu: b.cpu },
            (trigger::ON_DEMAND, _) => TriggerInfo::OnDemand,
            (_, Some(s)) => signal_trigger(s),
            // The signal record was lost: the signal is unknown.
            (_, None) => TriggerInfo::default(),
        };
        let lost_signal = u32::from(b.trigger == trigger::SIGNAL && raw.signal.is_none());
        let mut dump = Capture {
            pid: b.pid,
            tid: b.tid,
            ns_pid: proc.as_ref().and_then(|p| p.meta.ns_pid),
            ns_tid: None,
            trigger,
            time_ns: (b.boot_ns as i128 + boot_to_epoch_ns).max(0) as u64,
            comm: match &raw.signal {
                // Taken in another thread than the process's main one: its comm.
                Some(s) if s.comm[0] != 0 => comm_string(&s.comm),
                _ => comm_string(&b.comm),
            },
            python_version: proc.as_ref().map(|p| p.meta.version).unwrap_or_default(),
            threads: Vec::with_capacity(raw.threads.len()),
            more_threads: false,
            no_thread_state: raw.end.flags & end_flags::NO_THREAD_STATE != 0,
            gil_known: b.flags & begin_flags::GIL_KNOWN != 0,
            unsymbolized_frames: 0,
            lost_records: raw.end.lost_records.max(lost_signal),
            ..Capture::default()
        };
        let mut threads: Vec<_> = raw.threads.iter().collect();
        threads.sort_by_key(|(h, _)| h.index);
        let mut stacks = Vec::with_capacity(threads.len());
        // Past the capture's frame bound a frame only shows that the stack goes on: the kernel
        // sends no record for it.
        let frame_bound = if b.trigger == trigger::TIMER {
            SAMPLE_MAX_FRAMES
        } else {
            MAX_FRAMES
        };
        for (hdr, frames) in &threads {
            let mut chain = Vec::with_capacity(frames.len());
            let mut real = 0;
            for f in frames.iter() {
                if f.code == 0 {
                    chain.push(ChainEntry::Shim {
                        before_start: proc.as_deref().is_some_and(|p| shim_before_start(p, f)),
                    });
                    continue;
                }
                real += 1;
                let frame = match &mut proc {
                    _ if real > frame_bound => Frame::default(),
                    Some(p) => frame(p, f, &mut dump),
                    None => {
                        dump.unsymbolized_frames += 1;
                        Frame::default()
                    }
                };
                chain.push(ChainEntry::Frame(frame));
            }
            stacks.push(ThreadStack {
                thread_id: hdr.thread_id,
                native_id: (hdr.native_id != 0).then_some(hdr.native_id),
                // Which thread is faulthandler's current one is decided below, with its
                // interpreter (`place_threads`).
                current: hdr.flags & thread_flags::RECEIVER_ID != 0,
                holds_gil: hdr.flags & thread_flags::HOLDS_GIL != 0,
                raced: hdr.flags & thread_flags::RACED != 0,
                task: None,
                unchanged_ms: None,
                chain,
                chain_continues: hdr.flags & thread_flags::CHAIN_CONTINUES != 0,
                torn: hdr.flags & (thread_flags::READ_FAILED | thread_flags::RACED) != 0,
                interp: hdr.interp_index,
                os_name: None,
                name_seen_by_target: false,
            });
        }
        if b.trigger == trigger::TIMER {
            // A sample holds the interrupted thread alone, whatever its interpreter.
            dump.more_threads = raw.end.flags & end_flags::MORE_THREADS != 0;
            if raw.end.flags & end_flags::NO_INTERPRETER != 0 {
                dump.interpreter_state = InterpreterState::NotInitialised;
            }
            if raw.end.flags & end_flags::INTERP_UNREADABLE != 0 {
                dump.interpreter_state = InterpreterState::Unreadable;
            }
            dump.threads = stacks;
            return dump;
        }
        let headers: Vec<&ThreadHeader> = threads.iter().map(|(h, _)| h).collect();
        let mask = proc
            .as_ref()
            .and_then(|p| p.meta.layout.gilstate_bound_mask);
        place_threads(&mut dump, stacks, &headers, raw, mask);
        let readable = proc
            .as_ref()
            .is_some_and(|p| p.meta.other_thread_names_readable);
        let in_namespace = dump.ns_pid.is_some();
        let name = |threads: &mut Vec<ThreadStack>| {
            let ids: Vec<_> = threads.iter().map(|t| (t.thread_id, t.native_id)).collect();
            let (names, unknown) =
                thread_names::match_names(&ids, raw.tasks.as_ref(), in_namespace);
            for (thread, name) in threads.iter_mut().zip(names) {
                thread.name_seen_by_target = readable || thread.current;
                thread.os_name = name;
            }
            unknown
        };
        dump.thread_names_unknown = name(&mut dump.threads);
        name(&mut dump.other_threads);
        dump
    }
}

fn kernel_key(c: &CodeInfo) -> CodeKey {
    CodeKey {
        pid: c.pid,
        generation: c.generation,
        code: c.code,
        fingerprint: c.fingerprint,
    }
}

/// Returns freed heap pages to the system (glibc keeps them otherwise).
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sorts the walked threads into the interpreter faulthandler dumps (`threads`, its current
/// thread marked) and the others (`other_threads`), and notes what the walk could not settle.
fn place_threads(
    dump: &mut Capture,
    stacks: Vec<ThreadStack>,
    headers: &[&ThreadHeader],
    raw: &RawCapture,
    gilstate_bound_mask: Option<u32>,
) {
    let end = &raw.end;
    if end.flags & end_flags::NO_INTERPRETER != 0 {
        dump.interpreter_state = InterpreterState::NotInitialised;
    }
    if end.flags & end_flags::INTERP_UNREADABLE != 0 {
        dump.interpreter_state = InterpreterState::Unreadable;
    }
    let exhausted = end.flags & end_flags::STEPS_EXHAUSTED != 0;
    if exhausted {
        dump.incomplete.push("walk ran out of steps");
    }
    dump.more_interpreters = end.flags & end_flags::MORE_INTERPRETERS != 0;
    let count = end.ninterps.min(end.interps.len() as u32);
    let bit = |i: u32| 1u32.checked_shl(i).unwrap_or(0);
    let last_read = count > 0 && end.unreadable_mask & bit(count - 1) == 0;
    let list = ListFacts {
        count,
        complete: !dump.more_interpreters && !exhausted && last_read,
        hidden_threads: end.more_threads_mask != 0,
    };
    // An on-demand dump runs in no thread of the target: the thread holding the GIL stands
    // for the receiving one, when known (else none, as faulthandler prints without a
    // current thread state).
    let on_demand = dump.trigger == TriggerInfo::OnDemand;
    let gil_known = dump.gil_known;
    let seen: Vec<Seen> = headers
        .iter()
        .map(|h| Seen {
            interp: h.interp_index,
            thread_id: h.thread_id,
            receiver_id: if on_demand {
                gil_known && h.flags & thread_flags::HOLDS_GIL != 0
            } else {
                h.flags & thread_flags::RECEIVER_ID != 0
            },
            status: (gilstate_bound_mask.is_some()
                && h.flags & thread_flags::STATUS_UNREADABLE == 0)
                .then_some(h.status),
        })
        .collect();
    let choice = receiver::choose(&seen, list, gilstate_bound_mask);
    if choice.uncertain {
        dump.incomplete
            .push("receiving thread's interpreter uncertain");
    }
    dump.interpreters = (0..count)
        .map(|i| Interpreter {
            index: i,
            address: end.interps[i as usize],
            main: choice.main == Some(i),
            dumped: choice.interp == Some(i),
            more_threads: end.more_threads_mask & bit(i) != 0,
            unreadable: end.unreadable_mask & bit(i) != 0,
        })
        .collect();
    if let Some(chosen) = choice.interp {
        dump.gc_collecting = end.gc_mask & bit(chosen) != 0;
        dump.more_threads = end.more_threads_mask & bit(chosen) != 0;
        if end.unreadable_mask & bit(chosen) != 0 {
            dump.incomplete.push("thread list unreadable");
        }
    }
    for (i, mut stack) in stacks.into_iter().enumerate() {
        stack.current = choice.current == Some(i);
        if Some(stack.interp) == choice.interp {
            dump.threads.push(stack);
        } else {
            dump.other_threads.push(stack);
        }
    }
}

/// Whether CPython's line lookup for this shim frame gets a negative offset (and so the
/// code's first line): `_PyInterpreterFrame_LASTI` as a C `int`, times the code-unit size,
/// below 0. The walker sends a shim's instruction relative to its code object.
fn shim_before_start(proc: &ProcState, entry: &FrameEntry) -> bool {
    match proc.meta.layout.instr {
        InstrKind::InstrPtr { code_adaptive } => {
            let units = (entry.instr as i64).wrapping_sub(code_adaptive as i64) >> 1;
            (units as i32).wrapping_mul(2) < 0
        }
        InstrKind::LastiBytes | InstrKind::LastiCodeUnits => false,
    }
}

fn frame(proc: &mut ProcState, entry: &FrameEntry, dump: &mut Capture) -> Frame {
    let layout = proc.meta.layout;
    let Some(code) = proc.codes.get(&(entry.code, entry.fingerprint)) else {
        dump.unsymbolized_frames += 1;
        return Frame::default();
    };
    // A frame running its thread's own bytecode copy (free-threaded 3.14+): the kernel sent
    // the offset into that copy, or could not read the copy (the line is then unknown).
    let tlbc_unreadable = entry.flags & frame_flags::TLBC_UNREADABLE != 0;
    let addr = match layout.instr {
        _ if entry.flags & frame_flags::INSTR_OFFSET != 0 => entry.instr as i64,
        InstrKind::LastiBytes => entry.instr as u32 as i32 as i64,
        InstrKind::LastiCodeUnits => (entry.instr as u32 as i32 as i64) * 2,
        InstrKind::InstrPtr { code_adaptive } => {
            entry.instr as i64 - (entry.code as i64 + code_adaptive as i64)
        }
    };
    // An unreadable table, or one whose needed part never arrived: the line is not known,
    // and the dump says so (faulthandler's `???` is printed, never a guess).
    let line = code
        .linetable_len
        .filter(|_| !tlbc_unreadable)
        .and_then(|len| {
            linetable::addr2line_partial(
                layout.line_table,
                &code.linetable,
                len as usize,
                code.firstlineno,
                addr,
            )
        });
    if line.is_none() {
        dump.unknown_lines += 1;
    }
    Frame {
        filename: code.filename.clone(),
        name: code.name.clone(),
        line: line.flatten(),
    }
}

fn comm_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// The signal trigger's record in user terms.
pub fn signal_trigger(s: &SignalInfo) -> TriggerInfo {
    TriggerInfo::Signal {
        signal: s.signal,
        sender_pid: (s.si_code <= SI_USER && s.sender_pid != 0).then_some(s.sender_pid),
        action: match s.action {
            signal_action::HANDLER => SignalAction::Handler,
            signal_action::KILL => SignalAction::Kill,
            signal_action::CORE => SignalAction::Core,
            signal_action::STOP => SignalAction::Stop,
            signal_action::IGNORE => SignalAction::Ignore,
            signal_action::HELD => SignalAction::Held,
            _ => SignalAction::Unknown,
        },
        from_kernel: s.si_code > SI_USER,
        fault_addr: (s.flags & signal_flags::FAULT_ADDR != 0).then_some(s.fault_addr),
        oom: s.flags & signal_flags::OOM != 0,
        delivered_as: (s.delivered != s.signal && s.delivered != 0).then_some(s.delivered),
    }
}

#[cfg(test)]
mod tests {
    //! Replays kernel records, as bytes, through decode → assemble → symbolize → text.
    use std::mem::size_of;

    use pytrace_common::{
        kind, thread_flags, CaptureBegin, CaptureEnd, CodeRecord, FrameEntry, SignalInfo,
        ThreadHeader, CODE_RECORD_FIXED,
    };

    use super::*;
    use crate::{
        decode::{decode, Assembler, Record},
        format::{self, FormatKind},
        python::layout::builtin_layout,
    };

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only byte view of a plain-data record.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    fn code_record(pid: u32, code: u64, file: &str, name: &str, lnotab: &[u8]) -> Vec<u8> {
        // SAFETY: all-zero is a valid CodeRecord (integers and arrays only).
        let mut rec: Box<CodeRecord> = Box::new(unsafe { std::mem::zeroed() });
        rec.kind = kind::CODE;
        rec.pid = pid;
        rec.code = code;
        rec.firstlineno = 10;
        for (s, text) in [(&mut rec.filename, file), (&mut rec.name, name)] {
            s.char_size = 1;
            s.length = text.len() as u64;
            s.copied = text.len() as u32;
            s.data[..text.len()].copy_from_slice(text.as_bytes());
        }
        rec.fingerprint = code ^ 0x55;
        rec.linetable_len = lnotab.len() as u64;
        rec.linetable_copied = lnotab.len() as u32;
        rec.linetable[..lnotab.len()].copy_from_slice(lnotab);
        bytes_of(&*rec)[..CODE_RECORD_FIXED + lnotab.len()].to_vec()
    }

    #[test]
    fn a_shim_before_its_first_instruction_is_told_apart() {
        let proc = ProcState {
            meta: ProcessMeta {
                version: (3, 12, 1),
                layout: *builtin_layout(3, 12).unwrap(),
                ns_pid: None,
                interp_head_addr: 0,
                other_thread_names_readable: true,
            },
            codes: LruCache::unbounded(),
            bytes: 0,
        };
        // The walker sends a shim's instruction relative to its code object; 3.12's
        // `co_code_adaptive` is at 192.
        let at = |instr: u64| FrameEntry {
            code: 0,
            instr,
            fingerprint: 0,
            owner: 3,
            flags: 0,
        };
        assert!(!shim_before_start(&proc, &at(192)));
        assert!(!shim_before_start(&proc, &at(194)));
        assert!(shim_before_start(&proc, &at(190)));
        assert!(shim_before_start(&proc, &at(0u64.wrapping_sub(4096))));
        let old = ProcState {
            meta: ProcessMeta {
                layout: *builtin_layout(3, 8).unwrap(),
                ..proc.meta.clone()
            },
            codes: LruCache::unbounded(),
            bytes: 0,
        };
        assert!(!shim_before_start(&old, &at(0)));
    }

    #[test]
    fn recorded_3_8_dump_prints_like_faulthandler() {
        let pid = 42;
        let mut sym = Symbolizer::default();
        sym.add_process(
            pid,
            ProcessMeta {
                version: (3, 8, 18),
                layout: *builtin_layout(3, 8).unwrap(),
                ns_pid: None,
                interp_head_addr: 0,
                other_thread_names_readable: true,
            },
        );
        let begin = CaptureBegin {
            kind: kind::CAPTURE_BEGIN,
            trigger: pytrace_common::trigger::SIGNAL,
            capture_id: 9,
            pid,
            tid: pid,
            version_hex: 0x030812f0,
            fsbase: 0x7f00_0000_0001,
            comm: *b"python3.8\0\0\0\0\0\0\0",
            ..Default::default()
        };
        let signal = SignalInfo {
            kind: kind::SIGNAL_INFO,
            signal: 10,
            capture_id: 9,
            sender_pid: 7,
            delivered: 10,
            action: signal_action::HANDLER,
            ..Default::default()
        };
        let mut records = vec![bytes_of(&begin), bytes_of(&signal)];
        // lnotab (addr += 0, line += 1), (addr += 6, line += 2): f_lasti 8 is line 13, 0 is 11.
        records.push(code_record(pid, 0x1000, "/srv/a.py", "f", &[0, 1, 6, 2]));
        records.push(code_record(pid, 0x2000, "/srv/b.py", "<module>", &[]));
        for (index, (tid, frames)) in [
            (0x7f00_0000_0002u64, vec![]),
            (
                0x7f00_0000_0001,
                vec![(0x1000u64, 8u64), (0x1000, 0), (0x2000, 4)],
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let hdr = ThreadHeader {
                kind: kind::THREAD,
                flags: if tid == begin.fsbase {
                    thread_flags::RECEIVER_ID
                } else {
                    0
                },
                capture_id: 9,
                thread_id: tid,
                index: index as u32,
                nframes: frames.len() as u32,
                ..Default::default()
            };
            let mut rec = bytes_of(&hdr);
            for (code, instr) in frames {
                rec.extend(bytes_of(&FrameEntry {
                    code,
                    instr,
                    fingerprint: code ^ 0x55,
                    owner: 0,
                    flags: 0,
                }));
            }
            records.push(rec);
        }
        records.push(end_record(9, 2));
        let dumps = assemble(&mut sym, &records);
        assert_eq!(dumps.len(), 1);
        let dump = sym.symbolize(&dumps[0], 0);
        assert_eq!(
            dump.trigger,
            TriggerInfo::Signal {
                signal: 10,
                sender_pid: Some(7),
                action: SignalAction::Handler,
                from_kernel: false,
                fault_addr: None,
                oom: false,
                delivered_as: None,
            }
        );
        let mut out = Vec::new();
        format::new(FormatKind::Text)
            .record(&dump, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert!(
            header.starts_with(
                "Process 42 (python3.8) Python 3.8.18, SIGUSR1 from PID 7, handler runs, "
            ),
            "{header}"
        );
        assert_eq!(
            body,
            "Thread 0x00007f0000000002 (most recent call first):\n\
             <no Python frame>\n\
             \n\
             Current thread 0x00007f0000000001 (most recent call first):\n  \
             File \"/srv/a.py\", line 13 in f\n  \
             File \"/srv/a.py\", line 11 in f\n  \
             File \"/srv/b.py\", line 10 in <module>\n\
             \n"
        );
    }

    /// The end record of a capture of `nthreads` threads in one interpreter.
    fn end_record(capture_id: u64, nthreads: u32) -> Vec<u8> {
        let mut interps = [0u64; pytrace_common::MAX_INTERPRETERS as usize];
        interps[0] = 0x5555_0000;
        bytes_of(&CaptureEnd {
            kind: kind::CAPTURE_END,
            capture_id,
            nthreads,
            ninterps: 1,
            interps,
            ..Default::default()
        })
    }

    /// Decodes `records` as the session does, code records into `sym`, and returns the
    /// captures they complete.
    fn assemble(sym: &mut Symbolizer, records: &[Vec<u8>]) -> Vec<RawCapture> {
        let mut asm = Assembler::default();
        let mut dumps = Vec::new();
        for r in records {
            match decode(r).unwrap() {
                Record::Begin(b) => asm.begin(b),
                Record::Signal(s) => asm.signal(s),
                Record::Thread(h, f) => asm.thread(h, f),
                Record::Tasks(t) => asm.tasks(t),
                Record::Code(c) => sym.add_code(c),
                Record::End(e) => dumps.extend(asm.end(e)),
                other => panic!("unexpected {other:?}"),
            }
        }
        dumps
    }

    fn meta_3_12() -> ProcessMeta {
        ProcessMeta {
            version: (3, 12, 1),
            layout: *builtin_layout(3, 12).unwrap(),
            ns_pid: None,
            interp_head_addr: 0,
            other_thread_names_readable: true,
        }
    }

    fn info(pid: u32, code: u64, fingerprint: u64, table: Vec<u8>, len: u64) -> CodeInfo {
        CodeInfo {
            pid,
            code,
            fingerprint,
            generation: 3,
            firstlineno: 1,
            filename: Some(PyText::from_text("a.py")),
            name: Some(PyText::from_text("f")),
            linetable: table,
            linetable_len: Some(len),
        }
    }

    fn one_frame_dump(pid: u32, code: u64, fingerprint: u64) -> RawCapture {
        RawCapture {
            begin: CaptureBegin {
                kind: kind::CAPTURE_BEGIN,
                trigger: pytrace_common::trigger::SIGNAL,
                capture_id: 1,
                boot_ns: 0,
                pid,
                tid: pid,
                cpu: 0,
                _pad: 0,
                version_hex: 0,
                flags: 0,
                fsbase: 0,
                comm: [0; 16],
            },
            signal: None,
            tasks: None,
            threads: vec![(
                ThreadHeader {
                    nframes: 1,
                    interp: 0x5555_0000,
                    interp_index: 0,
                    ..Default::default()
                },
                vec![FrameEntry {
                    code,
                    // 3.12: code + co_code_adaptive (192) + byte offset 192 (code unit 96).
                    instr: code + 192 + 192,
                    fingerprint,
                    owner: 0,
                    flags: 0,
                }],
            )],
            end: {
                let mut interps = [0u64; pytrace_common::MAX_INTERPRETERS as usize];
                interps[0] = 0x5555_0000;
                CaptureEnd {
                    ninterps: 1,
                    interps,
                    ..Default::default()
                }
            },
        }
    }

    #[test]
    fn a_frame_takes_only_the_record_of_its_fingerprint() {
        let mut sym = Symbolizer::default();
        sym.add_process(7, meta_3_12());
        sym.add_code(info(7, 0x1000, 11, vec![], 0));
        let dump = sym.symbolize(&one_frame_dump(7, 0x1000, 12), 0);
        assert_eq!(dump.unsymbolized_frames, 1);
        let dump = sym.symbolize(&one_frame_dump(7, 0x1000, 11), 0);
        assert_eq!(dump.unsymbolized_frames, 0);
    }

    #[test]
    fn lines_from_pieces_and_unknown_past_them() {
        let mut sym = Symbolizer::default();
        sym.add_process(7, meta_3_12());
        // 3.12 location entries, each one code unit: "no columns" with line delta +1.
        let entry = [0x80 | (13 << 3), 2];
        let table: Vec<u8> = entry.iter().copied().cycle().take(400).collect();
        sym.add_code(info(7, 0x1000, 1, table[..100].to_vec(), 400));
        // Code unit 96's entry (table bytes 192..194) is in the part not received: unknown,
        // and counted.
        let dump = sym.symbolize(&one_frame_dump(7, 0x1000, 1), 0);
        assert_eq!(dump.unknown_lines, 1);
        sym.add_chunk(CodeChunkInfo {
            pid: 7,
            code: 0x1000,
            fingerprint: 1,
            offset: 100,
            data: table[100..].to_vec(),
        });
        // A piece that does not follow on is not taken.
        sym.add_chunk(CodeChunkInfo {
            pid: 7,
            code: 0x1000,
            fingerprint: 1,
            offset: 50,
            data: vec![0; 10],
        });
        assert_eq!(sym.stray_chunks, 1);
        let dump = sym.symbolize(&one_frame_dump(7, 0x1000, 1), 0);
        assert_eq!(dump.unknown_lines, 0);
        match &dump.threads[0].chain[0] {
            // Byte offset 192 is code unit 96: the 97th entry, line 1 + 97.
            ChainEntry::Frame(f) => assert_eq!(f.line, Some(98)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_cache_is_bounded_and_hands_back_what_it_drops() {
        let mut sym = Symbolizer::default();
        sym.add_process(7, meta_3_12());
        let n = MAX_CODES_PER_PROCESS + 10;
        for i in 0..n as u64 {
            sym.add_code(info(7, 0x1000 + 16 * i, i, vec![], 0));
        }
        assert_eq!(sym.cached().0, MAX_CODES_PER_PROCESS);
        let dropped = sym.take_evicted();
        assert_eq!(dropped.len(), 10);
        // The least recently used first, with the kernel's key.
        assert_eq!(
            dropped[0],
            CodeKey {
                pid: 7,
                generation: 3,
                code: 0x1000,
                fingerprint: 0
            }
        );
        // Large records: bounded by bytes too.
        let big = vec![0u8; 1 << 20];
        for i in 0..100u64 {
            sym.add_code(info(7, 0x9000_0000 + 16 * i, i, big.clone(), 1 << 20));
        }
        assert!(
            sym.cached().1 <= MAX_BYTES_PER_PROCESS,
            "{:?}",
            sym.cached()
        );
        sym.remove_process(7);
        assert_eq!(sym.cached(), (0, 0));
    }

    /// A free-threaded 3.13 process, its layout parsed from the table CPython's headers give
    /// such a build: the records the walker would send go through the same decoder,
    /// symbolizer and formatter. (The walker itself is kernel code: what it reads for this
    /// build is fixed by the same layout, and is not run here.)
    #[test]
    fn free_threaded_3_13_dump_through_the_symbolizer() {
        let table: &[u8] = include_bytes!("../tests/data/debug_offsets_3.13.0t.bin");
        let parsed = crate::python::debug_offsets::parse(table).unwrap();
        assert!(parsed.free_threaded);
        let InstrKind::InstrPtr { code_adaptive } = parsed.layout.instr else {
            panic!("{:?}", parsed.layout.instr)
        };
        let pid = 43;
        let mut sym = Symbolizer::default();
        sym.add_process(
            pid,
            ProcessMeta {
                version: (3, 13, 0),
                layout: parsed.layout,
                ns_pid: None,
                interp_head_addr: 0,
                other_thread_names_readable: true,
            },
        );
        // Location table, first line 10: ONE_LINE0 over 4 code units (line 10), then
        // ONE_LINE1 over 4 (line 11); each with its two column bytes.
        let locations = [0x80 | (10 << 3) | 3, 0, 1, 0x80 | (11 << 3) | 3, 0, 1];
        let code = 0x7f10_0000_1000u64;
        let mut records = vec![code_record(pid, code, "/srv/ft.py", "f", &locations)];
        let begin = CaptureBegin {
            kind: kind::CAPTURE_BEGIN,
            trigger: pytrace_common::trigger::SIGNAL,
            capture_id: 5,
            boot_ns: 0,
            pid,
            tid: pid,
            cpu: 0,
            _pad: 0,
            flags: 0,
            version_hex: parsed.version_hex,
            fsbase: 0x7f00_0000_0001,
            comm: *b"python3.13t\0\0\0\0\0",
        };
        records.insert(0, bytes_of(&begin));
        let hdr = ThreadHeader {
            kind: kind::THREAD,
            flags: thread_flags::RECEIVER_ID,
            capture_id: 5,
            interp: 0x5555_0000,
            // `_status`: initialized, bound, bound_gilstate.
            status: 0b1011,
            thread_id: 0x7f00_0000_0001,
            index: 0,
            nframes: 3,
            ..Default::default()
        };
        let mut rec = bytes_of(&hdr);
        // Code unit 5 (line 11), code unit 1 (line 10), and the thread's entry frame.
        for (code, instr, owner) in [
            (code, code + u64::from(code_adaptive) + 2 * 5, 0),
            (code, code + u64::from(code_adaptive) + 2, 0),
            (0, 0, 3),
        ] {
            rec.extend(bytes_of(&FrameEntry {
                code,
                instr,
                fingerprint: code ^ 0x55,
                owner,
                flags: 0,
            }));
        }
        records.push(rec);
        records.push(end_record(5, 1));
        let dumps = assemble(&mut sym, &records);
        let dump = sym.symbolize(&dumps[0], 0);
        assert_eq!(dump.unsymbolized_frames, 0);
        let mut out = Vec::new();
        format::new(FormatKind::Text)
            .record(&dump, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let body = text.split_once('\n').unwrap().1;
        assert_eq!(
            body,
            "Current thread 0x00007f0000000001 (most recent call first):\n  \
             File \"/srv/ft.py\", line 11 in f\n  File \"/srv/ft.py\", line 10 in f\n\n"
        );
    }

    /// Memory of a free-threaded 3.14 or 3.15 process, laid out with the offsets its own table
    /// gives (`_Py_DebugOffsets` as CPython's headers build it with `Py_GIL_DISABLED`): one code
    /// object whose `_PyCodeArray` holds 3 copies of its bytecode, and frames each running one
    /// copy, read the way the walker reads them: the frame window in one read, then the
    /// walker's own decoding (`FrameRead`: the `f_executable` tag bits, the `tlbc_index` beside
    /// `instr_ptr`, the copy's look-up for an index other than 0). The records go through the
    /// decoder, symbolizer and formatter.
    struct FtMemory {
        base: u64,
        bytes: Vec<u8>,
    }

    impl FtMemory {
        fn put(&mut self, addr: u64, v: &[u8]) {
            let at = (addr - self.base) as usize;
            self.bytes[at..at + v.len()].copy_from_slice(v);
        }
        fn get(&self, addr: u64, len: usize) -> Option<&[u8]> {
            let at = usize::try_from(addr.checked_sub(self.base)?).ok()?;
            self.bytes.get(at..at.checked_add(len)?)
        }
        fn u64(&self, addr: u64) -> Option<u64> {
            Some(u64::from_le_bytes(self.get(addr, 8)?.try_into().ok()?))
        }
    }

    /// A structure's bytes as read in one piece from `start`.
    struct WindowBytes<'a> {
        start: u32,
        bytes: &'a [u8],
    }

    impl WindowBytes<'_> {
        fn field<const N: usize>(&self, off: u32) -> [u8; N] {
            let at = off.checked_sub(self.start).map(|a| a as usize);
            at.and_then(|a| self.bytes.get(a..a + N))
                .map_or([0; N], |b| b.try_into().unwrap())
        }
    }

    impl pytrace_common::Fields for WindowBytes<'_> {
        fn u64_at(&self, off: u32) -> u64 {
            u64::from_le_bytes(self.field(off))
        }
        fn u32_at(&self, off: u32) -> u32 {
            u32::from_le_bytes(self.field(off))
        }
        fn u8_at(&self, off: u32) -> u8 {
            self.field::<1>(off)[0]
        }
    }

    /// `_Py_DebugOffsets` of 3.14.10t and 3.15.2t, as CPython's headers build them.
    const FT_TABLES: [(&[u8], (u8, u8, u8)); 2] = [
        (
            include_bytes!("../tests/data/debug_offsets_3.14.10t.bin"),
            (3, 14, 10),
        ),
        (
            include_bytes!("../tests/data/debug_offsets_3.15.2t.bin"),
            (3, 15, 2),
        ),
    ];

    fn free_threaded_dump(
        (table, version): (&[u8], (u8, u8, u8)),
        tlbc_indices: &[u32],
    ) -> (Capture, String) {
        let parsed = crate::python::debug_offsets::parse(table).unwrap();
        assert!(parsed.free_threaded);
        let layout = parsed.layout;
        let off = layout.offsets;
        let InstrKind::InstrPtr { code_adaptive } = layout.instr else {
            panic!("{:?}", layout.instr)
        };
        let win = pytrace_common::ReadWindows::of(&off).unwrap();
        let mut mem = FtMemory {
            base: 0x7f10_0000_0000,
            bytes: vec![0; 0x10000],
        };
        let code = mem.base + 0x1000;
        let array = mem.base + 0x3000;
        // Copy 1 never made (null), copy 2 elsewhere on the heap.
        let copies = [code + u64::from(code_adaptive), 0, mem.base + 0x5000];
        mem.put(code + u64::from(off.code_tlbc), &array.to_le_bytes());
        mem.put(array, &(copies.len() as u64).to_le_bytes());
        for (i, c) in copies.iter().enumerate() {
            mem.put(array + 8 + 8 * i as u64, &c.to_le_bytes());
        }
        // Frames: each at code unit 5 of its copy (line 11), the last one an entry frame
        // (`FRAME_OWNED_BY_INTERPRETER`).
        let frames_base = mem.base + 0x8000;
        let frame_at = |i: usize| frames_base + 0x100 * i as u64;
        let nframes = tlbc_indices.len() + 1;
        for i in 0..nframes {
            let f = frame_at(i);
            let previous = if i + 1 < nframes { frame_at(i + 1) } else { 0 };
            mem.put(f + u64::from(off.frame_previous), &previous.to_le_bytes());
            let (executable, instr, owner, index) = match tlbc_indices.get(i) {
                // A deferred `_PyStackRef`: tag bit 1.
                Some(&index) => {
                    let copy = copies.get(index as usize).copied().unwrap_or(0);
                    let copy = if copy == 0 { copies[0] + 0x40 } else { copy };
                    (code | 1, copy + 2 * 5, 0u8, index)
                }
                None => (0, 0, 3, 0),
            };
            mem.put(f + u64::from(off.frame_code), &executable.to_le_bytes());
            mem.put(f + u64::from(off.frame_instr), &instr.to_le_bytes());
            mem.put(f + u64::from(off.frame_tlbc_index), &index.to_le_bytes());
            mem.put(f + u64::from(off.frame_owner), &[owner]);
        }
        // The walker's read of each chain entry: the frame window in one piece, decoded and
        // moved into its thread's copy by the walker's own code (`FrameRead`).
        let mut entries = Vec::new();
        let mut frame = frame_at(0);
        while frame != 0 {
            let w = WindowBytes {
                start: win.frame_start,
                bytes: mem
                    .get(frame + u64::from(win.frame_start), win.frame_len as usize)
                    .unwrap(),
            };
            let mut f = pytrace_common::FrameRead::of(&off, &w);
            let _ = f.in_own_copy(off.code_tlbc, |a| mem.u64(a));
            entries.push(FrameEntry {
                code: f.code,
                instr: f.instr,
                fingerprint: if f.shim { 0 } else { f.code ^ 0x55 },
                owner: f.owner,
                flags: f.flags,
            });
            frame = f.previous;
        }

        let pid = 44;
        let mut sym = Symbolizer::default();
        sym.add_process(
            pid,
            ProcessMeta {
                version,
                layout,
                ns_pid: None,
                interp_head_addr: 0,
                other_thread_names_readable: true,
            },
        );
        // Location table, first line 10: ONE_LINE0 over 4 code units (line 10), then
        // ONE_LINE1 over 4 (line 11).
        let locations = [0x80 | (10 << 3) | 3, 0, 1, 0x80 | (11 << 3) | 3, 0, 1];
        let mut records = vec![code_record(pid, code, "/srv/ft.py", "f", &locations)];
        records.insert(
            0,
            bytes_of(&CaptureBegin {
                kind: kind::CAPTURE_BEGIN,
                trigger: pytrace_common::trigger::SIGNAL,
                capture_id: 6,
                boot_ns: 0,
                pid,
                tid: pid,
                cpu: 0,
                _pad: 0,
                flags: 0,
                version_hex: parsed.version_hex,
                fsbase: 0x7f00_0000_0001,
                comm: *b"python3t\0\0\0\0\0\0\0\0",
            }),
        );
        let mut rec = bytes_of(&ThreadHeader {
            kind: kind::THREAD,
            flags: thread_flags::RECEIVER_ID,
            capture_id: 6,
            interp: 0x5555_0000,
            status: 0b1011,
            thread_id: 0x7f00_0000_0001,
            index: 0,
            nframes: entries.len() as u32,
            ..Default::default()
        });
        for e in &entries {
            rec.extend(bytes_of(e));
        }
        records.push(rec);
        records.push(end_record(6, 1));
        let dumps = assemble(&mut sym, &records);
        let dump = sym.symbolize(&dumps[0], 0);
        assert_eq!(dump.unsymbolized_frames, 0);
        let mut out = Vec::new();
        format::new(FormatKind::Text)
            .record(&dump, &mut out)
            .unwrap();
        (dump, String::from_utf8(out).unwrap())
    }

    #[test]
    fn free_threaded_3_14_and_3_15_frames_running_their_threads_bytecode_copy() {
        // Copy 2 (the thread's own), copy 0 (the code object's): both at code unit 5.
        for table in FT_TABLES {
            let (dump, text) = free_threaded_dump(table, &[2, 0]);
            assert_eq!(dump.unknown_lines, 0, "{text}");
            let body = text.split_once('\n').unwrap().1;
            assert_eq!(
                body,
                "Current thread 0x00007f0000000001 (most recent call first):\n  \
             File \"/srv/ft.py\", line 11 in f\n  File \"/srv/ft.py\", line 11 in f\n\n",
                "{text}"
            );
            // (No signal or thread-name record is replayed here: the header says so, and no line
            // is unknown.)
            assert!(
                text.lines().next().unwrap().contains(" 0 lines unknown"),
                "{text}"
            );
        }
    }

    #[test]
    fn free_threaded_unreadable_copy_is_an_unknown_line_never_a_wrong_one() {
        // Index 7 is beyond the array's 3 copies; copy 1 was never made. Either would give a
        // line from the wrong bytes: the line is unknown and the dump says so.
        for bad in [7, 1, u32::MAX] {
            for table in FT_TABLES {
                let (dump, text) = free_threaded_dump(table, &[bad, 2]);
                assert_eq!(dump.unknown_lines, 1, "{text}");
                let (header, body) = text.split_once('\n').unwrap();
                assert!(header.contains(" 1 lines unknown"), "{text}");
                assert_eq!(
                    body,
                    "Current thread 0x00007f0000000001 (most recent call first):\n  \
                 File \"/srv/ft.py\", line ??? in f\n  File \"/srv/ft.py\", line 11 in f\n\n",
                    "{text}"
                );
            }
        }
    }
}
