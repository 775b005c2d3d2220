//! The per-process limit on printed dumps (`--max-dumps-per-sec`): a token bucket for each
//! process, so that no process can flood pytrace's output by signalling itself. Dumps left out
//! are counted per process and reported at exit.

use std::collections::HashMap;
use std::time::Instant;

/// A burst of this many seconds' worth of dumps is printed before the limit applies.
pub const BURST_SECS: f64 = 2.0;

/// Processes whose buckets are kept; past this, the fullest buckets (idle processes, which
/// would start full again anyway) are dropped.
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimit {
    /// Dumps per second per process; 0: no limit.
    rate: u32,
    buckets: HashMap<u32, Bucket>,
    /// Dumps left out, per process, in the order processes were first limited.
    suppressed: Vec<(u32, u64)>,
}

impl RateLimit {
    pub fn new(rate: u32) -> Self {
        RateLimit {
            rate,
            buckets: HashMap::new(),
            suppressed: Vec::new(),
        }
    }

    fn burst(&self) -> f64 {
        (f64::from(self.rate) * BURST_SECS).max(1.0)
    }

    /// `Ok` when a dump of `pid` at `now` may be printed. Otherwise the dump is counted as left
    /// out, and `Err(true)` says it is the first of `pid` (to say so once).
    pub fn allow(&mut self, pid: u32, now: Instant) -> Result<(), bool> {
        if self.rate == 0 {
            return Ok(());
        }
        let burst = self.burst();
        let rate = f64::from(self.rate);
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&pid) {
            self.evict(now);
        }
        let bucket = self.buckets.entry(pid).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        match self.suppressed.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, n)) => {
                *n += 1;
                Err(false)
            }
            None => {
                self.suppressed.push((pid, 1));
                Err(true)
            }
        }
    }

    /// Drops the buckets that would be full by now.
    fn evict(&mut self, now: Instant) {
        let (burst, rate) = (self.burst(), f64::from(self.rate));
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }

    /// Forgets an exited process's bucket (its count of suppressed dumps is kept).
    pub fn forget(&mut self, pid: u32) {
        self.buckets.remove(&pid);
    }

    /// Dumps left out in all.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed.iter().map(|(_, n)| n).sum()
    }

    /// Dumps left out per process.
    pub fn suppressed(&self) -> &[(u32, u64)] {
        &self.suppressed
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(10);
        let allowed = (0..100).filter(|_| rl.allow(7, t0).is_ok()).count();
        assert_eq!(allowed, 20);
        assert_eq!(rl.suppressed(), &[(7, 80)]);
        // Another process has its own bucket.
        assert!(rl.allow(8, t0).is_ok());
        // Half a second later: 5 more.
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| rl.allow(7, t1).is_ok()).count();
        assert_eq!(allowed, 5);
        assert_eq!(rl.suppressed_total(), 175);
    }

    #[test]
    fn first_suppression_is_flagged_once() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(1);
        assert_eq!(rl.allow(1, t0), Ok(()));
        assert_eq!(rl.allow(1, t0), Ok(()));
        assert_eq!(rl.allow(1, t0), Err(true));
        assert_eq!(rl.allow(1, t0), Err(false));
    }

    #[test]
    fn zero_is_unlimited() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(0);
        assert!((0..10_000).all(|_| rl.allow(1, t0).is_ok()));
        assert_eq!(rl.suppressed_total(), 0);
    }

    #[test]
    fn buckets_are_bounded() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(10);
        for pid in 0..(MAX_TRACKED as u32 * 3) {
            let _ = rl.allow(pid, t0);
        }
        assert!(rl.buckets.len() <= MAX_TRACKED);
    }
}
