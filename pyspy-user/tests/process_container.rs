//! Interpreters in their own PID and mount namespaces, with a root where the interpreter lives
//! at a path that does not exist on the host (`/opt/py/...`, bind-mounted from pyenv's 3.12).
//!
//! - `pivot_root`, as container runtimes do: maps paths are relative to the container root, the
//!   library is opened through `/proc/PID/root`.
//! - `chroot` inside a private mount namespace: maps paths are relative to the namespace root and
//!   reachable from neither root; the library is opened through `/proc/PID/map_files`.
//!
//! Needs root, `unshare` and `pivot_root` (util-linux).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Target;
use pytrace::process;

const PYENV_312: &str = "/root/.pyenv/versions/3.12.1";

const SCRIPT: &str = r#"
import os, sys, ctypes
rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
v = sys.version_info
sys.stdout.write("%d %d %d %d %d\n" % (v[0], v[1], v[2], rt, os.getpid()))
sys.stdout.flush()
import time
time.sleep(30)
"#;

const SETUP: &str = r#"set -e
mount --make-rprivate /
mount --bind "$ROOT" "$ROOT"
mount --bind /usr "$ROOT/usr"
mount --bind "$PYSRC" "$ROOT/opt/py"
export LD_LIBRARY_PATH=/opt/py/lib PYTHONHOME=/opt/py
if [ "$MODE" = pivot ]; then
    cd "$ROOT"
    pivot_root . old
    exec /opt/py/bin/python3.12 -c "$PYSCRIPT"
else
    exec chroot "$ROOT" /opt/py/bin/python3.12 -c "$PYSCRIPT"
fi
"#;

/// A root directory skeleton; removed entry by entry (never recursively, in case a bind mount
/// were still attached).
struct RootDir(PathBuf);

const ROOT_DIRS: &[&str] = &["usr", "opt/py", "opt", "old", "proc", "tmp"];
const ROOT_LINKS: &[(&str, &str)] = &[
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("bin", "usr/bin"),
];

impl RootDir {
    fn new(tag: &str) -> RootDir {
        let dir = common::scratch_path(tag);
        for d in ROOT_DIRS {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        for (link, target) in ROOT_LINKS {
            let _ = std::os::unix::fs::symlink(target, dir.join(link));
        }
        RootDir(dir)
    }
}

impl Drop for RootDir {
    fn drop(&mut self) {
        for (link, _) in ROOT_LINKS {
            let _ = std::fs::remove_file(self.0.join(link));
        }
        for d in ROOT_DIRS {
            let _ = std::fs::remove_dir(self.0.join(d));
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn available() -> bool {
    let root = common::is_root();
    let tools = [
        "/usr/bin/unshare",
        "/usr/sbin/pivot_root",
        "/usr/sbin/chroot",
    ]
    .iter()
    .all(|t| Path::new(t).exists());
    let python = Path::new(PYENV_312).join("bin/python3.12").exists();
    if !(root && tools && python) {
        eprintln!("skipping: needs root, unshare, pivot_root, chroot and {PYENV_312}");
    }
    root && tools && python
}

/// Start the interpreter in new namespaces; returns the guard, its host pid and its report
/// (`major minor micro _PyRuntime pid-in-namespace`).
fn start(mode: &str, root: &RootDir) -> (Target, u32, Vec<u64>) {
    let mut target = Target::spawn(
        Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
                SETUP,
            ])
            .env("ROOT", &root.0)
            .env("PYSRC", PYENV_312)
            .env("MODE", mode)
            .env("PYSCRIPT", SCRIPT),
    );
    let line = target.read_line();
    let report = common::parse_u64s(&line);
    assert_eq!(
        report.len(),
        5,
        "{mode}: interpreter did not start: {line:?}"
    );
    let unshare = target.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pid: u32 = children
        .split_whitespace()
        .next()
        .expect("no child")
        .parse()
        .unwrap();
    (target, pid, report)
}

#[test]
fn pivot_root_container() {
    if !available() {
        return;
    }
    let root = RootDir::new("container-pivot");
    let (_target, pid, report) = start("pivot", &root);
    let p = process::inspect(pid).unwrap();
    eprintln!("pivot_root: {p:?}");
    assert_eq!(p.version, (3, 12, 1));
    assert_eq!(p.ns_pid, Some(report[4] as u32));
    assert_eq!(p.ns_pid, Some(1));
    assert_eq!(
        p.binary,
        PathBuf::from(format!("/proc/{pid}/root/opt/py/lib/libpython3.12.so.1.0"))
    );
    assert_eq!(p.runtime_addr, Some(report[3]));
    assert!(process::candidate_pids().contains(&pid));
}

#[test]
fn chroot_in_private_mount_namespace() {
    if !available() {
        return;
    }
    let root = RootDir::new("container-chroot");
    let (_target, pid, report) = start("chroot", &root);
    let p = process::inspect(pid).unwrap();
    eprintln!("chroot: {p:?}");
    assert_eq!(p.version, (3, 12, 1));
    assert_eq!(p.ns_pid, Some(1));
    assert!(p.binary.exists(), "{}", p.binary.display());
    assert_eq!(p.runtime_addr, Some(report[3]));
}
