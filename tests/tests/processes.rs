//! Processes that pytrace must find and read on its own: started after it attached, Python
//! embedded in a program not named python* (linked against libpython, or dlopen()ing it at run
//! time), inside new PID and mount namespaces, a libpython whose `_PyRuntime` symbol no longer
//! resolves, twenty processes of mixed versions signalled at once; and the refusals: an
//! unprivileged user, a Python 2.7 process.
//!
//! Every dump is compared byte for byte with the target's own faulthandler output, and its
//! header must name the target's host PID, its PID in its namespace when that differs, its
//! comm, its exact Python version and the signal sent from this process.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use pytrace_tests::cases::*;
use pytrace_tests::*;

/// How long a compiler or a probe of an interpreter may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an embedding program may take to exec before it is handed its libpython.
const EXEC_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process that has exec'd is left alone before it loads libpython, so that
/// pytrace has seen it as a process without Python first.
const BEFORE_DLOPEN: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Interpreters, as their own sysconfig describes them

/// What an interpreter says about itself.
struct Build {
    /// `3.11.7`: what pytrace's header must show.
    version: String,
    /// `sys.base_prefix`, which PYTHONHOME must name for an embedded interpreter.
    prefix: PathBuf,
    /// The shared libpython (`LIBDIR/INSTSONAME`).
    libpython: PathBuf,
}

const BUILD_PROBE: &str = "import os, platform, sys, sysconfig as s
print(platform.python_version())
print(sys.base_prefix)
libdir, soname = s.get_config_var('LIBDIR') or '', s.get_config_var('INSTSONAME') or ''
if not os.path.isfile(os.path.join(libdir, soname)):
    # Unpacked away from its configured prefix (Debian's builds under /opt): the same place
    # relative to where it runs from.
    libdir = os.path.join(sys.base_prefix, os.path.relpath(libdir, '/usr'))
print(os.path.join(libdir, soname))
print(s.get_config_var('Py_ENABLE_SHARED'))";

fn build_of(interp: &Interpreter) -> Result<Build> {
    let out = output(
        Command::new(&interp.python).args(["-E", "-s", "-B", "-c", BUILD_PROBE]),
        "probing the interpreter",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let [version, prefix, libpython, shared] = lines[..] else {
        return Err(format!("unexpected sysconfig probe output {out:?}"));
    };
    Ok(Build {
        version: version.to_string(),
        prefix: prefix.into(),
        libpython: match (shared, Path::new(libpython).is_file()) {
            ("1", true) => libpython.into(),
            _ => PathBuf::new(),
        },
    })
}

impl Build {
    /// The shared libpython, which every interpreter the embedding tests select must have.
    fn shared_library(&self, interp: &Interpreter) -> Result<&Path> {
        match self.libpython.as_os_str().is_empty() {
            true => Err(format!(
                "{} has no shared libpython (Py_ENABLE_SHARED unset or INSTSONAME missing)",
                interp.name
            )),
            false => Ok(&self.libpython),
        }
    }
}

/// Runs `command` to completion within [`TOOL_TIMEOUT`]; its stdout if it succeeded.
fn output(command: &mut Command, what: &str) -> Result<String> {
    let shown = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {shown}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TOOL_TIMEOUT) {
        Ok(out) => out.map_err(|e| format!("{what}: {shown}: {e}"))?,
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions; the child is still running.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return Err(format!(
                "{what}: {shown} still running after {TOOL_TIMEOUT:?}"
            ));
        }
    };
    if !out.status.success() {
        return Err(format!(
            "{what}: {shown} failed ({})\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{what}: {shown}: {e}"))
}

fn python_command(interp: &Interpreter) -> Command {
    let mut command = Command::new(&interp.python);
    command.args(["-E", "-s", "-B"]);
    command
}

/// The comm the kernel gives a process that exec'd `path`.
fn comm_of(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.chars().take(15).collect()
}

// ---------------------------------------------------------------------------------------
// What a dump must look like

/// What the header line of a target's dump must say.
struct Expected {
    pid: u32,
    ns_pid: Option<u32>,
    comm: String,
    version: String,
    signal: Signal,
}

impl Expected {
    fn new(pid: u32, comm: &str, build: &Build) -> Expected {
        Expected {
            pid,
            ns_pid: None,
            comm: comm.to_string(),
            version: build.version.clone(),
            signal: SIGUSR1,
        }
    }

    fn check(&self, dump: &TextDump) -> Result<()> {
        let ns = match self.ns_pid {
            Some(ns) => format!("[{ns} in its PID namespace] "),
            None => String::new(),
        };
        let start = format!(
            "Process {} {ns}({}) Python {}, {}",
            self.pid, self.comm, self.version, self.signal.name
        );
        let sender = format!(" from PID {}, ", std::process::id());
        let rest = dump.header.strip_prefix(&start).unwrap_or_default();
        // The sender is the host's PID even for a target in another PID namespace (where the
        // kernel's siginfo says 0).
        if !rest.starts_with(&sender) || dump.header.contains("incomplete") {
            return Err(format!(
                "header {:?}, expected it to start with {:?} and be complete",
                dump.header,
                start + &sender
            ));
        }
        Ok(())
    }
}

/// The one dump for `pid` in `stdout`, if it is there in full.
fn find_dump(stdout: &[u8], pid: u32) -> Result<Option<TextDump>> {
    let mut mine: Vec<TextDump> = split_text_output(stdout)?
        .into_iter()
        .filter(|d| d.pid == pid)
        .collect();
    match mine.len() {
        0 => Ok(None),
        1 => Ok(mine.pop()),
        n => Err(format!("{n} dumps for PID {pid}")),
    }
}

/// The stderr lines of a host-wide pytrace that concern `pid` (or are not about picking up
/// processes), and the headers of every dump it printed.
fn describe_for(pytrace: &Pytrace, pid: u32) -> String {
    let stderr = pytrace.stderr();
    let needle = pid.to_string();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_digit()).any(|w| w == needle)
                || !(l.starts_with("pytrace: now tracing new process")
                    || l.starts_with("pytrace: skipping"))
        })
        .collect();
    let stdout = pytrace.stdout();
    let headers: Vec<String> = stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"Process "))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    format!(
        "--- pytrace stderr, lines about PID {pid} or not about picking up processes ---\n{}\n--- headers of the {} dump(s) on stdout ({} bytes) ---\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n"),
        headers.len(),
        stdout.len(),
        headers.join("\n")
    )
}

/// Waits for a host-wide pytrace to print its dump of `pid`, among whatever else it prints,
/// and requires it to stay the only one for that PID a moment later.
fn wait_for_dump(pytrace: &Pytrace, pid: u32, timeout: Duration) -> Result<TextDump> {
    let deadline = Instant::now() + timeout;
    let mut problem = String::from("none printed");
    loop {
        match find_dump(&pytrace.stdout(), pid) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => problem = e,
        }
        if Instant::now() >= deadline {
            let ignored = format!("pytrace: process {pid} (");
            let race = match pytrace.stderr().lines().any(|l| {
                l.starts_with(&ignored) && l.ends_with("not a known Python process, ignored")
            }) {
                true => "; pytrace ignored the signal: the process was not registered yet",
                false => "",
            };
            return Err(format!(
                "no complete dump for PID {pid} within {timeout:?} ({problem}){race}\n{}",
                describe_for(pytrace, pid)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    find_dump(&pytrace.stdout(), pid)
        .and_then(|d| d.ok_or_else(|| "the dump went away".to_string()))
        .map_err(|e| format!("{e}\n{}", describe_for(pytrace, pid)))
}

/// Signals `pid` (the process running `target`'s script), takes faulthandler's text, checks
/// its shape against `case`, then requires the host-wide `pytrace` to have printed the same
/// bytes under the expected header, and to have reported picking the process up.
fn signal_and_compare(
    pytrace: &Pytrace,
    target: &mut Target,
    expected: &Expected,
    case: &Case,
    interp: &Interpreter,
) -> Result<()> {
    signal_and_compare_known(pytrace, target, expected, case, interp)?;
    let picked_up = format!("pytrace: now tracing new process {}", expected.pid);
    match pytrace.stderr().lines().any(|l| l == picked_up) {
        true => Ok(()),
        false => Err(format!(
            "pytrace -v never printed {picked_up:?}\n{}",
            describe_for(pytrace, expected.pid)
        )),
    }
}

/// [`signal_and_compare`] for a process pytrace knew from its start-up scan.
fn signal_and_compare_known(
    pytrace: &Pytrace,
    target: &mut Target,
    expected: &Expected,
    case: &Case,
    interp: &Interpreter,
) -> Result<()> {
    let before = target.output().len();
    send_signal(expected.pid, expected.signal)?;
    let text = faulthandler_text(target, before, case, interp)?;
    let dump = wait_for_dump(pytrace, expected.pid, DUMP_TIMEOUT)?;
    expected.check(&dump)?;
    compare(&text, &dump.body, target.label())
}

/// faulthandler's text written after byte `from`, checked against `case`'s shape.
fn faulthandler_text(
    target: &mut Target,
    from: usize,
    case: &Case,
    interp: &Interpreter,
) -> Result<Vec<u8>> {
    let text = target.wait_output(from, DUMP_TIMEOUT)?;
    parse_dump(&text)
        .and_then(|dump| (case.check)(interp, &dump))
        .map_err(|e| {
            format!(
                "{}: faulthandler's own output is not what the target should produce: {e}\n{}",
                target.label(),
                String::from_utf8_lossy(&text)
            )
        })?;
    Ok(text)
}

/// Waits for a pytrace run with `--count` to end successfully, then requires exactly one dump
/// per expected process, under the right header and equal to its faulthandler text.
fn expect_exact_dumps(pytrace: Pytrace, expected: &[(Expected, Vec<u8>, String)]) -> Result<()> {
    let args = pytrace
        .describe()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let run = pytrace.finish(DUMP_TIMEOUT)?;
    let context = || {
        format!(
            "{args}\n--- pytrace stdout ({} bytes) ---\n{}\n--- pytrace stderr ---\n{}",
            run.stdout.len(),
            String::from_utf8_lossy(&run.stdout[..run.stdout.len().min(4000)]),
            run.stderr
        )
    };
    if !run.status.success() {
        return Err(format!(
            "pytrace exited with {:?} after its --count\n{}",
            run.status,
            context()
        ));
    }
    let dumps = split_text_output(&run.stdout).map_err(|e| format!("{e}\n{}", context()))?;
    let mut failures = Vec::new();
    if dumps.len() != expected.len() {
        failures.push(format!(
            "{} dumps, expected {}",
            dumps.len(),
            expected.len()
        ));
    }
    for (want, text, label) in expected {
        let mine: Vec<&TextDump> = dumps.iter().filter(|d| d.pid == want.pid).collect();
        let outcome = match mine[..] {
            [dump] => want
                .check(dump)
                .and_then(|()| compare(text, &dump.body, label)),
            _ => Err(format!("{} dumps for PID {}", mine.len(), want.pid)),
        };
        if let Err(e) = outcome {
            failures.push(format!("{label} (PID {}): {e}", want.pid));
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(format!("{}\n{}", failures.join("\n"), context())),
    }
}

fn attach_host_wide() -> Result<Pytrace> {
    Pytrace::attach(&["--signal", SIGUSR1.name, "-v"])
}

// ---------------------------------------------------------------------------------------
// /proc

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The descendant of `pid` that runs `program`.
fn descendant_running(pid: u32, program: &Path) -> Result<u32> {
    let program = fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let mut queue = children_of(pid);
    let mut seen = Vec::new();
    while let Some(child) = queue.pop() {
        let exe = fs::read_link(format!("/proc/{child}/exe")).unwrap_or_default();
        if exe == program {
            return Ok(child);
        }
        seen.push(format!("{child} ({})", exe.display()));
        queue.extend(children_of(child));
    }
    Err(format!(
        "no descendant of {pid} runs {}; found {seen:?}",
        program.display()
    ))
}

/// The last `NSpid` of `pid`: its PID in its own namespace.
fn innermost_pid(pid: u32) -> Result<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
        .ok_or_else(|| format!("no NSpid in /proc/{pid}/status"))
}

/// The files mapped into `pid`.
fn mapped_files(pid: u32) -> Result<Vec<PathBuf>> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let mut files: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|f| f.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    files.dedup();
    Ok(files)
}

/// Requires `pid` to map `library` (its canonical path) and no other file named like it.
fn expect_mapped(pid: u32, library: &Path) -> Result<()> {
    let library = fs::canonicalize(library).map_err(|e| format!("{}: {e}", library.display()))?;
    let name = library.file_name().unwrap_or_default();
    let files = mapped_files(pid)?;
    let same_name: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.file_name() == Some(name))
        .collect();
    match same_name[..] {
        [only] if *only == library => Ok(()),
        _ => Err(format!(
            "PID {pid} maps {same_name:?}, expected {} alone",
            library.display()
        )),
    }
}

fn wait_exec(pid: u32, program: &Path) -> Result<()> {
    let deadline = Instant::now() + EXEC_TIMEOUT;
    while fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() != Some(program) {
        if Instant::now() >= deadline {
            return Err(format!(
                "PID {pid} did not exec {} within {EXEC_TIMEOUT:?}",
                program.display()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Embedding programs

fn embedder_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join("embedder.c")
}

fn gcc(args: &[String], what: &str) -> Result<()> {
    output(Command::new("gcc").args(args), what).map(|_| ())
}

/// Builds `<dir>/embedder`, linked against the interpreter's libpython with an rpath to it,
/// with the flags its `python3.X-config` gives.
fn build_linked_embedder(interp: &Interpreter, build: &Build, dir: &Path) -> Result<PathBuf> {
    let libpython = build.shared_library(interp)?;
    let config = PathBuf::from(format!("{}-config", interp.python.display()));
    let mut query = Command::new(&config);
    query.args(["--cflags", "--ldflags"]);
    if interp.at_least(3, 8) {
        query.arg("--embed");
    }
    let flags = output(&mut query, "asking python-config for the embedding flags")?;
    let program = dir.join("embedder");
    let libdir = libpython.parent().unwrap_or(Path::new("/"));
    let mut args = vec![
        "-o".to_string(),
        program.display().to_string(),
        embedder_source().display().to_string(),
    ];
    args.extend(flags.split_whitespace().map(String::from));
    args.push(format!("-Wl,-rpath,{}", libdir.display()));
    args.extend(interp.runtime_link_args());
    gcc(&args, &format!("building the embedder for {}", interp.name))?;
    Ok(program)
}

/// Builds `<dir>/embedder-dl`, which knows nothing of Python until it dlopen()s a libpython;
/// `link_args` point it at an interpreter's own C library where it has one.
fn build_dlopen_embedder(dir: &Path, link_args: &[String]) -> Result<PathBuf> {
    let program = dir.join("embedder-dl");
    let mut args = vec![
        "-DEMBED_DLOPEN".into(),
        "-o".into(),
        program.display().to_string(),
        embedder_source().display().to_string(),
        "-ldl".into(),
    ];
    args.extend_from_slice(link_args);
    gcc(&args, "building the dlopen embedder")?;
    let text = output(
        Command::new("readelf").args(["-d", &program.display().to_string()]),
        "reading the dlopen embedder's dynamic section",
    )?;
    match text.contains("libpython") {
        true => Err(format!("{} depends on a libpython", program.display())),
        false => Ok(program),
    }
}

/// The environment an embedded interpreter reads in place of python's command line options.
fn embedding_env(command: &mut Command, build: &Build) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PYTHON") {
            command.env_remove(name);
        }
    }
    command
        .env("PYTHONHOME", &build.prefix)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1");
}

// ---------------------------------------------------------------------------------------
// A libpython whose `_PyRuntime` no longer resolves

fn read_u16(data: &[u8], at: usize) -> Result<usize> {
    let bytes = data.get(at..at + 2).ok_or("ELF read out of bounds")?;
    Ok(u16::from_le_bytes(bytes.try_into().unwrap()) as usize)
}

fn read_u32(data: &[u8], at: usize) -> Result<usize> {
    let bytes = data.get(at..at + 4).ok_or("ELF read out of bounds")?;
    Ok(u32::from_le_bytes(bytes.try_into().unwrap()) as usize)
}

fn read_u64(data: &[u8], at: usize) -> Result<usize> {
    let bytes = data.get(at..at + 8).ok_or("ELF read out of bounds")?;
    Ok(u64::from_le_bytes(bytes.try_into().unwrap()) as usize)
}

/// File ranges of the named sections of a little-endian ELF64 image.
fn section_ranges(data: &[u8], names: &[&str]) -> Result<Vec<(String, usize, usize)>> {
    if !data.starts_with(b"\x7fELF\x02\x01") {
        return Err("not a little-endian ELF64 file".into());
    }
    let (shoff, shentsize) = (read_u64(data, 0x28)?, read_u16(data, 0x3a)?);
    let (shnum, shstrndx) = (read_u16(data, 0x3c)?, read_u16(data, 0x3e)?);
    let names_at = read_u64(data, shoff + shstrndx * shentsize + 0x18)?;
    let mut ranges = Vec::new();
    for index in 0..shnum {
        let header = shoff + index * shentsize;
        let name_at = names_at + read_u32(data, header)?;
        let name = data
            .get(name_at..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .ok_or("section name out of bounds")?;
        let name = String::from_utf8_lossy(name).into_owned();
        if names.contains(&name.as_str()) {
            let (offset, size) = (
                read_u64(data, header + 0x18)?,
                read_u64(data, header + 0x20)?,
            );
            ranges.push((name, offset, offset + size));
        }
    }
    Ok(ranges)
}

/// Renames the NUL-delimited string `old` to `new` (same length) in `.dynstr` and `.strtab`;
/// returns the sections where it was found.
fn rename_symbol(data: &mut [u8], old: &[u8], new: &[u8]) -> Result<Vec<String>> {
    assert_eq!(old.len(), new.len());
    let n = old.len();
    let mut renamed = Vec::new();
    for (name, start, end) in section_ranges(data, &[".dynstr", ".strtab"])? {
        let table = data.get_mut(start..end).ok_or("section out of bounds")?;
        for i in 1..table.len().saturating_sub(n) {
            if table[i - 1] == 0 && &table[i..i + n] == old && table[i + n] == 0 {
                table[i..i + n].copy_from_slice(new);
                renamed.push(name.clone());
            }
        }
    }
    Ok(renamed)
}

fn gnu_hash(name: &[u8]) -> u32 {
    name.iter()
        .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
}

/// Copies `original` into `dir` under its own name, with `_PyRuntime` renamed to
/// `_PyRuntinD` in both string tables: the same GNU hash, so the library's own relocations
/// against the symbol still resolve and the copy loads, but the name `_PyRuntime` does not.
fn libpython_without_runtime_symbol(original: &Path, dir: &Path) -> Result<PathBuf> {
    let (old, new) = (b"_PyRuntime", b"_PyRuntinD");
    if gnu_hash(old) != gnu_hash(new) {
        return Err("the replacement name does not keep the GNU hash".into());
    }
    let mut data = fs::read(original).map_err(|e| format!("{}: {e}", original.display()))?;
    let renamed = rename_symbol(&mut data, old, new)?;
    if !renamed.iter().any(|s| s == ".dynstr") {
        return Err(format!(
            "no `_PyRuntime` in the .dynstr of {} (renamed in {renamed:?})",
            original.display()
        ));
    }
    let copy = dir.join(original.file_name().ok_or("library without a name")?);
    fs::write(&copy, &data).map_err(|e| format!("{}: {e}", copy.display()))?;
    Ok(copy)
}

/// Whether `_PyRuntime` and `_PyRuntinD` are defined in the dynamic symbol table of `library`.
fn runtime_symbols_defined(library: &Path) -> Result<(bool, bool)> {
    let text = output(
        Command::new("readelf")
            .args(["-W", "--dyn-syms"])
            .arg(library),
        "listing the dynamic symbols",
    )?;
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields[..] {
                [_, _, _, _, _, _, index, name, ..] if index != "UND" => {
                    Some(name.split('@').next().unwrap_or(name))
                }
                _ => None,
            }
        })
        .collect();
    Ok((
        defined.contains(&"_PyRuntime"),
        defined.contains(&"_PyRuntinD"),
    ))
}

// ---------------------------------------------------------------------------------------
// A process that prints `ready` and waits

/// A child killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command`, which must print `ready` on its first line, and waits for it.
fn start_ready(command: &mut Command) -> Result<Reaped> {
    let shown = format!("{command:?}");
    let mut child = Reaped(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{shown}: {e}"))?,
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) if line == "ready\n" => Ok(child),
        Ok(line) => Err(format!("{shown}: expected `ready`, got {line:?}")),
        Err(_) => Err(format!("{shown}: no `ready` within {READY_TIMEOUT:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// Tests

fn selected() -> Vec<Interpreter> {
    selected_interpreters().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn process_started_after_pytrace_attached() {
    let _serial = serial();
    let interpreters = selected();
    let pytrace = attach_host_wide().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        let build = build_of(interp)?;
        let mut target = Target::start(interp, THREAD_DEPTHS.script, &[SIGUSR1])?;
        let expected = Expected::new(target.pid(), &comm_of(&interp.python), &build);
        signal_and_compare(&pytrace, &mut target, &expected, &THREAD_DEPTHS, interp)
    });
}

#[test]
fn embedded_by_a_program_linked_against_libpython() {
    let _serial = serial();
    let interpreters = selected();
    let pytrace = attach_host_wide().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        let build = build_of(interp)?;
        let dir = TempDir::new()?;
        let program = build_linked_embedder(interp, &build, dir.path())?;
        let mut command = Command::new(&program);
        embedding_env(&mut command, &build);
        let on = format!("{} embedded", interp.name);
        let mut target = Target::spawn(command, THREAD_DEPTHS.script, &[SIGUSR1], &on)?;
        target.wait_ready(READY_TIMEOUT)?;
        expect_mapped(target.pid(), &build.libpython)?;
        let expected = Expected::new(target.pid(), "embedder", &build);
        if interp.own_runtime {
            // A program that is not `python*` and runs a dynamic loader no process used when
            // pytrace started is not noticed live (README, Limits): this one is found by the
            // start-up scan of a pytrace attached after it.
            let late = attach_host_wide()?;
            return signal_and_compare_known(&late, &mut target, &expected, &THREAD_DEPTHS, interp);
        }
        signal_and_compare(&pytrace, &mut target, &expected, &THREAD_DEPTHS, interp)
    });
}

/// Starts the dlopen embedder for `build`'s libpython, and waits until it has exec'd (it
/// then blocks until told to go on).
fn spawn_dlopen_embedder(program: &Path, build: &Build, on: &str) -> Result<Target> {
    let mut command = Command::new(program);
    command.arg(&build.libpython);
    embedding_env(&mut command, build);
    let target = Target::spawn(command, THREAD_DEPTHS.script, &[SIGUSR1], on)?;
    wait_exec(target.pid(), program)?;
    Ok(target)
}

/// Lets a dlopen embedder load libpython and run its script, and checks that it had not
/// mapped any libpython before.
fn dlopen_now(target: &mut Target, build: &Build) -> Result<()> {
    let early = mapped_files(target.pid())?;
    if let Some(lib) = early
        .iter()
        .find(|f| f.to_string_lossy().contains("libpython"))
    {
        return Err(format!(
            "{} mapped {} too early",
            target.label(),
            lib.display()
        ));
    }
    target.command("go")?;
    target.wait_ready(READY_TIMEOUT)?;
    expect_mapped(target.pid(), &build.libpython)
}

#[test]
fn embedded_by_a_program_that_dlopens_libpython() {
    let _serial = serial();
    let interpreters = selected();
    // One embedder per C library: the host's, and each build's own.
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let programs: HashMap<String, Result<PathBuf>> = interpreters
        .iter()
        .map(|i| {
            let sub = dir.path().join(&i.name);
            let built = std::fs::create_dir_all(&sub)
                .map_err(|e| e.to_string())
                .and_then(|_| build_dlopen_embedder(&sub, &i.runtime_link_args()));
            (i.name.clone(), built)
        })
        .collect();
    let builds: HashMap<String, Result<Build>> = interpreters
        .iter()
        .map(|i| (i.name.clone(), build_of(i)))
        .collect();
    let early: Mutex<HashMap<String, Result<Target>>> = Mutex::new(
        interpreters
            .iter()
            .filter_map(|i| {
                let program = programs[&i.name].as_ref().ok()?;
                Some((i, program, builds[&i.name].as_ref().ok()?))
            })
            .map(|(i, program, build)| {
                let on = format!("{} dlopened, started before pytrace", i.name);
                (i.name.clone(), spawn_dlopen_embedder(program, build, &on))
            })
            .collect(),
    );
    thread::sleep(BEFORE_DLOPEN);
    let pytrace = attach_host_wide().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        let build = builds[&interp.name].as_ref().map_err(Clone::clone)?;
        let program = programs[&interp.name].as_ref().map_err(Clone::clone)?;
        build.shared_library(interp)?;
        let known = early.lock().unwrap().remove(&interp.name);
        let mut known = known.ok_or("no early embedder")??;
        dlopen_now(&mut known, build)?;
        let expected = Expected::new(known.pid(), "embedder-dl", build);
        signal_and_compare(&pytrace, &mut known, &expected, &THREAD_DEPTHS, interp)?;
        drop(known);

        let on = format!("{} dlopened, started after pytrace", interp.name);
        let mut new = spawn_dlopen_embedder(program, build, &on)?;
        thread::sleep(BEFORE_DLOPEN);
        dlopen_now(&mut new, build)?;
        let expected = Expected::new(new.pid(), "embedder-dl", build);
        signal_and_compare(&pytrace, &mut new, &expected, &THREAD_DEPTHS, interp)
    });
}

/// The header suffix of a dump of a process whose libpython holds no interpreter.
const NOT_INITIALISED: &str = " (no Python interpreter initialised)";

/// A dlopen embedder stopped after loading libpython, before `Py_Initialize`: the dump says
/// there is no interpreter, in text (header suffix, empty body) and JSON.
fn check_not_initialised(program: &Path, interp: &Interpreter) -> Result<()> {
    let build = build_of(interp)?;
    build.shared_library(interp)?;
    let mut command = Command::new(program);
    command
        .arg(&build.libpython)
        .env("EMBEDDER_STOP_BEFORE_INIT", "1");
    embedding_env(&mut command, &build);
    let on = format!("{} loaded, not initialised", interp.name);
    let mut target = Target::spawn(command, THREAD_DEPTHS.script, &[SIGUSR1], &on)?;
    wait_exec(target.pid(), program)?;
    target.command("go")?;
    target.wait_ready(READY_TIMEOUT)?;
    expect_mapped(target.pid(), &build.libpython)?;
    let pid = target.pid();

    let pytrace = Pytrace::attach(&watch_args(SIGUSR1, &[pid], 1, "text"))?;
    target.kill(SIGUSR1)?;
    let run = pytrace.finish(DUMP_TIMEOUT)?;
    let dumps = split_text_output(&run.stdout)?;
    let context = || format!("\n--- stdout ---\n{}", String::from_utf8_lossy(&run.stdout));
    match &dumps[..] {
        [dump]
            if dump.pid == pid
                && dump.header.ends_with(NOT_INITIALISED)
                && dump.body.is_empty() => {}
        _ => {
            return Err(format!(
                "{on}: expected one dump with a header ending in {NOT_INITIALISED:?} and no body{}",
                context()
            ))
        }
    }
    if dumps[0].header.contains("incomplete") {
        return Err(format!("{on}: marked incomplete{}", context()));
    }

    let pytrace = Pytrace::attach(&watch_args(SIGUSR1, &[pid], 1, "json"))?;
    target.kill(SIGUSR1)?;
    let run = pytrace.finish(DUMP_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let record: serde_json::Value = serde_json::from_str(stdout.trim_end())
        .map_err(|e| format!("{on}: JSON: {e}\n{stdout}"))?;
    let ok = record["pid"] == u64::from(pid)
        && record["interpreter_state"] == "not_initialised"
        && record["threads"].as_array().is_some_and(|t| t.is_empty())
        && record["incomplete"]
            .as_array()
            .is_some_and(|t| t.is_empty());
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{on}: expected interpreter_state \"not_initialised\", no threads, nothing incomplete:\n{stdout}"
        )),
    }
}

#[test]
fn libpython_loaded_but_not_initialised() {
    let _serial = serial();
    let interpreters = selected();
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    // One embedder per C library: the host's, and each build's own.
    each_interpreter(&interpreters, |interp| {
        let sub = dir.path().join(&interp.name);
        std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        let program = build_dlopen_embedder(&sub, &interp.runtime_link_args())?;
        check_not_initialised(&program, interp)
    });
}

/// `unshare --pid --mount --fork --kill-child [sh -c '"$0" "$@" & wait'] python …`: the
/// interpreter is PID `ns_pid` (1 or 2) of a new PID namespace, in a new mount namespace.
fn check_in_namespaces(pytrace: &Pytrace, interp: &Interpreter, ns_pid: u32) -> Result<()> {
    let build = build_of(interp)?;
    let mut command = Command::new("unshare");
    command.args(["--pid", "--mount", "--fork", "--kill-child"]);
    if ns_pid == 2 {
        command.args(["/bin/sh", "-c", "\"$0\" \"$@\" & wait"]);
    }
    command.arg(&interp.python).args(["-E", "-s", "-B"]);
    let on = format!("{} as PID {ns_pid} of new namespaces", interp.name);
    let mut target = Target::spawn(command, THREAD_DEPTHS.script, &[SIGUSR1], &on)?;
    target.wait_ready(READY_TIMEOUT)?;
    let pid = descendant_running(target.pid(), &interp.python)?;
    if innermost_pid(pid)? != ns_pid {
        return Err(format!(
            "PID {pid} is {} in its namespace, expected {ns_pid}",
            innermost_pid(pid)?
        ));
    }
    let mount_ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    if mount_ns(&pid.to_string()) == mount_ns("self") {
        return Err(format!("PID {pid} shares this process's mount namespace"));
    }
    let expected = Expected {
        ns_pid: Some(ns_pid),
        ..Expected::new(pid, &comm_of(&interp.python), &build)
    };
    signal_and_compare(pytrace, &mut target, &expected, &THREAD_DEPTHS, interp)
}

#[test]
fn process_in_new_pid_and_mount_namespaces() {
    let _serial = serial();
    let interpreters = selected();
    let pytrace = attach_host_wide().unwrap_or_else(|e| panic!("{e}"));
    each_interpreter(&interpreters, |interp| {
        check_in_namespaces(&pytrace, interp, 1)?;
        check_in_namespaces(&pytrace, interp, 2)
    });
}

#[test]
fn libpython_without_its_dynamic_pyruntime_symbol() {
    let _serial = serial();
    let interpreters: Vec<Interpreter> = selected()
        .into_iter()
        .filter(|i| i.version() == (3, 13) && i.python.starts_with(pyenv_root()))
        .collect();
    if interpreters.is_empty() {
        eprintln!("no pyenv 3.13 interpreter selected: nothing to run");
        return;
    }
    each_interpreter(&interpreters, |interp| {
        let build = build_of(interp)?;
        let original = build.shared_library(interp)?;
        let dir = TempDir::new()?;
        let copy = libpython_without_runtime_symbol(original, dir.path())?;

        let as_built = runtime_symbols_defined(original)?;
        let in_copy = runtime_symbols_defined(&copy)?;
        if as_built != (true, false) || in_copy != (false, true) {
            return Err(format!(
                "(_PyRuntime, _PyRuntinD) defined: {as_built:?} in {}, {in_copy:?} in the copy; expected (true, false), then (false, true)",
                original.display()
            ));
        }
        let ldd = output(
            Command::new("ldd")
                .arg(&interp.python)
                .env("LD_LIBRARY_PATH", dir.path()),
            "ldd",
        )?;
        let needle = format!("=> {} (", copy.display());
        if !ldd.contains(&needle) {
            return Err(format!(
                "ldd does not resolve libpython to the copy:\n{ldd}"
            ));
        }

        let host_wide = attach_host_wide()?;
        let mut command = python_command(interp);
        command.env("LD_LIBRARY_PATH", dir.path());
        let on = format!("{} with _PyRuntime renamed", interp.name);
        let mut target = Target::spawn(command, THREAD_DEPTHS.script, &[SIGUSR1], &on)?;
        target.wait_ready(READY_TIMEOUT)?;
        expect_mapped(target.pid(), &copy)?;
        let expected = Expected::new(target.pid(), &comm_of(&interp.python), &build);
        signal_and_compare(&host_wide, &mut target, &expected, &THREAD_DEPTHS, interp)?;
        drop(host_wide);

        let pytrace = Pytrace::attach(&watch_args(SIGUSR1, &[target.pid()], 1, "text"))?;
        let before = target.output().len();
        target.kill(SIGUSR1)?;
        let text = faulthandler_text(&mut target, before, &THREAD_DEPTHS, interp)?;
        let label = format!("{} --pid", target.label());
        expect_exact_dumps(pytrace, &[(expected, text, label)])
    });
}

#[test]
fn twenty_processes_of_mixed_versions_signalled_at_once() {
    let _serial = serial();
    let interpreters = selected();
    assert!(!interpreters.is_empty(), "no interpreter selected");
    let cases = [
        &THREAD_DEPTHS,
        &DEEP_RECURSION,
        &GENERATOR_COROUTINE,
        &NON_ASCII_NAMES,
    ];
    let run = || -> Result<()> {
        let builds: Vec<Build> = interpreters.iter().map(build_of).collect::<Result<_>>()?;
        let plan: Vec<(usize, &Case)> = (0..20)
            .map(|k| (k % interpreters.len(), cases[k % cases.len()]))
            .collect();
        let mut targets = plan
            .iter()
            .map(|&(i, case)| {
                let interp = &interpreters[i];
                Target::spawn(
                    python_command(interp),
                    case.script,
                    &[SIGUSR1],
                    &interp.name,
                )
            })
            .collect::<Result<Vec<Target>>>()?;
        for target in &mut targets {
            target.wait_ready(READY_TIMEOUT)?;
        }
        let pids: Vec<u32> = targets.iter().map(Target::pid).collect();
        let pytrace = Pytrace::attach(&watch_args(SIGUSR1, &pids, pids.len(), "text"))?;
        let failed: Vec<u32> = pids
            .iter()
            .copied()
            // SAFETY: kill(2) has no memory-safety preconditions.
            .filter(|&pid| unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0)
            .collect();
        if !failed.is_empty() {
            return Err(format!("kill(SIGUSR1) failed for {failed:?}"));
        }
        let mut expected = Vec::new();
        for (target, &(i, case)) in targets.iter_mut().zip(&plan) {
            let interp = &interpreters[i];
            let text = faulthandler_text(target, 0, case, interp)?;
            let want = Expected::new(target.pid(), &comm_of(&interp.python), &builds[i]);
            expected.push((want, text, target.label().to_string()));
        }
        expect_exact_dumps(pytrace, &expected)
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unprivileged_user_is_refused() {
    let _serial = serial();
    let run = || -> Result<()> {
        let dir = TempDir::new()?;
        let binary = dir.path().join("pytrace");
        fs::copy(pytrace_binary(), &binary)
            .map_err(|e| format!("copying {}: {e}", pytrace_binary().display()))?;
        for (path, mode) in [(dir.path(), 0o755), (binary.as_path(), 0o755)] {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary);
        let args = ["--signal", "SIGUSR1"];
        let finished = Pytrace::spawn_command(command, &args)?.finish(Duration::from_secs(60))?;
        let shown = format!("setpriv --reuid=65534 … pytrace {}", args.join(" "));
        let (code, line) = plain_error(&finished, &shown)?;
        if code != 8 {
            return Err(format!(
                "exit code {code}, expected 8 (insufficient privileges): {line:?}"
            ));
        }
        match line.to_lowercase().contains("privilege") {
            true => Ok(()),
            false => Err(format!("the message does not mention privileges: {line:?}")),
        }
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn python_2_7_is_unsupported() {
    let _serial = serial();
    let run = || -> Result<()> {
        let python = pyenv_root().join("versions/2.7.18/bin/python2.7");
        let sleeper = start_ready(Command::new(&python).args([
            "-E",
            "-s",
            "-c",
            "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(120)",
        ]))?;
        let pid = sleeper.0.id();
        let args = watch_args(SIGUSR1, &[pid], 1, "text");
        let finished = Pytrace::run(&args, Duration::from_secs(60))?;
        let (code, line) = plain_error(&finished, &format!("pytrace {}", args.join(" ")))?;
        if code != 6 {
            return Err(format!(
                "exit code {code}, expected 6 (unsupported version): {line:?}"
            ));
        }
        match line.contains("2.7.18") && line.contains(&pid.to_string()) {
            true => Ok(()),
            false => Err(format!(
                "the message does not name PID {pid} and version 2.7.18: {line:?}"
            )),
        }
    };
    run().unwrap_or_else(|e| panic!("{e}"));
}
