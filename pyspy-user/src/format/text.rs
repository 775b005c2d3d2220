//! The text format: a header line, then exactly what faulthandler would print, then an empty
//! line.

use std::io::{self, Write};

use super::{faulthandler, timestamp, version_string, DumpFormat};
use crate::{model::Dump, signals};

pub struct Text;

impl DumpFormat for Text {
    fn write_dump(&mut self, dump: &Dump, out: &mut dyn Write) -> io::Result<()> {
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
        out.write_all(&buf)
    }
}

/// `Process 1234 (python3) Python 3.11.7, SIGILL from PID 99, 2026-11-25T10:00:00.000000Z`;
/// in a PID namespace, `Process 1234 [1 in its PID namespace] …, SIGILL to thread 1240 [7] …`.
/// `names_unknown`: the version prints thread names and some could not be read.
fn header(buf: &mut Vec<u8>, d: &Dump, names_unknown: bool) {
    let _ = write!(buf, "Process {} ", d.pid);
    if let Some(ns) = d.ns_pid {
        let _ = write!(buf, "[{ns} in its PID namespace] ");
    }
    let _ = write!(
        buf,
        "({}) Python {}, {}",
        d.comm,
        version_string(d.python_version),
        signals::name(d.signal)
    );
    if d.tid != d.pid {
        let _ = write!(buf, " to thread {}", d.tid);
        if let Some(ns) = d.ns_tid {
            let _ = write!(buf, " [{ns}]");
        }
    }
    if let Some(sender) = d.sender_pid {
        let _ = write!(buf, " from PID {sender}");
    }
    let _ = write!(buf, ", {}", timestamp(d.time_ns));
    let torn = d.threads.iter().filter(|t| t.torn).count();
    if d.lost_records > 0 || d.unsymbolized_frames > 0 || torn > 0 || names_unknown {
        let _ = write!(
            buf,
            " (incomplete: {} records lost, {} frames unsymbolized, {} threads torn",
            d.lost_records, d.unsymbolized_frames, torn
        );
        if names_unknown {
            let _ = write!(buf, ", thread names unknown");
        }
        buf.push(b')');
    }
    buf.push(b'\n');
}
