//! Raw dumps → [`Dump`]s: code addresses become file, name and line, using the code records
//! the kernel copied for each process.

use std::collections::HashMap;

use pytrace_common::{thread_flags, FrameEntry};

use crate::{
    decode::{CodeInfo, RawDump},
    model::{ChainEntry, Dump, Frame, ThreadStack},
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

    /// Symbolizes a dump. `boot_to_epoch_ns` converts the kernel's boot-time clock to wall time.
    pub fn symbolize(&self, raw: &RawDump, boot_to_epoch_ns: i128) -> Dump {
        let b = &raw.begin;
        let proc = self.procs.get(&b.pid);
        let mut dump = Dump {
            pid: b.pid,
            tid: b.tid,
            ns_pid: proc.and_then(|p| p.meta.ns_pid),
            ns_tid: None,
            signal: b.signal,
            sender_pid: (b.si_code <= SI_USER && b.sender_pid != 0).then_some(b.sender_pid),
            time_ns: (b.boot_ns as i128 + boot_to_epoch_ns).max(0) as u64,
            comm: comm_string(&b.comm),
            python_version: proc.map(|p| p.meta.version).unwrap_or_default(),
            gc_collecting: b.gc_collecting != 0,
            threads: Vec::with_capacity(raw.threads.len()),
            more_threads: raw.end.flags & pytrace_common::end_flags::MORE_THREADS != 0,
            unsymbolized_frames: 0,
            lost_records: raw.end.lost_records,
        };
        let mut threads = raw.threads.clone();
        threads.sort_by_key(|(h, _)| h.index);
        for (hdr, frames) in &threads {
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
                current: hdr.flags & thread_flags::CURRENT != 0,
                chain,
                chain_continues: hdr.flags & thread_flags::CHAIN_CONTINUES != 0,
                torn: hdr.flags & thread_flags::READ_FAILED != 0,
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
