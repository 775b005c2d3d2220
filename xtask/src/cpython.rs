//! Test interpreters that pyenv cannot build here: CPython 3.14 and 3.15 from Debian's `sid`
//! suite, unpacked under [`ROOT`] with a private apt state (own sources list, lists, cache and
//! an empty dpkg status), so the host's apt configuration is never touched. Signatures are
//! checked against the host's `debian-archive-keyring`.
//!
//! Each version `3.X` gets a prefix `ROOT/3.X` (Debian's `usr/`), with:
//! - `bin/python3.X`: Debian's interpreter, libpython linked in statically, its dynamic
//!   loader and rpath pointed at the prefix's own glibc (sid's; the host's is too old);
//! - `bin/python3.X-shared`: a two-line `Py_BytesMain` launcher linked against the prefix's
//!   `libpython3.X.so.1.0`, for the shared-libpython case.
//!
//! Idempotent: a complete prefix carries a stamp naming its packages; nothing is done when it
//! is present. A prefix is built in a scratch directory and renamed into place.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{output, run};

/// Where the prefixes and the private apt state live.
pub const ROOT: &str = "/opt/pytrace-cpython";
/// The minor versions installed, with the Debian package version they are pinned to.
pub const VERSIONS: &[(&str, &str)] = &[("3.14", "3.14.10-1"), ("3.15", "3.15.2-1")];
/// The packages of one version (`{}` is `3.X`).
const PYTHON_PACKAGES: &[&str] = &[
    "python{}-minimal",
    "libpython{}-minimal",
    "libpython{}-stdlib",
    "python{}",
    "libpython{}",
    "libpython{}-dev",
    "python{}-dev",
];
/// sid's libraries the interpreter needs newer than the host's: glibc (GLIBC_2.38/2.42),
/// expat (`XML_GetCurrentLineNumber64`), OpenSSL 3.2+, zstd.
const RUNTIME_PACKAGES: &[&str] = &["libc6", "libexpat1", "libssl3t64", "libzstd1"];
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const HOST_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const MULTIARCH: &str = "lib/x86_64-linux-gnu";
const STAMP: &str = ".pytrace-complete";
/// Bumped whenever the prefix's layout below changes: an older prefix is installed again.
const LAYOUT_REVISION: u32 = 2;
const LAUNCHER: &str = "extern int Py_BytesMain(int, char **);\n\
int main(int argc, char **argv) { return Py_BytesMain(argc, argv); }\n";

/// Installs every version in [`VERSIONS`] that is not complete yet.
pub fn install_all() -> Result<()> {
    let root = Path::new(ROOT);
    let missing: Vec<_> = VERSIONS
        .iter()
        .filter(|(minor, package)| !is_complete(&root.join(minor), package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    ensure_patchelf()?;
    let apt = PrivateApt::new(&root.join("apt"))?;
    apt.update()?;
    for (minor, package) in missing {
        eprintln!("xtask: installing CPython {minor} ({package}) from Debian sid under {ROOT}");
        install(&apt, root, minor, package)
            .with_context(|| format!("installing CPython {minor} from Debian sid"))?;
    }
    Ok(())
}

fn is_complete(prefix: &Path, package: &str) -> bool {
    fs::read_to_string(prefix.join(STAMP)).is_ok_and(|s| s.trim() == stamp(package))
}

fn stamp(package: &str) -> String {
    format!("{package} layout {LAYOUT_REVISION}")
}

fn ensure_patchelf() -> Result<()> {
    if output(Command::new("patchelf").arg("--version")).is_some() {
        return Ok(());
    }
    let install = || {
        run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "patchelf"]))
    };
    // A fresh machine may have no package lists yet.
    install().or_else(|_| {
        run(Command::new("apt-get").arg("update"))?;
        install()
    })
}

/// apt with its own configuration and state, all under one directory.
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(dir: &Path) -> Result<PrivateApt> {
        for sub in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "lists/partial",
            "cache/archives/partial",
            "debs",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let sources = format!(
            "deb [arch=amd64 signed-by={KEYRING}] {} sid main\n",
            host_mirror()
        );
        fs::write(dir.join("etc/sources.list"), sources)?;
        fs::write(dir.join("status"), "")?;
        Ok(PrivateApt {
            dir: dir.to_path_buf(),
        })
    }

    fn apt_get(&self) -> Command {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut c = Command::new("apt-get");
        c.args([
            "-q",
            "-o",
            "Acquire::Check-Valid-Until=false",
            "-o",
            "APT::Architecture=amd64",
        ])
        .args(["-o", "APT::Sandbox::User=root"])
        .arg("-o")
        .arg(format!("Dir::Etc::SourceList={}", d("etc/sources.list")))
        .arg("-o")
        .arg(format!("Dir::Etc::SourceParts={}", d("etc/sources.list.d")))
        .arg("-o")
        .arg(format!("Dir::Etc::Preferences={}", d("etc/preferences")))
        .arg("-o")
        .arg(format!(
            "Dir::Etc::PreferencesParts={}",
            d("etc/preferences.d")
        ))
        .arg("-o")
        .arg(format!("Dir::State::Lists={}", d("lists")))
        .arg("-o")
        .arg(format!("Dir::State::status={}", d("status")))
        .arg("-o")
        .arg(format!("Dir::Cache={}", d("cache")));
        c
    }

    fn update(&self) -> Result<()> {
        run(self.apt_get().arg("update"))
    }

    /// Downloads `packages` into a fresh directory and returns their `.deb` files.
    fn download(&self, into: &Path, packages: &[String]) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(into)?;
        run(self
            .apt_get()
            .current_dir(into)
            .arg("download")
            .args(packages))?;
        let mut debs: Vec<PathBuf> = fs::read_dir(into)?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        debs.sort();
        Ok(debs)
    }
}

/// The Debian URI of the host's own sources (not its security archive).
fn host_mirror() -> String {
    fs::read_to_string(HOST_SOURCES)
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("URIs:"))
                .flat_map(str::split_whitespace)
                .find(|uri| uri.trim_end_matches('/').ends_with("/debian"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

fn install(apt: &PrivateApt, root: &Path, minor: &str, package: &str) -> Result<()> {
    let scratch = root.join(format!(".{minor}.partial"));
    let _ = fs::remove_dir_all(&scratch);
    let packages: Vec<String> = PYTHON_PACKAGES
        .iter()
        .map(|p| format!("{}={package}", p.replace("{}", minor)))
        .chain(RUNTIME_PACKAGES.iter().map(|p| p.to_string()))
        .collect();
    let debs = apt.download(&scratch.join("debs"), &packages)?;
    let tree = scratch.join("tree");
    for deb in &debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree))?;
    }
    let staged = tree.join("usr");
    let prefix = root.join(minor);
    let lib = prefix.join(MULTIARCH);
    let loader = lib.join("ld-linux-x86-64.so.2");
    if !staged.join(MULTIARCH).join("ld-linux-x86-64.so.2").exists() {
        bail!("sid's libc6 has no {MULTIARCH}/ld-linux-x86-64.so.2");
    }
    // The absolute `sitecustomize.py -> /etc/python3.X/sitecustomize.py` link points outside
    // the prefix: replace it by a copy of its target.
    let site = staged.join(format!("lib/python{minor}/sitecustomize.py"));
    if fs::symlink_metadata(&site).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::read_link(&site)?;
        let inside = tree.join(target.strip_prefix("/").unwrap_or(&target));
        fs::remove_file(&site)?;
        if inside.is_file() {
            fs::copy(&inside, &site)?;
        }
    }
    // Debian's `python3.X/pyconfig.h` includes `<x86_64-linux-gnu/python3.X/pyconfig.h>`,
    // found under /usr/include; point it at the prefix's own copy.
    let include = staged.join(format!("include/python{minor}"));
    fs::write(
        include.join("pyconfig.h"),
        format!("#include \"../x86_64-linux-gnu/python{minor}/pyconfig.h\"\n"),
    )?;
    // Move the tree into place first: the paths patched in below are the final ones.
    let _ = fs::remove_dir_all(&prefix);
    fs::rename(&staged, &prefix)?;
    let python = prefix.join(format!("bin/python{minor}"));
    run(Command::new("patchelf")
        .arg("--set-interpreter")
        .arg(&loader)
        .arg("--force-rpath")
        .arg("--set-rpath")
        .arg(&lib)
        .arg(&python))?;
    build_launcher(&prefix, minor, &lib, &loader)?;
    // The launcher's `python3.X-shared-config` (what an embedder's build asks) is the
    // interpreter's: the same prefix, the same flags.
    std::os::unix::fs::symlink(
        format!("python{minor}-config"),
        prefix.join(format!("bin/python{minor}-shared-config")),
    )?;
    let check = format!("import sys; assert sys.version.startswith('{minor}.'), sys.version");
    for program in [
        python.clone(),
        prefix.join(format!("bin/python{minor}-shared")),
    ] {
        run(Command::new(&program).args(["-E", "-s", "-c", &check]))
            .with_context(|| format!("{} does not run", program.display()))?;
    }
    fs::write(prefix.join(STAMP), stamp(package))?;
    let _ = fs::remove_dir_all(&scratch);
    Ok(())
}

/// `bin/python3.X-shared`: `Py_BytesMain` from the prefix's `libpython3.X.so.1.0`. Linked by
/// the host's compiler with the prefix's loader and rpath; libpython's own references to
/// sid's glibc are left for run time.
fn build_launcher(prefix: &Path, minor: &str, lib: &Path, loader: &Path) -> Result<()> {
    let source = prefix.join("share/pytrace-launcher.c");
    fs::create_dir_all(source.parent().expect("has a parent"))?;
    fs::write(&source, LAUNCHER)?;
    run(Command::new("cc")
        .arg("-o")
        .arg(prefix.join(format!("bin/python{minor}-shared")))
        .arg(&source)
        .arg(lib.join(format!("libpython{minor}.so.1.0")))
        .arg("-Wl,--allow-shlib-undefined,--disable-new-dtags")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg(format!("-Wl,--dynamic-linker={}", loader.display())))
}
