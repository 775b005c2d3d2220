//! Live inspection of real interpreters: pyenv's CPython 3.6–3.13 (shared libpython builds),
//! Debian's static `/usr/bin/python3.11`, a 2.7, and non-Python processes.
//!
//! Each interpreter prints what it knows about itself (`sys.version_info`, `sys.hexversion`, the
//! address of `_PyRuntime` through ctypes, `PyInterpreterState_Head()`) and then sleeps; the
//! inspection must agree, and the interpreter list read from its memory at the found address must
//! lead to the same interpreter. Needs root (or ptrace rights over the children).

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Target, DEBIAN_PYTHON};
use pytrace::process::{self, InspectError};

const PYENV_INTERPRETERS: &[&str] = &[
    "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0",
];

const REPORT_SCRIPT: &str = r#"
import sys, ctypes
api = ctypes.pythonapi
api.PyInterpreterState_Head.restype = ctypes.c_void_p
try:
    rt = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
except ValueError:
    rt = 0
v = sys.version_info
sys.stdout.write("%d %d %d %d %d %d\n" % (v[0], v[1], v[2], sys.hexversion, rt, api.PyInterpreterState_Head() or 0))
sys.stdout.flush()
import time
time.sleep(30)
"#;

/// What a target interpreter says about itself.
#[derive(Debug)]
struct Report {
    version: (u8, u8, u8),
    hexversion: u32,
    runtime: u64,
    interp_head: u64,
}

fn read_report(target: &mut Target) -> Report {
    let line = target.read_line();
    let f = common::parse_u64s(&line);
    assert_eq!(f.len(), 6, "bad report line {line:?}");
    Report {
        version: (f[0] as u8, f[1] as u8, f[2] as u8),
        hexversion: f[3] as u32,
        runtime: f[4],
        interp_head: f[5],
    }
}

/// Offset of `interpreters.head` in `_PyRuntime`, from the layout of `_PyRuntimeState`
/// (3.13+: from `_Py_DebugOffsets.runtime_state.interpreters_head`).
fn interpreters_head_offset(pid: u32, runtime: u64, minor: u8) -> u64 {
    match minor {
        7 => 24,
        8..=10 => 32,
        11 | 12 => 40,
        _ => common::read_u64(pid, runtime + 40),
    }
}

fn interpreters() -> Vec<(String, std::path::PathBuf)> {
    let mut list: Vec<(String, std::path::PathBuf)> = PYENV_INTERPRETERS
        .iter()
        .map(|v| (format!("pyenv {v}"), common::pyenv_python(v)))
        .collect();
    list.push(("debian 3.11".into(), DEBIAN_PYTHON.into()));
    list.retain(|(name, path)| {
        let present = path.exists();
        if !present {
            eprintln!("skipping {name}: {} is missing", path.display());
        }
        present
    });
    list
}

#[test]
fn inspects_every_interpreter() {
    let list = interpreters();
    assert!(!list.is_empty(), "no interpreter to test");
    let mut targets: Vec<(String, Target)> = list
        .iter()
        .map(|(name, path)| {
            (
                name.clone(),
                Target::spawn(Command::new(path).args(["-c", REPORT_SCRIPT])),
            )
        })
        .collect();

    for (name, target) in &mut targets {
        let report = read_report(target);
        let pid = target.pid();
        let p = process::inspect(pid).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "{name}: pid {pid} version {:?} hex {:#x} runtime {:x?} interp_head {:x?} binary {}",
            p.version,
            p.version_hex,
            p.runtime_addr,
            p.interp_head_addr,
            p.binary.display()
        );
        assert_eq!(p.pid, pid);
        assert_eq!(p.version, report.version, "{name}");
        assert_eq!(p.version_hex, report.hexversion, "{name}");
        assert_eq!(p.ns_pid, None, "{name}");
        assert!(p.comm.starts_with("python"), "{name}: comm {}", p.comm);
        assert!(p.binary.exists(), "{name}: {}", p.binary.display());
        assert!(report.interp_head != 0);

        let minor = report.version.1;
        if minor >= 7 {
            assert_eq!(p.interp_head_addr, None, "{name}");
            let runtime = p
                .runtime_addr
                .unwrap_or_else(|| panic!("{name}: no runtime"));
            assert_eq!(
                runtime, report.runtime,
                "{name}: _PyRuntime differs from ctypes"
            );
            let head =
                common::read_u64(pid, runtime + interpreters_head_offset(pid, runtime, minor));
            assert_eq!(head, report.interp_head, "{name}: interpreters.head");
            if minor >= 13 {
                let mut cookie = [0u8; 8];
                process::read_memory(pid, runtime, &mut cookie).unwrap();
                assert_eq!(&cookie, b"xdebugpy", "{name}");
                assert_eq!(
                    common::read_u64(pid, runtime + 8),
                    report.hexversion as u64,
                    "{name}"
                );
            }
        } else {
            assert_eq!(p.runtime_addr, None, "{name}");
            let interp_head = p
                .interp_head_addr
                .unwrap_or_else(|| panic!("{name}: no interp_head"));
            assert_eq!(
                common::read_u64(pid, interp_head),
                report.interp_head,
                "{name}: interp_head"
            );
        }
    }

    let candidates = process::candidate_pids();
    for (name, target) in &targets {
        assert!(
            candidates.contains(&target.pid()),
            "{name} missing from candidate_pids"
        );
    }
}

#[test]
fn python2_is_unsupported() {
    let path = common::pyenv_python("2.7.18");
    if !common::present_or_skip(&path) {
        return;
    }
    let mut target = Target::spawn(Command::new(&path).args(["-c", common::READY_SCRIPT]));
    target.read_line();
    match process::inspect(target.pid()) {
        Err(InspectError::UnsupportedVersion { pid, version }) => {
            assert_eq!(pid, target.pid());
            assert_eq!(version, "2.7.18");
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(process::candidate_pids().contains(&target.pid()));
}

#[test]
fn sleep_is_not_python() {
    let target = common::spawn_sleep();
    match process::inspect(target.pid()) {
        Err(InspectError::NotPython { pid, comm }) => {
            assert_eq!(pid, target.pid());
            assert_eq!(comm, "sleep");
        }
        other => panic!("expected NotPython, got {other:?}"),
    }
    assert!(!process::candidate_pids().contains(&target.pid()));
}

#[test]
fn dead_and_zombie_processes_are_gone() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Unreaped: a zombie once it has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("State:\tZ")
    {
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(process::inspect(pid), Err(InspectError::NoSuchProcess(p)) if p == pid));
    assert!(process::is_gone(pid), "zombie");
    child.wait().unwrap();
    assert!(matches!(process::inspect(pid), Err(InspectError::NoSuchProcess(p)) if p == pid));
    assert!(process::is_gone(pid), "reaped");
    assert!(matches!(
        process::inspect(u32::MAX),
        Err(InspectError::NoSuchProcess(_))
    ));
    assert!(process::is_gone(u32::MAX));
    assert!(!process::is_gone(std::process::id()));
}

const AS_NOBODY_ENV: &str = "PYTRACE_TEST_INSPECT_AS_NOBODY";

/// Runs only inside the unprivileged re-execution of this test binary.
#[test]
fn permission_denied_child() {
    let Ok(pid) = std::env::var(AS_NOBODY_ENV) else {
        return;
    };
    let pid: u32 = pid.parse().unwrap();
    match process::inspect(pid) {
        Err(InspectError::PermissionDenied(p)) if p == pid => {
            println!("inspect-as-nobody: PermissionDenied")
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn unprivileged_caller_gets_permission_denied() {
    if !common::is_root() {
        eprintln!("skipping: needs root to drop to nobody");
        return;
    }
    let target = common::spawn_sleep();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "permission_denied_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AS_NOBODY_ENV, target.pid().to_string())
        .uid(65534)
        .gid(65534)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipping: nobody cannot execute {}: {e}", exe.display());
            return;
        }
        Err(e) => panic!("re-exec as nobody: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("inspect-as-nobody: PermissionDenied"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
