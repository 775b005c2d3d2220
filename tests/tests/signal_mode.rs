//! Signal mode: signals that kill a process without a handler (which the kernel turns into a
//! group SIGKILL before delivery) are dumped once per process and named after the original
//! signal and its sender; `--signal fatal`; several signals at once; signals ignored by
//! default refused; `--hold`; a storm of handled signals whose counts add up exactly.
//!
//! Every target is `unhandled.py`: thread_depths.py's stack, faulthandler registered on one
//! oracle signal only, SIGINT reset to its default. The oracle signal makes faulthandler write
//! the expected text; then the signal under test kills the target, and pytrace's dump of that
//! death must equal faulthandler's text byte for byte.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use pytrace_tests::cases::THREAD_DEPTHS;
use pytrace_tests::*;

const SCRIPT: &str = "unhandled.py";

const fn signal(name: &'static str, number: i32) -> Signal {
    Signal { name, number }
}

const SIGHUP: Signal = signal("SIGHUP", libc::SIGHUP);
const SIGINT: Signal = signal("SIGINT", libc::SIGINT);
const SIGTRAP: Signal = signal("SIGTRAP", libc::SIGTRAP);
const SIGABRT: Signal = signal("SIGABRT", libc::SIGABRT);
const SIGBUS: Signal = signal("SIGBUS", libc::SIGBUS);
const SIGFPE: Signal = signal("SIGFPE", libc::SIGFPE);
const SIGKILL: Signal = signal("SIGKILL", libc::SIGKILL);
const SIGSEGV: Signal = signal("SIGSEGV", libc::SIGSEGV);
const SIGALRM: Signal = signal("SIGALRM", libc::SIGALRM);
const SIGTERM: Signal = signal("SIGTERM", libc::SIGTERM);
const SIGSTKFLT: Signal = signal("SIGSTKFLT", libc::SIGSTKFLT);
const SIGXCPU: Signal = signal("SIGXCPU", libc::SIGXCPU);
const SIGVTALRM: Signal = signal("SIGVTALRM", libc::SIGVTALRM);
const SIGPROF: Signal = signal("SIGPROF", libc::SIGPROF);
const SIGIO: Signal = signal("SIGIO", libc::SIGIO);
const SIGPWR: Signal = signal("SIGPWR", libc::SIGPWR);
const SIGSYS: Signal = signal("SIGSYS", libc::SIGSYS);
/// glibc's SIGRTMIN is 34 (32 and 33 are its own).
const SIGRTMIN_1: Signal = signal("SIGRTMIN+1", 35);
const SIGRTMAX: Signal = signal("SIGRTMAX", 64);

/// Fatal signals that do not dump core: the kernel turns them into a group SIGKILL.
const CONVERTED: &[Signal] = &[SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGALRM];

/// Signals whose default action kills, as a process sends them (SIGPIPE and SIGXFSZ are left
/// out: Python ignores them).
const FATAL: &[Signal] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGALRM, SIGTERM, SIGSTKFLT, SIGXCPU, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSYS,
    SIGRTMIN_1, SIGRTMAX,
];

/// Signals that dump core: delivered as themselves in one thread.
const CORE: &[Signal] = &[
    SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGSYS,
];

fn oracle_for(killer: Signal) -> Signal {
    if killer == SIGUSR2 {
        SIGUSR1
    } else {
        SIGUSR2
    }
}

/// Waits until pytrace has printed at least `n` dumps, then for a quiet period (a dump more
/// would be an error), and stops it. Returns its dumps.
fn collect_dumps(pytrace: &mut Pytrace, n: usize) -> Result<Vec<TextDump>> {
    let deadline = Instant::now() + DUMP_TIMEOUT;
    loop {
        let printed = pytrace
            .stdout()
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"Process "))
            .count();
        if printed >= n {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "pytrace printed {printed} of {n} dumps within {DUMP_TIMEOUT:?}\n{}",
                pytrace.describe()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(QUIET_PERIOD);
    let status = pytrace.interrupt(DUMP_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "pytrace exited with {status:?} when interrupted\n{}",
            pytrace.describe()
        ));
    }
    split_text_output(&pytrace.stdout()).map_err(|e| format!("{e}\n{}", pytrace.describe()))
}

/// One target per signal of `killers`, all watched by one pytrace run with `watch` as its
/// `--signal` value: the oracle first, then the signal kills the target; pytrace must print
/// exactly one dump per target, equal to the oracle, under a header that names the signal,
/// this process as its sender, and its action.
fn check_deaths(interp: &Interpreter, killers: &[Signal], watch: &str) -> Result<()> {
    let mut targets = Vec::new();
    for &killer in killers {
        targets.push((
            killer,
            Target::start(interp, SCRIPT, &[oracle_for(killer)])?,
        ));
    }
    let mut args = vec!["--signal".to_string(), watch.to_string()];
    for (_, target) in &targets {
        args.extend(["--pid".to_string(), target.pid().to_string()]);
    }
    let mut pytrace = Pytrace::attach(&args)?;
    let mut expected = Vec::new();
    for (killer, target) in &mut targets {
        target.kill(oracle_for(*killer))?;
        let text = target.wait_output(0, DUMP_TIMEOUT)?;
        (THREAD_DEPTHS.check)(interp, &parse_dump(&text)?).map_err(|e| {
            format!(
                "{}: faulthandler's own dump is not the expected stack: {e}",
                target.label()
            )
        })?;
        target.kill(*killer)?;
        let status = target.wait_exit(DUMP_TIMEOUT)?;
        if status.signal() != Some(killer.number) {
            return Err(format!(
                "{}: expected death by {}, got {status:?}",
                target.label(),
                killer.name
            ));
        }
        expected.push((target.pid(), *killer, text));
    }
    let watched: Vec<&str> = watch.split(',').collect();
    let oracle_watched = |oracle: Signal| watch == "fatal" || watched.contains(&oracle.name);
    // One dump per death; one more per process whose oracle signal is watched too (its
    // handler, faulthandler's, runs).
    let total: usize = expected
        .iter()
        .map(|(_, killer, _)| 1 + usize::from(oracle_watched(oracle_for(*killer))))
        .sum();
    let dumps = collect_dumps(&mut pytrace, total)?;
    if dumps.len() != total {
        return Err(format!(
            "expected {total} dumps (one per death, one per watched oracle signal), got {}\n{}",
            dumps.len(),
            pytrace.describe()
        ));
    }
    for (pid, killer, text) in &expected {
        let mine: Vec<&TextDump> = dumps.iter().filter(|d| d.pid == *pid).collect();
        let action = if CORE.contains(killer) {
            "kills the process (core)"
        } else {
            "kills the process"
        };
        let named = format!(
            ", {} from PID {}, {action}, ",
            killer.name,
            std::process::id()
        );
        let oracle = oracle_for(*killer);
        let handled = format!(
            ", {} from PID {}, handler runs, ",
            oracle.name,
            std::process::id()
        );
        let deaths: Vec<&&TextDump> = mine.iter().filter(|d| d.header.contains(&named)).collect();
        let handlers = mine.iter().filter(|d| d.header.contains(&handled)).count();
        let [death] = deaths[..] else {
            return Err(format!(
                "{} dumps of PID {pid} with {named:?} in the header, expected exactly one\n{}",
                deaths.len(),
                pytrace.describe()
            ));
        };
        let want_handlers = usize::from(oracle_watched(oracle));
        if handlers != want_handlers || mine.len() != 1 + want_handlers {
            return Err(format!(
                "PID {pid}: {} dumps, {handlers} of them {handled:?}; expected the death and {want_handlers} handler dump(s)\n{}",
                mine.len(),
                pytrace.describe()
            ));
        }
        if death.header.contains("incomplete") {
            return Err(format!("header {:?} says incomplete", death.header));
        }
        for dump in &mine {
            compare(
                text,
                &dump.body,
                &format!("{} {} {}", SCRIPT, killer.name, interp.name),
            )?;
        }
    }
    Ok(())
}

fn names(signals: &[Signal]) -> String {
    signals.iter().map(|s| s.name).collect::<Vec<_>>().join(",")
}

/// SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2 and SIGALRM without a handler arrive in every
/// thread as SIGKILL: one dump per process, named after the signal sent.
#[test]
fn converted_signals_are_dumped_once_and_named() {
    for_each_interpreter(|interp| check_deaths(interp, CONVERTED, &names(CONVERTED)));
}

/// `--signal fatal`: every fatal signal, SIGKILL (kill -9) and core-dumping ones included.
#[test]
fn fatal_watches_every_signal_that_kills() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    // The whole set on the oldest and newest selected interpreters keeps the run short; the
    // converted signals run on all of them above.
    let mut ends = vec![interpreters[0].clone()];
    if interpreters.len() > 1 {
        ends.push(interpreters[interpreters.len() - 1].clone());
    }
    each_interpreter(&ends, |interp| check_deaths(interp, FATAL, "fatal"));
}

/// The option repeated and a comma list are the same, and only the listed signals dump.
#[test]
fn several_signals_repeated_or_listed() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters[..1], |interp| {
        let mut watched = Target::start(interp, SCRIPT, &[SIGUSR2])?;
        let mut other = Target::start(interp, SCRIPT, &[SIGUSR2])?;
        let pids = [watched.pid(), other.pid()];
        let args: Vec<String> = ["--signal", "SIGHUP", "-s", "ALRM,SIGTERM", "--pid"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                pids[0].to_string(),
                "--pid".to_string(),
                pids[1].to_string(),
            ])
            .collect();
        let mut pytrace = Pytrace::attach(&args)?;
        // SIGUSR1 is not watched: the process dies undumped.
        other.kill(SIGUSR1)?;
        other.wait_exit(DUMP_TIMEOUT)?;
        watched.kill(SIGUSR2)?;
        let text = watched.wait_output(0, DUMP_TIMEOUT)?;
        watched.kill(SIGALRM)?;
        watched.wait_exit(DUMP_TIMEOUT)?;
        let dumps = collect_dumps(&mut pytrace, 1)?;
        match &dumps[..] {
            [d] if d.pid == pids[0] && d.header.contains(", SIGALRM from PID ") => {
                compare(&text, &d.body, &format!("listed signals {}", interp.name))
            }
            _ => Err(format!(
                "expected one SIGALRM dump of {}\n{}",
                pids[0],
                pytrace.describe()
            )),
        }
    });
}

/// Signals ignored by default never reach delivery: refused at start, usage exit code.
#[test]
fn signals_ignored_by_default_are_refused() {
    for sig in ["SIGWINCH", "URG", "SIGCONT", "CHLD", "SIGTERM,SIGWINCH"] {
        let run = Pytrace::run(&["--signal", sig], DUMP_TIMEOUT).unwrap();
        let (code, line) = plain_error(&run, &format!("pytrace --signal {sig}")).unwrap();
        assert_eq!(code, 2, "{line}");
        assert!(
            line.contains("ignored by default") && line.contains("--hold"),
            "{line}"
        );
    }
    let run = Pytrace::run(&["--signal", "KILL", "--hold"], DUMP_TIMEOUT).unwrap();
    let (code, line) = plain_error(&run, "pytrace --signal KILL --hold").unwrap();
    assert_eq!(code, 2, "{line}");
}

/// Deaths by a storm of signals and the dumps pytrace prints add up: SIGUSR1 to ten targets
/// that handle it (faulthandler writes one dump per delivery), then SIGTERM, which kills them;
/// every delivery is one dump, and every death exactly one.
#[test]
fn storm_of_handled_signals_counts_add_up() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    let interp = interpreters
        .iter()
        .find(|i| i.at_least(3, 12))
        .unwrap_or(&interpreters[0])
        .clone();
    each_interpreter(&[interp], |interp| {
        const TARGETS: usize = 10;
        const RATE_PER_SECOND: u64 = 1000;
        const SECONDS: u64 = 10;
        let mut targets = Vec::new();
        for _ in 0..TARGETS {
            let mut command = Command::new(&interp.python);
            command
                .args(["-E", "-s", "-B"])
                .env("UNHANDLED_MAIN_THREAD_ONLY", "1");
            let mut target = Target::spawn(command, SCRIPT, &[SIGUSR1], &interp.name)?;
            target.wait_ready(READY_TIMEOUT)?;
            targets.push(target);
        }
        let mut args = vec![
            "--signal".to_string(),
            "SIGUSR1,SIGTERM".to_string(),
            "-v".to_string(),
            // Every dump counts here: no rate limit.
            "--max-dumps-per-sec".to_string(),
            "0".to_string(),
        ];
        for t in &targets {
            args.extend(["--pid".to_string(), t.pid().to_string()]);
        }
        let mut pytrace = Pytrace::attach(&args)?;
        let start = Instant::now();
        let total = RATE_PER_SECOND * SECONDS;
        for i in 0..total {
            let due = start + Duration::from_micros(i * 1_000_000 / RATE_PER_SECOND);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            targets[i as usize % TARGETS].kill(SIGUSR1)?;
        }
        // Deliveries: faulthandler's dumps, once its files stop growing. Only the main thread
        // takes SIGUSR1 (the workers block it), one delivery after the other: faulthandler
        // writes one dump per delivery (it skips a dump that starts during another one).
        let mut delivered = Vec::new();
        for t in &mut targets {
            let text = t.wait_output(0, DUMP_TIMEOUT)?;
            let marker = b"Current thread 0x";
            let n = text.windows(marker.len()).filter(|w| w == marker).count();
            delivered.push(n);
            t.kill(SIGTERM)?;
            t.wait_exit(DUMP_TIMEOUT)?;
        }
        let expected: usize = delivered.iter().sum::<usize>() + TARGETS;
        let dumps = collect_dumps(&mut pytrace, expected)?;
        let stats = pytrace
            .stderr()
            .lines()
            .find(|l| l.starts_with("pytrace: stats:"))
            .map(str::to_string)
            .ok_or_else(|| format!("no stats line\n{}", pytrace.describe()))?;
        let stat = |name: &str| -> u64 {
            stats
                .split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        for (t, &n) in targets.iter().zip(&delivered) {
            let mine: Vec<&TextDump> = dumps.iter().filter(|d| d.pid == t.pid()).collect();
            let usr1 = mine
                .iter()
                .filter(|d| {
                    d.header.contains(", SIGUSR1 from PID ")
                        && d.header.contains(", handler runs, ")
                })
                .count();
            let term = mine
                .iter()
                .filter(|d| {
                    d.header.contains(", SIGTERM from PID ")
                        && d.header.contains(", kills the process, ")
                })
                .count();
            if usr1 != n || term != 1 || mine.len() != n + 1 {
                return Err(format!(
                    "PID {}: faulthandler wrote {n} dumps; pytrace printed {usr1} SIGUSR1 and {term} SIGTERM dumps of {} ({stats})",
                    t.pid(),
                    mine.len()
                ));
            }
        }
        if stat("printed") != expected as u64 || stat("dumps") != expected as u64 {
            return Err(format!("counts do not add up to {expected}: {stats}"));
        }
        eprintln!(
            "storm: {total} signals sent, {} delivered and dumped, {TARGETS} deaths dumped once",
            expected - TARGETS
        );
        Ok(())
    });
}

/// `--hold`: the watched signal is refused to the selected process (the sender gets EPERM),
/// which stays alive and unchanged and is dumped once per signal instead; a process not
/// selected still receives it.
#[test]
fn hold_refuses_the_signal_to_selected_processes_only() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters[..1], |interp| {
        let mut held = Target::start(interp, SCRIPT, &[SIGUSR2])?;
        let mut free = Target::start(interp, SCRIPT, &[SIGUSR2])?;
        let args = [
            "--signal".to_string(),
            "SIGTERM".to_string(),
            "--hold".to_string(),
            "--pid".to_string(),
            held.pid().to_string(),
        ];
        let mut pytrace = Pytrace::spawn(&args)?;
        if let Err(e) = pytrace.wait_attached(ATTACH_TIMEOUT) {
            // A kernel that cannot run the BPF LSM program: one line, exit code 9, and the
            // signal is not held (the target still dies of it).
            let run = pytrace.finish(DUMP_TIMEOUT)?;
            let (code, line) = plain_error(&run, "pytrace --signal SIGTERM --hold")
                .map_err(|why| format!("{why}\n{e}"))?;
            if code != 9 || !line.contains("--hold needs the BPF LSM") {
                return Err(format!(
                    "expected exit code 9 naming the BPF LSM, got {code}: {line}"
                ));
            }
            eprintln!("--hold unavailable here, refused as it must be: {line}");
            held.kill(SIGTERM)?;
            let status = held.wait_exit(DUMP_TIMEOUT)?;
            return if status.signal() == Some(libc::SIGTERM) {
                Ok(())
            } else {
                Err(format!(
                    "the target should have died of SIGTERM: {status:?}"
                ))
            };
        }
        held.kill(SIGUSR2)?;
        let before = held.wait_output(0, DUMP_TIMEOUT)?;
        for n in 0..20 {
            match held.kill(SIGTERM) {
                Err(e) if e.contains("Operation not permitted") => {}
                other => return Err(format!("SIGTERM {n}: expected EPERM, got {other:?}")),
            }
        }
        free.kill(SIGTERM)?;
        let status = free.wait_exit(DUMP_TIMEOUT)?;
        if status.signal() != Some(libc::SIGTERM) {
            return Err(format!("the process not held: {status:?}"));
        }
        held.kill(SIGUSR2)?;
        let after = held.wait_output(before.len(), DUMP_TIMEOUT)?;
        if after != before {
            return Err("the held process changed while its SIGTERMs were refused".into());
        }
        // Each held signal is one dump, taken from outside, named after it, with the thread it
        // was addressed to (the main one) current: faulthandler's dump of the parked target.
        let dumps = collect_dumps(&mut pytrace, 20)?;
        let named = format!(
            ", SIGTERM from PID {}, held (not delivered), ",
            std::process::id()
        );
        if dumps.len() != 20
            || dumps
                .iter()
                .any(|d| d.pid != held.pid() || !d.header.contains(&named))
        {
            return Err(format!(
                "expected 20 dumps of {} with {named:?}\n{}",
                held.pid(),
                pytrace.describe()
            ));
        }
        for dump in &dumps {
            compare(
                &before,
                &dump.body,
                &format!("held SIGTERM {}", interp.name),
            )?;
        }
        Ok(())
    });
}

/// `unhandled.py` with `UNHANDLED_THEN=<then>`, started by `command_prefix` (the interpreter
/// and its options come after it).
fn start_then(interp: &Interpreter, then: &str, mut command: Command) -> Result<Target> {
    command
        .arg(&interp.python)
        .args(["-E", "-s", "-B"])
        .env("UNHANDLED_THEN", then);
    let mut target = Target::spawn(command, SCRIPT, &[SIGUSR1], &interp.name)?;
    target.wait_ready(READY_TIMEOUT)?;
    Ok(target)
}

/// Runs `target` to its death by `signal` (after its `go` line) under pytrace
/// `--signal <signal> --format json`, and returns pytrace's one JSON object.
fn json_of_death(target: &mut Target, signal: Signal) -> Result<serde_json::Value> {
    let mut pytrace = Pytrace::attach(&[
        "--signal".to_string(),
        signal.name.to_string(),
        "--pid".to_string(),
        target.pid().to_string(),
        "--count".to_string(),
        "1".to_string(),
        "--format".to_string(),
        "json".to_string(),
    ])?;
    target.command("go")?;
    let status = target.wait_exit(DUMP_TIMEOUT)?;
    if status.signal() != Some(signal.number) {
        return Err(format!(
            "{}: expected death by {}, got {status:?}",
            target.label(),
            signal.name
        ));
    }
    let status = pytrace.wait_exit(DUMP_TIMEOUT)?;
    let stdout = String::from_utf8(pytrace.stdout()).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = stdout.lines().collect();
    if !status.success() || lines.len() != 1 {
        return Err(format!("expected one JSON line\n{}", pytrace.describe()));
    }
    serde_json::from_str(lines[0]).map_err(|e| format!("{e}\n{}", pytrace.describe()))
}

fn current_names(record: &serde_json::Value) -> Vec<String> {
    record["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["current"] == true)
        .flat_map(|t| t["frames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect()
}

/// A fault the kernel raises: named `from the kernel` with the fault's address, no sender.
#[test]
fn kernel_raised_sigsegv_has_its_fault_address() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        let mut target = start_then(interp, "segv", Command::new("env"))?;
        let record = json_of_death(&mut target, SIGSEGV)?;
        let names = current_names(&record);
        let ok = record["signal"] == 11
            && record["action"] == "core"
            && record["from_kernel"] == true
            && record["fault_addr"] == "0x10"
            && record.get("sender_pid").is_none()
            && names.first().map(String::as_str) == Some("string_at")
            && names.get(1).map(String::as_str) == Some("crash");
        if ok {
            Ok(())
        } else {
            Err(format!(
                "unexpected record (current thread {names:?}): {record}"
            ))
        }
    });
}

/// A process the OOM killer ends, in a memory cgroup of 64 MiB: `SIGKILL from the kernel
/// (OOM)`.
#[test]
fn oom_kill_is_named() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    let name = format!("pytrace-test-oom-{}", std::process::id());
    // cgroup v2, else v1's memory controller.
    let (dir, limit_file) = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (format!("/sys/fs/cgroup/{name}"), "memory.max")
    } else {
        (
            format!("/sys/fs/cgroup/memory/{name}"),
            "memory.limit_in_bytes",
        )
    };
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating the cgroup {dir}: {e}"));
    if let Err(e) = std::fs::write(format!("{dir}/{limit_file}"), "67108864") {
        let _ = std::fs::remove_dir(&dir);
        panic!("limiting {dir}: {e}");
    }
    let outcome = std::panic::catch_unwind(|| {
        each_interpreter(&interpreters[..1], |interp| {
            let mut command = Command::new("sh");
            command.args([
                "-c",
                &format!("echo $$ > {dir}/cgroup.procs && exec \"$@\""),
                "sh",
            ]);
            let mut target = start_then(interp, "oom", command)?;
            let record = json_of_death(&mut target, SIGKILL)?;
            let ok = record["signal"] == 9
                && record["action"] == "kill"
                && record["from_kernel"] == true
                && record["oom"] == true
                && record.get("sender_pid").is_none()
                && current_names(&record).first().map(String::as_str) == Some("grow");
            if ok {
                Ok(())
            } else {
                Err(format!("unexpected record: {record}"))
            }
        });
    });
    let _ = std::fs::remove_dir(&dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
