//! The JSON format: one object per dump, one dump per line.

use std::io::{self, Write};

use pytrace_common::MAX_FRAMES;
use serde::Serialize;

use super::{timestamp, version_string, DumpFormat};
use crate::{
    model::{ChainEntry, Dump, InterpreterState, PyText, ThreadStack},
    signals,
};

pub struct Json;

#[derive(Serialize)]
struct JsonDump<'a> {
    pid: u32,
    tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_tid: Option<u32>,
    comm: &'a str,
    signal: u32,
    signal_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_pid: Option<u32>,
    time: String,
    time_ns: u64,
    python_version: String,
    gc_collecting: bool,
    more_threads: bool,
    lost_records: u32,
    unsymbolized_frames: u32,
    torn_threads: usize,
    /// `initialised`, `not_initialised` (libpython loaded, no interpreter yet) or
    /// `unreadable`.
    interpreter_state: &'static str,
    /// What else is missing or uncertain (the text header's `incomplete` note).
    incomplete: &'a [&'static str],
    /// The threads faulthandler prints: those of the interpreter it dumps.
    threads: Vec<JsonThread>,
    /// Every interpreter walked, in list order (0 = newest; the main one is the oldest).
    interpreters: Vec<JsonInterpreter>,
    more_interpreters: bool,
    /// Threads of the other interpreters, which faulthandler does not print.
    other_threads: Vec<JsonThread>,
}

#[derive(Serialize)]
struct JsonInterpreter {
    index: u32,
    address: u64,
    main: bool,
    dumped: bool,
    more_threads: bool,
    unreadable: bool,
}

#[derive(Serialize)]
struct JsonThread {
    /// Index of its interpreter in `interpreters`.
    interpreter: u32,
    thread_id: u64,
    native_id: Option<u64>,
    current: bool,
    truncated: bool,
    torn: bool,
    frames: Vec<JsonFrame>,
}

#[derive(Serialize)]
struct JsonFrame {
    filename: Option<String>,
    name: Option<String>,
    line: Option<i32>,
}

fn text(t: &Option<PyText>) -> Option<String> {
    t.as_ref().map(PyText::to_string_lossy)
}

impl DumpFormat for Json {
    fn write_dump(&mut self, d: &Dump, out: &mut dyn Write) -> io::Result<()> {
        let obj = JsonDump {
            pid: d.pid,
            tid: d.tid,
            ns_pid: d.ns_pid,
            ns_tid: d.ns_tid,
            comm: &d.comm,
            signal: d.signal,
            signal_name: signals::name(d.signal),
            sender_pid: d.sender_pid,
            time: timestamp(d.time_ns),
            time_ns: d.time_ns,
            python_version: version_string(d.python_version),
            gc_collecting: d.gc_collecting,
            more_threads: d.more_threads,
            lost_records: d.lost_records,
            unsymbolized_frames: d.unsymbolized_frames,
            torn_threads: d.threads.iter().filter(|t| t.torn).count(),
            interpreter_state: match d.interpreter_state {
                InterpreterState::Initialised => "initialised",
                InterpreterState::NotInitialised => "not_initialised",
                InterpreterState::Unreadable => "unreadable",
            },
            incomplete: &d.incomplete,
            threads: d.threads.iter().map(thread).collect(),
            interpreters: d
                .interpreters
                .iter()
                .map(|i| JsonInterpreter {
                    index: i.index,
                    address: i.address,
                    main: i.main,
                    dumped: i.dumped,
                    more_threads: i.more_threads,
                    unreadable: i.unreadable,
                })
                .collect(),
            more_interpreters: d.more_interpreters,
            other_threads: d.other_threads.iter().map(thread).collect(),
        };
        serde_json::to_writer(&mut *out, &obj)?;
        out.write_all(b"\n")
    }
}

fn thread(t: &ThreadStack) -> JsonThread {
    JsonThread {
        interpreter: t.interp,
        thread_id: t.thread_id,
        native_id: t.native_id,
        current: t.current,
        truncated: t.chain_continues,
        torn: t.torn,
        frames: t
            .chain
            .iter()
            .filter_map(|e| match e {
                ChainEntry::Frame(f) => Some(JsonFrame {
                    filename: text(&f.filename),
                    name: text(&f.name),
                    line: f.line,
                }),
                ChainEntry::Shim { .. } => None,
            })
            .take(MAX_FRAMES as usize)
            .collect(),
    }
}
