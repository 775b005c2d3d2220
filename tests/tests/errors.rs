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

/// `pytrace --signal SIGUSR1 ARGS…` must fail with `code` and a line holding every `words`.
fn refused(args: &[&str], code: i32, words: &[&str]) -> Result<String> {
    let mut all: Vec<String> = vec!["--signal".into(), "SIGUSR1".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let (got, line) = expect_error(&all)?;
    if got != code {
        return Err(format!(
            "{args:?}: exit code {got}, expected {code}: {line:?}"
        ));
    }
    if let Some(w) = words.iter().find(|w| !line.contains(*w)) {
        return Err(format!("{args:?}: the message lacks {w:?}: {line:?}"));
    }
    Ok(line)
}

#[test]
fn bad_option_values_are_usage_errors() {
    let _serial = serial();
    let cases: &[(&[&str], &str)] = &[
        (&["--duration", "inf"], "--duration"),
        (&["--duration", "1e30"], "--duration"),
        (&["--duration", "0"], "--duration"),
        (&["--duration", "nan"], "--duration"),
        (&["--duration=-1"], "--duration"),
        (&["--duration", "soon"], "--duration"),
        (&["--count", "0"], "--count"),
        (&["--ringbuf-mib", "0"], "--ringbuf-mib"),
        (&["--ringbuf-mib", "4096"], "--ringbuf-mib"),
        (&["--pid", "0"], "--pid"),
        (&["--max-dumps-per-sec=-5"], "--max-dumps-per-sec"),
        (&["--no-such-option"], "--no-such-option"),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(args, option)| refused(args, 2, &[option]).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn glibc_reserved_signal_numbers_are_refused() {
    let _serial = serial();
    for signal in ["32", "33", "SIGRTMIN-1"] {
        let (code, line) = expect_error(&[
            "--signal".into(),
            signal.into(),
            "--count".into(),
            "1".into(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 3, "{signal}: {line}");
        assert!(line.contains("reserved"), "{signal}: {line}");
    }
}

#[test]
fn signal_aliases_are_accepted() {
    let _serial = serial();
    // Accepted names get past the signal check to the PID check (4), not refused (3).
    let mut child = Command::new("true").spawn().expect("true");
    let pid = child.id().to_string();
    child.wait().expect("wait");
    for signal in ["SIGIOT", "SIGCLD", "SIGPOLL", "IOT", "SIGRTMAX"] {
        let (code, line) = expect_error(&[
            "--signal".into(),
            signal.into(),
            "--pid".into(),
            pid.clone(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        if signal == "SIGCLD" {
            // Known as SIGCHLD, which the kernel discards for a process without a handler:
            // refused as a usage error that names it.
            assert!(
                code == 2 && line.contains("SIGCHLD"),
                "{signal}: {code} {line}"
            );
        } else {
            assert_eq!(code, 4, "{signal}: {line}");
        }
    }
}

#[test]
fn pid_of_a_zombie() {
    let _serial = serial();
    let run = || -> Result<()> {
        let mut child = Reaped(
            Command::new("true")
                .spawn()
                .map_err(|e| format!("true: {e}"))?,
        );
        let pid = child.0.id();
        // Wait for its exit without reaping it: it stays a zombie.
        // SAFETY: waitid with a valid, zeroed siginfo; WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc != 0 {
            return Err(format!("waitid: {}", std::io::Error::last_os_error()));
        }
        let line = refused(
            &["--pid", &pid.to_string()],
            4,
            &[&pid.to_string(), "exited"],
        )?;
        let _ = child.0.wait();
        match line.contains("not been reaped") {
            true => Ok(()),
            false => Err(format!("the message does not say it is unreaped: {line:?}")),
        }
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn pid_1_is_not_a_privilege_problem() {
    let _serial = serial();
    // As root, with every capability: whatever PID 1 is, a refusal is about PID 1, never
    // about pytrace's privileges.
    let (code, line) = expect_error(&[
        "--signal".into(),
        "SIGUSR1".into(),
        "--pid".into(),
        "1".into(),
        "--count".into(),
        "1".into(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !line.to_lowercase().contains("privilege") && code != 8,
        "{code}: {line}"
    );
    if code == 7 {
        assert!(line.contains("cannot inspect"), "{line}");
    } else {
        assert_eq!(code, 5, "{line}");
    }
}

#[test]
fn missing_proc_cannot_inspect() {
    let _serial = serial();
    // A private mount namespace whose /proc is unmounted.
    let script = format!(
        "umount -l /proc && exec {} --signal SIGUSR1 --count 1",
        pytrace_tests::pytrace_binary().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.lines().count() == 1
            && stderr.contains("cannot inspect")
            && stderr.contains("/proc"),
        "{stderr}"
    );
}

/// pytrace under `setpriv` with only `caps` (a `setpriv` capability list) in its bounding set,
/// as root.
fn with_capabilities(caps: &str, args: &[&str]) -> Result<pytrace_tests::Finished> {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--inh-caps=-all")
        .arg(pytrace_tests::pytrace_binary());
    pytrace_tests::Pytrace::spawn_command(command, args)?.finish(Duration::from_secs(60))
}

#[test]
fn missing_capabilities_are_named() {
    let _serial = serial();
    let cases = [
        (
            "+bpf,+perfmon",
            &["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"][..],
            &["CAP_BPF", "CAP_PERFMON"][..],
        ),
        (
            "+bpf,+sys_ptrace,+dac_read_search",
            &["CAP_PERFMON"],
            &["CAP_BPF", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"],
        ),
        (
            "+sys_admin,+sys_ptrace",
            &["CAP_DAC_READ_SEARCH"],
            &["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"],
        ),
    ];
    for (caps, missing, present) in cases {
        let finished = with_capabilities(caps, &["--signal", "SIGUSR1", "--count", "1"])
            .unwrap_or_else(|e| panic!("{e}"));
        let (code, line) = plain_error(&finished, &format!("setpriv {caps} pytrace"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 8, "{caps}: {line}");
        for cap in missing {
            assert!(line.contains(cap), "{caps}: {cap} not named: {line}");
        }
        for cap in present {
            assert!(
                !line.contains(cap),
                "{caps}: {cap} is held but named: {line}"
            );
        }
    }
    // `pytrace dump --reader process-vm` loads no eBPF program: without CAP_BPF and
    // CAP_PERFMON it gets past the check (a non-Python PID is then exit 5), where the kernel's
    // reader is refused naming them.
    let mut sleeper = Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap_or_else(|e| panic!("sleep: {e}"));
    let pid = sleeper.id().to_string();
    let caps = "+sys_ptrace,+dac_read_search";
    for (reader, code, named) in [("process-vm", 5, None), ("kernel", 8, Some("CAP_BPF"))] {
        let finished = with_capabilities(caps, &["dump", "--reader", reader, "--pid", &pid])
            .unwrap_or_else(|e| panic!("{e}"));
        let (got, line) = plain_error(&finished, &format!("setpriv {caps} pytrace {reader}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, code, "{caps} --reader {reader}: {line}");
        if let Some(cap) = named {
            assert!(line.contains(cap) && line.contains("CAP_PERFMON"), "{line}");
        }
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // CAP_DAC_OVERRIDE (a container's default) stands in for CAP_DAC_READ_SEARCH.
    let caps = "+bpf,+perfmon,+sys_ptrace,+dac_override";
    let finished = with_capabilities(caps, &["--signal", "SIGUSR1", "--duration", "0.5"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        finished.status.success() && finished.stderr.contains("pytrace: attached"),
        "{caps}: {finished:?}"
    );
    // Host-wide, the loader's uprobe needs CAP_SYS_ADMIN: if it fails, the warning says so.
    for line in finished.stderr.lines().filter(|l| l.contains("uprobe")) {
        assert!(line.contains("CAP_SYS_ADMIN"), "{line}");
    }
}
