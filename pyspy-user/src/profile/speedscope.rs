//! speedscope's file format (https://www.speedscope.app/file-format-schema.json): one
//! `sampled` profile per thread, named `PID (comm) thread TID (name)`, over one shared frames
//! table.
//!
//! Each unique stack of a thread is one entry of `samples` (frame indices root first) whose
//! weight is its number of samples (unit `none`); the profile spans 0 to its total. The samples
//! are aggregated, so speedscope's time-order view shows stacks in a stable order, not in the
//! order they were taken. The process and thread are in the profile's name, not frames; the
//! `[truncated]` / `[incomplete: …]` markers are root-side frames as in the other formats.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
};

use serde::Serialize;

use super::{Aggregate, Node};

const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared<'a>,
    profiles: Vec<SampledProfile>,
    name: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    exporter: String,
}

#[derive(Serialize)]
struct Shared<'a> {
    frames: Vec<Frame<'a>>,
}

#[derive(Serialize)]
struct Frame<'a> {
    name: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Serialize)]
struct SampledProfile {
    r#type: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: u64,
    #[serde(rename = "endValue")]
    end_value: u64,
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

pub fn write(agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
    let file = build(agg);
    let mut buf = io::BufWriter::new(out);
    serde_json::to_writer(&mut buf, &file)?;
    buf.write_all(b"\n")?;
    buf.flush()
}

/// Interns speedscope frames: Python frames by their index in the aggregate, markers by label.
#[derive(Default)]
struct Frames<'a> {
    table: Vec<Frame<'a>>,
    python: HashMap<u32, usize>,
    markers: HashMap<String, usize>,
}

impl<'a> Frames<'a> {
    fn python(&mut self, agg: &'a Aggregate, id: u32) -> usize {
        *self.python.entry(id).or_insert_with(|| {
            let f = &agg.frames()[id as usize];
            self.table.push(Frame {
                name: f.name.as_str().into(),
                file: Some(&f.filename),
                line: f.line,
            });
            self.table.len() - 1
        })
    }

    fn marker(&mut self, node: Node<'_>) -> usize {
        let label = node.label();
        if let Some(&i) = self.markers.get(&label) {
            return i;
        }
        self.table.push(Frame {
            name: label.clone().into(),
            file: None,
            line: None,
        });
        self.markers.insert(label, self.table.len() - 1);
        self.table.len() - 1
    }
}

fn build(agg: &Aggregate) -> File<'_> {
    let mut frames = Frames::default();
    let mut by_thread: BTreeMap<(u32, u32), SampledProfile> = BTreeMap::new();
    for (key, counts) in agg.stacks() {
        let mut stack: Vec<usize> = agg.markers(key).map(|m| frames.marker(m)).collect();
        stack.extend(key.frames.iter().rev().map(|&id| frames.python(agg, id)));
        let profile = by_thread
            .entry((key.pid, key.tid))
            .or_insert_with(|| SampledProfile {
                r#type: "sampled",
                name: profile_name(agg, key.pid, key.tid),
                unit: "none",
                start_value: 0,
                end_value: 0,
                samples: Vec::new(),
                weights: Vec::new(),
            });
        profile.samples.push(stack);
        profile.weights.push(counts.samples);
        profile.end_value += counts.samples;
    }
    let t = agg.total();
    File {
        schema: SCHEMA,
        shared: Shared {
            frames: frames.table,
        },
        profiles: by_thread.into_values().collect(),
        name: format!("pytrace record: {} samples at {} Hz", t.samples, agg.hz()),
        active_profile_index: 0,
        exporter: format!("pytrace {}", env!("CARGO_PKG_VERSION")),
    }
}

/// `1234 (python3) thread 1240 (MainThread)`.
fn profile_name(agg: &Aggregate, pid: u32, tid: u32) -> String {
    let comm = agg.processes().get(&pid).map_or("", |p| p.comm.as_str());
    match agg
        .threads()
        .get(&(pid, tid))
        .and_then(|t| t.name.as_deref())
    {
        Some(name) => format!("{pid} ({comm}) thread {tid} ({name})"),
        None => format!("{pid} ({comm}) thread {tid}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::profile::{testing::*, ProfileFormat};

    fn parsed(agg: &Aggregate) -> Value {
        let mut out = Vec::new();
        ProfileFormat::Speedscope.write(agg, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn one_sampled_profile_per_thread_over_shared_frames() {
        let v = parsed(&small());
        assert_eq!(v["$schema"], SCHEMA);
        assert_eq!(
            v["shared"]["frames"],
            json!([
                {"name": "main", "file": "/app/main.py", "line": 1},
                {"name": "a", "file": "/app/main.py", "line": 2},
                {"name": "b", "file": "/app/main.py", "line": 3},
            ])
        );
        assert_eq!(
            v["profiles"],
            json!([
                {"type": "sampled", "name": "10 (py10) thread 11 (T11)", "unit": "none",
                 "startValue": 0, "endValue": 5, "samples": [[0, 1], [0, 2]], "weights": [3, 2]},
                {"type": "sampled", "name": "10 (py10) thread 12 (T12)", "unit": "none",
                 "startValue": 0, "endValue": 1, "samples": [[0, 1]], "weights": [1]},
            ])
        );
    }

    #[test]
    fn markers_are_root_frames_and_unknown_lines_are_left_out() {
        let mut agg = Aggregate::new(Default::default(), 99);
        let mut s = sample(1, 2, 1, &[("f", 1)]);
        s.truncated = true;
        s.incomplete = Some("unreadable memory".into());
        s.frames[0].line = None;
        s.thread_name = None;
        agg.record(&s);
        let v = parsed(&agg);
        assert_eq!(
            v["shared"]["frames"],
            json!([
                {"name": "[truncated]"},
                {"name": "[incomplete: unreadable memory]"},
                {"name": "f", "file": "/app/main.py"},
            ])
        );
        assert_eq!(v["profiles"][0]["samples"], json!([[0, 1, 2]]));
        assert_eq!(v["profiles"][0]["name"], "1 (py1) thread 2");
    }
}
