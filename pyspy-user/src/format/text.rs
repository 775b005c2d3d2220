//! The text format: a header line, then exactly what faulthandler would print, then an empty
//! line.

use std::io::{self, Write};

use super::{faulthandler, timestamp, version_string, Output};
use crate::{
    model::{Capture, SignalAction, TriggerInfo},
    signals,
};

pub struct Text;

impl Output for Text {
    fn record(&mut self, dump: &Capture, out: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        header(&mut buf, dump);
        let (major, minor, micro) = dump.python_version;
        let style = faulthandler::style_for_release(major, minor, micro);
        faulthandler::write_threads(&mut buf, dump, &style);
        buf.push(b'\n');
        out.write_all(&buf)
    }
}

/// `Process 1234 (python3) Python 3.11.7, SIGILL from PID 99, kills the process (core),
/// 2026-11-25T10:00:00.000000Z`; in a PID namespace,
/// `Process 1234 [1 in its PID namespace] …, SIGILL to thread 1240 [7] …`; for a signal the
/// kernel raised, `…, SIGSEGV from the kernel at address 0x10, …` or
/// `…, SIGKILL from the kernel (OOM), …`; for a timer sample,
/// `…, CPU clock on CPU 3 in thread 1240, …`; for an on-demand dump, no trigger:
/// `Process 1234 (python3) Python 3.11.7, 2026-11-25T10:00:00.000000Z`.
fn header(buf: &mut Vec<u8>, d: &Capture) {
    let _ = write!(buf, "Process {} ", d.pid);
    if let Some(ns) = d.ns_pid {
        let _ = write!(buf, "[{ns} in its PID namespace] ");
    }
    let _ = write!(
        buf,
        "({}) Python {}, ",
        d.comm,
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
    let torn = d.threads.iter().filter(|t| t.torn).count();
    let raced = d.threads.iter().filter(|t| t.raced).count();
    if raced > 0 || (d.trigger == TriggerInfo::OnDemand && d.no_interpreter) {
        // Only on-demand reads race with the target, or find it gone part-way.
        let _ =
            write!(
            buf,
            " (incomplete: {} records lost, {} frames unsymbolized, {} threads torn, {} of them \
             changing while read{})",
            d.lost_records,
            d.unsymbolized_frames,
            torn,
            raced,
            if d.no_interpreter { ", interpreter unreadable" } else { "" }
        );
    } else if d.lost_records > 0 || d.unsymbolized_frames > 0 || torn > 0 {
        let _ = write!(
            buf,
            " (incomplete: {} records lost, {} frames unsymbolized, {} threads torn)",
            d.lost_records, d.unsymbolized_frames, torn
        );
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
        header(&mut buf, &capture);
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
