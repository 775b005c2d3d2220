//! Parser for `/proc/PID/maps`.
//!
//! Each line reads `start-end perms offset major:minor inode   path`. The path is optional, may
//! contain spaces, has newlines escaped by the kernel as `\012`, and carries a ` (deleted)` suffix
//! when the mapped file has been unlinked. Paths are kept as raw bytes (`PathBuf` through
//! `OsStrExt`) since file names need not be UTF-8.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// File offset of `start` for file-backed mappings.
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// Path as printed by the kernel, without the ` (deleted)` suffix. `None` for anonymous
    /// mappings; pseudo entries keep their name (`Some("[heap]")`).
    pub path: Option<PathBuf>,
    /// The mapped file was unlinked (` (deleted)` suffix).
    pub deleted: bool,
}

impl Mapping {
    /// Backed by a file (not anonymous, not `[heap]`, `[stack]`, `[vdso]`, …).
    pub fn is_file(&self) -> bool {
        self.inode != 0
            && self
                .path
                .as_deref()
                .is_some_and(|p| p.as_os_str().as_bytes().starts_with(b"/"))
    }

    /// The file name of the mapped path, if any.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.path
            .as_deref()
            .and_then(Path::file_name)
            .map(OsStr::as_bytes)
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// Parse the whole content of a maps file. Malformed lines are skipped.
pub fn parse_maps(content: &[u8]) -> Vec<Mapping> {
    content
        .split(|&b| b == b'\n')
        .filter_map(parse_line)
        .collect()
}

/// Parse one line of a maps file.
pub fn parse_line(line: &[u8]) -> Option<Mapping> {
    let mut rest = line;
    let range = next_field(&mut rest)?;
    let perms = next_field(&mut rest)?;
    let offset = next_field(&mut rest)?;
    let dev = next_field(&mut rest)?;
    let inode = next_field(&mut rest)?;

    let dash = range.iter().position(|&b| b == b'-')?;
    let start = parse_hex(&range[..dash])?;
    let end = parse_hex(&range[dash + 1..])?;
    let colon = dev.iter().position(|&b| b == b':')?;
    let dev_major = u32::try_from(parse_hex(&dev[..colon])?).ok()?;
    let dev_minor = u32::try_from(parse_hex(&dev[colon + 1..])?).ok()?;
    if perms.len() < 3 {
        return None;
    }

    let raw_path = trim_start(rest);
    let (path, deleted) = if raw_path.is_empty() {
        (None, false)
    } else if let Some(stripped) = raw_path.strip_suffix(DELETED_SUFFIX) {
        (Some(unescape(stripped)), true)
    } else {
        (Some(unescape(raw_path)), false)
    };

    Some(Mapping {
        start,
        end,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        offset: parse_hex(offset)?,
        dev_major,
        dev_minor,
        inode: std::str::from_utf8(inode).ok()?.parse().ok()?,
        path: path.map(|p| PathBuf::from(OsStr::from_bytes(&p))),
        deleted,
    })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Take the next space-separated field from `rest`, advancing it past the field.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let s = trim_start(rest);
    let len = s
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(s.len());
    if len == 0 {
        return None;
    }
    *rest = &s[len..];
    Some(&s[..len])
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// Undo the kernel's `\ooo` octal escaping (used for `\n` in paths).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 3 < s.len()
            && s[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (s[i + 1] - b'0') as u32 * 64
                + (s[i + 2] - b'0') as u32 * 8
                + (s[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anon_pseudo_deleted_and_spaces() {
        let text = b"\
55d0c8a00000-55d0c8a01000 r--p 00000000 fd:01 1234                       /usr/bin/python3.11
7f1b2c000000-7f1b2c021000 rw-p 00000000 00:00 0 
7ffd4a1e0000-7ffd4a201000 rw-p 00000000 00:00 0                          [stack]
7f1b2d000000-7f1b2d100000 r-xp 0001f000 08:02 99 /opt/my dir/libpython3.12.so.1.0 (deleted)
7f1b2e000000-7f1b2e001000 r--p 00002000 08:02 77 /tmp/a\\012b
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].start, 0x55d0c8a00000);
        assert_eq!(
            maps[0].path.as_deref(),
            Some(Path::new("/usr/bin/python3.11"))
        );
        assert!(maps[0].is_file() && maps[0].readable && !maps[0].writable);
        assert_eq!(
            (maps[0].dev_major, maps[0].dev_minor, maps[0].inode),
            (0xfd, 1, 1234)
        );
        assert_eq!(maps[1].path, None);
        assert!(!maps[1].is_file());
        assert_eq!(maps[2].path.as_deref(), Some(Path::new("[stack]")));
        assert!(!maps[2].is_file());
        assert!(maps[3].deleted && maps[3].executable);
        assert_eq!(maps[3].offset, 0x1f000);
        assert_eq!(
            maps[3].path.as_deref(),
            Some(Path::new("/opt/my dir/libpython3.12.so.1.0"))
        );
        assert_eq!(maps[3].file_name(), Some(&b"libpython3.12.so.1.0"[..]));
        assert_eq!(maps[4].path.as_deref(), Some(Path::new("/tmp/a\nb")));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"zzzz-1 r--p 0 00:00 0").is_none());
        assert!(parse_line(b"1000-2000 r--p").is_none());
    }
}
