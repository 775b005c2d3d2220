//! The target scripts, how each is signalled, and the shape faulthandler's own dump of each
//! must have. The shape check guards the oracle: a target that did not build its stack
//! makes the test fail instead of turning it into a comparison of something trivial.

use crate::dump::{escape, Dump};
use crate::{Interpreter, Result, Signal, SIGILL, SIGQUIT, SIGRTMAX, SIGUSR1, SIGUSR2};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// kill(2) to the process; the kernel hands it to the main thread.
    Process,
    /// The target's main thread signal.pthread_kill()s a worker, which becomes current.
    PthreadKill,
}

/// Target scripts driven by their own tests through stdin and stdout, not by a [`Case`].
pub const DRIVEN_SCRIPTS: &[&str] = &["code_reuse.py", "long_function.py", "code_churn.py"];

pub struct Case {
    pub name: &'static str,
    pub script: &'static str,
    /// Signals the target hands to faulthandler.
    pub registered: &'static [Signal],
    /// The signal pytrace watches and the test sends.
    pub watched: Signal,
    pub trigger: Trigger,
    pub check: fn(&Interpreter, &Dump) -> Result<()>,
}

pub const THREAD_DEPTHS: Case = Case {
    name: "thread_depths",
    script: "thread_depths.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_thread_depths,
};

pub const DEEP_RECURSION: Case = Case {
    name: "deep_recursion",
    script: "deep_recursion.py",
    registered: &[SIGUSR2],
    watched: SIGUSR2,
    trigger: Trigger::Process,
    check: check_deep_recursion,
};

pub const NON_ASCII_NAMES: Case = Case {
    name: "non_ascii_names",
    script: "non_ascii_names.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_non_ascii_names,
};

pub const UNDECODABLE_FILENAME: Case = Case {
    name: "undecodable_filename",
    script: "undecodable_filename.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_undecodable_filename,
};

pub const LONG_PATH: Case = Case {
    name: "long_path",
    script: "long_path.py",
    registered: &[SIGUSR2],
    watched: SIGUSR2,
    trigger: Trigger::Process,
    check: check_long_path,
};

pub const GENERATOR_COROUTINE: Case = Case {
    name: "generator_coroutine",
    script: "generator_coroutine.py",
    registered: &[SIGQUIT],
    watched: SIGQUIT,
    trigger: Trigger::Process,
    check: check_generator_coroutine,
};

pub const MANY_THREADS: Case = Case {
    name: "many_threads",
    script: "many_threads.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_many_threads,
};

pub const PTHREAD_KILL_WORKER: Case = Case {
    name: "pthread_kill_worker",
    script: "pthread_kill_worker.py",
    registered: &[SIGUSR2],
    watched: SIGUSR2,
    trigger: Trigger::PthreadKill,
    check: check_pthread_kill_worker,
};

pub const GC_DEL: Case = Case {
    name: "gc_del",
    script: "gc_del.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::PthreadKill,
    check: check_gc_del,
};

/// faulthandler.enable() rather than register(): the dump follows a `Fatal Python error`
/// header and the signal then kills the target.
pub const FATAL_SIGILL: Case = Case {
    name: "fatal_sigill",
    script: "thread_depths.py",
    registered: &[SIGILL],
    watched: SIGILL,
    trigger: Trigger::Process,
    check: check_thread_depths,
};

/// A process whose name holds terminal control sequences and a newline.
pub const HOSTILE_NAME: Case = Case {
    name: "hostile_name",
    script: "hostile_name.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_main_only,
};

/// The main thread alone, signalled with `SIGRTMAX` (queued: every one sent is delivered).
pub const SERVE_RTMAX: Case = Case {
    name: "serve_rtmax",
    script: "serve.py",
    registered: &[SIGRTMAX],
    watched: SIGRTMAX,
    trigger: Trigger::Process,
    check: check_main_only,
};

/// A sub-interpreter runs in a worker thread; the signal lands on the main thread, in the
/// main interpreter.
pub const SUBINTERP_WORKER: Case = Case {
    name: "subinterp_worker",
    script: "subinterp_worker.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_subinterp_worker,
};

/// The main thread runs a sub-interpreter's code when the signal lands on it.
pub const SUBINTERP_MAIN: Case = Case {
    name: "subinterp_main",
    script: "subinterp_main.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_subinterp_main,
};

/// Sub-interpreters can be made from Python (`_xxsubinterpreters`) from 3.8 on.
pub fn has_subinterpreters(interp: &Interpreter) -> bool {
    interp.at_least(3, 8)
}

pub const THREAD_NAMES: Case = Case {
    name: "thread_names",
    script: "thread_names.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_thread_names,
};

/// thread_depths.py's stack with every signal but the registered ones left to its default
/// action (SIGINT included): the signal-mode tests kill it with each fatal signal.
pub const UNHANDLED: Case = Case {
    name: "unhandled",
    script: "unhandled.py",
    registered: &[SIGUSR1],
    watched: SIGUSR1,
    trigger: Trigger::Process,
    check: check_thread_depths,
};

pub const ALL: &[&Case] = &[
    &THREAD_NAMES,
    &THREAD_DEPTHS,
    &DEEP_RECURSION,
    &NON_ASCII_NAMES,
    &UNDECODABLE_FILENAME,
    &LONG_PATH,
    &GENERATOR_COROUTINE,
    &MANY_THREADS,
    &PTHREAD_KILL_WORKER,
    &GC_DEL,
    &FATAL_SIGILL,
    &HOSTILE_NAME,
    &SERVE_RTMAX,
    &SUBINTERP_WORKER,
    &SUBINTERP_MAIN,
    &UNHANDLED,
];

/// Frames threading.Thread puts under a worker's target function.
const WORKER_TAIL: [&str; 3] = ["run", "_bootstrap_inner", "_bootstrap"];
/// Stands for an interpreter entry frame (a call from C into Python) in an expected chain:
/// never printed, but from 3.14 on one of the 100 entries faulthandler walks.
const HIDDEN_ENTRY: &str = "\0entry";

struct Expect {
    current: bool,
    names: Vec<String>,
}

/// `Thread.run` calls the target with `*args, **kwargs`, through C: an entry frame sits
/// between them, and another under `_bootstrap`, where the thread started.
fn worker(current: bool, parts: &[&[&str]]) -> Expect {
    let names = parts
        .concat()
        .into_iter()
        .chain([HIDDEN_ENTRY])
        .chain(WORKER_TAIL)
        .chain([HIDDEN_ENTRY])
        .map(String::from)
        .collect();
    Expect { current, names }
}

fn main_thread(current: bool, names: &[&str]) -> Expect {
    Expect {
        current,
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

fn repeat(name: &str, n: usize) -> Vec<&str> {
    vec![name; n]
}

/// Thread by thread (newest first): whether it is current, and its function names (at most
/// the first 100).
fn expect_threads(dump: &Dump, expected: &[Expect]) -> Result<()> {
    expect_threads_counting(dump, expected, false)
}

/// [`expect_threads`], where `hidden_count` says whether entry frames count toward the 100
/// (3.14+).
fn expect_threads_counting(dump: &Dump, expected: &[Expect], hidden_count: bool) -> Result<()> {
    if dump.threads.len() != expected.len() {
        return Err(format!(
            "{} thread blocks, expected {}",
            dump.threads.len(),
            expected.len()
        ));
    }
    for (index, (thread, want)) in dump.threads.iter().zip(expected).enumerate() {
        if thread.current != want.current {
            return Err(format!(
                "thread block {index}: current is {}, expected {}",
                thread.current, want.current
            ));
        }
        let printed = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| *n != HIDDEN_ENTRY)
                .cloned()
                .collect()
        };
        let want_names: Vec<String> = match hidden_count {
            true => printed(&want.names[..want.names.len().min(100)]),
            false => printed(&want.names).into_iter().take(100).collect(),
        };
        if thread.names() != want_names {
            return Err(format!(
                "thread block {index}: frames {:?}, expected {want_names:?}",
                thread.names()
            ));
        }
    }
    Ok(())
}

fn no_gc_line(dump: &Dump) -> Result<()> {
    match dump.threads.iter().any(|t| t.garbage_collecting) {
        true => Err("unexpected `Garbage-collecting` line".into()),
        false => Ok(()),
    }
}

fn check_main_only(_: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    expect_threads(dump, &[main_thread(true, &["serve", "<module>"])])
}

fn check_thread_depths(_: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    expect_threads(
        dump,
        &[
            worker(false, &[&["park"], &repeat("descend", 12)]),
            worker(false, &[&["park"], &repeat("descend", 4), &["<lambda>"]]),
            worker(false, &[&["park", "inner", "step"]]),
            worker(false, &[&["park", "descend"]]),
            main_thread(true, &["serve", "<module>"]),
        ],
    )
}

fn check_deep_recursion(interp: &Interpreter, dump: &Dump) -> Result<()> {
    let sizes = [1000, 150, 101, 100, 99];
    let mut expected: Vec<Expect> = sizes
        .iter()
        .map(|&size| {
            worker(
                false,
                &[&["park"], &repeat("dive", size - 1 - WORKER_TAIL.len())],
            )
        })
        .collect();
    expected.push(main_thread(true, &["serve", "<module>"]));
    let hidden_count = interp.at_least(3, 14);
    expect_threads_counting(dump, &expected, hidden_count)?;
    for (thread, size) in dump.threads.iter().zip(sizes) {
        // The 101st frame gets `  ...` up to 3.12; 3.13 writes no marker at all. 3.14 counts
        // the entry frame between `run` and the target when it is among the first 100
        // entries: 99 frames of the 100- to 150-frame stacks are printed.
        let marker = size > 100 && !interp.at_least(3, 13);
        let before_entry = size - WORKER_TAIL.len();
        let printed = match hidden_count && before_entry < 100 {
            true => size.min(99),
            false => size.min(100),
        };
        if thread.frames.len() != printed || thread.truncated != marker {
            return Err(format!(
                "{size}-frame thread: {} frames printed, marker {}; expected {printed} and {marker}",
                thread.frames.len(),
                thread.truncated,
            ));
        }
    }
    Ok(())
}

/// File name of the code compiled by non_ascii_names.py.
const ODD_FILE_NAME: &str =
    "tab\there nl\nesc\x1b del\x7f nbsp\u{a0} \"quo\" back\\slash \u{ffff}.py";

fn check_non_ascii_names(_: &Interpreter, dump: &Dump) -> Result<()> {
    expect_threads(
        dump,
        &[
            worker(
                false,
                &[&[
                    "park",
                    "odd",
                    "\\U00020000",
                    "\\u65e5\\u672c\\u8a9e",
                    "caf\\xe9",
                    "run",
                ]],
            ),
            main_thread(true, &["serve", "<module>"]),
        ],
    )?;
    let frames = &dump.threads[0].frames;
    if frames[1].file != escape(ODD_FILE_NAME) {
        return Err(format!(
            "odd() file {:?}, expected {:?}",
            frames[1].file,
            escape(ODD_FILE_NAME)
        ));
    }
    let module = escape("/d\u{e9}_\u{65e5}\u{672c}_\u{1f600}/m\u{f3}dulo_\u{1f600}.py");
    match frames[2..5].iter().all(|f| f.file.ends_with(&module)) {
        true => Ok(()),
        false => Err(format!("module frames do not come from …{module}")),
    }
}

fn check_undecodable_filename(_: &Interpreter, dump: &Dump) -> Result<()> {
    expect_threads(
        dump,
        &[
            worker(false, &[&["park", "hop"]]),
            main_thread(true, &["serve", "<module>"]),
        ],
    )?;
    let file = &dump.threads[0].frames[1].file;
    match file.ends_with("/undecodable_\\udcff\\udcfe.py") {
        true => Ok(()),
        false => Err(format!(
            "hop() file {file:?} does not end with the surrogate escapes"
        )),
    }
}

fn check_long_path(_: &Interpreter, dump: &Dump) -> Result<()> {
    let long_name = "\\xe9".repeat(300) + &"n".repeat(200) + "...";
    expect_threads(
        dump,
        &[
            worker(
                false,
                &[&["park", &long_name, "hop", "<lambda>", "hop", "run"]],
            ),
            main_thread(true, &["serve", "<module>"]),
        ],
    )?;
    let frames = &dump.threads[0].frames;
    let checks = [
        (
            1,
            "the ~700-code-point path",
            frames[1].file.ends_with("..."),
        ),
        (
            2,
            "the 501-code-point path",
            frames[2].file.ends_with("b.p..."),
        ),
        (
            4,
            "the 500-code-point path",
            frames[4].file.ends_with("a.py"),
        ),
    ];
    for (index, what, ok) in checks {
        if !ok {
            return Err(format!(
                "frame {index}, {what}, printed as {:?}",
                frames[index].file
            ));
        }
    }
    Ok(())
}

fn check_generator_coroutine(_: &Interpreter, dump: &Dump) -> Result<()> {
    expect_threads(
        dump,
        &[
            worker(
                false,
                &[&[
                    "park",
                    "agen",
                    "task_main",
                    "_run",
                    "_run_once",
                    "run_forever",
                    "run_until_complete",
                    "drive_loop",
                ]],
            ),
            worker(
                false,
                &[&["park", "coro_inner", "coro_outer", "drive_coroutine"]],
            ),
            worker(
                false,
                &[&["park", "gen_inner", "gen_outer", "drive_generator"]],
            ),
            main_thread(true, &["serve", "<module>"]),
        ],
    )
}

fn check_many_threads(_: &Interpreter, dump: &Dump) -> Result<()> {
    if !dump.more_threads {
        return Err("no final `...` after 100 thread blocks".into());
    }
    let expected: Vec<Expect> = (0..100)
        .map(|k| worker(false, &[&["park"], &repeat("descend", 1 + (104 - k) % 3)]))
        .collect();
    expect_threads(dump, &expected)
}

fn check_pthread_kill_worker(_: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    expect_threads(
        dump,
        &[
            worker(false, &[&["park"], &repeat("descend", 5)]),
            worker(true, &[&["park"], &repeat("descend", 2)]),
            main_thread(false, &["serve_pthread_kill", "<module>"]),
        ],
    )
}

fn check_gc_del(interp: &Interpreter, dump: &Dump) -> Result<()> {
    expect_threads(
        dump,
        &[
            worker(true, &[&["park", "__del__", "collect"]]),
            main_thread(false, &["serve_pthread_kill", "<module>"]),
        ],
    )?;
    let want = interp.at_least(3, 10);
    match dump.threads[0].garbage_collecting == want {
        true => Ok(()),
        false => Err(format!(
            "`  Garbage-collecting` present: {}, expected {want}",
            !want
        )),
    }
}

fn check_subinterp_worker(_: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    expect_threads(
        dump,
        &[
            worker(false, &[&["in_worker"]]),
            main_thread(true, &["serve", "<module>"]),
        ],
    )
}

fn check_subinterp_main(interp: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    if interp.at_least(3, 12) {
        expect_threads(dump, &[main_thread(true, &["sub_park", "<module>"])])?;
        // `<string>` up to 3.13, `<script>` from 3.14 (the name `run_string` compiles under).
        match dump.threads[0]
            .frames
            .iter()
            .all(|f| f.file == "<string>" || f.file == "<script>")
        {
            true => Ok(()),
            false => Err("the sub-interpreter's frames are not in <string>".into()),
        }
    } else {
        expect_threads(
            dump,
            &[
                worker(false, &[&["serve", "announce"]]),
                worker(false, &[&["park", "parked"]]),
                main_thread(true, &["<module>"]),
            ],
        )
    }
}

fn check_thread_names(interp: &Interpreter, dump: &Dump) -> Result<()> {
    no_gc_line(dump)?;
    let mut expected = vec![Expect {
        current: false,
        names: vec!["park".into(), "hold".into()],
    }];
    expected.push(worker(false, &[&["park", "rename_and_hold"]]));
    for _ in 0..4 {
        expected.push(worker(false, &[&["park", "hold"]]));
    }
    expected.push(main_thread(true, &["serve", "<module>"]));
    expect_threads(dump, &expected)?;
    let names: Vec<Option<&str>> = dump.threads.iter().map(|t| t.name.as_deref()).collect();
    if !interp.at_least(3, 14) {
        return match names.iter().all(Option::is_none) {
            true => Ok(()),
            false => Err(format!("thread names before 3.14: {names:?}")),
        };
    }
    // The main thread's name is the program's (cut at 15), which the raw thread inherits;
    // the renamed thread's last byte is half of a UTF-8 "é".
    let main = names.last().copied().flatten().unwrap_or_default();
    let non_ascii = names.get(2).copied().flatten().unwrap_or_default();
    let want = [
        Some(main),
        Some("abcdefghijklmn\u{fffd}"),
        Some(non_ascii),
        Some("a-name-longer-t"),
        Some("exactly-15-char"),
        Some("short"),
        Some(main),
    ];
    if names != want || !non_ascii.starts_with("caf\u{e9}-") || !main.starts_with("python3.") {
        return Err(format!("thread names {names:?}"));
    }
    Ok(())
}
