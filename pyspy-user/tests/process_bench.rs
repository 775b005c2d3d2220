//! Cost of `process::inspect` on many live interpreters sharing one interpreter file: 50
//! processes of pyenv's python3.11 (shared libpython) and 50 of Debian's static
//! `/usr/bin/python3.11`, each inspected twice in a row.
//!
//! Ignored by default; run with
//! `cargo test --release -p pyspy-user --test process_bench -- --ignored --nocapture`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Target, DEBIAN_PYTHON};
use pytrace::process;

const COUNT: usize = 50;

const SCRIPT: &str =
    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(120)";

/// CPU time consumed by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Inspect every pid once; print wall and CPU totals and the spread of per-call CPU time.
fn round(label: &str, pids: &[u32]) {
    let wall = Instant::now();
    let cpu = thread_cpu();
    let mut per_call: Vec<Duration> = Vec::with_capacity(pids.len());
    for &pid in pids {
        let before = thread_cpu();
        let p = process::inspect(pid).unwrap_or_else(|e| panic!("{pid}: {e}"));
        per_call.push(thread_cpu() - before);
        assert_eq!((p.version.0, p.version.1), (3, 11));
        assert!(p.runtime_addr.is_some());
    }
    let total_cpu = thread_cpu() - cpu;
    let total_wall = wall.elapsed();
    let first = per_call[0];
    let mut sorted = per_call.clone();
    sorted.sort();
    eprintln!(
        "{label}: {} calls, wall {:.2} ms, cpu {:.2} ms; per call cpu: first {:.0} us, \
         median {:.0} us, min {:.0} us, max {:.0} us",
        pids.len(),
        total_wall.as_secs_f64() * 1e3,
        total_cpu.as_secs_f64() * 1e3,
        us(first),
        us(sorted[sorted.len() / 2]),
        us(sorted[0]),
        us(sorted[sorted.len() - 1]),
    );
}

fn bench(label: &str, path: &Path) {
    if !path.exists() {
        eprintln!("skipping {label}: {} is missing", path.display());
        return;
    }
    let targets: Vec<Target> = (0..COUNT)
        .map(|_| common::spawn_ready(Command::new(path).args(["-c", SCRIPT])))
        .collect();
    let pids: Vec<u32> = targets.iter().map(Target::pid).collect();
    round(&format!("{label} round 1"), &pids);
    round(&format!("{label} round 2"), &pids);
    eprintln!("{label}: {:?}", process::cache_stats());
}

#[test]
#[ignore]
fn inspect_fifty_python311_processes() {
    bench("pyenv 3.11.7", &common::pyenv_python("3.11.7"));
    bench("debian 3.11", Path::new(DEBIAN_PYTHON));
}
