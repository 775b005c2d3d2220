//! Readers for the `/proc/PID` files the inspection needs: `status`, `comm`, `maps`, `exe`,
//! `root` and `map_files`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::maps::{parse_maps, Mapping};

pub fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// The fields of `/proc/PID/status` used here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    /// First letter of the `State:` line (`R`, `S`, `Z`, `X`, …).
    pub state: char,
    /// `NSpid:` values, outermost namespace (as seen from this `/proc`) first.
    pub ns_pids: Vec<u32>,
}

impl Status {
    pub fn parse(text: &str) -> Status {
        let mut status = Status {
            state: '?',
            ..Status::default()
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Name" => status.name = value.to_owned(),
                "State" => status.state = value.chars().next().unwrap_or('?'),
                "NSpid" => {
                    status.ns_pids = value
                        .split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                }
                _ => {}
            }
        }
        status
    }

    /// A zombie or dead task: it has no address space left.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// The pid in the process's own (innermost) PID namespace, when it differs from `pid`.
    pub fn ns_pid(&self, pid: u32) -> Option<u32> {
        self.ns_pids.last().copied().filter(|&p| p != pid)
    }
}

pub fn read_status(pid: u32) -> io::Result<Status> {
    Ok(Status::parse(&fs::read_to_string(
        proc_dir(pid).join("status"),
    )?))
}

pub fn read_comm(pid: u32) -> io::Result<String> {
    let raw = fs::read(proc_dir(pid).join("comm"))?;
    Ok(String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(&raw)).into_owned())
}

/// A thread's name (`/proc/PID/task/TID/comm`), while it exists.
pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    let raw = fs::read(proc_dir(pid).join(format!("task/{tid}/comm"))).ok()?;
    Some(String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(&raw)).into_owned())
}

pub fn read_maps(pid: u32) -> io::Result<Vec<Mapping>> {
    Ok(parse_maps(&fs::read(proc_dir(pid).join("maps"))?))
}

/// Whether `pid` no longer runs: `/proc/PID` is absent, or the task is a zombie or dead.
pub fn is_gone(pid: u32) -> bool {
    match read_status(pid) {
        Ok(status) => status.is_gone(),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)) => true,
        Err(_) => !proc_dir(pid).exists(),
    }
}

/// Whether `pid` has begun to exit (`PF_EXITING` in `/proc/PID/stat`'s flags): from then on its
/// address space may be torn down before it is a zombie, so it can look like anything.
pub fn is_exiting(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    fs::read_to_string(proc_dir(pid).join("stat"))
        .ok()
        .and_then(|stat| stat_flags(&stat))
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// The `flags` field of a `/proc/PID/stat` line: `pid (comm) state ppid pgrp session tty_nr
/// tpgid flags …` (comm may hold spaces and `)`).
fn stat_flags(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Whether `pid` has exited but is still listed (a zombie, not yet reaped by its parent).
pub fn exited_unreaped(pid: u32) -> bool {
    read_status(pid).is_ok_and(|s| s.is_gone())
}

/// Target of `/proc/PID/exe` as the process sees it, without a ` (deleted)` suffix.
pub fn exe_path(pid: u32) -> io::Result<PathBuf> {
    let link = fs::read_link(proc_dir(pid).join("exe"))?;
    let bytes = link.as_os_str().as_bytes();
    Ok(match bytes.strip_suffix(b" (deleted)") {
        Some(stripped) => PathBuf::from(OsStr::from_bytes(stripped)),
        None => link,
    })
}

/// Whether the process sees the same root directory as this one (not in a container or chroot).
pub fn same_root(pid: u32) -> bool {
    match (
        fs::metadata(proc_dir(pid).join("root")),
        fs::metadata("/proc/self/root"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        _ => false,
    }
}

/// Host paths under which the file of a mapping can be opened, best first: the path itself (for
/// processes sharing our root) or through `/proc/PID/root`, then `/proc/PID/map_files/…`, which
/// also reaches unlinked files.
pub fn host_paths(pid: u32, mapping: &Mapping, same_root: bool) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let (Some(path), false) = (mapping.path.as_deref(), mapping.deleted) {
        if same_root {
            paths.push(path.to_owned());
        } else {
            paths.push(in_root(pid, path));
        }
    }
    paths.push(
        proc_dir(pid)
            .join("map_files")
            .join(format!("{:x}-{:x}", mapping.start, mapping.end)),
    );
    paths
}

/// `path` as seen by process `pid`, reached through `/proc/PID/root`.
pub fn in_root(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    proc_dir(pid).join("root").join(relative)
}

/// Pids of every process (thread-group leaders) listed in `/proc`.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// The id of thread `tid` of process `pid` inside its own PID namespace (the last NSpid entry),
/// when the thread still exists.
pub fn thread_ns_tid(pid: u32, tid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/status"))).ok()?;
    Status::parse(&text).ns_pids.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_exiting() {
        assert_eq!(
            stat_flags("7 (a) b) c) S 1 7 7 0 -1 4194564 99 0 0 0 1 2 0 0 20 0 1 0"),
            Some(4194564)
        );
        assert_eq!(stat_flags("7 (a"), None);
        assert!(!is_exiting(std::process::id()));
        assert!(!is_exiting(u32::MAX));
    }

    #[test]
    fn status_fields() {
        let text =
            "Name:\tpython3.12\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNSpid:\t4242\t7\n";
        let s = Status::parse(text);
        assert_eq!(s.name, "python3.12");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ns_pids, vec![4242, 7]);
        assert_eq!(s.ns_pid(4242), Some(7));
        assert!(!s.is_gone());
        let host = Status::parse("State:\tZ (zombie)\nNSpid:\t10\n");
        assert_eq!(host.ns_pid(10), None);
        assert!(host.is_gone());
    }

    #[test]
    fn zombie_child() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait for the exit without reaping: the child stays a zombie until `wait`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid siginfo pointer; WNOWAIT leaves the child unreaped.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        assert_eq!(rc, 0);
        assert!(exited_unreaped(pid));
        assert!(is_gone(pid));
        child.wait().unwrap();
        assert!(!exited_unreaped(pid));
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(same_root(me));
        assert!(!read_maps(me).unwrap().is_empty());
        assert_eq!(read_status(me).unwrap().ns_pids.first(), Some(&me));
        assert!(!is_gone(me));
        assert!(is_gone(u32::MAX));
        assert!(!exited_unreaped(me));
        assert!(!exited_unreaped(u32::MAX));
        assert_eq!(
            in_root(me, Path::new("/usr/lib/x.so")),
            PathBuf::from(format!("/proc/{me}/root/usr/lib/x.so"))
        );
    }
}
