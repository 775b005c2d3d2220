//! The JSON profile: one JSON document (one object, then a newline) that wraps a header and one
//! object per unique stack of each thread, with its sample counts.
//!
//! ```text
//! { "format": "pytrace-profile", "version": 1,
//!   "hz", "period_ns", "start_time_ns", "duration_ns",
//!   "samples", "gil_samples", "unique_stacks", "threads_option", "gil_only",
//!   "filtered_no_gil", "truncated", "incomplete": {REASON: N}, "lost": {REASON: N},
//!   "processes": [{"pid", "comm", "samples", "gil_samples"}],
//!   "threads":   [{"pid", "tid", "name", "samples", "gil_samples"}],
//!   "stacks":    [{"pid", "tid", "samples", "gil_samples", "truncated", "incomplete",
//!                  "frames": [{"name", "filename", "line"}]}] }
//! ```
//! `samples` counts the samples kept (after `--gil`), `gil_samples` those of them whose thread
//! held the GIL. Frames are innermost first, as in the dump JSON; `line` is null when unknown,
//! `incomplete` null or the reason the walk stopped, `truncated` true when the stack went on
//! past its last frame. Process and thread are fields, not frames.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::Serialize;

use super::{Aggregate, Frame};

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    version: u32,
    hz: u32,
    period_ns: u64,
    start_time_ns: u64,
    duration_ns: u64,
    samples: u64,
    gil_samples: u64,
    unique_stacks: usize,
    threads_option: bool,
    gil_only: bool,
    filtered_no_gil: u64,
    truncated: u64,
    incomplete: &'a BTreeMap<String, u64>,
    lost: &'a BTreeMap<String, u64>,
    processes: Vec<Process<'a>>,
    threads: Vec<Thread<'a>>,
    stacks: Vec<Stack<'a>>,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    comm: &'a str,
    samples: u64,
    gil_samples: u64,
}

#[derive(Serialize)]
struct Thread<'a> {
    pid: u32,
    tid: u32,
    name: Option<&'a str>,
    samples: u64,
    gil_samples: u64,
}

#[derive(Serialize)]
struct Stack<'a> {
    pid: u32,
    tid: u32,
    samples: u64,
    gil_samples: u64,
    truncated: bool,
    incomplete: Option<&'a str>,
    frames: Vec<&'a Frame>,
}

impl Serialize for Frame {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Frame", 3)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("filename", &self.filename)?;
        st.serialize_field("line", &self.line)?;
        st.end()
    }
}

pub fn write(agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
    let total = agg.total();
    let doc = Document {
        format: "pytrace-profile",
        version: 1,
        hz: agg.hz(),
        period_ns: agg.period_ns(),
        start_time_ns: agg.start_ns(),
        duration_ns: agg.duration_ns(),
        samples: total.samples,
        gil_samples: total.gil,
        unique_stacks: agg.unique_stacks(),
        threads_option: agg.options().threads,
        gil_only: agg.options().gil_only,
        filtered_no_gil: agg.filtered_no_gil(),
        truncated: agg.truncated(),
        incomplete: agg.incomplete(),
        lost: agg.lost_samples(),
        processes: agg
            .processes()
            .iter()
            .map(|(&pid, p)| Process {
                pid,
                comm: &p.comm,
                samples: p.counts.samples,
                gil_samples: p.counts.gil,
            })
            .collect(),
        threads: agg
            .threads()
            .iter()
            .map(|(&(pid, tid), t)| Thread {
                pid,
                tid,
                name: t.name.as_deref(),
                samples: t.counts.samples,
                gil_samples: t.counts.gil,
            })
            .collect(),
        stacks: agg
            .stacks()
            .into_iter()
            .map(|(k, c)| Stack {
                pid: k.pid,
                tid: k.tid,
                samples: c.samples,
                gil_samples: c.gil,
                truncated: k.truncated,
                incomplete: k.incomplete.map(|r| agg.reasons()[r as usize].as_str()),
                frames: k
                    .frames
                    .iter()
                    .map(|&i| &agg.frames()[i as usize])
                    .collect(),
            })
            .collect(),
    };
    let mut buf = io::BufWriter::new(out);
    serde_json::to_writer(&mut buf, &doc)?;
    buf.write_all(b"\n")?;
    buf.flush()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::profile::{testing::*, Options, ProfileFormat};

    fn parsed(agg: &Aggregate) -> Value {
        let mut out = Vec::new();
        ProfileFormat::Json.write(agg, &mut out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn header_and_stacks() {
        let mut agg = small();
        let mut s = sample(10, 12, 9_000, &[("main", 1)]);
        s.held_gil = false;
        s.truncated = true;
        s.incomplete = Some("unreadable memory".into());
        s.frames[0].line = None;
        agg.record(&s);
        agg.lost("ring buffer full", 2);
        let v = parsed(&agg);
        assert_eq!(v["format"], "pytrace-profile");
        assert_eq!(v["hz"], 100);
        assert_eq!(v["period_ns"], 10_000_000);
        assert_eq!(v["start_time_ns"], 1_000);
        assert_eq!(v["duration_ns"], 8_000 + 10_000_000);
        assert_eq!(
            (v["samples"].clone(), v["gil_samples"].clone()),
            (json!(7), json!(6))
        );
        assert_eq!(v["unique_stacks"], 4);
        assert_eq!(v["truncated"], 1);
        assert_eq!(v["incomplete"], json!({"unreadable memory": 1}));
        assert_eq!(v["lost"], json!({"ring buffer full": 2}));
        assert_eq!(
            v["processes"],
            json!([{"pid": 10, "comm": "py10", "samples": 7, "gil_samples": 6}])
        );
        assert_eq!(
            v["threads"],
            json!([
                {"pid": 10, "tid": 11, "name": "T11", "samples": 5, "gil_samples": 5},
                {"pid": 10, "tid": 12, "name": "T12", "samples": 2, "gil_samples": 1},
            ])
        );
        let main = json!({"name": "main", "filename": "/app/main.py", "line": 1});
        let a = json!({"name": "a", "filename": "/app/main.py", "line": 2});
        let b = json!({"name": "b", "filename": "/app/main.py", "line": 3});
        let stack = |tid, n, gil, frames: Value| {
            json!({"pid": 10, "tid": tid, "samples": n, "gil_samples": gil,
                   "truncated": false, "incomplete": null, "frames": frames})
        };
        assert_eq!(v["stacks"][0], stack(11, 3, 3, json!([a, main])));
        assert_eq!(v["stacks"][1], stack(11, 2, 2, json!([b, main])));
        assert_eq!(v["stacks"][2], stack(12, 1, 1, json!([a, main])));
        assert_eq!(
            v["stacks"][3],
            json!({"pid": 10, "tid": 12, "samples": 1, "gil_samples": 0, "truncated": true,
                   "incomplete": "unreadable memory",
                   "frames": [{"name": "main", "filename": "/app/main.py", "line": null}]})
        );
    }

    #[test]
    fn gil_only_reports_what_it_left_out() {
        let mut agg = Aggregate::new(
            Options {
                gil_only: true,
                ..Default::default()
            },
            99,
        );
        let mut s = sample(1, 1, 1, &[("f", 1)]);
        s.held_gil = false;
        agg.record(&s);
        let v = parsed(&agg);
        assert_eq!(v["gil_only"], true);
        assert_eq!(v["filtered_no_gil"], 1);
        assert_eq!(v["samples"], 0);
        assert_eq!(v["stacks"], json!([]));
        assert_eq!(v["start_time_ns"], 0);
    }
}
