//! The profile files opened by what their users open them with: `go tool pprof` (pprof),
//! speedscope's own JSON schema from its npm package (speedscope), inferno re-rendering the
//! folded file, and an XML parser on the flame graph. The reference in each test is the folded
//! file written from the same samples.
//!
//! `cargo xtask test` installs Debian's `golang-go` and fetches the `speedscope` npm package into
//! `target/test-tools/`; a missing tool fails these tests (it never skips them). No root needed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use pytrace::profile::{Aggregate, Frame, Options, ProfileFormat, Sample};

/// The schema of the speedscope release that xtask fetches (`SPEEDSCOPE_VERSION` in
/// xtask/src/main.rs).
const SPEEDSCOPE_SCHEMA: &str =
    "target/test-tools/speedscope-1.25.0/package/dist/release/file-format-schema.json";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A scratch directory for one test, emptied first; removed when the test passes, kept (under
/// `$TMPDIR/pytrace-profile-PID-NAME`) when it fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("pytrace-profile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Names and files with what targets can hold: `<…>`, `&`, `;`, spaces, non-ASCII.
const NAMES: &[&str] = &[
    "main",
    "<module>",
    "<lambda>",
    "run_forever",
    "_run_once",
    "compute",
    "semi;colon",
    "weird & <name> \"q\"",
    "Ünïcode_函数",
    "spaced name",
    "Outer.method",
    "hash_it",
];
const FILES: &[&str] = &[
    "/app/main.py",
    "/usr/lib/python3.12/asyncio/base_events.py",
    "/app/with space/x.py",
    "<frozen importlib._bootstrap>",
];

/// A deterministic mix of two processes and five threads: ~150 unique stacks of depth 1–12,
/// each sampled 10–39 times, some truncated, some incomplete, some lines unknown.
fn synthetic(options: Options) -> Aggregate {
    let mut agg = Aggregate::new(options, 99);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let threads = [(100, 100), (100, 101), (100, 102), (200, 200), (200, 203)];
    for i in 0..150u64 {
        let (pid, tid) = threads[next(threads.len() as u64) as usize];
        let depth = 1 + next(12) as usize;
        let frames: Vec<Frame> = (0..depth)
            .map(|_| Frame {
                name: NAMES[next(NAMES.len() as u64) as usize].into(),
                filename: FILES[next(FILES.len() as u64) as usize].into(),
                line: (next(10) > 0).then(|| 1 + next(400) as u32),
            })
            .collect();
        let truncated = next(10) == 0;
        let incomplete = (next(12) == 0).then(|| "unreadable memory".to_string());
        for j in 0..10 + next(30) {
            agg.record(&Sample {
                pid,
                comm: format!("python3.{}", pid / 100 + 10),
                tid,
                thread_name: (tid != 203).then(|| format!("Thread-{tid}")),
                held_gil: j % 3 != 0,
                time_ns: 1_700_000_000_000_000_000 + (i * 40 + j) * 10_101_010,
                frames: frames.clone(),
                truncated,
                incomplete: incomplete.clone(),
            });
        }
    }
    agg
}

fn options() -> Options {
    Options {
        threads: true,
        ..Default::default()
    }
}

fn write(agg: &Aggregate, format: ProfileFormat, dir: &Path) -> PathBuf {
    let path = dir.join(format!("profile.{}", format.extension()));
    let mut f = std::fs::File::create(&path).unwrap();
    format.write(agg, &mut f).unwrap();
    path
}

/// Undoes the folded format's escapes.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let hex: String = it.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
    }
    out
}

/// The folded file as (root-first frames, count), stacks summed.
fn read_folded(path: &Path) -> BTreeMap<Vec<String>, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut stacks = BTreeMap::new();
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').expect("`stack count`");
        let frames = stack.split(';').map(unescape).collect();
        *stacks.entry(frames).or_default() += count.parse::<u64>().expect("a count");
    }
    stacks
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn go() -> Command {
    let found = Command::new("go").arg("version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`go` is missing: `cargo xtask test` installs Debian's golang-go (apt-get install golang-go)"
    );
    Command::new("go")
}

/// A folded frame `name (file:line)` as `go tool pprof -traces -lines` prints it: `name
/// file:line`, `name file` when the line is unknown; other frames as they are.
fn as_pprof_prints(frame: &str) -> String {
    let Some(rest) = frame.strip_suffix(')') else {
        return frame.to_string();
    };
    let Some((name, file_line)) = rest.rsplit_once(" (") else {
        return frame.to_string();
    };
    match file_line.rsplit_once(':') {
        Some((file, "?")) => format!("{name} {file}"),
        Some((file, line)) if line.parse::<u32>().is_ok() => format!("{name} {file}:{line}"),
        _ => frame.to_string(),
    }
}

/// One sample as `go tool pprof -traces` shows it: labels, root-first frames, count.
type Trace = (BTreeMap<String, String>, Vec<String>, u64);

/// `go tool pprof -traces` on a file: (labels, root-first frames, count) per sample.
fn pprof_traces(path: &Path) -> (String, Vec<Trace>) {
    let text = run(go()
        .args([
            "tool",
            "pprof",
            "-traces",
            "-lines",
            "-sample_index=samples",
        ])
        .arg(path));
    let (header, body) = text.split_once("-----------+-").expect("a trace separator");
    let mut traces = Vec::new();
    // Each block starts with the rest of its separator line; the last one is only that.
    for block in body.split("-----------+-") {
        if block.lines().skip(1).all(|l| l.trim().is_empty()) {
            continue;
        }
        let mut labels = BTreeMap::new();
        let mut frames = Vec::new();
        let mut count = None;
        for line in block.lines().skip(1) {
            if count.is_none() {
                let t = line.trim_start();
                let (first, rest) = t.split_once(' ').unwrap_or((t, ""));
                if let Ok(n) = first.parse::<u64>() {
                    count = Some(n);
                    frames.push(rest.trim_start().to_string());
                } else if let Some((k, v)) = t.split_once(":  ") {
                    labels.insert(k.to_string(), v.to_string());
                } else {
                    panic!("unexpected line {line:?}");
                }
            } else if !line.trim().is_empty() {
                assert!(line.starts_with("             "), "{line:?}");
                frames.push(line[13..].to_string());
            }
        }
        frames.reverse();
        traces.push((labels, frames, count.expect("a count line")));
    }
    (header.to_string(), traces)
}

#[test]
fn pprof_opened_by_go_tool_pprof_matches_folded() {
    let dir = Scratch::new("pprof");
    let agg = synthetic(options());
    let folded = read_folded(&write(&agg, ProfileFormat::Folded, &dir));
    let pprof = write(&agg, ProfileFormat::Pprof, &dir);
    let total: u64 = folded.values().sum();

    let (header, traces) = pprof_traces(&pprof);
    assert!(
        header.contains(&format!("Total samples = {total} ")),
        "{header}"
    );
    let mut seen: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (labels, frames, count) in &traces {
        // threads: true, so the second frame (under `process …`) is `thread TID …`; the
        // labels must name the same thread and process.
        let tid = &labels["thread_id"];
        assert!(
            frames[0].starts_with(&format!("process {} (", labels["pid"])),
            "{frames:?}"
        );
        assert!(
            frames[1].starts_with(&format!("thread {tid}")),
            "{frames:?} {labels:?}"
        );
        match labels.get("thread_name") {
            Some(name) => assert_eq!(frames[1], format!("thread {tid} ({name})")),
            None => assert_eq!(frames[1], format!("thread {tid}")),
        }
        *seen.entry(frames.clone()).or_default() += count;
    }
    let want: BTreeMap<Vec<String>, u64> = folded
        .iter()
        .map(|(frames, &n)| (frames.iter().map(|f| as_pprof_prints(f)).collect(), n))
        .collect();
    assert_eq!(seen, want);
    assert!(want.len() > 100, "the data has many stacks: {}", want.len());

    // -raw: the cpu values are count × period, the period that of 99 Hz.
    let raw = run(go().args(["tool", "pprof", "-raw"]).arg(&pprof));
    assert!(
        raw.contains("PeriodType: cpu nanoseconds\nPeriod: 10101010\n"),
        "{raw}"
    );
    let (mut counts, mut cpu) = (0u64, 0u64);
    let samples = raw.split_once("samples/count cpu/nanoseconds\n").unwrap().1;
    for line in samples.lines().take_while(|l| !l.starts_with("Locations")) {
        let t = line.trim_start();
        if let Some((values, _)) = t.split_once(": ") {
            let v: Vec<u64> = values
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            if v.len() == 2 {
                assert_eq!(v[1], v[0] * 10_101_010);
                counts += v[0];
                cpu += v[1];
            }
        }
    }
    assert_eq!(counts, total);
    assert_eq!(cpu, total * 10_101_010);

    // -top: the default sample type is cpu; its total is the folded total × period.
    let top = run(go().args(["tool", "pprof", "-top", "-unit=ns"]).arg(&pprof));
    assert!(
        top.contains(&format!("Total samples = {}ns", total * 10_101_010)),
        "{top}"
    );
}

#[test]
fn pprof_of_one_process_without_thread_frames() {
    let dir = Scratch::new("pprof-one");
    let mut agg = Aggregate::new(Options::default(), 999);
    agg.record(&Sample {
        pid: 7,
        comm: "python3".into(),
        tid: 7,
        thread_name: Some("MainThread".into()),
        held_gil: true,
        time_ns: 1,
        frames: vec![Frame {
            name: "<module>".into(),
            filename: "<string>".into(),
            line: Some(1),
        }],
        truncated: false,
        incomplete: None,
    });
    let (header, traces) = pprof_traces(&write(&agg, ProfileFormat::Pprof, &dir));
    assert!(header.contains("Total samples = 1 "), "{header}");
    assert_eq!(traces.len(), 1);
    let (labels, frames, count) = &traces[0];
    assert_eq!(frames, &["<module> <string>:1"]);
    assert_eq!(*count, 1);
    assert_eq!(labels["pid"], "7");
    assert_eq!(labels["thread_id"], "7");
    assert_eq!(labels["thread_name"], "MainThread");
}

fn speedscope_validator() -> jsonschema::Validator {
    let path = workspace().join(SPEEDSCOPE_SCHEMA);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "speedscope's schema {} is missing ({e}): `cargo xtask test` fetches the npm package \
             speedscope into target/test-tools/",
            path.display()
        )
    });
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("speedscope's schema compiles")
}

#[test]
fn speedscope_valid_against_its_schema_and_matches_folded() {
    let dir = Scratch::new("speedscope");
    let validator = speedscope_validator();
    for options in [options(), Options::default()] {
        let agg = synthetic(options);
        let path = write(&agg, ProfileFormat::Speedscope, &dir);
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&file)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");

        // What the schema cannot say: indices in range, one weight per sample, totals.
        let frames = file["shared"]["frames"].as_array().unwrap();
        let profiles = file["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 5, "one per thread");
        let mut stacks: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for p in profiles {
            let samples = p["samples"].as_array().unwrap();
            let weights = p["weights"].as_array().unwrap();
            assert_eq!(samples.len(), weights.len());
            let sum: u64 = weights.iter().map(|w| w.as_u64().unwrap()).sum();
            assert_eq!(
                p["endValue"].as_u64().unwrap() - p["startValue"].as_u64().unwrap(),
                sum
            );
            for (s, w) in samples.iter().zip(weights) {
                let names: Vec<String> = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        let f = &frames[i.as_u64().unwrap() as usize];
                        match (f["file"].as_str(), f["line"].as_u64()) {
                            (Some(file), Some(l)) => {
                                format!("{} ({file}:{l})", f["name"].as_str().unwrap())
                            }
                            (Some(file), None) => {
                                format!("{} ({file}:?)", f["name"].as_str().unwrap())
                            }
                            _ => f["name"].as_str().unwrap().to_string(),
                        }
                    })
                    .collect();
                *stacks.entry(names).or_default() += w.as_u64().unwrap();
            }
        }
        // The folded file without its process and thread frames (speedscope names its
        // profiles by them instead).
        let mut want: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for (frames, n) in read_folded(&write(&agg, ProfileFormat::Folded, &dir)) {
            let rest = frames
                .into_iter()
                .skip_while(|f| f.starts_with("process ") || f.starts_with("thread "))
                .collect();
            *want.entry(rest).or_default() += n;
        }
        assert_eq!(stacks, want);
    }

    // The validator does reject a file speedscope would not open.
    let agg = synthetic(options());
    let mut out = Vec::new();
    ProfileFormat::Speedscope.write(&agg, &mut out).unwrap();
    let mut broken: serde_json::Value = serde_json::from_slice(&out).unwrap();
    broken["profiles"][0]
        .as_object_mut()
        .unwrap()
        .remove("weights");
    assert!(!validator.is_valid(&broken));
}

/// Each `<title>` of an SVG flame graph, as (frame label, samples).
fn svg_titles(text: &str) -> Vec<(String, u64)> {
    let opt = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opt).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .filter_map(|t| {
            let (label, rest) = t.rsplit_once(" (")?;
            let n = rest.split_once(" samples")?.0.replace(',', "");
            Some((label.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Every frame of the folded file, escaped as it is there, with its total samples.
fn folded_frames(folded: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(folded).unwrap();
    text.lines()
        .flat_map(|l| l.rsplit_once(' ').unwrap().0.split(';'))
        .map(str::to_string)
        .collect()
}

#[test]
fn folded_rerendered_by_inferno_and_svg_well_formed() {
    let dir = Scratch::new("inferno");
    let agg = synthetic(options());
    let folded = write(&agg, ProfileFormat::Folded, &dir);
    let total: u64 = read_folded(&folded).values().sum();
    let frames = folded_frames(&folded);

    // Our own SVG.
    let ours = std::fs::read_to_string(write(&agg, ProfileFormat::Flamegraph, &dir)).unwrap();
    let titles = svg_titles(&ours);
    assert!(
        titles.contains(&("all".to_string(), total)),
        "{:?}",
        &titles[..3]
    );
    let labels: BTreeSet<&str> = titles.iter().map(|(l, _)| l.as_str()).collect();
    for f in &frames {
        assert!(labels.contains(f.as_str()), "{f:?} not in the SVG");
    }

    // The folded file read back and drawn by inferno: the same frames and counts.
    let mut again = Vec::new();
    let mut opt = inferno::flamegraph::Options::default();
    opt.count_name = "samples".into();
    inferno::flamegraph::from_files(&mut opt, std::slice::from_ref(&folded), &mut again).unwrap();
    let rerendered = svg_titles(std::str::from_utf8(&again).unwrap());
    let count = |t: &[(String, u64)]| -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (l, n) in t {
            *m.entry(l.clone()).or_default() += n;
        }
        m
    };
    assert_eq!(count(&rerendered), count(&titles));
    assert_eq!(count(&rerendered)["all"], total);
}
