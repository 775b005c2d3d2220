//! Hostile targets and resource limits: names that hold terminal control sequences, a process
//! signalled in a flood, a reader that goes away, selected processes that exit, and the exact
//! capabilities pytrace needs.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pytrace_tests::cases::{HOSTILE_NAME, SERVE_RTMAX, THREAD_DEPTHS};
use pytrace_tests::{
    expect_dumps, for_each_interpreter, plain_error, pytrace_binary, selected_interpreters,
    send_signal, serial, split_text_output, take_oracle, watch_args, Pytrace, Result, Target,
    TempDir, DUMP_TIMEOUT, SIGUSR1, SIGUSR2,
};

/// The comm that `hostile_name.py` gives itself, as pytrace must print it.
const ESCAPED_NAME: &str = "\\x1b[2J\\x1b[H\\x0aProcess";

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes a terminal would act on: C0 controls other than the newline, DEL, and C1 controls.
fn controls(text: &[u8]) -> Vec<u8> {
    let lossy = String::from_utf8_lossy(text);
    lossy
        .chars()
        .filter(|&c| c != '\n' && (c.is_ascii_control() || ('\u{80}'..='\u{9f}').contains(&c)))
        .map(|c| c as u32 as u8)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn hostile_process_name_is_escaped_in_the_header() {
    for_each_interpreter(|interp| {
        let case = &HOSTILE_NAME;
        let mut target = Target::start(interp, case.script, case.registered)?;
        let pid = target.pid();
        let mut pytrace = Pytrace::attach(&watch_args(case.watched, &[pid], 1, "text"))?;
        let before = target.output().len();
        target.trigger(case.trigger, case.watched)?;
        // From 3.14 faulthandler writes the thread's OS name raw in its own thread header (the
        // name holds a newline there): its bytes are the oracle as they are, unparsed, and
        // only pytrace's own header line must be free of control characters.
        let names_raw = interp.at_least(3, 14);
        let expected = if names_raw {
            target.wait_output(before, DUMP_TIMEOUT)?
        } else {
            take_oracle(&mut target, case, interp, before)?
        };
        // One dump, framed by one header line, its body faulthandler's bytes.
        expect_dumps(&mut pytrace, &[(pid, expected)], "hostile_name")?;
        let stdout = pytrace.stdout();
        let header = &split_text_output(&stdout)?[0].header;
        let own = match names_raw {
            true => header.as_bytes().to_vec(),
            false => stdout.clone(),
        };
        if !controls(&own).is_empty() || !header.contains(&format!("({ESCAPED_NAME})")) {
            return Err(format!(
                "the header does not show the name escaped: {:?}",
                header.escape_debug().to_string()
            ));
        }
        Ok(())
    });
}

/// A non-Python process (`sh`, looping with a handler for SIGUSR2) whose comm, taken from the
/// name it was executed under, holds control characters: returns it and that comm as pytrace
/// must print it.
fn hostile_shell(dir: &TempDir) -> Result<(Reaped, String)> {
    let name = "\x1b]0;x\x07\x1b[2J\n";
    let link = dir.path().join(name);
    symlink("/bin/sh", &link).map_err(|e| format!("symlink: {e}"))?;
    let child = Command::new(&link)
        .args(["-c", "trap : USR2; while :; do sleep 0.2; done"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    let pid = child.id();
    let shell = Reaped(child);
    wait_for("the shell's exec", Duration::from_secs(10), || {
        fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(b"\x1b]0;"))
    })?;
    // Give the shell time to install its handler.
    std::thread::sleep(Duration::from_millis(300));
    Ok((shell, "\\x1b]0;x\\x07\\x1b[2J\\x0a".to_string()))
}

#[test]
fn hostile_process_name_is_escaped_in_errors_and_verbose_lines() {
    let _serial = serial();
    let run = || -> Result<()> {
        let dir = TempDir::new()?;
        let (shell, escaped) = hostile_shell(&dir)?;
        let pid = shell.0.id();

        // The "not a Python process" error.
        let args = watch_args(SIGUSR1, &[pid], 1, "text");
        let finished = Pytrace::run(&args, Duration::from_secs(60))?;
        let (code, line) = plain_error(&finished, "pytrace --pid <hostile shell>")?;
        if code != 5 || !line.contains(&escaped) || !controls(line.as_bytes()).is_empty() {
            return Err(format!(
                "exit {code}, line {:?}",
                line.escape_debug().to_string()
            ));
        }

        // The -v line for a non-Python process receiving the signal.
        let pytrace = Pytrace::attach(&["--signal", "SIGUSR2", "-v"])?;
        let mark = format!("pytrace: process {pid} (");
        wait_for("the -v line", Duration::from_secs(20), || {
            let _ = send_signal(pid, SIGUSR2);
            std::thread::sleep(Duration::from_millis(100));
            pytrace.stderr().contains(&mark)
        })
        .map_err(|e| format!("{e}\n{}", pytrace.describe()))?;
        let stderr = pytrace.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains(&mark))
            .unwrap_or_default();
        if !line.contains(&format!("({escaped})")) || !controls(stderr.as_bytes()).is_empty() {
            return Err(format!("-v line {:?}", line.escape_debug().to_string()));
        }
        Ok(())
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

/// The number in `key=N` on pytrace's stats line.
fn stat(stderr: &str, key: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.starts_with("pytrace: stats:"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))?
        .parse()
        .ok()
}

#[test]
fn dumps_past_the_rate_limit_are_counted_not_printed() {
    const SENT: usize = 60;
    const RATE: u64 = 5;
    const BURST: u64 = 2 * RATE;
    let _serial = serial();
    let run = || -> Result<()> {
        let interp = &selected_interpreters()?[0];
        let case = &SERVE_RTMAX;
        let target = Target::start(interp, case.script, case.registered)?;
        let pid = target.pid();
        let started = Instant::now();
        let mut pytrace = Pytrace::attach(&[
            "--signal".to_string(),
            "SIGRTMAX".into(),
            "--pid".into(),
            pid.to_string(),
            "--max-dumps-per-sec".into(),
            RATE.to_string(),
        ])?;
        // Real-time signals queue: every one sent is delivered, and faulthandler dumps each.
        for _ in 0..SENT {
            target.kill(case.watched)?;
        }
        wait_for("faulthandler's dumps", Duration::from_secs(30), || {
            String::from_utf8_lossy(&target.output())
                .matches("Current thread")
                .count()
                >= SENT
        })?;
        // Every selected process has exited: pytrace ends on its own, with a note.
        drop(target);
        let status = pytrace.wait_exit(Duration::from_secs(30))?;
        let elapsed = started.elapsed().as_secs_f64();
        let stderr = pytrace.stderr();
        let context = pytrace.describe();
        if !status.success() || !stderr.contains("every selected process has exited") {
            return Err(format!(
                "pytrace did not end cleanly: {status:?}\n{context}"
            ));
        }
        let dumps = split_text_output(&pytrace.stdout())?;
        let printed = dumps.len() as u64;
        let limited = stat(&stderr, "rate_limited").ok_or(format!("no rate_limited\n{context}"))?;
        let most = BURST + (RATE as f64 * elapsed).ceil() as u64;
        if printed + limited != SENT as u64 || printed < BURST || printed > most || limited == 0 {
            return Err(format!(
                "{printed} printed + {limited} left out of {SENT} (burst {BURST}, at most {most} in {elapsed:.1} s)\n{context}"
            ));
        }
        if !stderr.contains(&format!(
            "{limited} dumps left out by --max-dumps-per-sec {RATE}: process {pid} {limited}"
        )) {
            return Err(format!("no per-process report\n{context}"));
        }
        if let Some(d) = dumps.iter().find(|d| !d.header.contains(", SIGRTMAX")) {
            return Err(format!("the signal is not named SIGRTMAX: {:?}", d.header));
        }
        Ok(())
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn exits_when_every_selected_process_has_exited() {
    let _serial = serial();
    let run = || -> Result<()> {
        let interp = &selected_interpreters()?[0];
        let first = Target::start(interp, SERVE_RTMAX.script, &[])?;
        let second = Target::start(interp, SERVE_RTMAX.script, &[])?;
        let pids = [first.pid(), second.pid()];
        let mut pytrace = Pytrace::attach(&[
            "--signal".to_string(),
            "SIGUSR1".into(),
            "--pid".into(),
            pids[0].to_string(),
            "--pid".into(),
            pids[1].to_string(),
        ])?;
        drop(first);
        std::thread::sleep(Duration::from_millis(500));
        if !pytrace.running() {
            return Err(format!(
                "pytrace ended with one process left\n{}",
                pytrace.describe()
            ));
        }
        drop(second);
        let status = pytrace.wait_exit(Duration::from_secs(30))?;
        match status.success()
            && pytrace
                .stderr()
                .contains("every selected process has exited")
        {
            true => Ok(()),
            false => Err(format!("{status:?}\n{}", pytrace.describe())),
        }
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_closed_pipe_ends_pytrace_quietly() {
    let _serial = serial();
    let run = || -> Result<()> {
        let interp = &selected_interpreters()?[0];
        let target = Target::start(interp, SERVE_RTMAX.script, &[SIGUSR1])?;
        let pid = target.pid();
        let mut child = Reaped(
            Command::new(pytrace_binary())
                .args(["--signal", "SIGUSR1", "--pid", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("pytrace: {e}"))?,
        );
        let mut stderr = BufReader::new(child.0.stderr.take().expect("piped"));
        let mut line = String::new();
        stderr.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("pytrace: attached") {
            return Err(format!("first line {line:?}"));
        }
        // The reader goes away, as `| head -1` does after its line.
        drop(child.0.stdout.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() > deadline {
                return Err("pytrace still running after its output was closed".into());
            }
            target.kill(SIGUSR1)?;
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        match status.code() == Some(0) && !rest.contains("error") {
            true => Ok(()),
            false => Err(format!("exit {status:?}, stderr {rest:?}")),
        }
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

/// What pytrace needs and nothing more: CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and
/// CAP_DAC_READ_SEARCH, as an unprivileged user, dump a root-owned interpreter byte for byte
/// (pyenv's live under root's 0700 home).
#[test]
fn the_four_named_capabilities_suffice() {
    let _serial = serial();
    let run = || -> Result<()> {
        let interp = &selected_interpreters()?[0];
        let dir = TempDir::new()?;
        let binary = dir.path().join("pytrace");
        fs::copy(pytrace_binary(), &binary).map_err(|e| format!("copy: {e}"))?;
        for (path, mode) in [(dir.path(), 0o755), (binary.as_path(), 0o755)] {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let case = &THREAD_DEPTHS;
        let mut target = Target::start(interp, case.script, case.registered)?;
        let pid = target.pid();
        let caps = "+bpf,+perfmon,+sys_ptrace,+dac_read_search";
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(&binary);
        let mut pytrace =
            Pytrace::spawn_command(command, &watch_args(case.watched, &[pid], 1, "text"))?;
        pytrace.wait_attached(Duration::from_secs(60))?;
        let before = target.output().len();
        target.trigger(case.trigger, case.watched)?;
        let expected = take_oracle(&mut target, case, interp, before)?;
        expect_dumps(&mut pytrace, &[(pid, expected)], "four capabilities")
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}
