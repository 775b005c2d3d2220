//! The JSON format: one object per dump, one dump per line. Strings are cut where the text
//! format cuts them ([`faulthandler::shown`]: 500 code points); a cut one is followed by
//! `"filename_truncated": true` or `"name_truncated": true` (absent when not cut). Besides
//! the control characters JSON escapes, C1 controls, DEL and bidirectional formatting
//! characters are written as `\uNNNN` too, so that no string from a target reaches a terminal
//! raw.

use std::io::{self, Write};

use pytrace_common::MAX_FRAMES;
use serde::Serialize;

use super::{faulthandler, timestamp, version_string, Output};
use crate::{
    escape,
    model::{Capture, ChainEntry, InterpreterState, PyText, ThreadStack, TriggerInfo},
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
    unknown_lines: u32,
    torn_threads: usize,
    /// `initialised`, `not_initialised` (libpython loaded, no interpreter yet) or
    /// `unreadable`.
    interpreter_state: &'static str,
    /// What else is missing or uncertain (the text header's `incomplete` note).
    incomplete: &'a [&'static str],
    /// Some thread's OS name could not be read.
    thread_names_unknown: bool,
    /// On-demand dumps: threads whose stack kept changing while read, and whether the GIL's
    /// holder (the current thread) is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    raced_threads: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gil_known: Option<bool>,
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
    /// The thread's OS name (kernel `comm`), UTF-8 with invalid bytes replaced; null when no
    /// OS thread matched or the names could not be read (`thread_names_unknown`).
    os_name: Option<String>,
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
    /// `--stuck`: seconds the stack has been read unchanged (at least).
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged_secs: Option<f64>,
    frames: Vec<JsonFrame>,
}

#[derive(Serialize)]
struct JsonFrame {
    filename: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    filename_truncated: bool,
    name: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    name_truncated: bool,
    line: Option<i32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The shown part of a string (lone surrogates become U+FFFD) and whether it was cut.
fn text(t: &Option<PyText>) -> (Option<String>, bool) {
    match t {
        Some(t) => {
            let (codepoints, cut) = faulthandler::shown(t);
            let s = codepoints
                .iter()
                .map(|&c| char::from_u32(c).unwrap_or('\u{fffd}'))
                .collect();
            (Some(s), cut)
        }
        None => (None, false),
    }
}

fn frame(f: &crate::model::Frame) -> JsonFrame {
    let (filename, filename_truncated) = text(&f.filename);
    let (name, name_truncated) = text(&f.name);
    JsonFrame {
        filename,
        filename_truncated,
        name,
        name_truncated,
        line: f.line,
    }
}

fn thread(t: &ThreadStack, gil_known: bool) -> JsonThread {
    JsonThread {
        holds_gil: gil_known.then_some(t.holds_gil),
        tid: t.task.as_ref().map(|k| k.tid),
        name: t.task.as_ref().map(|k| k.name.clone()),
        on_cpu: t.task.as_ref().map(|k| k.on_cpu),
        raced: t.raced,
        unchanged_secs: t.unchanged_ms.map(|ms| ms as f64 / 1000.0),
        interpreter: t.interp,
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
                ChainEntry::Frame(f) => Some(frame(f)),
                ChainEntry::Shim { .. } => None,
            })
            .take(MAX_FRAMES as usize)
            .collect(),
    }
}

/// serde_json's compact output, with what a terminal would act on escaped as `\uNNNN`.
struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if escape::is_terminal_control(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
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
            unknown_lines: d.unknown_lines,
            torn_threads: d.threads.iter().filter(|t| t.torn).count(),
            interpreter_state: match d.interpreter_state {
                InterpreterState::Initialised => "initialised",
                InterpreterState::NotInitialised => "not_initialised",
                InterpreterState::Unreadable => "unreadable",
            },
            incomplete: &d.incomplete,
            thread_names_unknown: d.thread_names_unknown,
            raced_threads: on_demand.then(|| d.threads.iter().filter(|t| t.raced).count()),
            gil_known: on_demand.then_some(d.gil_known),
            threads: d.threads.iter().map(|t| thread(t, d.gil_known)).collect(),
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
            other_threads: d
                .other_threads
                .iter()
                .map(|t| thread(t, d.gil_known))
                .collect(),
        };
        let mut ser = serde_json::Serializer::with_formatter(&mut *out, SafeFormatter);
        obj.serialize(&mut ser)?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Frame;

    #[test]
    fn terminal_controls_are_escaped_and_the_json_stays_valid() {
        let dump = Capture {
            comm: "a\u{9b}2J\u{202e}\x1b\u{e9}".into(),
            ..Capture::default()
        };
        let mut out = Vec::new();
        Json.record(&dump, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"comm\":\"a\\u009b2J\\u202e\\u001b\u{e9}\""),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["comm"], "a\u{9b}2J\u{202e}\x1b\u{e9}");
    }

    #[test]
    fn cut_where_the_text_is_cut_and_marked() {
        let long = PyText {
            codepoints: vec![u32::from('n'); 501],
            length: 600,
        };
        let exact = PyText::from_text(&"e".repeat(500));
        let f = frame(&Frame {
            filename: Some(exact),
            name: Some(long),
            line: Some(3),
        });
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["name"].as_str().unwrap(), "n".repeat(500));
        assert_eq!(v["name_truncated"], true);
        assert_eq!(v["filename"].as_str().unwrap(), "e".repeat(500));
        assert!(v.get("filename_truncated").is_none());
        let none = serde_json::to_value(frame(&Frame::default())).unwrap();
        assert!(none["name"].is_null() && none.get("name_truncated").is_none());
    }
}
