//! Start-up timestamps for `-v`: how long each step before the first capture took (kernel
//! BTF, loading the object, verifying a program, scanning processes…), one stderr line per
//! step, so a slow start can be pinned on the step that made it slow.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex, OnceLock,
};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// (when pytrace started, when the previous step ended).
static CLOCK: OnceLock<Mutex<(Instant, Instant)>> = OnceLock::new();

/// Starts the clock (at the beginning of `main`); steps are printed only when `verbose`.
pub fn begin(verbose: bool) {
    let now = Instant::now();
    let _ = CLOCK.set(Mutex::new((now, now)));
    ENABLED.store(verbose, Ordering::Relaxed);
}

/// Start-up is over (the first capture is out): later steps, such as the rounds of
/// `--watch`, print nothing.
pub fn finish() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Notes that `step` has just ended: `pytrace: start-up: 12.3 ms kernel BTF (at 15.0 ms)`.
pub fn step(what: &str) {
    let Some(clock) = CLOCK.get() else {
        return;
    };
    let Ok(mut clock) = clock.lock() else {
        return;
    };
    let now = Instant::now();
    let took = now - clock.1;
    clock.1 = now;
    if ENABLED.load(Ordering::Relaxed) {
        eprintln!(
            "pytrace: start-up: {:.1} ms {what} (at {:.1} ms)",
            took.as_secs_f64() * 1e3,
            (now - clock.0).as_secs_f64() * 1e3
        );
    }
}
