//! The targets alone, without pytrace: each builds the stack its case expects, and
//! faulthandler's output is the same on two runs (thread ids and work directory aside).

use pytrace_tests::cases::*;
use pytrace_tests::*;

macro_rules! target_tests {
    ($($test:ident => $case:expr,)*) => {
        $(
            #[test]
            fn $test() {
                for_each_interpreter(|interp| check_target(interp, &$case));
            }
        )*
    };
}

target_tests! {
    thread_depths => THREAD_DEPTHS,
    deep_recursion => DEEP_RECURSION,
    non_ascii_names => NON_ASCII_NAMES,
    undecodable_filename => UNDECODABLE_FILENAME,
    long_path => LONG_PATH,
    generator_coroutine => GENERATOR_COROUTINE,
    many_threads => MANY_THREADS,
    pthread_kill_worker => PTHREAD_KILL_WORKER,
    gc_del => GC_DEL,
    fatal_sigill => FATAL_SIGILL,
    serve_rtmax => SERVE_RTMAX,
    unhandled => UNHANDLED,
}

/// Scripts the on-demand tests (`ondemand.rs`) start themselves, with their own checks.
const USED_BY_ONDEMAND_TESTS: &[&str] = &["marked_park.py", "paged_out.py", "stuck_busy.py"];

/// From 3.14 faulthandler writes the thread's OS name raw in its thread header, and this
/// target's name holds a newline: there its output has no parseable shape (hostile.rs compares
/// it byte for byte instead).
#[test]
fn hostile_name() {
    for_each_interpreter(|interp| match interp.at_least(3, 14) {
        false => check_target(interp, &HOSTILE_NAME),
        true => Ok(()),
    });
}

#[test]
fn subinterp_worker() {
    for_each_interpreter(|interp| match has_subinterpreters(interp) {
        true => check_target(interp, &SUBINTERP_WORKER),
        false => Ok(()),
    });
}

#[test]
fn subinterp_main() {
    for_each_interpreter(|interp| match has_subinterpreters(interp) {
        true => check_target(interp, &SUBINTERP_MAIN),
        false => Ok(()),
    });
}

#[test]
fn every_case_is_listed() {
    assert_eq!(ALL.len(), 16);
    let scripts = std::fs::read_dir(targets_dir()).unwrap();
    for entry in scripts {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // fhtarget.py and subinterp.py are plumbing the targets import; c_to_python.py, the
        // sampling targets (record.rs, top.rs) and the driven scripts have tests of their own
        // (no single expected shape).
        let own_test = [
            "fhtarget.py",
            "subinterp.py",
            "c_to_python.py",
            "gil_released.py",
            "cpu_split.py",
            "deep_busy.py",
            "two_files.py",
        ];
        if name.ends_with(".py")
            && !own_test.contains(&name.as_str())
            && !DRIVEN_SCRIPTS.contains(&name.as_str())
            && !USED_BY_ONDEMAND_TESTS.contains(&name.as_str())
        {
            assert!(
                ALL.iter().any(|case| case.script == name),
                "{name} is used by no case"
            );
        }
    }
}
