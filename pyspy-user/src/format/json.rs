//! The JSON format: one object per dump, one dump per line.

use std::io::{self, Write};

use pytrace_common::MAX_FRAMES;
use serde::Serialize;

use super::{timestamp, version_string, Output};
use crate::{
    model::{Capture, ChainEntry, PyText, TriggerInfo},
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
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_pid: Option<u32>,
    /// What the signal does: `handler`, `kill`, `core`, `stop`, `ignore`, `held`, `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    /// The kernel raised the signal (a fault, a timer, the OOM killer).
    #[serde(skip_serializing_if = "Option::is_none")]
    from_kernel: Option<bool>,
    /// The OOM killer chose the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    oom: Option<bool>,
    /// Address of the fault (`si_addr`), hexadecimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    fault_addr: Option<String>,
    /// The signal the threads saw at delivery, when the kernel turned the signal into
    /// another (9: a group SIGKILL).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_signal: Option<u32>,
    time: String,
    time_ns: u64,
    python_version: String,
    gc_collecting: bool,
    more_threads: bool,
    lost_records: u32,
    unsymbolized_frames: u32,
    torn_threads: usize,
    threads: Vec<JsonThread>,
}

#[derive(Serialize)]
struct JsonThread {
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

impl Output for Json {
    fn record(&mut self, d: &Capture, out: &mut dyn Write) -> io::Result<()> {
        let (signal, sender_pid, cpu) = match d.trigger {
            TriggerInfo::Signal {
                signal, sender_pid, ..
            } => (Some(signal), sender_pid, None),
            TriggerInfo::Timer { cpu } => (None, None, Some(cpu)),
        };
        let (action, from_kernel, oom, fault_addr, delivered_signal) = match d.trigger {
            TriggerInfo::Signal {
                action,
                from_kernel,
                fault_addr,
                oom,
                delivered_as,
                ..
            } => (
                Some(action.name()),
                Some(from_kernel),
                Some(oom),
                fault_addr.map(|a| format!("{a:#x}")),
                delivered_as,
            ),
            TriggerInfo::Timer { .. } => (None, None, None, None, None),
        };
        let threads = d
            .threads
            .iter()
            .map(|t| JsonThread {
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
            signal,
            signal_name: signal.map(signals::name),
            cpu,
            sender_pid,
            action,
            from_kernel,
            oom,
            fault_addr,
            delivered_signal,
            time: timestamp(d.time_ns),
            time_ns: d.time_ns,
            python_version: version_string(d.python_version),
            gc_collecting: d.gc_collecting,
            more_threads: d.more_threads,
            lost_records: d.lost_records,
            unsymbolized_frames: d.unsymbolized_frames,
            torn_threads: d.threads.iter().filter(|t| t.torn).count(),
            threads,
        };
        serde_json::to_writer(&mut *out, &obj)?;
        out.write_all(b"\n")
    }
}
