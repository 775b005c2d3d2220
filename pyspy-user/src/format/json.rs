//! The JSON format: one object per dump, one dump per line.

use std::io::{self, Write};

use pytrace_common::MAX_FRAMES;
use serde::Serialize;

use super::{timestamp, version_string, DumpFormat};
use crate::{
    model::{ChainEntry, Dump, PyText},
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
    thread_names_unknown: bool,
    threads: Vec<JsonThread>,
}

#[derive(Serialize)]
struct JsonThread {
    thread_id: u64,
    native_id: Option<u64>,
    current: bool,
    /// The thread's OS name (kernel `comm`), UTF-8 with invalid bytes replaced; null when no
    /// OS thread matched or the names could not be read (`thread_names_unknown`).
    os_name: Option<String>,
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
        let threads = d
            .threads
            .iter()
            .map(|t| JsonThread {
                thread_id: t.thread_id,
                native_id: t.native_id,
                current: t.current,
                os_name: t
                    .os_name
                    .as_deref()
                    .map(|n| String::from_utf8_lossy(n).into_owned()),
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
                        ChainEntry::Shim => None,
                    })
                    .take(MAX_FRAMES as usize)
                    .collect(),
            })
            .collect();
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
            thread_names_unknown: d.thread_names_unknown,
            threads,
        };
        serde_json::to_writer(&mut *out, &obj)?;
        out.write_all(b"\n")
    }
}
