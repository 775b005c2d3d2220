//! OS thread names for the threads of a dump: each `PyThreadState` is matched to the task
//! the kernel listed when the dump began (`tasks.rs` on the kernel side).
//!
//! The rule is faulthandler's own: 3.14+ asks `pthread_getname_np(tstate->thread_id)`, and on
//! glibc x86_64 a `pthread_t` is the thread's FS base, which the kernel keeps per task. Where
//! no task has that FS base (a libc whose `pthread_self()` is not the thread pointer), a task
//! whose host tid equals `native_thread_id` matches, outside a PID namespace only (inside
//! one, `native_thread_id` is the namespace's tid).

use std::path::Path;

use pytrace_common::{TaskName, COMM_LEN};

use crate::{decode::TaskList, process::procfs};

/// Whether process `pid` can read its other threads' names where glibc's
/// `pthread_getname_np` looks, `/proc/self/task/<tid>/comm` with the tid of its own PID
/// namespace: true when its root has a `/proc` whose numbering is the target's. Where that
/// `/proc` shows pytrace itself (`self` resolves for us), it numbers an outer namespace, so a
/// target in a PID namespace of its own finds no such task (`unshare --pid` without
/// remounting `/proc`); where no `/proc` is mounted, nothing is found either.
pub fn names_readable_by(pid: u32, ns_pid: Option<u32>) -> bool {
    let proc = procfs::in_root(pid, Path::new("/proc"));
    match ns_pid {
        None => proc.join("self").exists(),
        Some(ns) => {
            proc.join("self").symlink_metadata().is_err()
                && proc.join(ns.to_string()).join("task").is_dir()
        }
    }
}

/// Names for the threads `(thread_id, native_id)`, in order; the flag says whether some
/// thread's name could not be told (list unreadable, partial, or missing).
pub fn match_names(
    threads: &[(u64, Option<u64>)],
    tasks: Option<&TaskList>,
    in_pid_namespace: bool,
) -> (Vec<Option<Vec<u8>>>, bool) {
    let Some(list) = tasks else {
        return (vec![None; threads.len()], !threads.is_empty());
    };
    let partial = list.flags != 0;
    let mut unknown = false;
    let names = threads
        .iter()
        .map(|&(thread_id, native_id)| {
            let by_fsbase = list
                .tasks
                .iter()
                .find(|t| thread_id != 0 && t.fsbase == thread_id);
            let by_tid = || {
                list.tasks.iter().find(|t| {
                    !in_pid_namespace && native_id.is_some_and(|n| n != 0 && n == u64::from(t.tid))
                })
            };
            match by_fsbase.or_else(by_tid) {
                Some(task) => Some(comm_bytes(task)),
                None => {
                    unknown |= partial;
                    None
                }
            }
        })
        .collect();
    (names, unknown)
}

/// The kernel's `comm` up to its first NUL.
fn comm_bytes(task: &TaskName) -> Vec<u8> {
    let len = task.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    task.comm[..len].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pytrace_common::task_flags;

    fn task(tid: u32, fsbase: u64, name: &[u8]) -> TaskName {
        let mut comm = [0u8; COMM_LEN];
        comm[..name.len()].copy_from_slice(name);
        TaskName {
            tid,
            _pad: 0,
            fsbase,
            comm,
        }
    }

    fn list(flags: u32, tasks: Vec<TaskName>) -> TaskList {
        TaskList {
            dump_id: 1,
            flags,
            tasks,
        }
    }

    #[test]
    fn matched_by_fs_base_then_by_host_tid() {
        let l = list(
            0,
            vec![
                task(100, 0x7f00, b"python3.14"),
                task(101, 0x7e00, b"Thread-1 (work)"),
                task(102, 0, b"worker"),
            ],
        );
        let threads = [
            (0x7e00, Some(101)),
            (0x7f00, Some(100)),
            (0x5000, Some(102)),
        ];
        let (names, unknown) = match_names(&threads, Some(&l), false);
        assert_eq!(
            names,
            vec![
                Some(b"Thread-1 (work)".to_vec()),
                Some(b"python3.14".to_vec()),
                Some(b"worker".to_vec())
            ]
        );
        assert!(!unknown);
        // In a PID namespace the tid fallback would compare different numberings.
        let (names, _) = match_names(&threads, Some(&l), true);
        assert_eq!(names[2], None);
    }

    #[test]
    fn our_own_threads_names_are_readable() {
        assert!(names_readable_by(std::process::id(), None));
    }

    #[test]
    fn raw_bytes_cut_at_15_are_kept() {
        // "threadé…" cut by the kernel inside the 2-byte "é".
        let raw = b"abcdefghijklmn\xc3";
        let l = list(0, vec![task(7, 0x10, raw)]);
        let (names, _) = match_names(&[(0x10, None)], Some(&l), false);
        assert_eq!(names[0].as_deref(), Some(&raw[..]));
    }

    #[test]
    fn unmatched_threads_are_nameless_or_unknown() {
        let complete = list(0, vec![task(7, 0x10, b"a")]);
        assert_eq!(
            match_names(&[(0x20, None)], Some(&complete), false),
            (vec![None], false)
        );
        for flags in [
            task_flags::MORE_TASKS,
            task_flags::READ_FAILED,
            task_flags::UNSUPPORTED,
        ] {
            let partial = list(flags, vec![task(7, 0x10, b"a")]);
            let (names, unknown) =
                match_names(&[(0x10, None), (0x20, None)], Some(&partial), false);
            assert_eq!(names, vec![Some(b"a".to_vec()), None]);
            assert!(unknown, "{flags}");
        }
        assert_eq!(
            match_names(&[(0x10, None)], None, false),
            (vec![None], true)
        );
        assert_eq!(match_names(&[], None, false), (vec![], false));
    }

    /// Names that could not be read make a dump incomplete where the version prints them.
    #[test]
    fn unknown_names_are_reported() {
        use crate::format::{self, FormatKind};
        use crate::model::{Capture, ThreadStack};
        let render = |version: (u8, u8, u8), kind: FormatKind| {
            let dump = Capture {
                python_version: version,
                threads: vec![ThreadStack::default()],
                thread_names_unknown: true,
                ..Default::default()
            };
            let mut out = Vec::new();
            format::new(kind).record(&dump, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let header = |v| {
            render(v, FormatKind::Text)
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        assert!(header((3, 14, 10)).ends_with(
            "(incomplete: 0 records lost, 0 frames unsymbolized, 0 threads torn, 0 lines unknown, thread names unknown)"
        ));
        assert!(
            !header((3, 13, 0)).contains("incomplete"),
            "{}",
            header((3, 13, 0))
        );
        for v in [(3, 13, 0), (3, 15, 2)] {
            assert!(render(v, FormatKind::Json).contains("\"thread_names_unknown\":true"));
        }
    }
}
