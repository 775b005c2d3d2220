//! pprof: a gzipped `profile.proto` (github.com/google/pprof, proto/profile.proto), as
//! `go tool pprof` reads it.
//!
//! Two sample types, `samples/count` and `cpu/nanoseconds` (count × period); the period is
//! `cpu/nanoseconds` of one sample at the recording's frequency. One pprof sample per unique
//! stack of each thread, with the labels `pid` and `thread_id` (numbers) and `thread_name` (when
//! known). Its locations are the stack's frames ([`Aggregate::nodes`], so the same
//! `process`/`thread`/`[truncated]` frames as the folded file), leaf first; each location has
//! one line (the line executed; 0 when unknown) of one function (name and file name). One
//! mapping stands for all, marked as already symbolized so pprof never tries to symbolize.
//!
//! The messages are written by hand with prost's derive (no protoc needed); field numbers are
//! those of profile.proto.

use std::{
    collections::HashMap,
    io::{self, Write},
};

use flate2::{write::GzEncoder, Compression};
use prost::Message;

use super::{Aggregate, Node};

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The string table; index 0 is "" as profile.proto requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Builds the profile message (ungzipped).
pub fn build(agg: &Aggregate) -> Profile {
    let mut strings = Strings::new();
    let value_type = |strings: &mut Strings, t: &str, u: &str| ValueType {
        r#type: strings.get(t),
        unit: strings.get(u),
    };
    let sample_type = vec![
        value_type(&mut strings, "samples", "count"),
        value_type(&mut strings, "cpu", "nanoseconds"),
    ];
    let period_type = Some(value_type(&mut strings, "cpu", "nanoseconds"));
    let (pid_key, tid_key, name_key) = (
        strings.get("pid"),
        strings.get("thread_id"),
        strings.get("thread_name"),
    );
    let period = agg.period_ns() as i64;

    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(i64, i64), u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<(u64, i64), u64> = HashMap::new();
    let mut samples = Vec::new();
    for (key, counts) in agg.stacks() {
        let nodes = agg.nodes(key);
        let mut location_id = Vec::with_capacity(nodes.len());
        for node in nodes.iter().rev() {
            let (name, filename, line) = match node {
                Node::Python(f) => (
                    strings.get(&f.name),
                    strings.get(&f.filename),
                    f.line.map_or(0, i64::from),
                ),
                other => (strings.get(&other.label()), 0, 0),
            };
            let fid = *function_ids.entry((name, filename)).or_insert_with(|| {
                functions.push(Function {
                    id: functions.len() as u64 + 1,
                    name,
                    // Different from `name` (empty), so pprof takes `name` as already demangled
                    // and leaves `<module>`, `<lambda>`… whole instead of cutting `<…>` out as
                    // C++ template arguments.
                    system_name: 0,
                    filename,
                    start_line: 0,
                });
                functions.len() as u64
            });
            let lid = *location_ids.entry((fid, line)).or_insert_with(|| {
                locations.push(Location {
                    id: locations.len() as u64 + 1,
                    mapping_id: 1,
                    address: 0,
                    line: vec![Line {
                        function_id: fid,
                        line,
                        column: 0,
                    }],
                    is_folded: false,
                });
                locations.len() as u64
            });
            location_id.push(lid);
        }
        let mut label = vec![
            Label {
                key: pid_key,
                num: i64::from(key.pid),
                ..Default::default()
            },
            Label {
                key: tid_key,
                num: i64::from(key.tid),
                ..Default::default()
            },
        ];
        if let Some(name) = agg
            .threads()
            .get(&(key.pid, key.tid))
            .and_then(|t| t.name.as_deref())
        {
            label.push(Label {
                key: name_key,
                str: strings.get(name),
                ..Default::default()
            });
        }
        let n = counts.samples as i64;
        samples.push(Sample {
            location_id,
            value: vec![n, n.saturating_mul(period)],
            label,
        });
    }
    let mapping = vec![Mapping {
        id: 1,
        filename: strings.get("[python]"),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..Default::default()
    }];
    let comment = vec![strings.get(&format!(
        "pytrace record: {} samples at {} Hz",
        agg.total().samples,
        agg.hz()
    ))];
    Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos: agg.start_ns() as i64,
        duration_nanos: agg.duration_ns() as i64,
        period_type,
        period,
        comment,
        default_sample_type: 0,
    }
}

pub fn write(agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
    let bytes = build(agg).encode_to_vec();
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::profile::{testing::*, Options, ProfileFormat};

    fn decoded(agg: &Aggregate) -> Profile {
        let mut gz = Vec::new();
        ProfileFormat::Pprof.write(agg, &mut gz).unwrap();
        let mut raw = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        Profile::decode(&raw[..]).unwrap()
    }

    /// (stack of `name file:line` leaf first, values, labels as text).
    fn readable(p: &Profile) -> Vec<(Vec<String>, Vec<i64>, Vec<String>)> {
        let s = |i: i64| p.string_table[i as usize].clone();
        p.sample
            .iter()
            .map(|smp| {
                let frames = smp
                    .location_id
                    .iter()
                    .map(|&id| {
                        let loc = &p.location[id as usize - 1];
                        assert_eq!(loc.id, id);
                        assert_eq!(loc.line.len(), 1);
                        let f = &p.function[loc.line[0].function_id as usize - 1];
                        format!("{} {}:{}", s(f.name), s(f.filename), loc.line[0].line)
                    })
                    .collect();
                let labels = smp
                    .label
                    .iter()
                    .map(|l| match l.str {
                        0 => format!("{}={}", s(l.key), l.num),
                        v => format!("{}={}", s(l.key), s(v)),
                    })
                    .collect();
                (frames, smp.value.clone(), labels)
            })
            .collect()
    }

    #[test]
    fn samples_locations_functions_and_labels() {
        let mut agg = small();
        agg.set_span(500, 2_000_500);
        let p = decoded(&agg);
        assert_eq!(p.string_table[0], "");
        let st: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|v| {
                (
                    &*p.string_table[v.r#type as usize],
                    &*p.string_table[v.unit as usize],
                )
            })
            .collect();
        assert_eq!(st, [("samples", "count"), ("cpu", "nanoseconds")]);
        assert_eq!(p.period, 10_000_000);
        assert_eq!((p.time_nanos, p.duration_nanos), (500, 2_000_000));
        let pt = p.period_type.as_ref().unwrap();
        assert_eq!(p.string_table[pt.r#type as usize], "cpu");
        assert_eq!(p.function.len(), 3, "main, a, b");
        assert_eq!(p.location.len(), 3);
        let main = "main /app/main.py:1".to_string();
        let a = "a /app/main.py:2".to_string();
        let b = "b /app/main.py:3".to_string();
        let l = |t: u32| {
            vec![
                "pid=10".to_string(),
                format!("thread_id={t}"),
                format!("thread_name=T{t}"),
            ]
        };
        assert_eq!(
            readable(&p),
            [
                (vec![a.clone(), main.clone()], vec![3, 30_000_000], l(11)),
                (vec![b, main.clone()], vec![2, 20_000_000], l(11)),
                (vec![a, main], vec![1, 10_000_000], l(12)),
            ]
        );
    }

    #[test]
    fn markers_and_roots_are_frames() {
        let mut agg = Aggregate::new(
            Options {
                threads: true,
                ..Default::default()
            },
            1000,
        );
        let mut s = sample(7, 8, 1, &[("f", 4)]);
        s.truncated = true;
        s.thread_name = None;
        s.frames[0].line = None;
        agg.record(&s);
        agg.record(&sample(9, 9, 1, &[("g", 1)]));
        let p = decoded(&agg);
        let r = readable(&p);
        assert_eq!(
            r[0].0,
            [
                "f /app/main.py:0",
                "[truncated] :0",
                "thread 8 :0",
                "process 7 (py7) :0"
            ]
        );
        assert_eq!(
            r[0].2,
            ["pid=7", "thread_id=8"],
            "no thread_name when unknown"
        );
        assert_eq!(r[0].1, [1, 1_000_000]);
    }

    #[test]
    fn empty_profile_decodes() {
        let p = decoded(&Aggregate::new(Options::default(), 99));
        assert!(p.sample.is_empty());
        assert_eq!(p.sample_type.len(), 2);
    }
}
