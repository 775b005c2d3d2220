//! Raw captures → [`Capture`]s: code addresses become file, name and line, using the code
//! records the kernel copied for each process.

use std::collections::HashMap;

use pytrace_common::{
    begin_flags, end_flags, signal_action, signal_flags, thread_flags, trigger, FrameEntry,
    SignalInfo,
};

use crate::{
    decode::{CodeInfo, RawCapture},
    model::{Capture, ChainEntry, Frame, SignalAction, ThreadStack, TriggerInfo},
    python::{
        layout::{InstrKind, VersionLayout},
        linetable,
    },
};

/// What the symbolizer needs to know about one traced process.
#[derive(Clone, Debug)]
pub struct ProcessMeta {
    pub version: (u8, u8, u8),
    pub layout: VersionLayout,
    pub ns_pid: Option<u32>,
}

struct ProcState {
    meta: ProcessMeta,
    codes: HashMap<u64, CodeInfo>,
}

#[derive(Default)]
pub struct Symbolizer {
    procs: HashMap<u32, ProcState>,
    /// Code records for processes never registered.
    pub stray_codes: u64,
}

/// `si_code` values at or below this were sent by a process (`SI_USER`, `SI_QUEUE`,
/// `SI_TKILL`, …), so `si_pid` names the sender.
const SI_USER: i32 = 0;

impl Symbolizer {
    pub fn add_process(&mut self, pid: u32, meta: ProcessMeta) {
        self.procs.insert(
            pid,
            ProcState {
                meta,
                codes: HashMap::new(),
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

    pub fn remove_process(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    pub fn has_process(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    pub fn add_code(&mut self, code: CodeInfo) {
        match self.procs.get_mut(&code.pid) {
            Some(p) => {
                p.codes.insert(code.code, code);
            }
            None => self.stray_codes += 1,
        }
    }

    /// Symbolizes a capture. `boot_to_epoch_ns` converts the kernel's boot-time clock to wall
    /// time.
    pub fn symbolize(&self, raw: &RawCapture, boot_to_epoch_ns: i128) -> Capture {
        let b = &raw.begin;
        let proc = self.procs.get(&b.pid);
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
            ns_pid: proc.and_then(|p| p.meta.ns_pid),
            ns_tid: None,
            trigger,
            time_ns: (b.boot_ns as i128 + boot_to_epoch_ns).max(0) as u64,
            comm: match &raw.signal {
                // Taken in another thread than the process's main one: its comm.
                Some(s) if s.comm[0] != 0 => comm_string(&s.comm),
                _ => comm_string(&b.comm),
            },
            python_version: proc.map(|p| p.meta.version).unwrap_or_default(),
            gc_collecting: b.gc_collecting != 0,
            threads: Vec::with_capacity(raw.threads.len()),
            more_threads: raw.end.flags & end_flags::MORE_THREADS != 0,
            no_interpreter: raw.end.flags & end_flags::NO_INTERPRETER != 0,
            no_thread_state: raw.end.flags & end_flags::NO_THREAD_STATE != 0,
            gil_known: b.flags & begin_flags::GIL_KNOWN != 0,
            unsymbolized_frames: 0,
            lost_records: raw.end.lost_records.max(lost_signal),
        };
        let mut threads: Vec<_> = raw.threads.iter().collect();
        threads.sort_by_key(|(h, _)| h.index);
        for (hdr, frames) in threads {
            let chain = frames
                .iter()
                .map(|f| match proc {
                    _ if f.code == 0 => ChainEntry::Shim,
                    Some(p) => ChainEntry::Frame(frame(p, f, &mut dump.unsymbolized_frames)),
                    None => {
                        dump.unsymbolized_frames += 1;
                        ChainEntry::Frame(Frame::default())
                    }
                })
                .collect();
            dump.threads.push(ThreadStack {
                thread_id: hdr.thread_id,
                native_id: (hdr.native_id != 0).then_some(hdr.native_id),
                current: if b.trigger == trigger::ON_DEMAND {
                    // No thread of the target ran the dump: the one holding the GIL is the
                    // current one, when known (else none, as faulthandler prints without a
                    // current thread state).
                    dump.gil_known && hdr.flags & thread_flags::HOLDS_GIL != 0
                } else {
                    hdr.flags & thread_flags::CURRENT != 0
                },
                holds_gil: hdr.flags & thread_flags::HOLDS_GIL != 0,
                raced: hdr.flags & thread_flags::RACED != 0,
                task: None,
                chain,
                chain_continues: hdr.flags & thread_flags::CHAIN_CONTINUES != 0,
                torn: hdr.flags & (thread_flags::READ_FAILED | thread_flags::RACED) != 0,
            });
        }
        dump
    }
}

fn frame(proc: &ProcState, entry: &FrameEntry, unsymbolized: &mut u32) -> Frame {
    let Some(code) = proc.codes.get(&entry.code) else {
        *unsymbolized += 1;
        return Frame::default();
    };
    let addr = match proc.meta.layout.instr {
        InstrKind::LastiBytes => entry.instr as u32 as i32 as i64,
        InstrKind::LastiCodeUnits => (entry.instr as u32 as i32 as i64) * 2,
        InstrKind::InstrPtr { code_adaptive } => {
            entry.instr as i64 - (entry.code as i64 + code_adaptive as i64)
        }
    };
    Frame {
        filename: code.filename.clone(),
        name: code.name.clone(),
        line: linetable::addr2line(
            proc.meta.layout.line_table,
            &code.linetable,
            code.firstlineno,
            addr,
        ),
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
        rec.linetable_len = lnotab.len() as u64;
        rec.linetable_copied = lnotab.len() as u32;
        rec.linetable[..lnotab.len()].copy_from_slice(lnotab);
        bytes_of(&*rec)[..CODE_RECORD_FIXED + lnotab.len()].to_vec()
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
                    thread_flags::CURRENT
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
                    owner: 0,
                    flags: 0,
                }));
            }
            records.push(rec);
        }
        records.push(bytes_of(&CaptureEnd {
            kind: kind::CAPTURE_END,
            capture_id: 9,
            nthreads: 2,
            ..Default::default()
        }));

        let mut asm = Assembler::default();
        let mut dumps = Vec::new();
        for r in &records {
            match decode(r).unwrap() {
                Record::Begin(b) => asm.begin(b),
                Record::Signal(s) => asm.signal(s),
                Record::Thread(h, f) => asm.thread(h, f),
                Record::Code(c) => sym.add_code(c),
                Record::End(e) => dumps.extend(asm.end(e)),
                other => panic!("unexpected {other:?}"),
            }
        }
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
}
