//! `pytrace top` in a terminal (a tmux pane): the hot function of a CPU-bound target shows
//! within 3 s, `q` ends it with exit status 0, and the terminal is given back (the view was
//! on the alternate screen, so the pane shows the shell's lines again).

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use pytrace_tests::*;

fn tmux(args: &[&str]) -> Result<String> {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .map_err(|e| format!("tmux {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kills the tmux session on every way out of the test.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.0]);
    }
}

fn wait_for(
    session: &str,
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let pane = tmux(&["capture-pane", "-t", session, "-p"])?;
        if ok(&pane) {
            return Ok(pane);
        }
        if Instant::now() > deadline {
            return Err(format!("{what} not within {within:?}; the pane:\n{pane}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_shows_the_hot_function_and_quits_on_q() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters[interpreters.len() - 1..], |interp| {
        let mut target = Target::start(interp, "cpu_split.py", &[])?;
        let name = format!("pytrace-top-{}", std::process::id());
        let command = format!(
            "{} top --pid {}; echo pytrace-exited-$?; sleep 60",
            pytrace_binary().display(),
            target.pid()
        );
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ])?;
        let session = Session(name);
        wait_for(
            &session.0,
            Duration::from_secs(60),
            "`pytrace: attached`",
            |p| p.contains("pytrace: attached") || p.contains("%Own"),
        )?;
        let view = wait_for(
            &session.0,
            Duration::from_secs(3),
            "heavy in the view",
            |p| p.contains("%Own") && p.contains("heavy (") && p.contains("cpu_split.py"),
        )?;
        if !view.contains("pytrace top") {
            return Err(format!("no header line:\n{view}"));
        }
        tmux(&["send-keys", "-t", &session.0, "q"])?;
        let after = wait_for(&session.0, Duration::from_secs(10), "exit after q", |p| {
            p.contains("pytrace-exited-")
        })?;
        target.command("exit")?;
        if !after.contains("pytrace-exited-0") || after.contains("%Own") {
            return Err(format!("after q, the pane is:\n{after}"));
        }
        Ok(())
    });
}
