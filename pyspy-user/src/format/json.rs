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
    /// `"on_demand"` for `pytrace dump` without a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<&'static str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    raced_threads: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_interpreter: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gil_known: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<bool>,
    threads: Vec<JsonThread>,
}

#[derive(Serialize)]
struct JsonThread {
    thread_id: u64,
    native_id: Option<u64>,
    current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    holds_gil: Option<bool>,
    /// On-demand dumps: the thread's kernel task.
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_cpu: Option<bool>,
    truncated: bool,
    torn: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raced: bool,
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
            TriggerInfo::OnDemand => (None, None, None),
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
            TriggerInfo::Timer { .. } | TriggerInfo::OnDemand => (None, None, None, None, None),
        };
        let on_demand = d.trigger == TriggerInfo::OnDemand;
        let threads = d
            .threads
            .iter()
            .map(|t| JsonThread {
                thread_id: t.thread_id,
                native_id: t.native_id,
                current: t.current,
                holds_gil: d.gil_known.then_some(t.holds_gil),
                tid: t.task.as_ref().map(|k| k.tid),
                name: t.task.as_ref().map(|k| k.name.clone()),
                on_cpu: t.task.as_ref().map(|k| k.on_cpu),
                truncated: t.chain_continues,
                torn: t.torn,
                raced: t.raced,
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
            trigger: on_demand.then_some("on_demand"),
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
            raced_threads: on_demand.then(|| d.threads.iter().filter(|t| t.raced).count()),
            no_interpreter: on_demand.then_some(d.no_interpreter),
            gil_known: on_demand.then_some(d.gil_known),
            incomplete: on_demand.then(|| {
                d.lost_records > 0
                    || d.unsymbolized_frames > 0
                    || d.no_interpreter
                    || d.threads.iter().any(|t| t.torn)
            }),
            threads,
        };
        serde_json::to_writer(&mut *out, &obj)?;
        out.write_all(b"\n")
    }
}
