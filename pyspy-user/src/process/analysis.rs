//! What an interpreter file says about itself, independently of any process that maps it.
//!
//! [`analyse`] reads an ELF file once: whether it is CPython, the version evidence it holds, the
//! link-time address of its runtime state and its `PT_LOAD` segments. The result is cached per
//! file by [`Inspector`](super::inspect::Inspector); turning it into a process description only
//! needs the process's file names (a fallback for the version) and mappings (for the load bias).
//!
//! A file is CPython when it defines `Py_GetVersion`, `Py_Version` or `_PyRuntime`, or has a
//! `.PyRuntime` section.
//!
//! Version: `Py_Version` (3.11+, read from the file) is exact. Otherwise `major.minor` comes from
//! the `"cpython-3X"` cache tag in `.rodata` (3.3+), else the file name, and the micro from the
//! `PY_VERSION` literal in `.rodata`. 2.x is recognised by its name or its `Py_InitModule4_64`
//! symbol.
//!
//! Runtime: `_PyRuntime` (3.7+) from the symbol tables, the `.PyRuntime` section, or (3.13+) the
//! `xdebugpy` cookie; `interp_head` (3.6) from `.symtab`.

use std::io;

use super::elf::{ElfImage, LoadSegment, RuntimeSource, DEBUG_COOKIE};
use super::version::{self, Version};

/// The file-level findings about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAnalysis {
    /// Not a 64-bit ELF file.
    NotElf,
    /// An ELF file without CPython in it.
    NotPython,
    Python(PythonFile),
}

/// A CPython interpreter file (libpython or a statically linked executable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonFile {
    /// `Py_Version`, when present and of major version 3.
    pub py_version: Option<Version>,
    /// Defines `Py_InitModule4_64` (2.x).
    pub python2: bool,
    /// `major.minor` of the `"cpython-3X"` cache tag in the read-only data.
    pub cache_tag: Option<(u8, u8)>,
    /// `PY_VERSION` candidates of the read-only data ([`version::version_strings`]).
    pub version_strings: Vec<(Version, usize)>,
    /// Link-time address of `_PyRuntime` and how it was found. [`RuntimeSource::Cookie`] only
    /// when there is neither symbol nor section.
    pub runtime: Option<(u64, RuntimeSource)>,
    /// Link-time address of `interp_head` (3.6).
    pub interp_head: Option<u64>,
    /// `PT_LOAD` segments, for the load bias.
    pub segments: Vec<LoadSegment>,
}

/// A version and whether its micro is known (from `Py_Version` or a version string) rather than
/// assumed 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundVersion {
    pub version: Version,
    pub exact: bool,
}

impl PythonFile {
    /// The interpreter version. `name_version` is the `major.minor` the process's file names
    /// suggest (the file's own name, else the executable's); it only matters for files without
    /// `Py_Version` nor cache tag, and for 2.x. `0.0.0` when nothing tells (before 3.3).
    pub fn version(&self, name_version: Option<(u8, u8)>) -> FoundVersion {
        if let Some(v) = self.py_version {
            return FoundVersion {
                version: v,
                exact: true,
            };
        }
        let major_minor = if self.python2 {
            Some(name_version.filter(|v| v.0 == 2).unwrap_or((2, 7)))
        } else {
            self.cache_tag.or(name_version)
        };
        let Some((major, minor)) = major_minor else {
            return FoundVersion {
                version: Version::new(0, 0, 0),
                exact: false,
            };
        };
        match version::pick_version_string(&self.version_strings, major, minor) {
            Some(v) => FoundVersion {
                version: v,
                exact: true,
            },
            None => FoundVersion {
                version: Version::new(major, minor, 0),
                exact: false,
            },
        }
    }

    /// Link-time address of the runtime state a `major.minor` interpreter of this file uses:
    /// `_PyRuntime` for 3.7+ (the cookie only counts for 3.13+), `interp_head` for 3.6.
    pub fn runtime_link_address(&self, major: u8, minor: u8) -> Option<u64> {
        if (major, minor) < (3, 7) {
            return self.interp_head;
        }
        match self.runtime? {
            (_, RuntimeSource::Cookie) if (major, minor) < (3, 13) => None,
            (addr, _) => Some(addr),
        }
    }
}

/// Read everything the inspection needs from an ELF file.
pub fn analyse(image: &ElfImage) -> io::Result<FileAnalysis> {
    let symbols = image.symbol_addresses(&[
        "Py_GetVersion",
        "Py_Version",
        "_PyRuntime",
        "Py_InitModule4_64",
        "interp_head",
    ])?;
    let (get_version, py_version, runtime_symbol, init_module2, interp_head) =
        (symbols[0], symbols[1], symbols[2], symbols[3], symbols[4]);
    let runtime_section = image.section_address(".PyRuntime")?;
    if get_version.is_none()
        && py_version.is_none()
        && runtime_symbol.is_none()
        && runtime_section.is_none()
    {
        return Ok(FileAnalysis::NotPython);
    }

    let py_version = match py_version {
        Some(addr) => image
            .read_u64_at(addr)?
            .map(|hex| Version::from_hex(hex as u32))
            .filter(|v| v.major == 3),
        None => None,
    };
    let (cache_tag, version_strings) = if py_version.is_none() {
        let rodata = image.read_only_data()?;
        (
            version::cache_tag_version(&rodata),
            version::version_strings(&rodata),
        )
    } else {
        (None, Vec::new())
    };

    let runtime = match (runtime_symbol, runtime_section) {
        (Some(addr), _) => Some((addr, RuntimeSource::Symbol)),
        (None, Some(addr)) => Some((addr, RuntimeSource::Section)),
        (None, None) => image
            .find_cookie(DEBUG_COOKIE)?
            .map(|addr| (addr, RuntimeSource::Cookie)),
    };

    Ok(FileAnalysis::Python(PythonFile {
        py_version,
        python2: init_module2.is_some(),
        cache_tag,
        version_strings,
        runtime,
        interp_head,
        segments: image.load_segments()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PythonFile {
        PythonFile {
            py_version: None,
            python2: false,
            cache_tag: None,
            version_strings: vec![
                (Version::new(3, 9, 18), 2),
                (Version::new(2, 7, 18), 1),
                (Version::new(3, 8, 1), 1),
            ],
            runtime: Some((0x1000, RuntimeSource::Symbol)),
            interp_head: Some(0x2000),
            segments: Vec::new(),
        }
    }

    #[test]
    fn version_from_evidence() {
        let exact = |v: Version| FoundVersion {
            version: v,
            exact: true,
        };
        let mut f = file();
        assert_eq!(f.version(Some((3, 8))), exact(Version::new(3, 8, 1)));
        assert_eq!(
            f.version(Some((3, 5))),
            FoundVersion {
                version: Version::new(3, 5, 0),
                exact: false
            }
        );
        assert_eq!(f.version(None).version.major, 0);
        f.cache_tag = Some((3, 9));
        assert_eq!(f.version(Some((3, 8))), exact(Version::new(3, 9, 18)));
        f.python2 = true;
        assert_eq!(f.version(Some((3, 8))), exact(Version::new(2, 7, 18)));
        f.py_version = Some(Version::from_hex(0x030b07f0));
        assert_eq!(f.version(None), exact(Version::from_hex(0x030b07f0)));
    }

    #[test]
    fn runtime_by_version() {
        let mut f = file();
        assert_eq!(f.runtime_link_address(3, 6), Some(0x2000));
        assert_eq!(f.runtime_link_address(3, 7), Some(0x1000));
        f.runtime = Some((0x3000, RuntimeSource::Cookie));
        assert_eq!(f.runtime_link_address(3, 12), None);
        assert_eq!(f.runtime_link_address(3, 13), Some(0x3000));
        f.interp_head = None;
        assert_eq!(f.runtime_link_address(3, 6), None);
    }
}
