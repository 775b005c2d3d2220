//! `_PyRuntime` fallbacks, on crafted copies of pyenv's libpython3.13:
//! - `_PyRuntime` renamed in `.dynstr` and `.strtab` (`objcopy --strip-symbol` only edits
//!   `.symtab`, never `.dynsym`): found through the `.PyRuntime` section. The new name,
//!   `_PyRuntinD`, has the same GNU hash (djb2: 'm'·33 + 'e' = 'n'·33 + 'D'), so the library's
//!   own relocations against the symbol still resolve and the copy stays loadable;
//! - section headers removed as well: found through the `xdebugpy` cookie in the writable
//!   `PT_LOAD` segment, with `Py_Version` read through the `PT_DYNAMIC` symbol table.
//!
//! The last copy also runs as the library of a live python3.13 (through `LD_LIBRARY_PATH`), and
//! is then unlinked to exercise `/proc/PID/map_files`. A 3.6 libpython whose `.symtab` lost
//! `interp_head` gives `NoRuntime`.

mod common;

use std::path::{Path, PathBuf};

use common::{pyenv_prefix, pyenv_python, read_u64, TempDir};
use object::{Object, ObjectSection};
use pytrace::process::elf::{ElfImage, RuntimeSource};
use pytrace::process::{self, version};

const VERSION: &str = "3.13.0";
const LIB_NAME: &str = "libpython3.13.so.1.0";

fn original() -> Option<PathBuf> {
    let path = pyenv_prefix(VERSION).join("lib").join(LIB_NAME);
    common::present_or_skip(&path).then_some(path)
}

/// Rename `_PyRuntime` to `_PyRuntinD` (same GNU hash) in the dynamic and static string tables.
fn rename_runtime_symbol(data: &mut [u8]) -> usize {
    let djb2 = |s: &[u8]| {
        s.iter()
            .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
    };
    assert_eq!(djb2(b"_PyRuntime"), djb2(b"_PyRuntinD"));
    rename_symbol(data, b"_PyRuntime", b"_PyRuntinD")
}

/// Rename a symbol in `.dynstr` and `.strtab` (names of equal length); returns the number of
/// strings changed.
fn rename_symbol(data: &mut [u8], old: &[u8], new: &[u8]) -> usize {
    assert_eq!(old.len(), new.len());
    let ranges: Vec<(usize, usize)> = {
        let file = object::File::parse(&*data).unwrap();
        [".dynstr", ".strtab"]
            .iter()
            .filter_map(|name| file.section_by_name(name)?.file_range())
            .map(|(off, size)| (off as usize, (off + size) as usize))
            .collect()
    };
    let n = old.len();
    let mut patched = 0;
    for (start, end) in ranges {
        let table = &mut data[start..end];
        for i in 1..table.len().saturating_sub(n) {
            if table[i - 1] == 0 && &table[i..i + n] == old && table[i + n] == 0 {
                table[i..i + n].copy_from_slice(new);
                patched += 1;
            }
        }
    }
    patched
}

/// Remove the section header table reference from the ELF header.
fn drop_section_headers(data: &mut [u8]) {
    data[0x28..0x30].fill(0); // e_shoff
    data[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn runtime_found_without_symbol_and_without_sections() {
    let Some(orig_path) = original() else { return };
    let tmp = TempDir::new("elf-fallback");
    let orig = ElfImage::open(&orig_path).unwrap();
    let (runtime, source) = orig.find_runtime(true).unwrap().unwrap();
    assert_eq!(source, RuntimeSource::Symbol);
    let py_version = orig.symbol_address("Py_Version").unwrap().unwrap();

    let mut data = std::fs::read(&orig_path).unwrap();
    assert!(rename_runtime_symbol(&mut data) >= 1);
    let renamed = ElfImage::open(&write(&tmp.0, "renamed.so", &data)).unwrap();
    assert_eq!(
        renamed.symbol_address("_PyRuntime").unwrap(),
        None,
        "_PyRuntime still visible"
    );
    assert_eq!(
        renamed.find_runtime(true).unwrap(),
        Some((runtime, RuntimeSource::Section))
    );

    drop_section_headers(&mut data);
    let bare = ElfImage::open(&write(&tmp.0, "bare.so", &data)).unwrap();
    assert_eq!(bare.section_address(".PyRuntime").unwrap(), None);
    assert_eq!(bare.symbol_address("_PyRuntime").unwrap(), None);
    assert_eq!(bare.find_runtime(false).unwrap(), None);
    assert_eq!(
        bare.find_runtime(true).unwrap(),
        Some((runtime, RuntimeSource::Cookie))
    );
    assert_eq!(
        bare.symbol_address("Py_Version").unwrap(),
        Some(py_version),
        "PT_DYNAMIC lookup"
    );
    assert_eq!(bare.read_u64_at(py_version).unwrap(), Some(0x030d00f0));
    let rodata = bare.read_only_data().unwrap();
    assert_eq!(version::cache_tag_version(&rodata), Some((3, 13)));
    assert_eq!(
        version::scan_version_string(&rodata, 3, 13).map(|v| v.triple()),
        Some((3, 13, 0))
    );
}

/// Follow `_Py_DebugOffsets` (3.13.0 layout) from the runtime to the first thread state and
/// back to its interpreter.
fn check_debug_offsets_chain(pid: u32, runtime: u64) {
    let mut cookie = [0u8; 8];
    process::read_memory(pid, runtime, &mut cookie).unwrap();
    assert_eq!(&cookie, b"xdebugpy");
    assert_eq!(read_u64(pid, runtime + 8), 0x030d00f0);
    let interp = read_u64(pid, runtime + read_u64(pid, runtime + 40));
    let tstate = read_u64(pid, interp + read_u64(pid, runtime + 72));
    assert_ne!(tstate, 0);
    assert_eq!(
        read_u64(pid, tstate + read_u64(pid, runtime + 176)),
        interp,
        "tstate->interp"
    );
}

#[test]
fn live_process_with_crafted_library() {
    let Some(orig_path) = original() else { return };
    let tmp = TempDir::new("elf-fallback-live");
    let mut data = std::fs::read(&orig_path).unwrap();
    rename_runtime_symbol(&mut data);
    drop_section_headers(&mut data);
    let lib = write(&tmp.0, LIB_NAME, &data);
    let link_runtime = ElfImage::open(&orig_path)
        .unwrap()
        .symbol_address("_PyRuntime")
        .unwrap()
        .unwrap();

    let target = common::python_ready(pyenv_python(VERSION), Some(&tmp.0));
    let pid = target.pid();

    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let base_line = maps
        .lines()
        .find(|l| {
            l.ends_with(lib.to_str().unwrap()) && l.split_whitespace().nth(2) == Some("00000000")
        })
        .expect("crafted library not mapped");
    let base = u64::from_str_radix(base_line.split('-').next().unwrap(), 16).unwrap();

    let p = process::inspect(pid).unwrap();
    assert_eq!(p.binary, lib);
    assert_eq!(p.version, (3, 13, 0));
    assert_eq!(p.version_hex, 0x030d00f0);
    assert_eq!(p.runtime_addr, Some(base + link_runtime));
    check_debug_offsets_chain(pid, p.runtime_addr.unwrap());

    std::fs::remove_file(&lib).unwrap();
    let p = process::inspect(pid).unwrap();
    assert!(
        p.binary.starts_with(format!("/proc/{pid}/map_files")),
        "{}",
        p.binary.display()
    );
    assert_eq!(p.runtime_addr, Some(base + link_runtime));
}

#[test]
fn python36_without_interp_head_symbol_has_no_runtime() {
    let orig_path = pyenv_prefix("3.6.15").join("lib/libpython3.6m.so.1.0");
    if !common::present_or_skip(&orig_path) {
        return;
    }
    let tmp = TempDir::new("elf-fallback-36");
    let mut data = std::fs::read(&orig_path).unwrap();
    assert_eq!(rename_symbol(&mut data, b"interp_head", b"interp_heaX"), 1);
    let lib = write(&tmp.0, "libpython3.6m.so.1.0", &data);
    assert_eq!(
        ElfImage::open(&lib)
            .unwrap()
            .symbol_address("interp_head")
            .unwrap(),
        None
    );

    let target = common::python_ready(pyenv_python("3.6.15"), Some(&tmp.0));
    match process::inspect(target.pid()) {
        Err(process::InspectError::NoRuntime { pid, binary }) => {
            assert_eq!(pid, target.pid());
            assert_eq!(binary, lib);
        }
        other => panic!("expected NoRuntime, got {other:?}"),
    }
}
