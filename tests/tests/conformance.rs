//! pytrace's text dump of a target must be byte-identical to what the target's faulthandler
//! wrote for the same signal.

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
