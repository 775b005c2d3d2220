//! Sampling profiles: the [`Sample`] a sampler delivers, their [`Aggregate`] by unique stack,
//! and the aggregating output formats behind [`ProfileOutput`].
//!
//! A sampler calls [`ProfileOutput::record`] once per on-CPU sample and
//! [`ProfileOutput::lost`] for samples it could not deliver; [`ProfileOutput::finish`] writes
//! the whole file. Samples are never kept: identical stacks of one thread share one counter, so
//! memory and output scale with unique stacks, not with the sample rate.
//!
//! Every format renders the same stacks (see [`Aggregate::nodes`]): a stack deeper than what was
//! captured gets a root-side `[truncated]` frame, and a walk that stopped early a root-side
//! `[incomplete: REASON]` frame, so no format silently shortens a stack.

pub mod flamegraph;
pub mod folded;
pub mod json;
pub mod pprof;
pub mod speedscope;

use std::{
    collections::BTreeMap,
    io::{self, Write},
    time::SystemTime,
};

use clap::ValueEnum;
use hashbrown::{Equivalent, HashMap};

/// One Python frame of a sample.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// `co_name` (or `co_qualname` where the sampler prefers it).
    pub name: String,
    /// `co_filename`.
    pub filename: String,
    /// Line being executed; `None` when it could not be computed.
    pub line: Option<u32>,
}

/// One on-CPU sample of one thread.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sample {
    /// Host PID (tgid) of the process.
    pub pid: u32,
    /// The process's `comm`.
    pub comm: String,
    /// Host TID of the sampled thread.
    pub tid: u32,
    /// The thread's name, where known.
    pub thread_name: Option<String>,
    /// The thread held the GIL when sampled.
    pub held_gil: bool,
    /// Wall-clock time of the sample, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Python frames, innermost (leaf) first.
    pub frames: Vec<Frame>,
    /// The stack goes on past the last captured frame.
    pub truncated: bool,
    /// The walk stopped early for this reason (e.g. `unreadable memory`); `frames` holds what was
    /// read before.
    pub incomplete: Option<String>,
}

/// A sink for samples that writes one file at the end. Aggregating formats write nothing before
/// [`ProfileOutput::finish`].
pub trait ProfileOutput {
    /// Adds one sample.
    fn record(&mut self, sample: &Sample);
    /// Counts `count` samples that were lost before they could be walked or delivered (e.g.
    /// `no thread state`, `ring buffer full`).
    fn lost(&mut self, reason: &str, count: u64);
    /// Writes the whole profile.
    fn finish(&mut self, out: &mut dyn Write) -> io::Result<()>;
}

/// When stacks get a `process PID (comm)` root frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProcessFrames {
    /// Only when samples of more than one process were recorded.
    #[default]
    Auto,
    Always,
    Never,
}

/// How samples are grouped and filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Options {
    pub process_frames: ProcessFrames,
    /// Add a `thread TID (name)` frame under the process frame (`--threads`).
    pub threads: bool,
    /// Keep only samples whose thread held the GIL (`--gil`).
    pub gil_only: bool,
}

/// A frame as every format shows it, root first: see [`Aggregate::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node<'a> {
    Process {
        pid: u32,
        comm: &'a str,
    },
    Thread {
        tid: u32,
        name: Option<&'a str>,
    },
    /// The stack went on past what was captured.
    Truncated,
    /// The walk stopped early.
    Incomplete(&'a str),
    Python(&'a Frame),
}

impl Node<'_> {
    /// The frame's one-line label, e.g. `work (/app/x.py:12)`, `process 42 (python3)`; the
    /// line is `?` when unknown. Strings are as the target has them (unescaped).
    pub fn label(&self) -> String {
        match self {
            Node::Process { pid, comm } => format!("process {pid} ({comm})"),
            Node::Thread { tid, name: Some(n) } => format!("thread {tid} ({n})"),
            Node::Thread { tid, name: None } => format!("thread {tid}"),
            Node::Truncated => "[truncated]".into(),
            Node::Incomplete(reason) => format!("[incomplete: {reason}]"),
            Node::Python(f) => match f.line {
                Some(l) => format!("{} ({}:{l})", f.name, f.filename),
                None => format!("{} ({}:?)", f.name, f.filename),
            },
        }
    }
}

/// One unique stack of one thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub pid: u32,
    pub tid: u32,
    /// Indices into [`Aggregate::frames`], leaf first.
    pub frames: Box<[u32]>,
    pub truncated: bool,
    /// Index into [`Aggregate::reasons`].
    pub incomplete: Option<u32>,
}

/// A [`StackKey`] borrowed from a sample being recorded: the lookup key, so a stack already seen
/// costs no allocation. Hashes as `StackKey` does (same fields, same order).
#[derive(Hash)]
struct StackRef<'a> {
    pid: u32,
    tid: u32,
    frames: &'a [u32],
    truncated: bool,
    incomplete: Option<u32>,
}

impl Equivalent<StackKey> for StackRef<'_> {
    fn equivalent(&self, k: &StackKey) -> bool {
        self.pid == k.pid
            && self.tid == k.tid
            && self.frames == &*k.frames
            && self.truncated == k.truncated
            && self.incomplete == k.incomplete
    }
}

/// Samples of one stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    pub samples: u64,
    /// Of which the thread held the GIL.
    pub gil: u64,
}

impl Counts {
    fn add(&mut self, held_gil: bool) {
        self.samples += 1;
        self.gil += u64::from(held_gil);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProcessTotals {
    /// The latest `comm` seen.
    pub comm: String,
    pub counts: Counts,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ThreadTotals {
    /// The latest name seen.
    pub name: Option<String>,
    pub counts: Counts,
}

/// Counts of unique stacks, with what every format needs around them.
#[derive(Clone, Debug)]
pub struct Aggregate {
    options: Options,
    hz: u32,
    frames: Vec<Frame>,
    frame_ids: HashMap<Frame, u32>,
    reasons: Vec<String>,
    stacks: HashMap<StackKey, Counts>,
    processes: BTreeMap<u32, ProcessTotals>,
    threads: BTreeMap<(u32, u32), ThreadTotals>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    span: Option<(u64, u64)>,
    /// Samples left out by `--gil`.
    filtered_no_gil: u64,
    truncated: u64,
    incomplete: BTreeMap<String, u64>,
    lost: BTreeMap<String, u64>,
    /// The frame ids of the sample being recorded (kept to reuse its allocation).
    ids: Vec<u32>,
}

impl Aggregate {
    /// `hz` is the sampling frequency (at least 1), per CPU.
    pub fn new(options: Options, hz: u32) -> Self {
        Aggregate {
            options,
            hz: hz.max(1),
            frames: Vec::new(),
            frame_ids: HashMap::new(),
            reasons: Vec::new(),
            stacks: HashMap::new(),
            processes: BTreeMap::new(),
            threads: BTreeMap::new(),
            first_ns: None,
            last_ns: None,
            span: None,
            filtered_no_gil: 0,
            truncated: 0,
            incomplete: BTreeMap::new(),
            lost: BTreeMap::new(),
            ids: Vec::new(),
        }
    }

    pub fn options(&self) -> Options {
        self.options
    }

    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// Nanoseconds of CPU time one sample stands for.
    pub fn period_ns(&self) -> u64 {
        1_000_000_000 / u64::from(self.hz)
    }

    pub fn record(&mut self, s: &Sample) {
        if self.options.gil_only && !s.held_gil {
            self.filtered_no_gil += 1;
            return;
        }
        self.first_ns = Some(self.first_ns.map_or(s.time_ns, |t| t.min(s.time_ns)));
        self.last_ns = Some(self.last_ns.map_or(s.time_ns, |t| t.max(s.time_ns)));
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(s.frames.iter().map(|f| self.intern(f)));
        let incomplete = s.incomplete.as_ref().map(|r| {
            match self.incomplete.get_mut(r) {
                Some(n) => *n += 1,
                None => {
                    self.incomplete.insert(r.clone(), 1);
                }
            }
            match self.reasons.iter().position(|x| x == r) {
                Some(i) => i as u32,
                None => {
                    self.reasons.push(r.clone());
                    (self.reasons.len() - 1) as u32
                }
            }
        });
        self.truncated += u64::from(s.truncated);
        let key = StackRef {
            pid: s.pid,
            tid: s.tid,
            frames: &ids,
            truncated: s.truncated,
            incomplete,
        };
        match self.stacks.get_mut(&key) {
            Some(counts) => counts.add(s.held_gil),
            None => {
                let key = StackKey {
                    pid: s.pid,
                    tid: s.tid,
                    frames: ids.as_slice().into(),
                    truncated: s.truncated,
                    incomplete,
                };
                self.stacks.entry(key).or_default().add(s.held_gil);
            }
        }
        self.ids = ids;
        let p = self.processes.entry(s.pid).or_default();
        if p.comm != s.comm {
            p.comm.clone_from(&s.comm);
        }
        p.counts.add(s.held_gil);
        let t = self.threads.entry((s.pid, s.tid)).or_default();
        if s.thread_name.is_some() && t.name != s.thread_name {
            t.name.clone_from(&s.thread_name);
        }
        t.counts.add(s.held_gil);
    }

    fn intern(&mut self, f: &Frame) -> u32 {
        if let Some(&id) = self.frame_ids.get(f) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(f.clone());
        self.frame_ids.insert(f.clone(), id);
        id
    }

    /// Counts samples lost before they reached [`Aggregate::record`].
    pub fn lost(&mut self, reason: &str, count: u64) {
        if count > 0 {
            *self.lost.entry(reason.to_owned()).or_default() += count;
        }
    }

    /// The recording's own start and end (epoch ns), when the sampler knows them; otherwise the
    /// first and last sample bound it.
    pub fn set_span(&mut self, start_ns: u64, end_ns: u64) {
        self.span = Some((start_ns, end_ns.max(start_ns)));
    }

    /// Start time, epoch ns (0 with no samples and no span).
    pub fn start_ns(&self) -> u64 {
        self.span.map(|s| s.0).or(self.first_ns).unwrap_or(0)
    }

    /// Duration of the recording: the span if set, else last − first sample + one period.
    pub fn duration_ns(&self) -> u64 {
        match (self.span, self.first_ns, self.last_ns) {
            (Some((a, b)), ..) => b - a,
            (None, Some(a), Some(b)) => b - a + self.period_ns(),
            _ => 0,
        }
    }

    pub fn first_sample_ns(&self) -> Option<u64> {
        self.first_ns
    }

    pub fn last_sample_ns(&self) -> Option<u64> {
        self.last_ns
    }

    /// The interned Python frames.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// Unique stacks in a stable order (pid, tid, frames), each with its counts.
    pub fn stacks(&self) -> Vec<(&StackKey, Counts)> {
        let mut v: Vec<_> = self.stacks.iter().map(|(k, c)| (k, *c)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn unique_stacks(&self) -> usize {
        self.stacks.len()
    }

    pub fn processes(&self) -> &BTreeMap<u32, ProcessTotals> {
        &self.processes
    }

    /// Keyed by (pid, tid).
    pub fn threads(&self) -> &BTreeMap<(u32, u32), ThreadTotals> {
        &self.threads
    }

    /// Samples kept (after `--gil`).
    pub fn total(&self) -> Counts {
        let mut c = Counts::default();
        for p in self.processes.values() {
            c.samples += p.counts.samples;
            c.gil += p.counts.gil;
        }
        c
    }

    /// Samples left out because their thread did not hold the GIL (`--gil`).
    pub fn filtered_no_gil(&self) -> u64 {
        self.filtered_no_gil
    }

    /// Kept samples whose stack was deeper than what was captured.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Kept samples whose walk stopped early, by reason.
    pub fn incomplete(&self) -> &BTreeMap<String, u64> {
        &self.incomplete
    }

    /// Samples lost before delivery, by reason.
    pub fn lost_samples(&self) -> &BTreeMap<String, u64> {
        &self.lost
    }

    /// Whether stacks get a `process` root frame.
    pub fn process_frames(&self) -> bool {
        match self.options.process_frames {
            ProcessFrames::Auto => self.processes.len() > 1,
            ProcessFrames::Always => true,
            ProcessFrames::Never => false,
        }
    }

    /// The frames of a stack as the tree formats show them, root first: the `process` frame
    /// (see [`Aggregate::process_frames`]), the `thread` frame (`--threads`), a `[truncated]` or
    /// `[incomplete: …]` marker, then the Python frames from outermost to innermost.
    pub fn nodes<'a>(&'a self, key: &StackKey) -> Vec<Node<'a>> {
        let mut v = Vec::with_capacity(key.frames.len() + 4);
        if self.process_frames() {
            let comm = self.processes.get(&key.pid).map_or("", |p| p.comm.as_str());
            v.push(Node::Process { pid: key.pid, comm });
        }
        if self.options.threads {
            let name = self
                .threads
                .get(&(key.pid, key.tid))
                .and_then(|t| t.name.as_deref());
            v.push(Node::Thread { tid: key.tid, name });
        }
        v.extend(self.markers(key));
        v.extend(
            key.frames
                .iter()
                .rev()
                .map(|&i| Node::Python(&self.frames[i as usize])),
        );
        v
    }

    /// The `[truncated]` / `[incomplete: …]` markers of a stack, root first.
    pub fn markers<'a>(&'a self, key: &StackKey) -> impl Iterator<Item = Node<'a>> {
        let truncated = key.truncated.then_some(Node::Truncated);
        let incomplete = key
            .incomplete
            .map(|r| Node::Incomplete(self.reasons[r as usize].as_str()));
        truncated.into_iter().chain(incomplete)
    }
}

/// The aggregating formats of `pytrace record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileFormat {
    /// An interactive SVG flame graph (inferno).
    Flamegraph,
    /// Collapsed stacks, one `frame;frame;… COUNT` line per stack (FlameGraph, inferno, py-spy).
    Folded,
    /// A speedscope file: one sampled profile per thread.
    Speedscope,
    /// A gzipped pprof `profile.proto` (`go tool pprof`).
    Pprof,
    /// One JSON document: a header and one object per unique stack.
    Json,
}

impl ProfileFormat {
    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ProfileFormat::Flamegraph => "svg",
            ProfileFormat::Folded => "folded",
            ProfileFormat::Speedscope => "speedscope.json",
            ProfileFormat::Pprof => "pb.gz",
            ProfileFormat::Json => "json",
        }
    }

    /// The output file when `-o` is omitted: `pytrace-YYYYMMDDTHHMMSSZ.EXT` (UTC).
    pub fn default_file_name(self, now: SystemTime) -> String {
        let stamp: String = humantime::format_rfc3339_seconds(now)
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        format!("pytrace-{stamp}.{}", self.extension())
    }

    /// Writes `agg` in this format.
    pub fn write(self, agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
        match self {
            ProfileFormat::Flamegraph => flamegraph::write(agg, out),
            ProfileFormat::Folded => folded::write(agg, out),
            ProfileFormat::Speedscope => speedscope::write(agg, out),
            ProfileFormat::Pprof => pprof::write(agg, out),
            ProfileFormat::Json => json::write(agg, out),
        }
    }
}

/// A profile being recorded: an [`Aggregate`] written in one [`ProfileFormat`] at the end.
pub struct Profile {
    pub format: ProfileFormat,
    pub aggregate: Aggregate,
}

impl Profile {
    pub fn new(format: ProfileFormat, options: Options, hz: u32) -> Self {
        Profile {
            format,
            aggregate: Aggregate::new(options, hz),
        }
    }
}

impl ProfileOutput for Profile {
    fn record(&mut self, sample: &Sample) {
        self.aggregate.record(sample);
    }

    fn lost(&mut self, reason: &str, count: u64) {
        self.aggregate.lost(reason, count);
    }

    fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        self.format.write(&self.aggregate, out)?;
        out.flush()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Synthetic samples shared by the format tests.
    use super::*;

    pub fn frame(name: &str, file: &str, line: Option<u32>) -> Frame {
        Frame {
            name: name.into(),
            filename: file.into(),
            line,
        }
    }

    /// A sample of `pid`/`tid` at `t` ns with `frames` given root first, as people read them.
    pub fn sample(pid: u32, tid: u32, t: u64, root_first: &[(&str, u32)]) -> Sample {
        Sample {
            pid,
            comm: format!("py{pid}"),
            tid,
            thread_name: Some(format!("T{tid}")),
            held_gil: true,
            time_ns: t,
            frames: root_first
                .iter()
                .rev()
                .map(|&(n, l)| frame(n, "/app/main.py", Some(l)))
                .collect(),
            truncated: false,
            incomplete: None,
        }
    }

    /// Two threads of one process: 3× main;a, 2× main;b (thread 11), 1× main;a (thread 12).
    pub fn small() -> Aggregate {
        let mut agg = Aggregate::new(Options::default(), 100);
        for i in 0..3 {
            agg.record(&sample(10, 11, 1_000 + i, &[("main", 1), ("a", 2)]));
        }
        for i in 0..2 {
            agg.record(&sample(10, 11, 2_000 + i, &[("main", 1), ("b", 3)]));
        }
        agg.record(&sample(10, 12, 3_000, &[("main", 1), ("a", 2)]));
        agg
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

    fn labels(agg: &Aggregate) -> Vec<(String, u64)> {
        agg.stacks()
            .into_iter()
            .map(|(k, c)| {
                let l: Vec<String> = agg.nodes(k).iter().map(Node::label).collect();
                (l.join(";"), c.samples)
            })
            .collect()
    }

    #[test]
    fn identical_stacks_share_one_counter() {
        let agg = small();
        assert_eq!(agg.unique_stacks(), 3);
        assert_eq!(agg.frames().len(), 3, "main, a, b interned once");
        assert_eq!(
            labels(&agg),
            [
                ("main (/app/main.py:1);a (/app/main.py:2)".into(), 3),
                ("main (/app/main.py:1);b (/app/main.py:3)".into(), 2),
                ("main (/app/main.py:1);a (/app/main.py:2)".into(), 1),
            ]
        );
        assert_eq!(agg.total().samples, 6);
        assert_eq!(agg.processes()[&10].counts.samples, 6);
        assert_eq!(agg.threads()[&(10, 11)].counts.samples, 5);
        assert_eq!(agg.threads()[&(10, 12)].name.as_deref(), Some("T12"));
        assert_eq!(agg.first_sample_ns(), Some(1_000));
        assert_eq!(agg.last_sample_ns(), Some(3_000));
        assert_eq!(agg.period_ns(), 10_000_000);
        assert_eq!(agg.duration_ns(), 2_000 + 10_000_000);
    }

    #[test]
    fn borrowed_key_finds_the_stack() {
        use std::hash::BuildHasher;
        let agg = small();
        let (key, _) = agg.stacks()[0];
        let borrowed = StackRef {
            pid: key.pid,
            tid: key.tid,
            frames: &key.frames,
            truncated: key.truncated,
            incomplete: key.incomplete,
        };
        let h = agg.stacks.hasher();
        assert_eq!(h.hash_one(&borrowed), h.hash_one(key));
        assert!(agg.stacks.get(&borrowed).is_some());
    }

    #[test]
    fn process_and_thread_frames() {
        let mut agg = Aggregate::new(
            Options {
                threads: true,
                ..Default::default()
            },
            99,
        );
        let mut s = sample(10, 11, 5, &[("f", 1)]);
        agg.record(&s);
        assert_eq!(labels(&agg)[0].0, "thread 11 (T11);f (/app/main.py:1)");
        s.pid = 20;
        s.comm = "python3.12".into();
        s.tid = 21;
        s.thread_name = None;
        agg.record(&s);
        assert_eq!(
            labels(&agg),
            [
                (
                    "process 10 (py10);thread 11 (T11);f (/app/main.py:1)".into(),
                    1
                ),
                (
                    "process 20 (python3.12);thread 21;f (/app/main.py:1)".into(),
                    1
                ),
            ]
        );
        let mut never = Aggregate::new(
            Options {
                process_frames: ProcessFrames::Never,
                ..Default::default()
            },
            99,
        );
        let mut always = Aggregate::new(
            Options {
                process_frames: ProcessFrames::Always,
                ..Default::default()
            },
            99,
        );
        for agg in [&mut never, &mut always] {
            agg.record(&sample(10, 11, 5, &[("f", 1)]));
            agg.record(&sample(20, 21, 5, &[("f", 1)]));
        }
        assert_eq!(labels(&never)[0].0, "f (/app/main.py:1)");
        assert_eq!(labels(&always)[0].0, "process 10 (py10);f (/app/main.py:1)");
        let mut one = Aggregate::new(
            Options {
                process_frames: ProcessFrames::Always,
                ..Default::default()
            },
            99,
        );
        one.record(&sample(10, 11, 5, &[("f", 1)]));
        assert_eq!(labels(&one)[0].0, "process 10 (py10);f (/app/main.py:1)");
    }

    #[test]
    fn gil_filter_counts_what_it_drops() {
        let mut agg = Aggregate::new(
            Options {
                gil_only: true,
                ..Default::default()
            },
            99,
        );
        let mut s = sample(10, 11, 5, &[("f", 1)]);
        agg.record(&s);
        s.held_gil = false;
        agg.record(&s);
        agg.record(&s);
        assert_eq!(agg.total(), Counts { samples: 1, gil: 1 });
        assert_eq!(agg.filtered_no_gil(), 2);
        let mut all = Aggregate::new(Options::default(), 99);
        all.record(&s);
        all.record(&sample(10, 11, 5, &[("f", 1)]));
        assert_eq!(all.total(), Counts { samples: 2, gil: 1 });
        assert_eq!(all.stacks()[0].1, Counts { samples: 2, gil: 1 });
    }

    #[test]
    fn truncated_and_incomplete_are_marked_and_counted() {
        let mut agg = Aggregate::new(Options::default(), 99);
        let mut s = sample(10, 11, 5, &[("f", 1), ("g", 2)]);
        s.truncated = true;
        agg.record(&s);
        let mut s = sample(10, 11, 6, &[("g", 2)]);
        s.incomplete = Some("unreadable memory".into());
        agg.record(&s);
        agg.record(&s);
        let mut s = sample(10, 11, 7, &[]);
        s.incomplete = Some("no thread state".into());
        agg.record(&s);
        agg.record(&sample(10, 11, 8, &[("f", 1), ("g", 2)]));
        agg.lost("ring buffer full", 4);
        agg.lost("ring buffer full", 1);
        agg.lost("not Python yet", 0);
        assert_eq!(
            labels(&agg),
            [
                ("[incomplete: no thread state]".into(), 1),
                (
                    "[incomplete: unreadable memory];g (/app/main.py:2)".into(),
                    2
                ),
                ("f (/app/main.py:1);g (/app/main.py:2)".into(), 1),
                (
                    "[truncated];f (/app/main.py:1);g (/app/main.py:2)".into(),
                    1
                ),
            ]
        );
        assert_eq!(agg.truncated(), 1);
        assert_eq!(agg.incomplete()["unreadable memory"], 2);
        assert_eq!(agg.incomplete()["no thread state"], 1);
        assert_eq!(agg.lost_samples().len(), 1);
        assert_eq!(agg.lost_samples()["ring buffer full"], 5);
        assert_eq!(agg.total().samples, 5);
    }

    #[test]
    fn unknown_line_and_span() {
        let mut agg = Aggregate::new(Options::default(), 0);
        assert_eq!(agg.hz(), 1, "hz is at least 1");
        let mut s = sample(1, 1, 50, &[]);
        s.frames = vec![frame("<module>", "x.py", None)];
        agg.record(&s);
        assert_eq!(labels(&agg)[0].0, "<module> (x.py:?)");
        assert_eq!(agg.start_ns(), 50);
        agg.set_span(10, 2_000);
        assert_eq!((agg.start_ns(), agg.duration_ns()), (10, 1_990));
    }

    #[test]
    fn default_file_names() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            ProfileFormat::Flamegraph.default_file_name(t),
            "pytrace-20231114T221320Z.svg"
        );
        assert_eq!(
            ProfileFormat::Pprof.default_file_name(t),
            "pytrace-20231114T221320Z.pb.gz"
        );
        for f in ProfileFormat::value_variants() {
            assert!(f.default_file_name(t).ends_with(f.extension()));
        }
    }

    #[test]
    fn profile_output_records_and_finishes() {
        let mut p: Box<dyn ProfileOutput> =
            Box::new(Profile::new(ProfileFormat::Folded, Options::default(), 99));
        p.record(&sample(1, 1, 5, &[("f", 1)]));
        p.record(&sample(1, 1, 6, &[("f", 1)]));
        p.lost("ring buffer full", 2);
        let mut out = Vec::new();
        p.finish(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "f (/app/main.py:1) 2\n");
    }
}
