//! `pytrace dump` without a signal: processes read from outside by the kernel's task iterator
//! (or, with `--reader process-vm`, by the same walker compiled for the host, through
//! `process_vm_readv`), never signalled or stopped.
//!
//! - Every parked target of every selected interpreter: the dump through each reader equals,
//!   thread for thread, the faulthandler dump the target took just before. Only the `Current thread` marker (and
//!   the `Garbage-collecting` line faulthandler writes under it) may differ: the target's
//!   faulthandler marks the thread that received its signal, an on-demand dump the thread
//!   holding the GIL, and no parked thread holds it. From 3.14 each thread header ends with
//!   the thread's OS name (` [name]`, raw), which the on-demand dump reads from the kernel's
//!   task as the iterator passes it: compared too, the hostile name's newline included.
//! - 50 processes of mixed versions and two non-Python processes, dumped host-wide through
//!   each reader: every one of the 50 exactly once, under its own PID (its main thread is
//!   parked in a function named after its PID), in PID order, and no non-Python process.
//! - A target whose private memory was paged out (`MADV_PAGEOUT`, to a swap file the test
//!   adds for the time of the test when the host has no swap): dumped completely, through
//!   each reader (`bpf_copy_from_user_task` and `process_vm_readv` both fault pages in).
//! - The JSON form through each reader: each thread's task (tid, name, not on a CPU), one task
//!   per thread (3.6 and 3.7 record no native id: the host walk ties thread to tid through
//!   glibc's `struct pthread`), and `-v` naming the reader used.
//! - `auto` on a kernel that cannot load the task iterator (simulated: the kernel's BTF made
//!   empty in a mount namespace of pytrace's own): the dump read with `process_vm_readv`
//!   equals faulthandler's, and `-v` says so; `--reader kernel` there is exit 9.
//! - Exit codes, through each reader: a PID that does not exist (4), a non-Python process (5),
//!   a process that has exited (4); and a process exiting while pytrace is reading it
//!   (through each reader).
//! - `--watch`: round after round of a parked target, each equal to its faulthandler dump,
//!   until SIGINT (exit 0), through each reader; a `--pid` exiting during the watch gets its
//!   line and is not read again, and pytrace ends with code 4 once no `--pid` is left.
//! - `--stuck`: a target with a parked thread and a thread that never stops changing its
//!   stack (`stuck_busy.py`): only the parked threads are reported, each exactly as
//!   faulthandler prints it, unchanged for at least SECS (text and JSON).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pytrace_tests::cases::*;
use pytrace_tests::dump::split_text_output;
use pytrace_tests::*;

/// One on-demand dump (loading the programs, scanning, reading) takes about a second.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// faulthandler's dump with the marker of its current thread removed: `Current thread 0x…` is
/// `Thread 0x…`, and the `Garbage-collecting` line that only the current thread gets is gone.
fn without_current_marker(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut after_current = false;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if after_current && line == b"  Garbage-collecting\n" {
            after_current = false;
            continue;
        }
        after_current = false;
        if let Some(rest) = line.strip_prefix(b"Current thread 0x") {
            out.extend_from_slice(b"Thread 0x");
            out.extend_from_slice(rest);
            after_current = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn dump_args(pids: &[u32], format: &str) -> Vec<String> {
    let mut args = vec!["dump".to_string()];
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    args.extend(["--format".to_string(), format.to_string()]);
    args
}

/// The two ways `pytrace dump` reads a target: the kernel's task iterator and the same walker
/// compiled for the host, reading with `process_vm_readv`.
const READERS: [&str; 2] = ["kernel", "process-vm"];

/// Runs `pytrace dump --pid PID --reader READER` to completion; requires success and exactly
/// one dump, of `pid`, whose header names no signal and no thread; returns its body.
fn dump_one(pid: u32, reader: &str) -> Result<Vec<u8>> {
    let run = Pytrace::run(
        &dump_args_with(pid, "text", &["--reader", reader]),
        RUN_TIMEOUT,
    )?;
    let context = || run.describe();
    if !run.status.success() {
        return Err(format!(
            "pytrace dump exited with {:?}\n{}",
            run.status,
            context()
        ));
    }
    let dumps = split_text_output(&run.stdout)?;
    let [dump] = dumps.as_slice() else {
        return Err(format!(
            "expected one dump, got {}\n{}",
            dumps.len(),
            context()
        ));
    };
    if dump.pid != pid {
        return Err(format!(
            "dump of PID {}, expected {pid}\n{}",
            dump.pid,
            context()
        ));
    }
    check_header(&dump.header)?;
    Ok(dump.body.clone())
}

/// `Process <pid> (<comm>) Python X.Y.Z, <time>`: the signal header without its signal part.
fn check_header(header: &str) -> Result<()> {
    let parts: Vec<&str> = header.split(", ").collect();
    let ok = parts.len() == 2
        && parts[0].contains(") Python 3.")
        && parts[1].len() == "2026-11-25T10:00:00.000000Z".len()
        && parts[1].ends_with('Z')
        && !header.contains("SIG")
        && !header.contains("incomplete");
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected on-demand header {header:?}"))
    }
}

/// Like `dump_one`, for a dump whose body holds the target's raw thread names (3.14+ writes
/// each thread's OS name in its header, a newline included): the body is everything between
/// pytrace's own header line, which must be one line, its control characters escaped, and the
/// empty line that ends the dump.
fn dump_one_raw(pid: u32, reader: &str) -> Result<Vec<u8>> {
    let run = Pytrace::run(
        &dump_args_with(pid, "text", &["--reader", reader]),
        RUN_TIMEOUT,
    )?;
    if !run.status.success() {
        return Err(format!(
            "pytrace dump exited with {:?}: {}",
            run.status, run.stderr
        ));
    }
    let split = run.stdout.iter().position(|&b| b == b'\n');
    let (header, body) = run.stdout.split_at(split.ok_or("no header line")? + 1);
    let header = String::from_utf8_lossy(header);
    let header = header.trim_end_matches('\n');
    if !header.starts_with(&format!("Process {pid} (")) || header.chars().any(char::is_control) {
        return Err(format!("unexpected on-demand header {header:?}"));
    }
    check_header(header)?;
    // The dump ends with one empty line.
    let body = body.strip_suffix(b"\n").filter(|b| b.ends_with(b"\n"));
    Ok(body
        .ok_or("the dump does not end with an empty line")?
        .to_vec())
}

/// The target's faulthandler dump, then pytrace's on-demand dumps of the same parked process,
/// through each reader. From 3.14 the thread headers carry each thread's OS name, which the
/// on-demand dump reads from the kernel's task (or `/proc`) when it runs: both must agree
/// byte for byte, raw names included.
fn check_case(interp: &Interpreter, case: &Case) -> Result<()> {
    let mut target = Target::start(interp, case.script, case.registered)?;
    let before = target.output().len();
    target.trigger(case.trigger, case.watched)?;
    // From 3.14 faulthandler writes the hostile name (a newline in it) raw in its thread
    // header: the oracle is its bytes as they are, unparsed (as in hostile.rs).
    let raw_names = case.name == HOSTILE_NAME.name && interp.at_least(3, 14);
    let expected = if raw_names {
        target.wait_output(before, DUMP_TIMEOUT)?
    } else {
        take_oracle(&mut target, case, interp, before)?
    };
    for reader in READERS {
        let body = if raw_names {
            dump_one_raw(target.pid(), reader)?
        } else {
            dump_one(target.pid(), reader)?
        };
        compare(
            &without_current_marker(&expected),
            &body,
            &format!("on-demand ({reader}) {} {}", case.name, interp.name),
        )?;
    }
    Ok(())
}

#[test]
fn parked_targets_equal_their_own_faulthandler_dump() {
    for_each_interpreter(|interp| {
        // faulthandler prints the interpreter of the thread its handler runs in; an on-demand
        // dump runs in no thread of the target and prints the GIL holder's interpreter, or
        // the main one: a main thread inside a sub-interpreter has no on-demand equivalent.
        // Sub-interpreters are made from Python from 3.8 on.
        let cases = ALL.iter().filter(|c| {
            !c.watched.is_fatal()
                && c.name != SUBINTERP_MAIN.name
                && (c.name != SUBINTERP_WORKER.name || has_subinterpreters(interp))
        });
        for case in cases {
            check_case(interp, case).map_err(|e| format!("{}: {e}", case.name))?;
        }
        Ok(())
    });
}

/// The JSON form of an on-demand dump: the same threads as faulthandler's, with the kernel
/// task of each (tid = its native id where the version records one, a name) and the GIL.
#[test]
fn json_names_each_threads_task() {
    for_each_interpreter(|interp| {
        let case = &THREAD_DEPTHS;
        let target = Target::start(interp, case.script, case.registered)?;
        for reader in READERS {
            check_json_tasks(&target, reader).map_err(|e| format!("--reader {reader}: {e}"))?;
        }
        Ok(())
    });
}

/// One JSON dump of `target` through `reader`, with `-v`, which names the reader used (and,
/// for the kernel's, the BPF programs run; the host walk loads none).
fn check_json_tasks(target: &Target, reader: &str) -> Result<()> {
    let run = Pytrace::run(
        &dump_args_with(target.pid(), "json", &["--reader", reader, "-v"]),
        RUN_TIMEOUT,
    )?;
    if !run.status.success() {
        return Err(format!("exit {:?}: {}", run.status, run.stderr));
    }
    let (says, bpf_ran) = match reader {
        "kernel" => ("through the kernel's task iterator", true),
        _ => ("through process_vm_readv", false),
    };
    if !run.stderr.contains(says) || run.stderr.contains("pytrace: bpf: ") != bpf_ran {
        return Err(format!("-v does not say {says:?}: {}", run.stderr));
    }
    let text = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let [line] = lines.as_slice() else {
        return Err(format!("expected one JSON line, got {}", lines.len()));
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let complete = v["incomplete"].as_array().is_some_and(|a| a.is_empty())
        && v["torn_threads"] == 0
        && v["raced_threads"] == 0
        && v["lost_records"] == 0
        && v["unsymbolized_frames"] == 0;
    if v["pid"] != target.pid() || v["trigger"] != "on_demand" || !complete {
        return Err(format!("unexpected dump {v}"));
    }
    let threads = v["threads"].as_array().ok_or("no threads")?;
    if threads.len() != 5 {
        return Err(format!("expected 5 threads, got {}", threads.len()));
    }
    let task_dir = format!("/proc/{}/task", target.pid());
    let mut tids: Vec<u64> = threads.iter().filter_map(|t| t["tid"].as_u64()).collect();
    tids.sort_unstable();
    tids.dedup();
    if tids.len() != threads.len() {
        return Err(format!(
            "threads without a task, or sharing one: {threads:?}"
        ));
    }
    for t in threads {
        let tid = t["tid"].as_u64().ok_or_else(|| format!("no tid in {t}"))?;
        if !Path::new(&format!("{task_dir}/{tid}")).exists() {
            return Err(format!("tid {tid} is not a thread of the target: {t}"));
        }
        if !t["native_id"].is_null() && t["native_id"] != tid {
            return Err(format!("native_id and tid differ: {t}"));
        }
        let comm = fs::read_to_string(format!("{task_dir}/{tid}/comm")).unwrap_or_default();
        if t["name"] != comm.trim_end() || t["on_cpu"] != false || t["current"] != false {
            return Err(format!(
                "thread {t} (comm {comm:?}): wrong name, on_cpu or current"
            ));
        }
    }
    Ok(())
}

/// pytrace in a mount namespace of its own where the kernel's BTF reads as empty (`/dev/null`
/// bound over `/sys/kernel/btf/vmlinux`): a kernel on which no BPF program can be loaded.
fn pytrace_without_kernel_btf<S: AsRef<str>>(args: &[S]) -> Result<Pytrace> {
    let mut command = Command::new("unshare");
    command.args([
        "--mount",
        "sh",
        "-c",
        "mount --bind /dev/null /sys/kernel/btf/vmlinux && exec \"$0\" \"$@\"",
    ]);
    command.arg(pytrace_binary());
    Pytrace::spawn_command(command, args)
}

/// Where the kernel cannot run the task iterator, `--reader kernel` is exit 9 and `auto`
/// (the default) reads with `process_vm_readv`, says so under `-v`, and prints what
/// faulthandler printed.
#[test]
fn auto_reads_with_process_vm_where_the_kernel_cannot() {
    let interpreters = match selected_interpreters() {
        Ok(all) => all,
        Err(e) => panic!("{e}"),
    };
    let Some(interp) = interpreters.last() else {
        panic!("no interpreter selected");
    };
    let result = (|| -> Result<()> {
        let case = &THREAD_DEPTHS;
        let mut target = Target::start(interp, case.script, case.registered)?;
        let before = target.output().len();
        target.trigger(case.trigger, case.watched)?;
        let expected = take_oracle(&mut target, case, interp, before)?;
        let pid = target.pid();
        let kernel =
            pytrace_without_kernel_btf(&dump_args_with(pid, "text", &["--reader", "kernel"]))?
                .finish(RUN_TIMEOUT)?;
        let (code, line) = plain_error(&kernel, "--reader kernel without the kernel's BTF")?;
        if code != 9 {
            return Err(format!("--reader kernel: exit {code}, expected 9: {line}"));
        }
        let auto = pytrace_without_kernel_btf(&dump_args_with(pid, "text", &["-v"]))?
            .finish(RUN_TIMEOUT)?;
        if !auto.status.success()
            || !auto
                .stderr
                .contains("reading with process_vm_readv instead")
            || !auto.stderr.contains("through process_vm_readv")
        {
            return Err(format!(
                "auto without the kernel's BTF:\n{}",
                auto.describe()
            ));
        }
        let dumps = split_text_output(&auto.stdout)?;
        let [dump] = dumps.as_slice() else {
            return Err(format!("expected one dump\n{}", auto.describe()));
        };
        check_header(&dump.header)?;
        compare(
            &without_current_marker(&expected),
            &dump.body,
            &format!("auto, falling back, {}", interp.name),
        )
    })();
    if let Err(e) = result {
        panic!("{}: {e}", interp.name);
    }
}

/// A process started with `command`, killed on drop.
struct Other(Child);

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn fifty_processes_of_mixed_versions_all_dumped_non_python_skipped() {
    let _serial = serial();
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<()> {
        let mut targets = Vec::new();
        for i in 0..50 {
            let interp = &interpreters[i % interpreters.len()];
            let mut command = Command::new(&interp.python);
            command.args(["-E", "-s", "-B"]);
            targets.push((
                interp,
                Target::spawn(command, "marked_park.py", &[], &interp.name)?,
            ));
        }
        for (_, t) in &mut targets {
            t.wait_ready(READY_TIMEOUT)?;
        }
        let others: Vec<Other> = (0..2)
            .map(|_| {
                Command::new("sleep")
                    .arg("600")
                    .stdin(Stdio::null())
                    .spawn()
                    .map(Other)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_>>()?;
        for reader in READERS {
            let run = Pytrace::run(&["dump", "--reader", reader], RUN_TIMEOUT)?;
            if !run.status.success() {
                return Err(format!(
                    "pytrace dump --reader {reader} exited with {:?}: {}",
                    run.status, run.stderr
                ));
            }
            let dumps = split_text_output(&run.stdout)?;
            let pids: Vec<u32> = dumps.iter().map(|d| d.pid).collect();
            if pids.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("{reader}: dumps not in PID order: {pids:?}"));
            }
            for other in &others {
                if pids.contains(&other.0.id()) {
                    return Err(format!(
                        "{reader}: non-Python process {} was dumped",
                        other.0.id()
                    ));
                }
            }
            for (interp, t) in &targets {
                let pid = t.pid();
                let mine: Vec<_> = dumps.iter().filter(|d| d.pid == pid).collect();
                let [dump] = mine.as_slice() else {
                    return Err(format!(
                        "{reader}: {} dumps of PID {pid} ({})\n{}",
                        mine.len(),
                        interp.name,
                        run.stderr
                    ));
                };
                check_header(&dump.header)?;
                let release = format!(" Python {}", interp.release);
                if !dump.header.contains(&release) {
                    return Err(format!(
                        "PID {pid} runs {}: header {:?}",
                        interp.name, dump.header
                    ));
                }
                let body = String::from_utf8_lossy(&dump.body);
                let marker = format!(" in park_{pid}\n");
                let descend = body.matches(" in descend\n").count();
                if !body.contains(&marker) || descend != 3 {
                    return Err(format!(
                        "{reader}: dump of PID {pid} is not its own:\n{body}"
                    ));
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A swap file added for the time of a test (removed on drop), when the host has none.
struct TemporarySwap(Option<PathBuf>);

impl TemporarySwap {
    fn ensure() -> Result<TemporarySwap> {
        let swaps = fs::read_to_string("/proc/swaps").map_err(|e| e.to_string())?;
        if swaps.lines().count() > 1 {
            return Ok(TemporarySwap(None));
        }
        let path = std::env::temp_dir().join(format!("pytrace-test-swap-{}", std::process::id()));
        let run = |program: &str, args: &[&str]| -> Result<()> {
            let out = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("{program}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{program} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let p = path.to_string_lossy().into_owned();
        let swap = TemporarySwap(Some(path));
        run(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={p}"),
                "bs=1M",
                "count=256",
                "status=none",
            ],
        )?;
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        run("mkswap", &[&p])?;
        // Lowest priority: used only by this test's explicit page-out.
        run("swapon", &["--priority", "0", &p])?;
        Ok(swap)
    }
}

impl Drop for TemporarySwap {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = Command::new("swapoff").arg(&path).status();
            let _ = fs::remove_file(&path);
        }
    }
}

/// `VmSwap` of a process, in kB.
fn swapped_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmSwap:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn paged_out_target_is_dumped_completely() {
    let _serial = serial();
    let swap = TemporarySwap::ensure().unwrap_or_else(|e| panic!("cannot add swap: {e}"));
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        // A target each: the first dump faults its pages back in.
        for reader in READERS {
            let mut target = Target::start(interp, "paged_out.py", &[SIGUSR1])?;
            target.kill(SIGUSR1)?;
            let expected = target.wait_output(0, DUMP_TIMEOUT)?;
            target.command("pageout")?;
            let reply = target.read_line()?;
            let swapped = swapped_kb(target.pid());
            if !reply.starts_with("paged out ") || swapped < 1024 {
                return Err(format!(
                    "the target was not paged out ({reply:?}, VmSwap {swapped} kB)"
                ));
            }
            let body = dump_one(target.pid(), reader)?;
            compare(
                &without_current_marker(&expected),
                &body,
                &format!("on-demand ({reader}) paged out {}", interp.name),
            )?;
        }
        Ok(())
    });
    drop(swap);
}

fn expect_exit(args: &[String], code: i32, what: &str) -> Result<String> {
    let run = Pytrace::run(args, RUN_TIMEOUT)?;
    let (got, line) = plain_error(&run, &format!("pytrace {}", args.join(" ")))?;
    if got != code {
        return Err(format!("{what}: exit code {got}, expected {code}: {line}"));
    }
    Ok(line)
}

#[test]
fn exit_codes_for_missing_non_python_and_exited_pids() {
    let _serial = serial();
    let result = (|| -> Result<()> {
        let missing = 4_000_000 + std::process::id() % 100_000;
        let sleeper = Other(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .map_err(|e| e.to_string())?,
        );
        let mut exited = Command::new("true").spawn().map_err(|e| e.to_string())?;
        let exited_pid = exited.id();
        exited.wait().map_err(|e| e.to_string())?;
        for reader in ["auto", "kernel", "process-vm"] {
            let with = |pid| dump_args_with(pid, "text", &["--reader", reader]);
            expect_exit(&with(missing), 4, &format!("a missing PID, {reader}"))?;
            expect_exit(
                &with(sleeper.0.id()),
                5,
                &format!("a non-Python PID, {reader}"),
            )?;
            expect_exit(&with(exited_pid), 4, &format!("an exited PID, {reader}"))?;
        }
        for option in ["--watch 1", "--stuck 1", "--reader process-vm"] {
            let mut args: Vec<String> = ["dump", "--signal", "SIGUSR1"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            args.extend(option.split(' ').map(str::to_string));
            expect_exit(&args, 2, &format!("{option} with --signal"))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Processes exiting while pytrace runs: each either dumped completely (it was read before it
/// exited) or reported as gone with exit code 4, never a crash, a hang or a partial stack
/// without `incomplete`.
#[test]
fn processes_exiting_during_the_dump() {
    for_each_interpreter(|interp| {
        let mut outcomes = (0, 0);
        // The host walk reads a process in about a millisecond: only short delays race it.
        let kernel = [0u64, 50, 150, 300, 600, 900].map(|d| ("kernel", d));
        let process_vm = [0u64, 1, 2].map(|d| ("process-vm", d));
        for (reader, delay_ms) in kernel.into_iter().chain(process_vm) {
            let target = Target::start(interp, THREAD_DEPTHS.script, THREAD_DEPTHS.registered)?;
            let pid = target.pid();
            let pytrace = Pytrace::spawn(&dump_args_with(pid, "text", &["--reader", reader]))?;
            std::thread::sleep(Duration::from_millis(delay_ms));
            drop(target);
            let started = Instant::now();
            let run = pytrace.finish(RUN_TIMEOUT)?;
            let code = run.status.code();
            match code {
                Some(0) => {
                    let dumps = split_text_output(&run.stdout)?;
                    let complete = dumps.len() == 1
                        && dumps[0].pid == pid
                        && (!dumps[0].header.contains("incomplete")
                            || dumps[0].header.contains("(incomplete: "));
                    if !complete {
                        return Err(format!(
                            "{reader}: exit 0 without one dump of {pid}:\n{}",
                            String::from_utf8_lossy(&run.stdout)
                        ));
                    }
                    outcomes.0 += 1;
                }
                // One error line; reads that failed as the process went away are counted,
                // and counted losses are always reported (`pytrace: stats:`).
                Some(4)
                    if run.stdout.is_empty()
                        && run
                            .stderr
                            .lines()
                            .filter(|l| !l.starts_with("pytrace: stats: "))
                            .count()
                            == 1 =>
                {
                    outcomes.1 += 1
                }
                _ => {
                    return Err(format!(
                    "{reader}: exit {code:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    started.elapsed(),
                    String::from_utf8_lossy(&run.stdout),
                    run.stderr
                ))
                }
            }
        }
        eprintln!("dumped {}, gone {}", outcomes.0, outcomes.1);
        Ok(())
    });
}

/// `pytrace dump` with `extra` options, for the target `pid`.
fn dump_args_with(pid: u32, format: &str, extra: &[&str]) -> Vec<String> {
    let mut args = dump_args(&[pid], format);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Waits until pytrace has written `n` text dumps (or fails if it ends first).
fn wait_for_dumps(pytrace: &mut Pytrace, n: usize) -> Result<()> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    while split_text_output(&pytrace.stdout()).map_or(0, |d| d.len()) < n {
        if Instant::now() > deadline || !pytrace.running() {
            return Err(format!("fewer than {n} dumps\n{}", pytrace.describe()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `--watch SECS` dumps again and again until SIGINT, each round the parked target's own
/// faulthandler dump.
#[test]
fn watch_repeats_the_dump_until_interrupted() {
    for_each_interpreter(|interp| {
        let case = &THREAD_DEPTHS;
        let mut target = Target::start(interp, case.script, case.registered)?;
        target.kill(case.watched)?;
        let expected = without_current_marker(&target.wait_output(0, DUMP_TIMEOUT)?);
        for reader in READERS {
            let mut pytrace = Pytrace::spawn(&dump_args_with(
                target.pid(),
                "text",
                &["--watch", "0.2", "--reader", reader],
            ))?;
            wait_for_dumps(&mut pytrace, 3)?;
            let status = pytrace.interrupt(RUN_TIMEOUT)?;
            if !status.success() {
                return Err(format!(
                    "{reader}: exit {status:?} after SIGINT\n{}",
                    pytrace.describe()
                ));
            }
            let dumps = split_text_output(&pytrace.stdout())?;
            let mut times = Vec::new();
            for dump in &dumps {
                if dump.pid != target.pid() {
                    return Err(format!("{reader}: a dump of {}", dump.pid));
                }
                check_header(&dump.header)?;
                times.push(dump.header.rsplit(", ").next().unwrap_or("").to_string());
                compare(
                    &expected,
                    &dump.body,
                    &format!("on-demand watch ({reader}) {}", interp.name),
                )?;
            }
            if dumps.len() < 3 || times.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "{reader}: {} rounds, times not increasing: {times:?}",
                    dumps.len()
                ));
            }
        }
        Ok(())
    });
}

/// `--watch` into a pipe closed after the first line (`| head -n 1`): pytrace ends quietly,
/// status 0, at its next write (killed after 60 s, it would fail with 137).
#[test]
fn watch_ends_quietly_when_the_output_is_closed() {
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    let interp = &interpreters[0];
    let result = (|| -> Result<()> {
        let target = Target::start(interp, THREAD_DEPTHS.script, THREAD_DEPTHS.registered)?;
        let script = format!(
            "timeout -s KILL 60 '{}' dump --pid {} --watch 0.1 2>\"$1\" | head -n 1 >/dev/null; \
             echo ${{PIPESTATUS[0]}}",
            pytrace_binary().display(),
            target.pid()
        );
        let dir = TempDir::new()?;
        let err_path = dir.path().join("stderr");
        let out = Command::new("bash")
            .args(["-c", &script, "bash"])
            .arg(&err_path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        if status != "0" || !stderr.is_empty() {
            return Err(format!(
                "pytrace exit {status:?} after its reader left: {stderr}"
            ));
        }
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{}: {e}", interp.name);
    }
}

/// A `--pid` that exits during `--watch`: one line for it, later rounds read only the
/// others; once none is left pytrace exits with the code of "no such process" (4).
#[test]
fn watch_ends_for_a_pid_that_exits() {
    let interpreters = selected_interpreters().unwrap_or_else(|e| panic!("{e}"));
    let interp = &interpreters[interpreters.len() - 1];
    let result = (|| -> Result<()> {
        let case = &THREAD_DEPTHS;
        let a = Target::start(interp, case.script, case.registered)?;
        let b = Target::start(interp, case.script, case.registered)?;
        let (pid_a, pid_b) = (a.pid(), b.pid());
        let mut args = dump_args(&[pid_a, pid_b], "text");
        args.extend(["--watch".to_string(), "0.2".to_string()]);
        let mut pytrace = Pytrace::spawn(&args)?;
        wait_for_dumps(&mut pytrace, 2)?;
        drop(a);
        let gone_line = format!("pytrace: error: no process with PID {pid_a}\n");
        let deadline = Instant::now() + RUN_TIMEOUT;
        while !pytrace.stderr().contains(&gone_line) {
            if Instant::now() > deadline || !pytrace.running() {
                return Err(format!(
                    "no line for the exited {pid_a}\n{}",
                    pytrace.describe()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Rounds after that line: only b.
        let seen = split_text_output(&pytrace.stdout())?.len();
        wait_for_dumps(&mut pytrace, seen + 2)?;
        if !pytrace.running() {
            return Err(format!("ended while {pid_b} runs\n{}", pytrace.describe()));
        }
        drop(b);
        let status = pytrace.wait_exit(RUN_TIMEOUT)?;
        let stderr = pytrace.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        let expected = [
            format!("pytrace: error: no process with PID {pid_a}"),
            format!("pytrace: error: no process with PID {pid_b}"),
        ];
        if status.code() != Some(4) || lines != expected {
            return Err(format!(
                "exit {status:?}, expected 4 and one line per exited PID\n{}",
                pytrace.describe()
            ));
        }
        let dumps = split_text_output(&pytrace.stdout())?;
        let last_a = dumps
            .iter()
            .rposition(|d| d.pid == pid_a)
            .ok_or("no dump of a")?;
        let after_a = dumps[last_a + 1..]
            .iter()
            .filter(|d| d.pid == pid_b)
            .count();
        for dump in &dumps {
            check_header(&dump.header)?;
        }
        if after_a < 2 || dumps.iter().any(|d| d.pid != pid_a && d.pid != pid_b) {
            return Err(format!(
                "{after_a} dumps of {pid_b} after {pid_a}'s last\n{}",
                pytrace.describe()
            ));
        }
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{}: {e}", interp.name);
    }
}

/// faulthandler's thread blocks (each ends with its last frame line).
fn thread_blocks(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .map(|b| b.trim_end_matches('\n').to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The parked threads of `stuck_busy.py` in its faulthandler dump (main thread and `hang`),
/// taken before its busy thread starts (faulthandler reads a running thread's frames without a
/// lock and can print garbage or crash on them); then starts the busy thread (SIGUSR2) and
/// waits until it runs.
fn stuck_busy_oracle(target: &mut Target) -> Result<Vec<String>> {
    target.kill(SIGUSR1)?;
    let expected = without_current_marker(&target.wait_output(0, DUMP_TIMEOUT)?);
    let parked: Vec<String> = thread_blocks(&expected)
        .into_iter()
        .filter(|b| b.contains(" in hang\n") || b.contains(" in serve\n"))
        .collect();
    if parked.len() != 2 || !parked.iter().any(|b| b.contains(" in hang\n")) {
        return Err(format!(
            "unexpected faulthandler dump:\n{}",
            String::from_utf8_lossy(&expected)
        ));
    }
    target.kill(SIGUSR2)?;
    let tasks = format!("/proc/{}/task", target.pid());
    let deadline = Instant::now() + DUMP_TIMEOUT;
    while std::fs::read_dir(&tasks).map_or(0, |d| d.count()) < 3 {
        if Instant::now() >= deadline {
            return Err("stuck_busy.py did not start its busy thread".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(parked)
}

/// `--stuck SECS` alone, through each reader: one report, SECS after the first read, of the
/// two parked threads only (the busy one changes its stack all the time), each as faulthandler
/// prints it and unchanged for at least SECS.
#[test]
fn stuck_reports_only_threads_whose_stack_does_not_change() {
    const SECS: f64 = 1.5;
    for_each_interpreter(|interp| {
        let mut target = Target::start(interp, "stuck_busy.py", &[SIGUSR1])?;
        let parked = stuck_busy_oracle(&mut target)?;
        for reader in READERS {
            let secs = SECS.to_string();
            let run = Pytrace::run(
                &dump_args_with(
                    target.pid(),
                    "text",
                    &["--stuck", &secs, "--reader", reader],
                ),
                RUN_TIMEOUT,
            )?;
            let context = || format!("--reader {reader}\n{}", run.describe());
            if !run.status.success() {
                return Err(format!("exit {:?}\n{}", run.status, context()));
            }
            let dumps = split_text_output(&run.stdout)?;
            let [dump] = dumps.as_slice() else {
                return Err(format!("expected one report\n{}", context()));
            };
            check_header(&dump.header)?;
            let mut reported = Vec::new();
            for block in thread_blocks(&dump.body) {
                let (first, rest) = block.split_once('\n').unwrap_or((&block, ""));
                let secs: f64 = first
                    .strip_prefix("Stack unchanged for at least ")
                    .and_then(|s| s.strip_suffix(" s:"))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("no unchanged time before {block:?}\n{}", context()))?;
                if secs < SECS {
                    return Err(format!("unchanged {secs} s < {SECS}\n{}", context()));
                }
                reported.push(rest.to_string());
            }
            let mut expected = parked.clone();
            expected.sort();
            reported.sort();
            if reported != expected {
                return Err(format!(
                    "reported threads differ from the parked ones:\nexpected:\n{}\n{}",
                    expected.join("\n\n"),
                    context()
                ));
            }
        }
        Ok(())
    });
}

/// `--stuck SECS --watch W --format json`: every round reports the parked threads with
/// `unchanged_secs` ≥ SECS (and growing), never the busy one.
#[test]
fn stuck_with_watch_reports_unchanged_secs_in_json() {
    const SECS: f64 = 0.5;
    for_each_interpreter(|interp| {
        let mut target = Target::start(interp, "stuck_busy.py", &[SIGUSR1])?;
        stuck_busy_oracle(&mut target)?;
        let run = Pytrace::run(
            &dump_args_with(
                target.pid(),
                "json",
                &[
                    "--stuck",
                    &SECS.to_string(),
                    "--watch",
                    "0.25",
                    "--duration",
                    "2",
                ],
            ),
            RUN_TIMEOUT,
        )?;
        if !run.status.success() {
            return Err(format!("exit {:?}: {}", run.status, run.stderr));
        }
        let text = String::from_utf8_lossy(&run.stdout);
        let mut last_hang = 0.0;
        let mut rounds = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let threads = v["threads"].as_array().ok_or("no threads")?;
            let names: Vec<String> = threads
                .iter()
                .map(|t| t["frames"][0]["name"].as_str().unwrap_or("").to_string())
                .collect();
            let bottom: Vec<&str> = threads
                .iter()
                .flat_map(|t| t["frames"].as_array().into_iter().flatten())
                .filter_map(|f| f["name"].as_str())
                .collect();
            if v["pid"] != target.pid() || bottom.contains(&"busy") || threads.len() != 2 {
                return Err(format!("unexpected report ({names:?}): {line}"));
            }
            for t in threads {
                let secs = t["unchanged_secs"].as_f64().ok_or("no unchanged_secs")?;
                if secs < SECS {
                    return Err(format!("unchanged_secs {secs} < {SECS}: {line}"));
                }
                if t["frames"].to_string().contains("\"name\":\"hang\"") {
                    if secs <= last_hang {
                        return Err(format!("unchanged_secs not growing: {line}"));
                    }
                    last_hang = secs;
                }
            }
            rounds += 1;
        }
        // Rounds at 0, 0.25, …, 2 s: reports from 0.5 s on.
        if rounds < 3 {
            return Err(format!("{rounds} reports\n{text}\n{}", run.stderr));
        }
        Ok(())
    });
}
