//! The text format: a header line, then exactly what faulthandler would print, then an empty
//! line.

use std::io::{self, Write};

use super::{faulthandler, timestamp, version_string, Output};
use crate::{
    model::{Capture, TriggerInfo},
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

/// `Process 1234 (python3) Python 3.11.7, SIGILL from PID 99, 2026-11-25T10:00:00.000000Z`;
/// in a PID namespace, `Process 1234 [1 in its PID namespace] …, SIGILL to thread 1240 [7] …`;
/// for a timer sample, `…, CPU clock on CPU 3 in thread 1240, …`; for an on-demand dump, no
/// trigger: `Process 1234 (python3) Python 3.11.7, 2026-11-25T10:00:00.000000Z`.
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
        TriggerInfo::Signal { signal, sender_pid } => {
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
