//! Checks the built-in GIL table (`python/gil.rs`) against the headers of every CPython 3.7–3.12
//! installed with pyenv: `tools/cpython-offsets/gil.c`, compiled against each version's
//! headers, prints the offsets the table must hold.
use std::path::{Path, PathBuf};
use std::process::Command;

use pytrace::python::gil::{builtin_gil, GilLocation};

fn versions_dir() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
        .join("versions")
}

/// `key=value` pairs printed by the program.
fn values(text: &str) -> Vec<(String, u32)> {
    text.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn gil_offsets_match_each_installed_versions_headers() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/cpython-offsets/gil.c");
    let mut checked = 0;
    let mut failures = Vec::new();
    let Ok(entries) = std::fs::read_dir(versions_dir()) else {
        panic!("no pyenv versions under {}", versions_dir().display());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let parts: Vec<u8> = name.split('.').filter_map(|p| p.parse().ok()).collect();
        let [3, minor, _] = parts[..] else { continue };
        if !(7..=12).contains(&minor) {
            continue;
        }
        let include = entry.path().join(format!("include/python3.{minor}"));
        let include = if include.is_dir() {
            include
        } else {
            entry.path().join(format!("include/python3.{minor}m"))
        };
        let binary =
            std::env::temp_dir().join(format!("pytrace-gil-{name}-{}", std::process::id()));
        let status = Command::new("cc")
            .args(["-std=gnu11", "-w", "-DPy_BUILD_CORE"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("-I{}/internal", include.display()))
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .status()
            .expect("cc");
        assert!(status.success(), "compiling gil.c for {name}");
        let out = Command::new(&binary).output().expect("running gil.c");
        let _ = std::fs::remove_file(&binary);
        let got = values(&String::from_utf8_lossy(&out.stdout));
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let table = builtin_gil(3, minor).expect("a built-in GIL layout");
        let location = match (get("runtime_gil"), get("interp_ceval_gil")) {
            (Some(off), None) => GilLocation::Runtime(off),
            (None, Some(off)) => GilLocation::InterpPointer(off),
            other => panic!("{name}: unexpected output {other:?}"),
        };
        if (location, get("last_holder"), get("locked"))
            != (table.location, Some(table.last_holder), Some(table.locked))
        {
            failures.push(format!("{name}: headers say {got:?}, table has {table:?}"));
        }
        checked += 1;
    }
    assert!(checked > 0, "no CPython 3.7–3.12 installed with pyenv");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
