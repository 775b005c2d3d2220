//! Errors: one line on stderr, no panic, and an exit code that tells the cases apart.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pytrace_tests::{plain_error, serial, Pytrace, Result};

/// Runs pytrace, expecting it to fail on its own: returns its exit code and its one line.
fn expect_error(args: &[String]) -> Result<(i32, String)> {
    let run = Pytrace::run(args, Duration::from_secs(60))?;
    plain_error(&run, &format!("pytrace {}", args.join(" ")))
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unknown_signal() -> Result<(i32, String)> {
    let (code, line) = expect_error(&[
        "--signal".into(),
        "SIGNOTASIGNAL".into(),
        "--count".into(),
        "1".into(),
    ])?;
    match line.contains("SIGNOTASIGNAL") {
        true => Ok((code, line)),
        false => Err(format!("the message does not name the signal: {line:?}")),
    }
}

fn dead_pid() -> Result<(i32, String)> {
    let mut child = Command::new("true")
        .spawn()
        .map_err(|e| format!("true: {e}"))?;
    let pid = child.id();
    child.wait().map_err(|e| e.to_string())?;
    let (code, line) = expect_error(&[
        "--signal".into(),
        "SIGUSR1".into(),
        "--pid".into(),
        pid.to_string(),
        "--count".into(),
        "1".into(),
    ])?;
    match line.contains(&pid.to_string()) {
        true => Ok((code, line)),
        false => Err(format!("the message does not name PID {pid}: {line:?}")),
    }
}

fn non_python_pid() -> Result<(i32, String)> {
    let sleeper = Reaped(
        Command::new("sleep")
            .arg("120")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("sleep: {e}"))?,
    );
    let pid = sleeper.0.id();
    std::thread::sleep(Duration::from_millis(200));
    let (code, line) = expect_error(&[
        "--signal".into(),
        "SIGUSR1".into(),
        "--pid".into(),
        pid.to_string(),
        "--count".into(),
        "1".into(),
    ])?;
    let lower = line.to_lowercase();
    match lower.contains("not") && lower.contains("python") && line.contains(&pid.to_string()) {
        true => Ok((code, line)),
        false => Err(format!(
            "the message does not say PID {pid} is not Python: {line:?}"
        )),
    }
}

#[test]
fn unknown_signal_name() {
    let _serial = serial();
    unknown_signal().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn pid_of_a_dead_process() {
    let _serial = serial();
    dead_pid().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn pid_of_a_process_that_is_not_python() {
    let _serial = serial();
    non_python_pid().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn error_exit_codes_are_distinct() {
    let _serial = serial();
    let codes: Vec<(&str, i32)> = [
        (
            "unknown signal",
            unknown_signal as fn() -> Result<(i32, String)>,
        ),
        ("dead PID", dead_pid),
        ("not Python", non_python_pid),
    ]
    .into_iter()
    .map(|(what, run)| (what, run().unwrap_or_else(|e| panic!("{what}: {e}")).0))
    .collect();
    for (i, (a, code_a)) in codes.iter().enumerate() {
        for (b, code_b) in &codes[i + 1..] {
            assert_ne!(code_a, code_b, "{a} and {b} share exit code {code_a}");
        }
    }
}
