//! The text format: a header line, then exactly what faulthandler would print, then an empty
//! line. Target-originated text in the header is escaped ([`escape::field`]); faulthandler's
//! text is kept byte for byte, except on a terminal, where control characters in it (3.14
//! writes thread names raw) are shown escaped ([`escape::for_terminal`]).

use std::io::{self, Write};

use super::{faulthandler, timestamp, version_string, Output};
use crate::{
    escape,
    model::{Capture, InterpreterState, TriggerInfo},
    signals,
};

/// Header suffix of a process whose libpython is loaded but holds no interpreter (before
/// `Py_Initialize`, or after `Py_Finalize`): faulthandler could print nothing there.
pub const NOT_INITIALISED: &str = " (no Python interpreter initialised)";
/// Header suffix when the interpreter list could not be read at all.
pub const UNREADABLE: &str = " (incomplete: interpreter list unreadable)";

pub struct Text {
    /// The output is a terminal.
    pub terminal: bool,
}

impl Output for Text {
    fn record(&mut self, dump: &Capture, out: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let (major, minor, micro) = dump.python_version;
        let style = faulthandler::style_for_release(major, minor, micro);
        header(
            &mut buf,
            dump,
            style.thread_name && dump.thread_names_unknown,
        );
        faulthandler::write_threads(&mut buf, dump, &style);
        buf.push(b'\n');
        if self.terminal {
            out.write_all(&escape::for_terminal(&buf))
        } else {
            out.write_all(&buf)
        }
    }
}

/// `Process 1234 (python3) Python 3.11.7, SIGILL from PID 99, 2026-11-25T10:00:00.000000Z`;
/// in a PID namespace, `Process 1234 [1 in its PID namespace] …, SIGILL to thread 1240 [7] …`;
/// for a timer sample, `…, CPU clock on CPU 3 in thread 1240, …`. `names_unknown`: the
/// version prints thread names and some could not be read.
fn header(buf: &mut Vec<u8>, d: &Capture, names_unknown: bool) {
    let _ = write!(buf, "Process {} ", d.pid);
    if let Some(ns) = d.ns_pid {
        let _ = write!(buf, "[{ns} in its PID namespace] ");
    }
    let _ = write!(
        buf,
        "({}) Python {}, ",
        escape::field(&d.comm),
        version_string(d.python_version)
    );
    let (preposition, sender) = match d.trigger {
        TriggerInfo::Signal { signal, sender_pid } => {
            let _ = write!(buf, "{}", signals::name(signal));
            ("to", sender_pid)
        }
        TriggerInfo::Timer { cpu } => {
            let _ = write!(buf, "CPU clock on CPU {cpu}");
            ("in", None)
        }
    };
    if d.tid != d.pid {
        let _ = write!(buf, " {preposition} thread {}", d.tid);
        if let Some(ns) = d.ns_tid {
            let _ = write!(buf, " [{ns}]");
        }
    }
    if let Some(sender) = sender {
        let _ = write!(buf, " from PID {sender}");
    }
    let _ = write!(buf, ", {}", timestamp(d.time_ns));
    match d.interpreter_state {
        InterpreterState::Initialised => {}
        InterpreterState::NotInitialised => buf.extend_from_slice(NOT_INITIALISED.as_bytes()),
        InterpreterState::Unreadable => buf.extend_from_slice(UNREADABLE.as_bytes()),
    }
    let torn = d.threads.iter().filter(|t| t.torn).count();
    let mut notes = Vec::new();
    if d.lost_records > 0
        || d.unsymbolized_frames > 0
        || torn > 0
        || d.unknown_lines > 0
        || names_unknown
    {
        let mut note = format!(
            "{} records lost, {} frames unsymbolized, {} threads torn, {} lines unknown",
            d.lost_records, d.unsymbolized_frames, torn, d.unknown_lines
        );
        if names_unknown {
            note.push_str(", thread names unknown");
        }
        notes.push(note);
    }
    notes.extend(d.incomplete.iter().map(|n| n.to_string()));
    if !notes.is_empty() {
        let _ = write!(buf, " (incomplete: {})", notes.join("; "));
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChainEntry, Frame, PyText, ThreadStack};

    fn dump() -> Capture {
        Capture {
            pid: 7,
            tid: 7,
            trigger: TriggerInfo::Signal {
                signal: 10,
                sender_pid: None,
            },
            comm: "\x1b[2J\x1b[H\nProcess".into(),
            python_version: (3, 14, 0),
            threads: vec![ThreadStack {
                thread_id: 1,
                current: true,
                chain: vec![ChainEntry::Frame(Frame {
                    filename: Some(PyText::from_text("a\\b.py")),
                    name: Some(PyText::from_text("f")),
                    line: Some(1),
                })],
                ..ThreadStack::default()
            }],
            ..Capture::default()
        }
    }

    fn render(terminal: bool) -> Vec<u8> {
        let mut out = Vec::new();
        Text { terminal }.record(&dump(), &mut out).unwrap();
        out
    }

    #[test]
    fn header_shows_the_name_escaped_on_one_line() {
        let out = render(false);
        let header = out.split(|&b| b == b'\n').next().unwrap();
        let header = std::str::from_utf8(header).unwrap();
        assert!(
            header.starts_with("Process 7 (\\x1b[2J\\x1b[H\\x0aProcess) Python 3.14.0, SIGUSR1,"),
            "{header}"
        );
        assert!(!out.iter().any(|&b| b < 0x20 && b != b'\n'));
    }

    #[test]
    fn faulthandler_text_is_kept_and_escaped_only_on_a_terminal() {
        // Stand-in for a raw 3.14 thread name inside faulthandler's text.
        let raw = b"Thread 0x1 [\x1b]0;t\x07]\n";
        assert_eq!(
            &*escape::for_terminal(raw),
            b"Thread 0x1 [\\x1b]0;t\\x07]\n"
        );
        // Without control characters, terminal or not, the bytes are the same.
        assert_eq!(render(false), render(true));
        assert!(String::from_utf8(render(true))
            .unwrap()
            .contains("File \"a\\b.py\""));
    }
}
