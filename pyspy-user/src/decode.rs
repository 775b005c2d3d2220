//! Ring-buffer bytes → typed records, and records → whole captures.
//!
//! The bytes come from the kernel, but are checked as if untrusted: every length is verified
//! and decoding returns an error, never panics.

use std::{collections::BTreeMap, mem::size_of};

use pytrace_common::{
    code_flags, kind, CaptureBegin, CaptureEnd, CodeChunk, CodeRecord, FrameEntry, HeldSignal,
    ProcessEvent, PyStr, SampleHeader, SignalInfo, Skipped, TaskName, TaskNamesHeader,
    ThreadHeader, CODE_CHUNK_FIXED, CODE_RECORD_FIXED, LINETABLE_LIMIT, LINETABLE_MAX, MAX_TASKS,
    STR_MAX_BYTES,
};

use crate::model::PyText;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("thread record claims {claimed} frames but holds {held}")]
    FrameCount { claimed: u32, held: usize },
    #[error("code record claims {0} line-table bytes")]
    LineTableLength(u32),
    #[error("task-names record claims {claimed} tasks but holds {held}")]
    TaskCount { claimed: u32, held: usize },
    #[error("sample record claims {0} threads")]
    SampleThreads(u32),
    #[error("sample record's parts belong to different captures")]
    SampleIds,
}

/// The next piece of a code record's line table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChunkInfo {
    pub pid: u32,
    pub code: u64,
    pub fingerprint: u64,
    /// Where `data` starts in the line table.
    pub offset: u32,
    pub data: Vec<u8>,
}

/// A code object as the kernel copied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    pub pid: u32,
    pub code: u64,
    /// The fingerprint the kernel read; frames carry the same (see `pytrace_common::CodeKey`).
    pub fingerprint: u64,
    /// The process's registration when the record was sent.
    pub generation: u32,
    pub firstlineno: i32,
    pub filename: Option<PyText>,
    pub name: Option<PyText>,
    /// The line table as received so far (the record's part, then continuation pieces).
    pub linetable: Vec<u8>,
    /// Size of the whole line table in the target (`linetable` may hold less); `None` when
    /// the table could not be read.
    pub linetable_len: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum Record {
    Begin(CaptureBegin),
    /// What the signal trigger adds to its capture.
    Signal(SignalInfo),
    Thread(ThreadHeader, Vec<FrameEntry>),
    /// The target's OS threads and their names when the dump began.
    Tasks(TaskList),
    Code(CodeInfo),
    CodeChunk(CodeChunkInfo),
    End(CaptureEnd),
    /// A whole timer sample (begin, at most one thread, end) from one record.
    Sample(Box<RawCapture>),
    Skipped(Skipped),
    /// `--hold` refused a watched signal to a selected process.
    Held(HeldSignal),
    /// A process mapped a python/libpython executable file.
    Mapped(u32),
    /// A traced process exited.
    Exited(u32),
    /// A traced process forked: (child, parent).
    Forked(u32, u32),
}

/// Reads a plain-data `T` from the start of `bytes`.
fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; `T` is one of the `#[repr(C)]` integer-only record types, valid
    // for any bit pattern; `read_unaligned` copes with the buffer's alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    match read::<u32>(bytes)? {
        kind::CAPTURE_BEGIN => Ok(Record::Begin(read(bytes)?)),
        kind::SIGNAL_INFO => Ok(Record::Signal(read(bytes)?)),
        kind::CAPTURE_END => Ok(Record::End(read(bytes)?)),
        kind::SKIPPED => Ok(Record::Skipped(read(bytes)?)),
        kind::HELD => Ok(Record::Held(read(bytes)?)),
        kind::THREAD => decode_thread(bytes),
        kind::CODE => decode_code(bytes),
        kind::CODE_CHUNK => decode_chunk(bytes),
        kind::TASKS => decode_tasks(bytes),
        kind::SAMPLE => decode_sample(bytes),
        kind::MAPPED => Ok(Record::Mapped(read::<ProcessEvent>(bytes)?.pid)),
        kind::EXITED => Ok(Record::Exited(read::<ProcessEvent>(bytes)?.pid)),
        kind::FORKED => {
            let e: ProcessEvent = read(bytes)?;
            Ok(Record::Forked(e.pid, e.parent))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_thread(bytes: &[u8]) -> Result<Record, DecodeError> {
    let hdr: ThreadHeader = read(bytes)?;
    let body = &bytes[size_of::<ThreadHeader>()..];
    let held = body.len() / size_of::<FrameEntry>();
    if hdr.nframes as usize > held {
        return Err(DecodeError::FrameCount {
            claimed: hdr.nframes,
            held,
        });
    }
    let frames = body
        .chunks_exact(size_of::<FrameEntry>())
        .take(hdr.nframes as usize)
        .map(read::<FrameEntry>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Record::Thread(hdr, frames))
}

/// A sample record: the begin and end records it holds, then one thread record (the same
/// bytes a thread record has) when its end says one thread was sent.
fn decode_sample(bytes: &[u8]) -> Result<Record, DecodeError> {
    let head: SampleHeader = read(bytes)?;
    let (begin, end) = (head.begin, head.end);
    if begin.capture_id != end.capture_id {
        return Err(DecodeError::SampleIds);
    }
    let threads = match end.nthreads {
        0 => Vec::new(),
        1 => match decode_thread(&bytes[size_of::<SampleHeader>()..])? {
            Record::Thread(hdr, frames) if hdr.capture_id == end.capture_id => vec![(hdr, frames)],
            _ => return Err(DecodeError::SampleIds),
        },
        n => return Err(DecodeError::SampleThreads(n)),
    };
    Ok(Record::Sample(Box::new(RawCapture {
        begin,
        signal: None,
        threads,
        tasks: None,
        end,
    })))
}

/// The OS threads of a process as one dump's task-names record listed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskList {
    pub dump_id: u64,
    /// `task_flags`: the list may be partial.
    pub flags: u32,
    pub tasks: Vec<TaskName>,
}

fn decode_tasks(bytes: &[u8]) -> Result<Record, DecodeError> {
    let hdr: TaskNamesHeader = read(bytes)?;
    let body = &bytes[size_of::<TaskNamesHeader>()..];
    let held = body.len() / size_of::<TaskName>();
    if hdr.count as usize > held.min(MAX_TASKS) {
        return Err(DecodeError::TaskCount {
            claimed: hdr.count,
            held,
        });
    }
    let tasks = body
        .chunks_exact(size_of::<TaskName>())
        .take(hdr.count as usize)
        .map(read::<TaskName>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Record::Tasks(TaskList {
        dump_id: hdr.dump_id,
        flags: hdr.flags,
        tasks,
    }))
}

fn decode_code(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < CODE_RECORD_FIXED {
        return Err(DecodeError::Short(bytes.len()));
    }
    // The fixed part is the record minus its line table; read it through a zeroed full-size
    // copy so the typed fields line up.
    let mut fixed = vec![0u8; size_of::<CodeRecord>()];
    fixed[..CODE_RECORD_FIXED].copy_from_slice(&bytes[..CODE_RECORD_FIXED]);
    let rec: Box<CodeRecord> = Box::new(read(&fixed)?);
    let copied = rec.linetable_copied as usize;
    if copied > LINETABLE_MAX || bytes.len() < CODE_RECORD_FIXED + copied {
        return Err(DecodeError::LineTableLength(rec.linetable_copied));
    }
    // Room for the whole table (as far as the kernel copies it): its continuation pieces are
    // appended without reallocating.
    let whole = (rec.linetable_len as usize).clamp(copied, LINETABLE_LIMIT);
    let mut linetable = Vec::with_capacity(whole);
    linetable.extend_from_slice(&bytes[CODE_RECORD_FIXED..CODE_RECORD_FIXED + copied]);
    Ok(Record::Code(CodeInfo {
        pid: rec.pid,
        code: rec.code,
        fingerprint: rec.fingerprint,
        generation: rec.generation,
        firstlineno: rec.firstlineno,
        filename: (rec.flags & code_flags::FILENAME_UNREADABLE == 0)
            .then(|| pystr(&rec.filename))
            .flatten(),
        name: (rec.flags & code_flags::NAME_UNREADABLE == 0)
            .then(|| pystr(&rec.name))
            .flatten(),
        linetable,
        linetable_len: (rec.flags & code_flags::LINETABLE_UNREADABLE == 0)
            .then_some(rec.linetable_len),
    }))
}

fn decode_chunk(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < CODE_CHUNK_FIXED {
        return Err(DecodeError::Short(bytes.len()));
    }
    let mut fixed = vec![0u8; size_of::<CodeChunk>()];
    fixed[..CODE_CHUNK_FIXED].copy_from_slice(&bytes[..CODE_CHUNK_FIXED]);
    let rec: Box<CodeChunk> = Box::new(read(&fixed)?);
    let len = rec.len as usize;
    if len > LINETABLE_MAX || bytes.len() < CODE_CHUNK_FIXED + len {
        return Err(DecodeError::LineTableLength(rec.len));
    }
    Ok(Record::CodeChunk(CodeChunkInfo {
        pid: rec.pid,
        code: rec.code,
        fingerprint: rec.fingerprint,
        offset: rec.offset,
        data: bytes[CODE_CHUNK_FIXED..CODE_CHUNK_FIXED + len].to_vec(),
    }))
}

/// Code points of a copied `str` (little-endian units of 1, 2 or 4 bytes).
fn pystr(s: &PyStr) -> Option<PyText> {
    let size = s.char_size as usize;
    if !matches!(size, 1 | 2 | 4) {
        return None;
    }
    let copied = (s.copied as usize).min(STR_MAX_BYTES);
    let codepoints = s.data[..copied]
        .chunks_exact(size)
        .map(|c| match size {
            1 => c[0] as u32,
            2 => u16::from_le_bytes([c[0], c[1]]) as u32,
            _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        })
        .collect();
    Some(PyText {
        codepoints,
        length: s.length,
    })
}

/// A capture whose records have all arrived, still in kernel terms.
#[derive(Clone, Debug)]
pub struct RawCapture {
    pub begin: CaptureBegin,
    /// Present when a signal triggered the capture.
    pub signal: Option<SignalInfo>,
    pub threads: Vec<ThreadRecordData>,
    /// The task-names record; `None` if it never arrived.
    pub tasks: Option<TaskList>,
    pub end: CaptureEnd,
}

/// A capture still waiting for its end record.
struct OpenCapture {
    begin: CaptureBegin,
    signal: Option<SignalInfo>,
    threads: Vec<ThreadRecordData>,
    tasks: Option<TaskList>,
}

/// One thread record: its header and its chain entries.
pub type ThreadRecordData = (ThreadHeader, Vec<FrameEntry>);

/// Groups thread records under their capture until its end record arrives.
#[derive(Default)]
pub struct Assembler {
    open: BTreeMap<u64, OpenCapture>,
    /// Captures abandoned because their end record never came (lost in a full ring buffer).
    pub torn: u64,
    /// Trigger, thread or end records that matched no open capture.
    pub orphans: u64,
}

/// Open captures kept waiting for their end record; older ones are counted as torn.
const MAX_OPEN_CAPTURES: usize = 256;

impl Assembler {
    pub fn begin(&mut self, begin: CaptureBegin) {
        if self.open.len() >= MAX_OPEN_CAPTURES {
            if let Some((&oldest, _)) = self.open.iter().next() {
                self.open.remove(&oldest);
                self.torn += 1;
            }
        }
        self.open.insert(
            begin.capture_id,
            OpenCapture {
                begin,
                signal: None,
                threads: Vec::new(),
                tasks: None,
            },
        );
    }

    pub fn signal(&mut self, info: SignalInfo) {
        match self.open.get_mut(&info.capture_id) {
            Some(c) => c.signal = Some(info),
            None => self.orphans += 1,
        }
    }

    pub fn tasks(&mut self, list: TaskList) {
        match self.open.get_mut(&list.dump_id) {
            Some(c) => c.tasks = Some(list),
            None => self.orphans += 1,
        }
    }

    pub fn thread(&mut self, hdr: ThreadHeader, frames: Vec<FrameEntry>) {
        match self.open.get_mut(&hdr.capture_id) {
            Some(c) => c.threads.push((hdr, frames)),
            None => self.orphans += 1,
        }
    }

    pub fn end(&mut self, end: CaptureEnd) -> Option<RawCapture> {
        match self.open.remove(&end.capture_id) {
            Some(c) => Some(RawCapture {
                begin: c.begin,
                signal: c.signal,
                threads: c.threads,
                tasks: c.tasks,
                end,
            }),
            None => {
                self.orphans += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain-data record.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    #[test]
    fn thread_record_round_trip_and_bad_counts() {
        let hdr = ThreadHeader {
            kind: kind::THREAD,
            capture_id: 7,
            thread_id: 0x7f00,
            nframes: 2,
            ..Default::default()
        };
        let mut bytes = bytes_of(&hdr);
        for i in 0..2u64 {
            bytes.extend(bytes_of(&FrameEntry {
                code: 0x1000 + i,
                instr: i,
                fingerprint: 9,
                owner: 0,
                flags: 0,
            }));
        }
        match decode(&bytes).unwrap() {
            Record::Thread(h, f) => {
                assert_eq!(h.thread_id, 0x7f00);
                assert_eq!(f.len(), 2);
                assert_eq!(f[1].code, 0x1001);
            }
            other => panic!("{other:?}"),
        }
        let short = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode(short),
            Err(DecodeError::FrameCount {
                claimed: 2,
                held: 1
            })
        ));
    }

    #[test]
    fn code_record_strings_and_linetable() {
        let mut rec: Box<CodeRecord> = Box::new(unsafe { std::mem::zeroed() });
        rec.kind = kind::CODE;
        rec.pid = 42;
        rec.code = 0xdead;
        rec.firstlineno = 10;
        rec.filename.char_size = 1;
        rec.filename.length = 4;
        rec.filename.copied = 4;
        rec.filename.data[..4].copy_from_slice(b"a.py");
        rec.name.char_size = 2;
        rec.name.length = 1;
        rec.name.copied = 2;
        rec.name.data[..2].copy_from_slice(&0x65e5u16.to_le_bytes());
        rec.linetable_copied = 3;
        rec.linetable_len = 3;
        rec.linetable[..3].copy_from_slice(&[1, 2, 3]);
        let all = bytes_of(&*rec);
        let bytes = &all[..CODE_RECORD_FIXED + 3];
        match decode(bytes).unwrap() {
            Record::Code(c) => {
                assert_eq!(c.filename.unwrap().to_string_lossy(), "a.py");
                assert_eq!(c.name.unwrap().codepoints, vec![0x65e5]);
                assert_eq!(c.linetable, vec![1, 2, 3]);
                assert_eq!(c.linetable_len, Some(3));
                assert_eq!(c.firstlineno, 10);
            }
            other => panic!("{other:?}"),
        }
        // A record cut inside its line table is rejected, not misread.
        assert!(decode(&all[..CODE_RECORD_FIXED + 2]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u64;
        for len in 0..2000 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push((seed >> 33) as u8);
            }
            if len >= 4 {
                buf[..4].copy_from_slice(&((len as u32 % kind::SAMPLE) + 1).to_le_bytes());
            }
            let _ = decode(&buf);
        }
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Short(0));
    }

    /// A sample record as the kernel cuts it: head, then the thread and `nframes` entries
    /// when `end.nthreads` is 1.
    fn sample_bytes(id: u64, nthreads: u32, nframes: u32) -> Vec<u8> {
        let head = SampleHeader {
            kind: kind::SAMPLE,
            _pad: 0,
            begin: CaptureBegin {
                kind: kind::CAPTURE_BEGIN,
                trigger: pytrace_common::trigger::TIMER,
                capture_id: id,
                pid: 10,
                tid: 11,
                ..Default::default()
            },
            end: CaptureEnd {
                kind: kind::CAPTURE_END,
                capture_id: id,
                nthreads,
                ..Default::default()
            },
        };
        let mut bytes = bytes_of(&head);
        if nthreads == 1 {
            bytes.extend(bytes_of(&ThreadHeader {
                kind: kind::THREAD,
                capture_id: id,
                thread_id: 0x7f00,
                nframes,
                ..Default::default()
            }));
            for i in 0..nframes as u64 {
                bytes.extend(bytes_of(&FrameEntry {
                    code: 0x1000 + i,
                    ..Default::default()
                }));
            }
        }
        bytes
    }

    #[test]
    fn sample_record_is_a_whole_capture() {
        let bytes = sample_bytes(7, 1, 3);
        let Record::Sample(raw) = decode(&bytes).unwrap() else {
            panic!("not a sample");
        };
        assert_eq!(
            (raw.begin.capture_id, raw.begin.pid, raw.begin.tid),
            (7, 10, 11)
        );
        assert_eq!(raw.end.capture_id, 7);
        assert!(raw.signal.is_none() && raw.tasks.is_none());
        assert_eq!(raw.threads.len(), 1);
        assert_eq!(raw.threads[0].0.thread_id, 0x7f00);
        let codes: Vec<u64> = raw.threads[0].1.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec![0x1000, 0x1001, 0x1002]);
        // No thread found: the head alone.
        let Record::Sample(raw) = decode(&sample_bytes(8, 0, 0)).unwrap() else {
            panic!("not a sample");
        };
        assert!(raw.threads.is_empty());
        assert_eq!(raw.end.capture_id, 8);
    }

    #[test]
    fn sample_record_cut_or_inconsistent_is_rejected() {
        let bytes = sample_bytes(7, 1, 3);
        // Every cut is an error, never a panic nor a shorter stack.
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        assert_eq!(
            decode(&sample_bytes(7, 2, 0)).unwrap_err(),
            DecodeError::SampleThreads(2)
        );
        // The thread of another capture, or a begin and an end that disagree.
        let mut other = sample_bytes(7, 1, 1);
        let at = size_of::<SampleHeader>() + 8;
        other[at..at + 8].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(decode(&other).unwrap_err(), DecodeError::SampleIds);
        let mut split = sample_bytes(7, 0, 0);
        let at = std::mem::offset_of!(SampleHeader, end) + 8;
        split[at..at + 8].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(decode(&split).unwrap_err(), DecodeError::SampleIds);
    }

    #[test]
    fn assembler_groups_and_counts_torn() {
        let mut a = Assembler::default();
        let begin = CaptureBegin {
            kind: kind::CAPTURE_BEGIN,
            trigger: pytrace_common::trigger::SIGNAL,
            capture_id: 5,
            pid: 1,
            tid: 1,
            ..Default::default()
        };
        a.begin(begin);
        a.thread(
            ThreadHeader {
                capture_id: 5,
                ..Default::default()
            },
            vec![],
        );
        a.thread(
            ThreadHeader {
                capture_id: 6,
                ..Default::default()
            },
            vec![],
        );
        let done = a
            .end(CaptureEnd {
                capture_id: 5,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(done.threads.len(), 1);
        assert_eq!(a.orphans, 1);
        for id in 0..(MAX_OPEN_CAPTURES as u64 + 3) {
            a.begin(CaptureBegin {
                capture_id: 100 + id,
                ..begin
            });
        }
        assert_eq!(a.torn, 3);
    }
}
