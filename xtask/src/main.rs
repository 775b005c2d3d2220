//! Project tasks that a build script should not do: installing the eBPF toolchain, building,
//! running the root-only test suite and the benchmarks.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

mod cpython;

/// The bpf-linker release that links with the nightly toolchain's LLVM here.
const BPF_LINKER_VERSION: &str = "0.10.3";
const NIGHTLY: &str = "nightly";
/// The speedscope release whose file-format schema the profile tests check files against.
const SPEEDSCOPE_VERSION: &str = "1.25.0";

#[derive(Parser)]
#[command(name = "xtask")]
struct Args {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs (idempotent): rust-src for nightly, bpf-linker.
    Setup,
    /// Set up, then build everything; the binary lands in target/release/pytrace.
    Build,
    /// Build, then run target/release/pytrace with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the test interpreters pyenv cannot build here (CPython 3.14 and 3.15 from
    /// Debian sid, under /opt/pytrace-cpython; idempotent; needs root).
    Pythons,
    /// Build, install the test interpreters, then run every test: unit tests and the
    /// end-to-end suite against real CPython (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run the benchmarks against py-spy, pystack and austin (needs root).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = workspace_root();
    match args.command {
        Task::Setup => setup(),
        Task::Build => build(&root),
        Task::Run { args } => {
            build(&root)?;
            run(Command::new(root.join("target/release/pytrace")).args(args))
        }
        Task::Pythons => cpython::install_all(),
        Task::Test { args } => {
            build(&root)?;
            test_tools(&root);
            cpython::install_all()?;
            if args.is_empty() {
                // The kernel crate is not a default member (its binary is BPF only): its
                // library, the walker compiled for the host, has its own unit tests.
                run(cargo(&root).args(["test", "--release", "-p", "pyspy-ebpf", "--lib"]))?;
            }
            run(cargo(&root)
                .args(["test", "--release", "--no-fail-fast"])
                .args(args)
                .env("PYTRACE_BIN", root.join("target/release/pytrace")))
        }
        Task::Bench { args } => {
            build(&root)?;
            run(Command::new("bash")
                .arg(root.join("bench/run.sh"))
                .args(args)
                .env("PYTRACE_BIN", root.join("target/release/pytrace")))
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root);
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn setup() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF programs")?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        run(Command::new("cargo").args([
            &format!("+{NIGHTLY}"),
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
        ]))?;
    }
    Ok(())
}

/// Installs what the tests open profile files with (idempotent): Debian's `golang-go` for `go
/// tool pprof`, and the npm package `speedscope` (for its file-format schema) unpacked under
/// `target/test-tools/`. A failure is only reported: the tests that need the tool then fail and
/// say which tool is missing.
fn test_tools(root: &Path) {
    if output(Command::new("go").arg("version")).is_none() {
        let installed = run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| {
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "golang-go"])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        });
        if let Err(e) = installed {
            eprintln!("xtask: cannot install golang-go (go tool pprof): {e:#}");
        }
    }
    let dir = root.join(format!("target/test-tools/speedscope-{SPEEDSCOPE_VERSION}"));
    if !dir.join(SPEEDSCOPE_SCHEMA).exists() {
        let tarball = format!("speedscope-{SPEEDSCOPE_VERSION}.tgz");
        let fetched = std::fs::create_dir_all(&dir)
            .context("cannot create target/test-tools")
            .and_then(|()| {
                run(Command::new("npm")
                    .args([
                        "pack",
                        "--silent",
                        &format!("speedscope@{SPEEDSCOPE_VERSION}"),
                    ])
                    .current_dir(&dir))
            })
            .and_then(|()| {
                run(Command::new("tar")
                    .args(["xzf", &tarball])
                    .current_dir(&dir))
            });
        if let Err(e) = fetched {
            eprintln!("xtask: cannot fetch the npm package speedscope: {e:#}");
        }
    }
}

/// Where speedscope's npm package keeps its schema.
const SPEEDSCOPE_SCHEMA: &str = "package/dist/release/file-format-schema.json";

fn build(root: &Path) -> Result<()> {
    setup()?;
    run(cargo(root).args(["build", "--release", "--package", "pyspy-user"]))
}
