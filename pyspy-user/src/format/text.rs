//! The text format: a header line, then exactly what faulthandler would print, then an empty
//! line. Target-originated text in the header is escaped ([`escape::field`]); faulthandler's
//! text is kept byte for byte, except on a terminal, where control characters in it (3.14
//! writes thread names raw) are shown escaped ([`escape::for_terminal`]).

use std::io::{self, Write};

use super::{faulthandler, timestamp, version_string, Output};
use crate::{
    escape,
    model::{Capture, InterpreterState, SignalAction, TriggerInfo},
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

/// `Process 1234 (python3) Python 3.11.7, SIGILL from PID 99, kills the process (core),
/// 2026-11-25T10:00:00.000000Z`; in a PID namespace,
/// `Process 1234 [1 in its PID namespace] …, SIGILL to thread 1240 [7] …`; for a signal the
/// kernel raised, `…, SIGSEGV from the kernel at address 0x10, …` or
/// `…, SIGKILL from the kernel (OOM), …`; for a timer sample,
/// `…, CPU clock on CPU 3 in thread 1240, …`; for an on-demand dump, no trigger:
/// `Process 1234 (python3) Python 3.11.7, 2026-11-25T10:00:00.000000Z`.
/// `names_unknown`: the version prints
/// thread names and some could not be read.
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
        TriggerInfo::Signal {
            signal, sender_pid, ..
        } => {
            let _ = write!(buf, "{}", signals::name(signal));
            ("to", sender_pid)
        }
        TriggerInfo::Timer { cpu } => {
            let _ = write!(buf, "CPU clock on CPU {cpu}");
            ("in", None)
        }
        TriggerInfo::OnDemand => ("", None),
    };
    if d.tid != d.pid && d.trigger != TriggerInfo::OnDemand {
        let _ = write!(buf, " {preposition} thread {}", d.tid);
        if let Some(ns) = d.ns_tid {
            let _ = write!(buf, " [{ns}]");
        }
    }
    if let Some(sender) = sender {
        let _ = write!(buf, " from PID {sender}");
    }
    if let TriggerInfo::Signal {
        action,
        from_kernel,
        fault_addr,
        oom,
        ..
    } = d.trigger
    {
        if from_kernel && sender.is_none() {
            buf.extend_from_slice(b" from the kernel");
            if oom {
                buf.extend_from_slice(b" (OOM)");
            }
            if let Some(addr) = fault_addr {
                let _ = write!(buf, " at address {addr:#x}");
            }
        }
        if let Some(what) = action_text(action) {
            let _ = write!(buf, ", {what}");
        }
    }
    if d.trigger != TriggerInfo::OnDemand {
        buf.extend_from_slice(b", ");
    }
    let _ = write!(buf, "{}", timestamp(d.time_ns));
    match d.interpreter_state {
        InterpreterState::Initialised => {}
        InterpreterState::NotInitialised => buf.extend_from_slice(NOT_INITIALISED.as_bytes()),
        InterpreterState::Unreadable => buf.extend_from_slice(UNREADABLE.as_bytes()),
    }
    let torn = d.threads.iter().filter(|t| t.torn).count();
    // Only on-demand reads race with the target.
    let raced = d.threads.iter().filter(|t| t.raced).count();
    let mut notes = Vec::new();
    if d.lost_records > 0
        || d.unsymbolized_frames > 0
        || torn > 0
        || d.unknown_lines > 0
        || names_unknown
        || raced > 0
    {
        let mut note = format!(
            "{} records lost, {} frames unsymbolized, {} threads torn, {} lines unknown",
            d.lost_records, d.unsymbolized_frames, torn, d.unknown_lines
        );
        if raced > 0 {
            note.push_str(&format!(", {raced} of them changing while read"));
        }
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

/// What the signal does, as the header says it.
fn action_text(action: SignalAction) -> Option<&'static str> {
    Some(match action {
        SignalAction::Unknown => return None,
        SignalAction::Handler => "handler runs",
        SignalAction::Kill => "kills the process",
        SignalAction::Core => "kills the process (core)",
        SignalAction::Stop => "stops the process",
        SignalAction::Ignore => "ignored",
        SignalAction::Held => "held (not delivered)",
    })
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
                action: SignalAction::Unknown,
                from_kernel: false,
                fault_addr: None,
                oom: false,
                delivered_as: None,
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

    fn header_of(trigger: TriggerInfo) -> String {
        let capture = Capture {
            pid: 42,
            tid: 42,
            comm: "python3".into(),
            python_version: (3, 12, 1),
            trigger,
            ..Default::default()
        };
        let mut buf = Vec::new();
        header(&mut buf, &capture, false);
        String::from_utf8(buf).unwrap()
    }

    fn signal(signal: u32, sender_pid: Option<u32>, action: SignalAction) -> TriggerInfo {
        TriggerInfo::Signal {
            signal,
            sender_pid,
            action,
            from_kernel: sender_pid.is_none(),
            fault_addr: None,
            oom: false,
            delivered_as: None,
        }
    }

    #[test]
    fn headers_say_what_the_signal_does_and_who_sent_it() {
        let h = header_of(signal(15, Some(99), SignalAction::Kill));
        assert!(
            h.starts_with(
                "Process 42 (python3) Python 3.12.1, SIGTERM from PID 99, kills the process, 1970-"
            ),
            "{h}"
        );
        let mut segv = signal(11, None, SignalAction::Core);
        if let TriggerInfo::Signal { fault_addr, .. } = &mut segv {
            *fault_addr = Some(0x10);
        }
        let h = header_of(segv);
        assert!(
            h.contains(", SIGSEGV from the kernel at address 0x10, kills the process (core), "),
            "{h}"
        );
        let mut oom = signal(9, None, SignalAction::Kill);
        if let TriggerInfo::Signal { oom: o, .. } = &mut oom {
            *o = true;
        }
        let h = header_of(oom);
        assert!(
            h.contains(", SIGKILL from the kernel (OOM), kills the process, "),
            "{h}"
        );
        let h = header_of(signal(10, Some(7), SignalAction::Handler));
        assert!(h.contains(", SIGUSR1 from PID 7, handler runs, "), "{h}");
        let h = header_of(signal(20, Some(7), SignalAction::Stop));
        assert!(
            h.contains(", SIGTSTP from PID 7, stops the process, "),
            "{h}"
        );
    }
}
