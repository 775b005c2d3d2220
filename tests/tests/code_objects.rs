//! Code objects as real programs treat them: compiled afresh and freed (so addresses are
//! reused), with line tables longer than one kernel record, and in such numbers that
//! pytrace's caches must stay bounded.

use std::time::{Duration, Instant};

use pytrace_tests::*;

/// Rounds of fresh code in the address-reuse test (each one signalled and compared).
const REUSE_ROUNDS: usize = 300;

/// faulthandler's text after each `p` line of a target that prints one when parked: `cuts`
/// are the output's length before each signal, plus its length once the next round parked.
fn pieces(output: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    cuts.windows(2)
        .map(|w| output[w[0]..w[1]].to_vec())
        .collect()
}

fn expect_parked(target: &mut Target) -> Result<()> {
    match target.read_line()? {
        line if line == "p\n" => Ok(()),
        line => Err(format!("{}: expected `p`, got {line:?}", target.label())),
    }
}

/// Every round compiles new functions whose code objects, names and line tables are likely
/// to land where the previous round's were; every round's dump must name this round's
/// functions and lines, as faulthandler does.
fn check_code_reuse(interp: &Interpreter) -> Result<()> {
    let mut target = Target::start(interp, "code_reuse.py", &[SIGUSR1])?;
    let pid = target.pid();
    // One dump per round, as fast as the target goes: no rate limit.
    let mut args = watch_args(SIGUSR1, &[pid], REUSE_ROUNDS, "text");
    args.extend(["--max-dumps-per-sec".to_string(), "0".to_string()]);
    let mut pytrace = Pytrace::attach(&args)?;
    let mut cuts = Vec::with_capacity(REUSE_ROUNDS + 1);
    for _ in 0..REUSE_ROUNDS {
        expect_parked(&mut target)?;
        cuts.push(target.output().len());
        target.kill(SIGUSR1)?;
        // Read only after the signal was delivered: it is pending before the line is written.
        target.command("next")?;
    }
    expect_parked(&mut target)?;
    let output = target.output();
    cuts.push(output.len());
    let expected = pieces(&output, &cuts);
    let status = pytrace.wait_exit(DUMP_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "pytrace exited with {status:?}\n{}",
            pytrace.describe()
        ));
    }
    let dumps = split_text_output(&pytrace.stdout())?;
    if dumps.len() != REUSE_ROUNDS {
        return Err(format!(
            "expected {REUSE_ROUNDS} dumps, got {}\n{}",
            dumps.len(),
            pytrace.describe()
        ));
    }
    let mut wrong = Vec::new();
    for (round, (want, got)) in expected.iter().zip(&dumps).enumerate() {
        if compare(
            want,
            &got.body,
            &format!("code_reuse {} round {round}", interp.name),
        )
        .is_err()
        {
            wrong.push(round);
        }
    }
    if let Some(&first) = wrong.first() {
        compare(
            &expected[first],
            &dumps[first].body,
            &format!("code_reuse {} round {first}", interp.name),
        )
        .map_err(|e| {
            format!(
                "{} of {REUSE_ROUNDS} rounds differ ({wrong:?}); the first:\n{e}",
                wrong.len()
            )
        })?;
    }
    Ok(())
}

#[test]
fn reused_code_object_addresses_get_this_rounds_names_and_lines() {
    for_each_interpreter(check_code_reuse);
}

/// Parks a generated function of `lines` lines at line `at`, signals it and returns
/// (faulthandler's text, pytrace's dump, pytrace's JSON for the same signal).
fn long_function_dump(
    interp: &Interpreter,
    lines: usize,
    at: usize,
) -> Result<(Vec<u8>, TextDump, serde_json::Value)> {
    let mut target = Target::start(interp, "long_function.py", &[SIGUSR1])?;
    let pid = target.pid();
    let mut pytrace = Pytrace::attach(&watch_args(SIGUSR1, &[pid], 1, "text"))?;
    let mut json = Pytrace::attach(&watch_args(SIGUSR1, &[pid], 1, "json"))?;
    target.command(&format!("{lines} {at}"))?;
    expect_parked(&mut target)?;
    target.kill(SIGUSR1)?;
    let expected = target.wait_output(0, DUMP_TIMEOUT)?;
    let status = pytrace.wait_exit(DUMP_TIMEOUT)?;
    if !status.success() {
        return Err(format!(
            "pytrace exited with {status:?}\n{}",
            pytrace.describe()
        ));
    }
    let mut dumps = split_text_output(&pytrace.stdout())?;
    if dumps.len() != 1 {
        return Err(format!("expected one dump\n{}", pytrace.describe()));
    }
    let status = json.wait_exit(DUMP_TIMEOUT)?;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout())
        .map_err(|e| format!("JSON output ({status:?}): {e}\n{}", json.describe()))?;
    let needle = format!("line {at} in long_function\n");
    if !String::from_utf8_lossy(&expected).contains(&needle) {
        return Err(format!(
            "faulthandler did not print {needle:?}:\n{}",
            String::from_utf8_lossy(&expected)
        ));
    }
    Ok((expected, dumps.remove(0), value))
}

/// A 30,000-line function: its line table is several kernel records long on every version.
#[test]
fn line_in_a_30000_line_function() {
    for_each_interpreter(|interp| {
        let (expected, dump, json) = long_function_dump(interp, 30_000, 29_000)?;
        if dump.header.contains("incomplete") || json["unknown_lines"] != 0 {
            return Err(format!("marked incomplete: {}\n{json}", dump.header));
        }
        compare(
            &expected,
            &dump.body,
            &format!("long_function {}", interp.name),
        )
    });
}

/// A line table longer than the kernel copies (over 256 KiB on every version): a line past
/// the copied part is not guessed: `???`, and the header says the dump is incomplete.
#[test]
fn line_past_the_copied_line_table_is_unknown_and_marked() {
    const LINES: usize = 140_000;
    for_each_interpreter(|interp| {
        let at = LINES - 10;
        let (expected, dump, json) = long_function_dump(interp, LINES, at)?;
        let frame = &json["threads"][0]["frames"][0];
        if json["unknown_lines"] != 1
            || frame["name"] != "long_function"
            || !frame["line"].is_null()
        {
            return Err(format!("JSON does not say the line is unknown: {json}"));
        }
        let expected = String::from_utf8_lossy(&expected).replace(
            &format!("line {at} in long_function\n"),
            "line ??? in long_function\n",
        );
        if !dump.header.contains("incomplete: ") || !dump.header.contains(" 1 lines unknown") {
            return Err(format!(
                "header does not say the line is unknown: {}",
                dump.header
            ));
        }
        compare(
            expected.as_bytes(),
            &dump.body,
            &format!("long_function_cut {}", interp.name),
        )
    });
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

/// Lets the target make `n` rounds of fresh code objects, signalling each round once.
fn churn(target: &mut Target, n: usize) -> Result<()> {
    for _ in 0..n {
        expect_parked(target)?;
        target.kill(SIGUSR1)?;
        target.command("next")?;
    }
    Ok(())
}

/// Code records for 250 dumps of 40 never-seen code objects each, with line tables of tens of
/// KiB (about 200 MB if all were kept): pytrace's memory stays within its cache bounds plus a
/// margin, and goes back once the target has exited.
#[test]
fn memory_stays_bounded_under_code_churn_and_returns_after_exit() {
    let interps = selected_interpreters().expect("interpreters");
    let interps: Vec<Interpreter> = interps
        .into_iter()
        .filter(|i| i.at_least(3, 8))
        .take(1)
        .collect();
    each_interpreter(&interps, |interp| {
        let mut target = Target::start(interp, "code_churn.py", &[SIGUSR1])?;
        let pid = target.pid();
        // A second process keeps pytrace running once the churning one has exited (with
        // `--pid`, pytrace ends when every selected process has).
        let idle = Target::start(interp, "serve.py", &[SIGUSR1])?;
        let args = [
            "--signal",
            "SIGUSR1",
            "--pid",
            &pid.to_string(),
            "--pid",
            &idle.pid().to_string(),
            "--format",
            "json",
            "--output",
            "/dev/null",
            "--max-dumps-per-sec",
            "0",
        ];
        let mut pytrace = Pytrace::attach(&args)?;
        churn(&mut target, 10)?;
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(pytrace.pid())?;
        churn(&mut target, 250)?;
        expect_parked(&mut target)?;
        std::thread::sleep(Duration::from_millis(500));
        let during = rss_kib(pytrace.pid())?;
        target.kill(Signal {
            name: "SIGKILL",
            number: libc::SIGKILL,
        })?;
        target.wait_exit(DUMP_TIMEOUT)?;
        // The state of an exited process is dropped within a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = rss_kib(pytrace.pid())?;
        while after > before + 16 * 1024 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            after = rss_kib(pytrace.pid())?;
        }
        if !pytrace.running() {
            return Err(format!("pytrace stopped\n{}", pytrace.describe()));
        }
        eprintln!("pytrace RSS: {before} KiB before, {during} KiB after 250 rounds, {after} KiB after the exit");
        // The per-process cache bound (64 MiB) plus a generous margin.
        if during > before + 96 * 1024 {
            return Err(format!(
                "RSS grew from {before} to {during} KiB under code churn"
            ));
        }
        if after > before + 16 * 1024 {
            return Err(format!(
                "RSS {after} KiB after the target exited (was {before} KiB before the churn, {during} KiB during)"
            ));
        }
        Ok(())
    });
}
