//! `pytrace dump --stuck SECS`: the hang detector. Remembers, from one on-demand round to the
//! next, each thread's Python stack as printed (file, function and line of every frame) and
//! since when it has been read the same, and lets through only the threads read unchanged for
//! at least the threshold, each marked with that time.
//!
//! Never a guess: a thread whose read this round is not complete (torn, changing while read,
//! a frame without file, name or line, records lost) cannot be compared, and its clock starts
//! again at its next complete read. "Unchanged" means the same at every round in between:
//! what the thread did between two rounds is not seen.

use std::collections::HashMap;

use crate::{
    error::Error,
    model::{Capture, ChainEntry, ThreadStack},
    session::{Consumer, Flow},
};

/// A thread of one process: its kernel task (host tid, 0 when not known) and `thread_id`.
type ThreadKey = (u32, u32, u64);

/// One thread's stack and the capture time it was first read so.
struct Seen {
    stack: Vec<ChainEntry>,
    continues: bool,
    since_ns: u64,
    /// The round it was last read in.
    round: u64,
}

/// Tracks stacks across rounds and filters each round's captures.
pub struct Stuck {
    threshold_ns: u64,
    seen: HashMap<ThreadKey, Seen>,
    round: u64,
}

impl Stuck {
    pub fn new(threshold: std::time::Duration) -> Self {
        Stuck {
            threshold_ns: threshold.as_nanos().min(u64::MAX as u128) as u64,
            seen: HashMap::new(),
            round: 0,
        }
    }

    /// Ends a round: threads not read in it (exited, or their process not dumped) are
    /// forgotten, so a later read starts their clock again.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.seen.retain(|_, s| s.round == round);
        self.round += 1;
    }

    /// Notes this round's read of a process's threads; returns the capture holding only the
    /// threads unchanged for at least the threshold (each with `unchanged_ms`), or `None`
    /// when it has none.
    pub fn filter(&mut self, mut capture: Capture) -> Option<Capture> {
        let complete = capture.lost_records == 0;
        let pid = capture.pid;
        let now = capture.time_ns;
        let mut keep = |t: &mut ThreadStack| -> bool {
            let key = (pid, t.task.as_ref().map_or(0, |k| k.tid), t.thread_id);
            if !complete || !comparable(t) {
                self.seen.remove(&key);
                return false;
            }
            let round = self.round;
            let seen = self.seen.entry(key).or_insert_with(|| Seen {
                stack: t.chain.clone(),
                continues: t.chain_continues,
                since_ns: now,
                round,
            });
            if seen.stack != t.chain || seen.continues != t.chain_continues {
                seen.stack = t.chain.clone();
                seen.continues = t.chain_continues;
                seen.since_ns = now;
            }
            seen.round = round;
            let unchanged = now.saturating_sub(seen.since_ns);
            if unchanged >= self.threshold_ns && unchanged > 0 {
                t.unchanged_ms = Some(unchanged / 1_000_000);
                true
            } else {
                false
            }
        };
        capture.threads.retain_mut(&mut keep);
        capture.other_threads.retain_mut(&mut keep);
        (!capture.threads.is_empty() || !capture.other_threads.is_empty()).then_some(capture)
    }
}

/// Whether every frame of the thread was read whole and symbolized.
fn comparable(t: &ThreadStack) -> bool {
    !t.torn
        && !t.raced
        && t.chain.iter().all(|e| match e {
            ChainEntry::Frame(f) => f.filename.is_some() && f.name.is_some() && f.line.is_some(),
            ChainEntry::Shim { .. } => true,
        })
}

/// The consumer of a `--stuck` round: every capture goes through [`Stuck::filter`], and what
/// is left goes to `inner` when `report` is set (a one-shot `--stuck` reports only its last
/// round).
pub struct StuckFilter<'a> {
    pub stuck: &'a mut Stuck,
    pub inner: &'a mut dyn Consumer,
    pub report: bool,
    /// Processes with a thread reported this round.
    pub reported: usize,
}

impl Consumer for StuckFilter<'_> {
    fn capture(&mut self, capture: Capture) -> Result<Flow, Error> {
        match self.stuck.filter(capture) {
            Some(left) if self.report => {
                self.reported += 1;
                self.inner.capture(left)
            }
            _ => Ok(Flow::Continue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Frame, PyText, ThreadTask};

    fn thread(tid: u32, line: i32) -> ThreadStack {
        ThreadStack {
            thread_id: tid as u64 * 0x1000,
            task: Some(ThreadTask {
                tid,
                ..Default::default()
            }),
            chain: vec![ChainEntry::Frame(Frame {
                filename: Some(PyText::from_text("a.py")),
                name: Some(PyText::from_text("f")),
                line: Some(line),
            })],
            ..Default::default()
        }
    }

    fn capture(secs: u64, threads: Vec<ThreadStack>) -> Capture {
        Capture {
            pid: 7,
            time_ns: secs * 1_000_000_000,
            threads,
            ..Default::default()
        }
    }

    fn round(s: &mut Stuck, c: Capture) -> Vec<(u32, Option<u64>)> {
        let out = s.filter(c);
        s.end_round();
        out.map(|c| {
            c.threads
                .iter()
                .map(|t| (t.task.as_ref().unwrap().tid, t.unchanged_ms))
                .collect()
        })
        .unwrap_or_default()
    }

    #[test]
    fn only_threads_unchanged_for_the_threshold_pass() {
        let mut s = Stuck::new(std::time::Duration::from_secs(2));
        assert!(round(&mut s, capture(10, vec![thread(1, 5), thread(2, 1)])).is_empty());
        assert!(round(&mut s, capture(11, vec![thread(1, 5), thread(2, 2)])).is_empty());
        assert_eq!(
            round(&mut s, capture(12, vec![thread(1, 5), thread(2, 1)])),
            vec![(1, Some(2000))]
        );
        assert_eq!(
            round(&mut s, capture(13, vec![thread(1, 5), thread(2, 1)])),
            vec![(1, Some(3000))]
        );
        // Thread 2's line 1 since 12 s: 2 s at 14 s.
        assert_eq!(
            round(&mut s, capture(14, vec![thread(1, 5), thread(2, 1)])),
            vec![(1, Some(4000)), (2, Some(2000))]
        );
    }

    #[test]
    fn an_incomplete_read_restarts_the_clock() {
        let mut s = Stuck::new(std::time::Duration::from_secs(2));
        round(&mut s, capture(10, vec![thread(1, 5)]));
        let mut raced = thread(1, 5);
        raced.raced = true;
        raced.torn = true;
        assert!(round(&mut s, capture(11, vec![raced])).is_empty());
        assert!(round(&mut s, capture(12, vec![thread(1, 5)])).is_empty());
        let mut unknown = thread(1, 5);
        unknown.chain = vec![ChainEntry::Frame(Frame::default())];
        assert!(round(&mut s, capture(13, vec![unknown.clone()])).is_empty());
        assert!(round(&mut s, capture(15, vec![unknown])).is_empty());
        let mut lost = capture(16, vec![thread(1, 5)]);
        lost.lost_records = 1;
        assert!(round(&mut s, lost).is_empty());
        assert!(round(&mut s, capture(17, vec![thread(1, 5)])).is_empty());
        assert_eq!(
            round(&mut s, capture(19, vec![thread(1, 5)])),
            vec![(1, Some(2000))]
        );
    }

    #[test]
    fn a_thread_missing_from_a_round_starts_again() {
        let mut s = Stuck::new(std::time::Duration::from_secs(1));
        round(&mut s, capture(10, vec![thread(1, 5)]));
        round(&mut s, capture(11, vec![]));
        assert!(round(&mut s, capture(12, vec![thread(1, 5)])).is_empty());
        assert_eq!(
            round(&mut s, capture(13, vec![thread(1, 5)])),
            vec![(1, Some(1000))]
        );
    }
}
