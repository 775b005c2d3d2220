//! Checks the built-in layout tables against the headers of every CPython installed with
//! pyenv: `tools/cpython-offsets/gen.sh` compiles a C program against each version's headers
//! and prints `offsetof`/`sizeof` values, which must equal the table field by field.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pytrace::python::layout::{builtin_layout, supported_versions, VersionLayout};
use pytrace_common::{PyOffsets, NO_OFFSET};

type Getter = fn(&PyOffsets) -> u32;

/// Every `PyOffsets` field by name.
const FIELDS: &[(&str, Getter)] = &[
    ("interp_threads_head", |o| o.interp_threads_head),
    ("interp_gc_collecting", |o| o.interp_gc_collecting),
    ("tstate_next", |o| o.tstate_next),
    ("tstate_thread_id", |o| o.tstate_thread_id),
    ("tstate_native_thread_id", |o| o.tstate_native_thread_id),
    ("tstate_frame", |o| o.tstate_frame),
    ("cframe_current_frame", |o| o.cframe_current_frame),
    ("frame_previous", |o| o.frame_previous),
    ("frame_code", |o| o.frame_code),
    ("frame_instr", |o| o.frame_instr),
    ("frame_owner", |o| o.frame_owner),
    ("frame_owner_shim_min", |o| o.frame_owner_shim_min),
    ("code_filename", |o| o.code_filename),
    ("code_name", |o| o.code_name),
    ("code_linetable", |o| o.code_linetable),
    ("code_firstlineno", |o| o.code_firstlineno),
    ("unicode_length", |o| o.unicode_length),
    ("unicode_state", |o| o.unicode_state),
    ("unicode_ascii_data", |o| o.unicode_ascii_data),
    ("unicode_compact_data", |o| o.unicode_compact_data),
    ("bytes_size", |o| o.bytes_size),
    ("bytes_data", |o| o.bytes_data),
    ("interp_next", |o| o.interp_next),
    ("tstate_status", |o| o.tstate_status),
    ("unicode_state_shift", |o| o.unicode_state_shift),
    ("code_version", |o| o.code_version),
];

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/cpython-offsets/gen.sh")
}

fn pyenv_versions_dir() -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("pyenv").arg("root").output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    root.join("versions")
}

/// Installed pyenv version names, e.g. `3.11.7`.
fn installed_versions(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `(major, minor)` of a plain CPython release name such as `3.11.7`; `None` for anything
/// else (`3.13.0t`, `pypy3.10-7.3.12`, `3.12-dev`, …).
fn release_version(name: &str) -> Option<(u8, u8)> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((parts[0].parse().ok()?, parts[1].parse().ok()?))
}

/// `name: value,` lines of the generator's output.
fn parse_generated(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.ends_with('{') && *l != "},")
        .filter_map(|l| {
            let (key, value) = l.strip_suffix(',')?.split_once(": ")?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

fn render(value: u32) -> String {
    if value == NO_OFFSET {
        "NO_OFFSET".to_string()
    } else {
        value.to_string()
    }
}

/// Differences between a built-in table and the generator's output for one version.
fn compare(table: &VersionLayout, generated: &BTreeMap<String, String>) -> Vec<String> {
    let mut expected: Vec<(String, String)> = vec![
        ("major".into(), table.major.to_string()),
        ("minor".into(), table.minor.to_string()),
        (
            "runtime_interp_head".into(),
            format!("{:?}", table.runtime_interp_head),
        ),
        ("instr".into(), format!("InstrKind::{:?}", table.instr)),
        (
            "line_table".into(),
            format!("LineTableKind::{:?}", table.line_table),
        ),
        (
            "gilstate_bound_mask".into(),
            format!("{:?}", table.gilstate_bound_mask),
        ),
    ];
    expected.extend(
        FIELDS
            .iter()
            .map(|(name, get)| (name.to_string(), render(get(&table.offsets)))),
    );

    let mut problems = Vec::new();
    for (key, want) in &expected {
        match generated.get(key) {
            None => problems.push(format!("{key}: not printed by the generator")),
            Some(got) if got != want => {
                problems.push(format!("{key}: table has {want}, headers give {got}"))
            }
            Some(_) => {}
        }
    }
    for key in generated.keys() {
        if !expected.iter().any(|(k, _)| k == key) {
            problems.push(format!("{key}: printed by the generator but not checked"));
        }
    }
    problems
}

#[test]
fn builtin_tables_match_installed_headers() {
    let dir = pyenv_versions_dir();
    let installed = installed_versions(&dir);
    let mut failures = Vec::new();
    let mut checked = 0;

    for (major, minor) in supported_versions() {
        let matching: Vec<&String> = installed
            .iter()
            .filter(|n| release_version(n) == Some((major, minor)))
            .collect();
        if matching.is_empty() {
            eprintln!(
                "skipped {major}.{minor}: no {}/{major}.{minor}.* installed",
                dir.display()
            );
        }
        for name in matching {
            let out = Command::new("sh")
                .arg(generator())
                .arg(dir.join(name))
                .output()
                .expect("run sh");
            if !out.status.success() {
                failures.push(format!(
                    "{name}: generator failed ({}):\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let generated = parse_generated(&String::from_utf8_lossy(&out.stdout));
            let table = builtin_layout(major, minor).unwrap();
            let problems = compare(table, &generated);
            if problems.is_empty() {
                eprintln!("checked {name}: {} fields match", generated.len());
            }
            failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
            checked += 1;
        }
    }
    for name in &installed {
        let covered = release_version(name).is_some_and(|(a, b)| builtin_layout(a, b).is_some());
        if !covered {
            eprintln!("not compared: {name} (no built-in table for it)");
        }
    }

    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} installed version(s) compared");
}

#[test]
fn a_wrong_table_is_caught() {
    let table = builtin_layout(3, 12).unwrap();
    let mut text = String::from("major: 3,\nminor: 12,\n");
    text += &format!("runtime_interp_head: {:?},\n", table.runtime_interp_head);
    text += &format!("instr: InstrKind::{:?},\n", table.instr);
    text += &format!("line_table: LineTableKind::{:?},\n", table.line_table);
    text += &format!("gilstate_bound_mask: {:?},\n", table.gilstate_bound_mask);
    for (name, get) in FIELDS {
        text += &format!("{name}: {},\n", render(get(&table.offsets)));
    }
    assert!(compare(table, &parse_generated(&text)).is_empty());

    let off_by_eight = text.replace("tstate_thread_id: 136,", "tstate_thread_id: 144,");
    let problems = compare(table, &parse_generated(&off_by_eight));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("tstate_thread_id:"));

    let missing = text.replace("bytes_data: 32,\n", "");
    assert_eq!(compare(table, &parse_generated(&missing)).len(), 1);
}
