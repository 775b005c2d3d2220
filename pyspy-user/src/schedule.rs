//! When to look at processes: new ones reported by the kernel are inspected after a short,
//! bounded back-off, and newly registered ones are checked once more later. Owns only timing;
//! the inspection itself is the caller's.

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

/// A reported process is inspected after these delays (the dynamic loader maps a library's
/// segments in several steps); each failure moves to the next delay, and the last failure
/// gives up.
const INSPECT_DELAYS_MS: [u64; 7] = [0, 1, 4, 16, 64, 256, 1024];

/// A process reported for a library-list change that is not (yet) Python is looked at this many
/// more times: up to 5 ms after the report, past the kernel's report interval
/// (`REPORT_INTERVAL_NS`, 4 ms), so a library loaded inside that interval is not missed.
pub const NOT_PYTHON_RECHECKS: usize = 2;

/// A newly registered process is checked once more after this long: one that exited while it
/// was being registered (its exit reported before it was in the map) is dropped then.
const RECHECK_AFTER: Duration = Duration::from_millis(250);

/// What is due now.
pub enum Due {
    /// Inspect this process; `attempt` counts from 0.
    Inspect { pid: u32, attempt: usize },
    /// Check that this registered process still exists.
    Recheck(u32),
}

#[derive(Default)]
pub struct Schedule {
    /// pid → (attempt, when).
    inspect: BTreeMap<u32, (usize, Instant)>,
    /// pid → when.
    recheck: BTreeMap<u32, Instant>,
}

impl Schedule {
    /// A process the kernel reported: inspect it now, unless it is already waiting.
    pub fn reported(&mut self, pid: u32) {
        if !self.inspect.contains_key(&pid) {
            self.retry(pid, 0);
        }
    }

    /// Schedules inspection `attempt` of `pid`, or gives up after the last one.
    pub fn retry(&mut self, pid: u32, attempt: usize) {
        match INSPECT_DELAYS_MS.get(attempt) {
            Some(&ms) => {
                self.inspect
                    .insert(pid, (attempt, Instant::now() + Duration::from_millis(ms)));
            }
            None => {
                self.inspect.remove(&pid);
            }
        }
    }

    /// Whether another attempt follows `attempt`.
    pub fn has_retry(attempt: usize) -> bool {
        attempt + 1 < INSPECT_DELAYS_MS.len()
    }

    /// `pid` was registered: check it once more later.
    pub fn registered(&mut self, pid: u32) {
        self.recheck.insert(pid, Instant::now() + RECHECK_AFTER);
    }

    /// `pid` is waiting for its inspection.
    pub fn is_waiting(&self, pid: u32) -> bool {
        self.inspect.contains_key(&pid)
    }

    /// `pid` is gone: nothing more to do for it.
    pub fn forget(&mut self, pid: u32) {
        self.inspect.remove(&pid);
        self.recheck.remove(&pid);
    }

    /// The earliest time something is due.
    pub fn next(&self) -> Option<Instant> {
        self.inspect
            .values()
            .map(|&(_, at)| at)
            .chain(self.recheck.values().copied())
            .min()
    }

    /// Removes and returns what is due by `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Due> {
        let mut due: Vec<Due> = self
            .recheck
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&pid, _)| Due::Recheck(pid))
            .collect();
        due.extend(
            self.inspect
                .iter()
                .filter(|(_, &(_, at))| at <= now)
                .map(|(&pid, &(attempt, _))| Due::Inspect { pid, attempt }),
        );
        for d in &due {
            match *d {
                Due::Recheck(pid) => {
                    self.recheck.remove(&pid);
                }
                Due::Inspect { pid, .. } => {
                    self.inspect.remove(&pid);
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn back_off_then_give_up() {
        let mut s = Schedule::default();
        s.reported(7);
        s.reported(7);
        assert!(s.is_waiting(7));
        let due = s.take_due(Instant::now());
        assert!(matches!(due[..], [Due::Inspect { pid: 7, attempt: 0 }]));
        assert!(!s.is_waiting(7));
        let mut attempt = 0;
        while Schedule::has_retry(attempt) {
            attempt += 1;
            s.retry(7, attempt);
            let at = s.next().unwrap();
            tokio::time::advance(at - Instant::now()).await;
            assert!(matches!(
                s.take_due(Instant::now())[..],
                [Due::Inspect { pid: 7, .. }]
            ));
        }
        s.retry(7, attempt + 1);
        assert!(s.next().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn recheck_after_registration_and_forget() {
        let mut s = Schedule::default();
        s.registered(3);
        s.registered(4);
        s.forget(4);
        assert!(s.take_due(Instant::now()).is_empty());
        tokio::time::advance(RECHECK_AFTER).await;
        assert!(matches!(s.take_due(Instant::now())[..], [Due::Recheck(3)]));
        assert!(s.next().is_none());
    }
}
