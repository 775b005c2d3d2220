//! Waiting for the processes selected with `--pid` to exit, through pidfds (readable once the
//! process has exited, zombie or reaped), so that pytrace ends when none is left.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

/// The selected processes not yet seen to exit.
pub struct PidWatch {
    fds: Vec<AsyncFd<OwnedFd>>,
    /// Every selected process is watched (or already gone): their exits end the session.
    complete: bool,
}

impl PidWatch {
    /// Opens a pidfd for each PID. A process already gone needs no watching; one that cannot
    /// be watched (a thread id rather than a process) keeps the session going.
    pub fn new(pids: &[u32]) -> Self {
        let mut fds = Vec::new();
        let mut complete = !pids.is_empty();
        for &pid in pids {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if fd < 0 {
                let err = std::io::Error::last_os_error();
                complete &= err.raw_os_error() == Some(libc::ESRCH);
                continue;
            }
            // SAFETY: `fd` is a descriptor just returned to us and owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            // SAFETY: the OwnedFd keeps the pidfd open, unchanged, for as long as the AsyncFd
            // owns it.
            match unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) } {
                Ok(fd) => fds.push(fd),
                Err(_) => complete = false,
            }
        }
        PidWatch { fds, complete }
    }

    /// Resolves once every selected process has exited; never when that cannot be known
    /// (no `--pid`, or one that could not be watched).
    pub async fn all_exited(&self) {
        if !self.complete {
            return std::future::pending().await;
        }
        for fd in &self.fds {
            // A pidfd turns readable when its process exits, and stays so.
            let _ = fd.readable().await;
        }
    }
}
