//! The per-file analysis cache of `Inspector`: a second process using the same interpreter file
//! is described from the cache, with the same result as a fresh inspection; another interpreter
//! file (another version, a static build, a non-Python executable) is analysed once; a file
//! replaced on disk is analysed again while the processes still mapping the old one keep hitting.
//!
//! Needs pyenv's 3.11 and 3.12 (shared libpython) and ptrace rights over the children.

mod common;

use std::path::Path;

use common::{python_ready, spawn_sleep, TempDir, DEBIAN_PYTHON};
use pytrace::process::{self, CacheStats, InspectError, Inspector};

const PY311: &str = "/root/.pyenv/versions/3.11.7/bin/python3.11";
const PY312: &str = "/root/.pyenv/versions/3.12.1/bin/python3.12";
const LIB312: &str = "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0";

fn available(paths: &[&str]) -> bool {
    let missing: Vec<&&str> = paths.iter().filter(|p| !Path::new(p).exists()).collect();
    if !missing.is_empty() {
        eprintln!("skipping: {missing:?} missing");
    }
    missing.is_empty()
}

/// `(hits, files analysed)`.
fn counts(inspector: &Inspector) -> (u64, u64) {
    let CacheStats { hits, inserts, .. } = inspector.cache_stats();
    (hits, inserts)
}

#[test]
fn second_process_of_same_file_hits_the_cache() {
    if !available(&[PY311, PY312]) {
        return;
    }
    let a = python_ready(PY311, None);
    let b = python_ready(PY311, None);
    let c = python_ready(PY312, None);
    let inspector = Inspector::new(16);
    assert_eq!(counts(&inspector), (0, 0));

    let pa = inspector.inspect(a.pid()).unwrap();
    assert_eq!((pa.version.0, pa.version.1), (3, 11));
    assert_eq!(counts(&inspector), (0, 1), "first 3.11 process: analysed");

    let pb = inspector.inspect(b.pid()).unwrap();
    assert_eq!(counts(&inspector), (1, 1), "second 3.11 process: cached");
    assert_eq!(pb.binary, pa.binary);
    assert_eq!(pb.version_hex, pa.version_hex);
    assert_eq!(
        pb,
        Inspector::new(16).inspect(b.pid()).unwrap(),
        "cached and fresh inspections differ"
    );
    assert_eq!(pb, process::inspect(b.pid()).unwrap());

    let pc = inspector.inspect(c.pid()).unwrap();
    assert_eq!((pc.version.0, pc.version.1), (3, 12));
    assert_eq!(counts(&inspector), (1, 2), "3.12: another file, analysed");
    assert_eq!(inspector.inspect(a.pid()).unwrap(), pa);
    assert_eq!(inspector.inspect(c.pid()).unwrap(), pc);
    assert_eq!(counts(&inspector), (3, 2));
    assert_eq!(inspector.cache_stats().entries, 2);
}

#[test]
fn static_build_and_non_python_files_are_cached_too() {
    if !available(&[DEBIAN_PYTHON]) {
        return;
    }
    let a = python_ready(DEBIAN_PYTHON, None);
    let b = python_ready(DEBIAN_PYTHON, None);
    let (s1, s2) = (spawn_sleep(), spawn_sleep());
    let inspector = Inspector::new(16);

    let pa = inspector.inspect(a.pid()).unwrap();
    assert_eq!(pa.binary, Path::new(DEBIAN_PYTHON));
    assert_eq!(counts(&inspector), (0, 1));
    let pb = inspector.inspect(b.pid()).unwrap();
    assert_eq!(counts(&inspector), (1, 1));
    assert_eq!(pb, Inspector::new(16).inspect(b.pid()).unwrap());

    for (target, expected) in [(&s1, (1, 2)), (&s2, (2, 2))] {
        match inspector.inspect(target.pid()) {
            Err(InspectError::NotPython { pid, comm }) => {
                assert_eq!((pid, comm.as_str()), (target.pid(), "sleep"))
            }
            other => panic!("expected NotPython, got {other:?}"),
        }
        assert_eq!(counts(&inspector), expected, "negative result cached");
    }
}

#[test]
fn replaced_file_is_analysed_again() {
    if !available(&[PY312, LIB312]) {
        return;
    }
    let dir = TempDir::new("cache");
    let lib = dir.0.join("libpython3.12.so.1.0");
    std::fs::copy(LIB312, &lib).unwrap();

    let old = python_ready(PY312, Some(&dir.0));
    let inspector = Inspector::new(16);
    let p_old = inspector.inspect(old.pid()).unwrap();
    assert_eq!(p_old.binary, lib);
    assert_eq!(counts(&inspector), (0, 1));

    // Replace the library (new inode) the way package managers do.
    let staged = dir.0.join("staged");
    std::fs::copy(LIB312, &staged).unwrap();
    std::fs::rename(&staged, &lib).unwrap();
    let new = python_ready(PY312, Some(&dir.0));
    let p_new = inspector.inspect(new.pid()).unwrap();
    assert_eq!(p_new.binary, lib);
    assert_eq!(counts(&inspector), (0, 2), "replaced file: analysed again");

    // The first process still maps the unlinked original, reached through map_files.
    let again = inspector.inspect(old.pid()).unwrap();
    assert!(
        again
            .binary
            .starts_with(format!("/proc/{}/map_files", old.pid())),
        "{}",
        again.binary.display()
    );
    assert_eq!(again.runtime_addr, p_old.runtime_addr);
    assert_eq!(counts(&inspector), (1, 2), "original file: still cached");
}

#[test]
fn cache_is_bounded() {
    if !available(&[PY311, PY312, DEBIAN_PYTHON]) {
        return;
    }
    let targets = [
        python_ready(PY311, None),
        python_ready(PY312, None),
        python_ready(DEBIAN_PYTHON, None),
    ];
    let inspector = Inspector::new(2);
    for _ in 0..2 {
        for t in &targets {
            inspector.inspect(t.pid()).unwrap();
            assert!(inspector.cache_stats().entries <= 2);
        }
    }
    let stats = inspector.cache_stats();
    assert_eq!((stats.hits, stats.inserts, stats.evictions), (0, 6, 4));
}
