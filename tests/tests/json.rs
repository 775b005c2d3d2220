//! `--format json`: one object per line whose threads and frames say what faulthandler's
//! text says for the same signal.

use pytrace_tests::cases::*;
use pytrace_tests::*;
use serde_json::Value;

fn field<'a>(object: &'a Value, key: &str) -> Result<&'a Value> {
    object
        .get(key)
        .ok_or_else(|| format!("no {key:?} in {object}"))
}

fn integer(object: &Value, key: &str) -> Result<u64> {
    field(object, key)?
        .as_u64()
        .ok_or_else(|| format!("{key:?} is not an unsigned integer in {object}"))
}

fn string<'a>(object: &'a Value, key: &str) -> Result<&'a str> {
    field(object, key)?
        .as_str()
        .ok_or_else(|| format!("{key:?} is not a string in {object}"))
}

/// A string of a frame as faulthandler prints it: at most 500 code points, and `...` when
/// `<key>_truncated` says the string was cut there (it must say so whenever it was).
fn shown(frame: &Value, key: &str) -> Result<String> {
    let text = string(frame, key)?;
    let flag = format!("{key}_truncated");
    let cut = match frame.get(&flag) {
        None => false,
        Some(Value::Bool(true)) => true,
        Some(other) => return Err(format!("{flag} is {other}, expected true or absent")),
    };
    let length = text.chars().count();
    match (cut, length) {
        (true, 500) => Ok(format!("{}...", escape(text))),
        (false, 0..=500) => Ok(escape(text)),
        _ => Err(format!("{key} has {length} code points with {flag} {cut}")),
    }
}

fn check_json(interp: &Interpreter, case: &Case) -> Result<()> {
    check_json_and(interp, case, |_| Ok(()))
}

/// [`check_json`], then `more` on the record.
fn check_json_and(
    interp: &Interpreter,
    case: &Case,
    more: impl Fn(&Value) -> Result<()>,
) -> Result<()> {
    let mut target = Target::start(interp, case.script, case.registered)?;
    let pid = target.pid();
    let mut pytrace = Pytrace::attach(&watch_args(case.watched, &[pid], 1, "json"))?;
    let before = target.output().len();
    target.trigger(case.trigger, case.watched)?;
    let text = take_oracle(&mut target, case, interp, before)?;
    let dump = parse_dump(&text)?;
    let status = pytrace.wait_exit(DUMP_TIMEOUT)?;
    let context = || {
        format!(
            "\n{}\n--- faulthandler ---\n{}",
            pytrace.describe(),
            String::from_utf8_lossy(&text)
        )
    };
    if !status.success() {
        return Err(format!("pytrace exited with {status:?}{}", context()));
    }
    let stdout = String::from_utf8(pytrace.stdout())
        .map_err(|e| format!("output is not UTF-8: {e}{}", context()))?;
    let lines: Vec<&str> = stdout.lines().collect();
    if lines.len() != 1 || !stdout.ends_with('\n') {
        return Err(format!(
            "expected one newline-terminated line, got {}{}",
            lines.len(),
            context()
        ));
    }
    let record: Value =
        serde_json::from_str(lines[0]).map_err(|e| format!("invalid JSON: {e}{}", context()))?;
    check_record(interp, case, pid, &dump, &record)
        .and_then(|()| more(&record))
        .map_err(|e| format!("{e}{}", context()))
}

fn array<'a>(object: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    field(object, key)?
        .as_array()
        .ok_or_else(|| format!("{key:?} is not an array in {object}"))
}

fn flag(object: &Value, key: &str) -> Result<bool> {
    field(object, key)?
        .as_bool()
        .ok_or_else(|| format!("{key:?} is not a boolean in {object}"))
}

/// Function names of a JSON thread, innermost first.
fn names(thread: &Value) -> Result<Vec<String>> {
    array(thread, "frames")?
        .iter()
        .map(|f| string(f, "name").map(String::from))
        .collect()
}

/// Two interpreters: the oldest (index 1) is the main one, `dumped` the one whose threads are
/// in `threads`; every other thread is in `other_threads`, never current, and the threads of
/// the other interpreter have, newest first, the function names `others`.
fn check_interpreters(record: &Value, dumped: u64, others: &[&[&str]]) -> Result<()> {
    let interpreters = array(record, "interpreters")?;
    if interpreters.len() != 2 {
        return Err(format!("{} interpreters, expected 2", interpreters.len()));
    }
    for (index, i) in interpreters.iter().enumerate() {
        let index = index as u64;
        if integer(i, "index")? != index
            || flag(i, "main")? != (index == 1)
            || flag(i, "dumped")? != (index == dumped)
        {
            return Err(format!(
                "interpreter {index}: {i}, expected main: {}, dumped: {}",
                index == 1,
                index == dumped
            ));
        }
    }
    for thread in array(record, "threads")? {
        if integer(thread, "interpreter")? != dumped {
            return Err(format!("a printed thread of another interpreter: {thread}"));
        }
    }
    let other = array(record, "other_threads")?;
    let mut got = Vec::new();
    for thread in other {
        if integer(thread, "interpreter")? == dumped || flag(thread, "current")? {
            return Err(format!("other_threads: {thread}"));
        }
        got.push(names(thread)?);
    }
    if got != others {
        return Err(format!("other_threads hold {got:?}, expected {others:?}"));
    }
    match array(record, "incomplete")?.is_empty() {
        true => Ok(()),
        false => Err(format!("marked incomplete: {}", record["incomplete"])),
    }
}

fn check_record(
    interp: &Interpreter,
    case: &Case,
    pid: u32,
    dump: &Dump,
    record: &Value,
) -> Result<()> {
    if !record.is_object() {
        return Err("the line is not a JSON object".into());
    }
    if integer(record, "pid")? != u64::from(pid) {
        return Err(format!("pid is not {pid}"));
    }
    let signal = field(record, "signal")?;
    let signal_ok = signal.as_i64() == Some(i64::from(case.watched.number))
        || signal.as_str().is_some_and(|s| {
            s == case.watched.name || Some(s) == case.watched.name.strip_prefix("SIG")
        });
    if !signal_ok {
        return Err(format!("signal {signal} is not {}", case.watched.name));
    }
    if field(record, "time")?.is_null() {
        return Err("time is null".into());
    }
    let (major, minor) = interp.version();
    let version = string(record, "python_version")?;
    let release = format!("{major}.{minor}");
    if !(version == release || version.starts_with(&format!("{release}."))) {
        return Err(format!("python_version {version:?} is not {release}.x"));
    }
    let tid = integer(record, "tid")?;
    match case.trigger {
        Trigger::Process if tid != u64::from(pid) => {
            return Err(format!(
                "tid {tid}: kill(2) should land on the main thread {pid}"
            ))
        }
        Trigger::PthreadKill if tid == u64::from(pid) => {
            return Err("tid is the main thread's, not the worker's".into())
        }
        _ => {}
    }
    let threads = field(record, "threads")?
        .as_array()
        .ok_or("threads is not an array")?;
    if threads.len() != dump.threads.len() {
        return Err(format!(
            "{} threads, faulthandler shows {}",
            threads.len(),
            dump.threads.len()
        ));
    }
    let mut native_ids = Vec::new();
    for (index, (thread, expected)) in threads.iter().zip(&dump.threads).enumerate() {
        let at = |e: String| format!("thread {index}: {e}");
        if integer(thread, "thread_id").map_err(at)? != expected.id {
            return Err(at(format!("thread_id is not 0x{:016x}", expected.id)));
        }
        // PyThreadState records the native id only from 3.11 on; before, null is allowed.
        let native_id = match field(thread, "native_id").map_err(at)? {
            Value::Null if !interp.at_least(3, 11) => None,
            _ => Some(integer(thread, "native_id").map_err(at)?),
        };
        native_ids.extend(native_id);
        let current = field(thread, "current")
            .map_err(at)?
            .as_bool()
            .ok_or_else(|| at("current is not a boolean".into()))?;
        if current != expected.current {
            return Err(at(format!(
                "current is {current}, faulthandler says {}",
                expected.current
            )));
        }
        if current && native_id.is_some_and(|id| id != tid) {
            return Err(at(format!(
                "the current thread's native_id {native_id:?} is not tid {tid}"
            )));
        }
        // Every version: the thread's OS name as the kernel has it; 3.14+: the name
        // faulthandler itself wrote.
        let os_name = string(thread, "os_name").map_err(at)?;
        if let Some(id) = native_id {
            let comm = std::fs::read(format!("/proc/{pid}/task/{id}/comm"))
                .map_err(|e| at(format!("reading the comm of thread {id}: {e}")))?;
            let comm = String::from_utf8_lossy(comm.strip_suffix(b"\n").unwrap_or(&comm));
            if os_name != comm {
                return Err(at(format!("os_name {os_name:?}, the kernel says {comm:?}")));
            }
        }
        match (&expected.name, interp.at_least(3, 14)) {
            (Some(name), true) if name != os_name => {
                return Err(at(format!(
                    "os_name {os_name:?}, faulthandler says {name:?}"
                )));
            }
            (None, true) => return Err(at("faulthandler wrote no thread name".into())),
            _ => {}
        }
        if field(record, "thread_names_unknown")? != &Value::Bool(false) {
            return Err("thread_names_unknown is not false".into());
        }
        let frames = field(thread, "frames")
            .map_err(at)?
            .as_array()
            .ok_or_else(|| at("frames is not an array".into()))?;
        if frames.len() != expected.frames.len() {
            return Err(at(format!(
                "{} frames, faulthandler shows {}",
                frames.len(),
                expected.frames.len()
            )));
        }
        for (depth, (frame, want)) in frames.iter().zip(&expected.frames).enumerate() {
            let at = |e: String| format!("thread {index} frame {depth}: {e}");
            let filename = shown(frame, "filename").map_err(at)?;
            let name = shown(frame, "name").map_err(at)?;
            let line = field(frame, "line").map_err(at)?;
            let line = if line.is_null() {
                None
            } else {
                Some(line.as_u64().ok_or_else(|| at(format!("line {line}")))?)
            };
            let got = Frame {
                file: filename,
                line: line.map(|l| l as u32),
                name,
            };
            if &got != want {
                return Err(at(format!("{got:?}, faulthandler shows {want:?}")));
            }
        }
    }
    let mut distinct = native_ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != native_ids.len() {
        return Err(format!("native ids repeat: {native_ids:?}"));
    }
    if native_ids.len() == threads.len() && native_ids.last() != Some(&u64::from(pid)) {
        return Err(format!(
            "the main thread (last) has native_id {:?}, not {pid}",
            native_ids.last()
        ));
    }
    Ok(())
}

#[test]
fn json_several_threads_at_different_recursion_depths() {
    for_each_interpreter(|interp| check_json(interp, &THREAD_DEPTHS));
}

#[test]
fn json_non_ascii_function_and_file_names() {
    for_each_interpreter(|interp| check_json(interp, &NON_ASCII_NAMES));
}

#[test]
fn json_long_names_are_cut_and_marked() {
    for_each_interpreter(|interp| check_json(interp, &LONG_PATH));
}

#[test]
fn json_pthread_kill_to_a_worker() {
    for_each_interpreter(|interp| check_json(interp, &PTHREAD_KILL_WORKER));
}

#[test]
fn json_running_generator_coroutine_and_async_generator() {
    for_each_interpreter(|interp| check_json(interp, &GENERATOR_COROUTINE));
}

const WORKER_TAIL: [&str; 3] = ["run", "_bootstrap_inner", "_bootstrap"];

#[test]
fn json_sub_interpreter_in_a_worker() {
    for_each_interpreter(|interp| {
        if !has_subinterpreters(interp) {
            return Ok(());
        }
        // The main interpreter is printed; the worker's sub-interpreter thread state is listed
        // apart.
        check_json_and(interp, &SUBINTERP_WORKER, |record| {
            check_interpreters(record, 1, &[&["sub_park", "<module>"]])
        })
    });
}

#[test]
fn json_main_thread_running_a_sub_interpreter() {
    for_each_interpreter(|interp| {
        if !has_subinterpreters(interp) {
            return Ok(());
        }
        check_json_and(interp, &SUBINTERP_MAIN, |record| {
            let announce = [&["serve", "announce"][..], &WORKER_TAIL].concat();
            let parked = [&["park", "parked"][..], &WORKER_TAIL].concat();
            if interp.at_least(3, 12) {
                // The sub-interpreter is printed; the main interpreter's threads, the main
                // thread's own thread state among them, are listed apart.
                check_interpreters(
                    record,
                    0,
                    &[announce.as_slice(), parked.as_slice(), &["<module>"]],
                )
            } else {
                check_interpreters(record, 1, &[&["sub_park", "<module>"]])
            }
        })
    });
}

#[test]
fn json_thread_names() {
    for_each_interpreter(|interp| check_json(interp, &THREAD_NAMES));
}
