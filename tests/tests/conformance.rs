//! pytrace's text dump of a target must be byte-identical to what the target's faulthandler
//! wrote for the same signal.

use std::thread;
use std::time::{Duration, Instant};

use pytrace_tests::cases::*;
use pytrace_tests::*;

#[test]
fn several_threads_at_different_recursion_depths() {
    for_each_interpreter(|interp| check_conformance(interp, &THREAD_DEPTHS));
}

#[test]
fn recursion_of_99_100_101_150_and_1000_frames() {
    for_each_interpreter(|interp| check_conformance(interp, &DEEP_RECURSION));
}

#[test]
fn non_ascii_function_and_file_names() {
    for_each_interpreter(|interp| check_conformance(interp, &NON_ASCII_NAMES));
}

#[test]
fn undecodable_file_name() {
    for_each_interpreter(|interp| check_conformance(interp, &UNDECODABLE_FILENAME));
}

#[test]
fn paths_and_names_longer_than_500_code_points() {
    for_each_interpreter(|interp| check_conformance(interp, &LONG_PATH));
}

#[test]
fn running_generator_coroutine_and_async_generator() {
    for_each_interpreter(|interp| check_conformance(interp, &GENERATOR_COROUTINE));
}

#[test]
fn more_than_100_threads() {
    for_each_interpreter(|interp| check_conformance(interp, &MANY_THREADS));
}

#[test]
fn pthread_kill_to_a_worker_makes_it_current() {
    for_each_interpreter(|interp| check_conformance(interp, &PTHREAD_KILL_WORKER));
}

#[test]
fn garbage_collecting_inside_del() {
    for_each_interpreter(|interp| check_conformance(interp, &GC_DEL));
}

#[test]
fn fatal_sigill_dump_matches_the_text_after_the_fatal_header() {
    for_each_interpreter(|interp| check_conformance(interp, &FATAL_SIGILL));
}

/// 3.14+ writes each thread's OS name: a threading name, one of exactly 15 and one of more
/// than 15 characters, non-ASCII characters, raw bytes cut inside a UTF-8 character, and a raw
/// `_thread` thread; older versions write none.
#[test]
fn thread_names_raw_cut_and_non_ascii() {
    for_each_interpreter(|interp| check_conformance(interp, &THREAD_NAMES));
}

#[test]
fn sub_interpreter_in_a_worker_signal_in_the_main_interpreter() {
    for_each_interpreter(|interp| match has_subinterpreters(interp) {
        true => check_conformance(interp, &SUBINTERP_WORKER),
        false => Ok(()),
    });
}

#[test]
fn main_thread_running_a_sub_interpreter() {
    for_each_interpreter(|interp| match has_subinterpreters(interp) {
        true => check_conformance(interp, &SUBINTERP_MAIN),
        false => Ok(()),
    });
}

#[test]
fn only_the_watched_signal_is_reported() {
    for_each_interpreter(|interp| {
        let mut target = Target::start(interp, THREAD_DEPTHS.script, &[SIGUSR1, SIGUSR2])?;
        let mut pytrace = Pytrace::attach(&watch_args(SIGUSR2, &[target.pid()], 1, "text"))?;
        target.kill(SIGUSR1)?;
        let ignored = target.wait_output(0, DUMP_TIMEOUT)?;
        expect_silence(&mut pytrace, "SIGUSR1 while watching SIGUSR2")?;
        target.kill(SIGUSR2)?;
        let expected = target.wait_output(ignored.len(), DUMP_TIMEOUT)?;
        (THREAD_DEPTHS.check)(interp, &parse_dump(&expected)?)?;
        if expected != ignored {
            return Err("faulthandler's SIGUSR1 and SIGUSR2 dumps differ: the target moved".into());
        }
        expect_dumps(
            &mut pytrace,
            &[(target.pid(), expected)],
            &format!("two_signals {}", interp.name),
        )
    });
}

#[test]
fn several_pids_other_processes_ignored_count_2() {
    for_each_interpreter(|interp| {
        let mut first = Target::start(interp, THREAD_DEPTHS.script, &[SIGUSR1])?;
        let mut second = Target::start(interp, GENERATOR_COROUTINE.script, &[SIGUSR1])?;
        let mut unwatched = Target::start(interp, THREAD_DEPTHS.script, &[SIGUSR1])?;
        let pids = [first.pid(), second.pid()];
        let mut pytrace = Pytrace::attach(&watch_args(SIGUSR1, &pids, 2, "text"))?;
        unwatched.kill(SIGUSR1)?;
        unwatched.wait_output(0, DUMP_TIMEOUT)?;
        expect_silence(&mut pytrace, "a process it does not watch")?;
        first.kill(SIGUSR1)?;
        let first_text = first.wait_output(0, DUMP_TIMEOUT)?;
        (THREAD_DEPTHS.check)(interp, &parse_dump(&first_text)?)?;
        second.kill(SIGUSR1)?;
        let second_text = second.wait_output(0, DUMP_TIMEOUT)?;
        (GENERATOR_COROUTINE.check)(interp, &parse_dump(&second_text)?)?;
        expect_dumps(
            &mut pytrace,
            &[(pids[0], first_text), (pids[1], second_text)],
            &format!("two_pids {}", interp.name),
        )
    });
}

/// `pytrace dump --signal …` is the same command as `pytrace --signal …`.
#[test]
fn the_dump_subcommand_is_the_signal_mode() {
    for_each_interpreter(|interp| {
        let case = &THREAD_DEPTHS;
        let mut target = Target::start(interp, case.script, case.registered)?;
        let pid = target.pid();
        let mut args = vec!["dump".to_string()];
        args.extend(watch_args(case.watched, &[pid], 1, "text"));
        let mut pytrace = Pytrace::attach(&args)?;
        let before = target.output().len();
        target.trigger(case.trigger, case.watched)?;
        let expected = take_oracle(&mut target, case, interp, before)?;
        expect_dumps(
            &mut pytrace,
            &[(pid, expected)],
            &format!("dump subcommand {}", interp.name),
        )
    });
}

/// Signals per run of the C→Python target, dumps compared per interpreter at least, and runs
/// at most (3.12.0–3.12.7 and 3.13.0's faulthandler can crash when it reads the entry frame
/// half set up, which ends a run).
const BOUNDARY_SIGNALS: usize = 250;
const BOUNDARY_MIN_COMPARED: usize = 150;
const BOUNDARY_MAX_RUNS: usize = 40;

#[test]
fn c_calling_python_in_a_tight_loop_signalled_many_times() {
    for_each_interpreter(check_c_to_python);
}

/// faulthandler's dumps of a single-threaded target, one per `Current thread` block.
fn split_single_thread_dumps(text: &[u8]) -> Vec<Vec<u8>> {
    const START: &[u8] = b"Current thread 0x";
    let mut starts: Vec<usize> = (0..text.len())
        .filter(|&i| text[i..].starts_with(START))
        .collect();
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| text[w[0]..w[1]].to_vec())
        .collect()
}

/// The C→Python target signalled one delivery at a time, every dump byte for byte. On 3.12
/// some of them must show the entry frame (`<interpreter trampoline>`), the boundary this is
/// about. Only the last dump of a run whose target died may differ: faulthandler crashed
/// while writing it (it reads the entry frame after its own signal frame was pushed).
fn check_c_to_python(interp: &Interpreter) -> Result<()> {
    let (mut compared, mut trampolines, mut crashed) = (0, 0, 0);
    for run in 0..BOUNDARY_MAX_RUNS {
        if compared >= BOUNDARY_MIN_COMPARED {
            break;
        }
        let mut target = Target::start(interp, "c_to_python.py", &[SIGUSR1])?;
        let pid = target.pid();
        let pytrace = Pytrace::attach(&[
            "--signal",
            "SIGUSR1",
            "--pid",
            &pid.to_string(),
            "--max-dumps-per-sec",
            "0",
        ])?;
        for _ in 0..BOUNDARY_SIGNALS {
            let before = target.output_len();
            if target.exited().is_some() || target.kill(SIGUSR1).is_err() {
                break;
            }
            // One delivery at a time: a second SIGUSR1 sent while the first is pending would
            // merge with it.
            let deadline = Instant::now() + DUMP_TIMEOUT;
            while target.output_len() == before && target.exited().is_none() {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{}: no dump within {DUMP_TIMEOUT:?}",
                        target.label()
                    ));
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        thread::sleep(Duration::from_millis(300));
        use std::os::unix::process::ExitStatusExt;
        // Killed by a signal of its own (faulthandler's crash is a SIGSEGV).
        let died = target
            .exited()
            .is_some_and(|status| status.signal().is_some());
        let expected = split_single_thread_dumps(&target.output());
        let deadline = Instant::now() + DUMP_TIMEOUT;
        let mine = loop {
            let mine = split_text_output(&pytrace.stdout())?;
            if mine.len() >= expected.len() || Instant::now() >= deadline {
                break mine;
            }
            thread::sleep(Duration::from_millis(50));
        };
        if mine.len() != expected.len() {
            return Err(format!(
                "run {run}: faulthandler wrote {} dumps, pytrace printed {}\n{}",
                expected.len(),
                mine.len(),
                pytrace.describe()
            ));
        }
        for (i, (want, got)) in expected.iter().zip(&mine).enumerate() {
            let last = i + 1 == expected.len();
            if died && last && want != &got.body {
                crashed += 1;
                continue;
            }
            if got.pid != pid {
                return Err(format!(
                    "run {run}: a dump of PID {} among {pid}'s",
                    got.pid
                ));
            }
            let label = format!("c_to_python {} run {run} dump {i}", interp.name);
            compare(want, &got.body, &label)?;
            compared += 1;
            trampolines +=
                String::from_utf8_lossy(want).contains("<interpreter trampoline>") as usize;
        }
    }
    eprintln!(
        "c_to_python {}: {compared} dumps equal, {trampolines} with the entry frame, {crashed} runs ended by a faulthandler crash",
        interp.name
    );
    if compared < BOUNDARY_MIN_COMPARED {
        return Err(format!(
            "only {compared} dumps compared in {BOUNDARY_MAX_RUNS} runs ({crashed} crashed)"
        ));
    }
    if interp.version() == (3, 12) && trampolines == 0 {
        return Err("no dump caught the entry frame: the C→Python boundary was not tested".into());
    }
    Ok(())
}
