//! CPython version numbers: `PY_VERSION_HEX`, `PY_VERSION` strings, interpreter file names, and
//! the version evidence left in an interpreter's read-only data.

/// `PY_RELEASE_LEVEL_FINAL`.
pub const LEVEL_FINAL: u8 = 0xF;

/// A CPython version as encoded in `PY_VERSION_HEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
    /// 0xA alpha, 0xB beta, 0xC release candidate, 0xF final.
    pub level: u8,
    pub serial: u8,
}

impl Version {
    pub fn new(major: u8, minor: u8, micro: u8) -> Self {
        Version {
            major,
            minor,
            micro,
            level: LEVEL_FINAL,
            serial: 0,
        }
    }

    pub fn from_hex(hex: u32) -> Self {
        Version {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            micro: (hex >> 8) as u8,
            level: ((hex >> 4) & 0xF) as u8,
            serial: (hex & 0xF) as u8,
        }
    }

    pub fn hex(&self) -> u32 {
        (self.major as u32) << 24
            | (self.minor as u32) << 16
            | (self.micro as u32) << 8
            | ((self.level & 0xF) as u32) << 4
            | (self.serial & 0xF) as u32
    }

    pub fn triple(&self) -> (u8, u8, u8) {
        (self.major, self.minor, self.micro)
    }

    /// `3.12.1`, `3.13.0rc2`.
    pub fn display(&self) -> String {
        let base = format!("{}.{}.{}", self.major, self.minor, self.micro);
        match self.level {
            0xA => format!("{base}a{}", self.serial),
            0xB => format!("{base}b{}", self.serial),
            0xC => format!("{base}rc{}", self.serial),
            _ => base,
        }
    }
}

/// Parse a `PY_VERSION` string: `3.9.18`, `3.13.0rc2`, `3.12.0a7+`. The whole input must match.
pub fn parse_version_string(s: &[u8]) -> Option<Version> {
    let (major, rest) = take_number(s)?;
    let rest = rest.strip_prefix(b".")?;
    let (minor, rest) = take_number(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (micro, mut rest) = take_number(rest)?;
    let mut v = Version::new(major, minor, micro);
    for (tag, level) in [(&b"rc"[..], 0xC), (b"a", 0xA), (b"b", 0xB)] {
        if let Some(after) = rest.strip_prefix(tag) {
            let (serial, after) = take_number(after)?;
            v.level = level;
            v.serial = serial;
            rest = after;
            break;
        }
    }
    let rest = rest.strip_prefix(b"+").unwrap_or(rest);
    rest.is_empty().then_some(v)
}

/// Leading decimal number of at most three digits that fits in a `u8`.
fn take_number(s: &[u8]) -> Option<(u8, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 3 {
        return None;
    }
    let value: u8 = std::str::from_utf8(&s[..n]).ok()?.parse().ok()?;
    Some((value, &s[n..]))
}

/// `(major, minor)` from `libpython3.9.so.1.0`, `libpython3.6m.so`, `libpython3.13t.so.1.0`.
/// `libpython3.so` (the stable-ABI forwarder) does not name a minor and gives `None`.
pub fn from_library_name(name: &[u8]) -> Option<(u8, u8)> {
    let rest = name.strip_prefix(b"libpython")?;
    let (major, minor, rest) = major_minor(rest)?;
    let rest = skip_abi_flags(rest);
    rest.starts_with(b".so").then_some((major, minor))
}

/// `(major, minor)` from `python3.11`, `python3.6m`, `python3.13t`, `python2.7`.
pub fn from_executable_name(name: &[u8]) -> Option<(u8, u8)> {
    let rest = name.strip_prefix(b"python")?;
    let (major, minor, rest) = major_minor(rest)?;
    skip_abi_flags(rest).is_empty().then_some((major, minor))
}

/// A file name that denotes a CPython executable (`python`, `python3`, `python3.12`,
/// `python3.13t`) or a versioned libpython.
pub fn is_interpreter_file_name(name: &[u8]) -> bool {
    if from_library_name(name).is_some() || from_executable_name(name).is_some() {
        return true;
    }
    match name.strip_prefix(b"python") {
        Some(rest) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            digits <= 1 && skip_abi_flags(&rest[digits..]).is_empty()
        }
        None => false,
    }
}

fn major_minor(s: &[u8]) -> Option<(u8, u8, &[u8])> {
    if s.len() < 3 || !s[0].is_ascii_digit() || s[1] != b'.' {
        return None;
    }
    let (minor, rest) = take_number(&s[2..])?;
    Some((s[0] - b'0', minor, rest))
}

/// Skip ABI flag letters (`d`, `m`, `t`, `u`) after the version in a file name.
fn skip_abi_flags(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b'd' | b'm' | b't' | b'u'))
        .count();
    &s[n..]
}

/// `(major, minor)` from the `sys.implementation.cache_tag` literal (`"cpython-313"`) that every
/// CPython 3.3+ binary keeps in its read-only data. `None` when absent or contradictory.
pub fn cache_tag_version(data: &[u8]) -> Option<(u8, u8)> {
    const NEEDLE: &[u8] = b"cpython-";
    let mut found: Option<(u8, u8)> = None;
    for pos in memchr::memmem::find_iter(data, NEEDLE) {
        let tail = &data[pos + NEEDLE.len()..];
        let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(2..=4).contains(&digits) || tail.get(digits) != Some(&0) {
            continue;
        }
        let major = tail[0] - b'0';
        let Ok(minor) = std::str::from_utf8(&tail[1..digits])
            .unwrap_or("")
            .parse::<u8>()
        else {
            continue;
        };
        match found {
            None => found = Some((major, minor)),
            Some(prev) if prev != (major, minor) => return None,
            Some(_) => {}
        }
    }
    found
}

/// Find the `PY_VERSION` literal for a known `major.minor` in read-only data: a NUL-terminated
/// `"3.9.18"` (possibly the tail of a longer string, as linkers merge string suffixes, e.g. into
/// the install prefix `"/usr/local/3.9.18"`). The most frequent candidate wins; ties go to the
/// first one found.
pub fn scan_version_string(data: &[u8], major: u8, minor: u8) -> Option<Version> {
    pick_version_string(&version_strings(data), major, minor)
}

/// Every `PY_VERSION`-like literal in read-only data, whatever its `major.minor`, with its number
/// of occurrences, in order of first occurrence: the candidates [`scan_version_string`] weighs,
/// collected once for all versions so that the choice can be made later with
/// [`pick_version_string`].
///
/// A candidate starts at a digit not preceded by a digit or a dot, ends at a NUL byte within 24
/// bytes, parses as a whole with [`parse_version_string`], and spells its `major.minor.` prefix
/// canonically (no leading zeros).
pub fn version_strings(data: &[u8]) -> Vec<(Version, usize)> {
    let mut candidates: Vec<(Version, usize)> = Vec::new();
    // A candidate's first non-digit is the dot after its major number: each dot is looked at
    // once, and the digits just before it give where the candidate would start.
    for dot in memchr::memchr_iter(b'.', data) {
        let digits = data[..dot]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let pos = dot - digits;
        if digits == 0 || (pos > 0 && data[pos - 1] == b'.') {
            continue;
        }
        let tail = &data[pos..];
        let Some(len) = tail.iter().take(24).position(|&b| b == 0) else {
            continue;
        };
        let Some(v) = parse_version_string(&tail[..len]) else {
            continue;
        };
        if !tail.starts_with(format!("{}.{}.", v.major, v.minor).as_bytes()) {
            continue;
        }
        match candidates.iter_mut().find(|(c, _)| *c == v) {
            Some((_, n)) => *n += 1,
            None => candidates.push((v, 1)),
        }
    }
    candidates
}

/// The `major.minor.*` candidate of [`version_strings`] with the most occurrences, ties going to
/// the first one found.
pub fn pick_version_string(
    candidates: &[(Version, usize)],
    major: u8,
    minor: u8,
) -> Option<Version> {
    let matching = || {
        candidates
            .iter()
            .filter(move |(v, _)| v.major == major && v.minor == minor)
    };
    let best = matching().map(|(_, n)| *n).max()?;
    matching().find(|(_, n)| *n == best).map(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let v = Version::from_hex(0x030d00f0);
        assert_eq!(v.triple(), (3, 13, 0));
        assert_eq!(v.level, LEVEL_FINAL);
        assert_eq!(v.hex(), 0x030d00f0);
        assert_eq!(Version::new(3, 9, 18).hex(), 0x030912f0);
        assert_eq!(Version::from_hex(0x030d00c2).display(), "3.13.0rc2");
    }

    #[test]
    fn version_strings() {
        assert_eq!(
            parse_version_string(b"3.9.18"),
            Some(Version::new(3, 9, 18))
        );
        let rc = parse_version_string(b"3.13.0rc2").unwrap();
        assert_eq!((rc.level, rc.serial), (0xC, 2));
        let a = parse_version_string(b"3.12.0a7+").unwrap();
        assert_eq!((a.level, a.serial), (0xA, 7));
        assert_eq!(parse_version_string(b"3.9"), None);
        assert_eq!(parse_version_string(b"3.9.18 (main"), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(from_library_name(b"libpython3.9.so.1.0"), Some((3, 9)));
        assert_eq!(from_library_name(b"libpython3.6m.so.1.0"), Some((3, 6)));
        assert_eq!(from_library_name(b"libpython3.13t.so"), Some((3, 13)));
        assert_eq!(from_library_name(b"libpython2.7.so.1.0"), Some((2, 7)));
        assert_eq!(from_library_name(b"libpython3.so"), None);
        assert_eq!(from_executable_name(b"python3.11"), Some((3, 11)));
        assert_eq!(from_executable_name(b"python3.6m"), Some((3, 6)));
        assert_eq!(from_executable_name(b"python3"), None);
        assert_eq!(from_executable_name(b"python3.11-config"), None);
        assert!(is_interpreter_file_name(b"python"));
        assert!(is_interpreter_file_name(b"python3"));
        assert!(is_interpreter_file_name(b"python3.12"));
        assert!(is_interpreter_file_name(b"libpython3.12.so.1.0"));
        assert!(!is_interpreter_file_name(b"libpython3.so"));
        assert!(!is_interpreter_file_name(b"python3.11-config"));
        assert!(!is_interpreter_file_name(b"sleep"));
    }

    #[test]
    fn rodata_scans() {
        let data = b"\0x\0cpython-39\0/root/.pyenv/versions/3.9.18\0SRE 2.2.2 \0 3.2.0\0a13.9.1\0";
        assert_eq!(cache_tag_version(data), Some((3, 9)));
        assert_eq!(
            scan_version_string(data, 3, 9),
            Some(Version::new(3, 9, 18))
        );
        assert_eq!(scan_version_string(data, 3, 2), Some(Version::new(3, 2, 0)));
        assert_eq!(scan_version_string(data, 3, 8), None);
        assert_eq!(cache_tag_version(b"cpython-39\0cpython-310\0"), None);
    }

    #[test]
    fn candidates_for_every_minor() {
        let data = b"3.9.1\0x3.9.18\0/opt/3.9.18\x00013.9.2\x003.09.5\0a.3.9.7\0\
            2.7.18+\0 3.9.18rc1\x003.10.0\0cpython-39\0";
        let all = super::version_strings(data);
        assert_eq!(
            all.iter()
                .map(|(v, n)| (v.display(), *n))
                .collect::<Vec<_>>(),
            vec![
                ("3.9.1".to_owned(), 1),
                ("3.9.18".to_owned(), 2),
                ("2.7.18".to_owned(), 1),
                ("3.9.18rc1".to_owned(), 1),
                ("3.10.0".to_owned(), 1),
            ]
        );
        assert_eq!(
            pick_version_string(&all, 3, 9),
            Some(Version::new(3, 9, 18))
        );
        assert_eq!(
            pick_version_string(&all, 2, 7),
            Some(Version::new(2, 7, 18))
        );
        assert_eq!(
            pick_version_string(&all, 3, 10),
            Some(Version::new(3, 10, 0))
        );
        assert_eq!(pick_version_string(&all, 3, 11), None);
        let tie = super::version_strings(b"3.8.2\x003.8.1\x003.8.1\x003.8.2\0");
        assert_eq!(pick_version_string(&tie, 3, 8), Some(Version::new(3, 8, 2)));
    }
}
