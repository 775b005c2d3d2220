//! faulthandler's text format: parsing it, escaping strings the way it does, splitting
//! pytrace's text output into dumps, and showing the difference between two outputs.

use std::fmt::Write as _;

use crate::Result;

/// faulthandler writes at most this many code points of a string, then `...`.
pub const MAX_STRING_LENGTH: usize = 500;

/// One `  File "…", line N in name` line, strings as printed (escaped, maybe truncated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub file: String,
    pub line: Option<u32>,
    pub name: String,
}

/// One thread block of an all-threads dump.
#[derive(Clone, Debug, Default)]
pub struct ThreadDump {
    pub id: u64,
    pub current: bool,
    pub garbage_collecting: bool,
    pub frames: Vec<Frame>,
    /// The `  ...` line after the 100th frame.
    pub truncated: bool,
    pub no_python_frame: bool,
    /// The OS name 3.14+ writes as ` [name]` after the id (raw bytes, shown lossily here).
    pub name: Option<String>,
}

impl ThreadDump {
    pub fn names(&self) -> Vec<&str> {
        self.frames.iter().map(|f| f.name.as_str()).collect()
    }
}

/// A parsed `faulthandler.dump_traceback(all_threads=True)` text.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    pub threads: Vec<ThreadDump>,
    /// The final `...` line written after 100 thread blocks.
    pub more_threads: bool,
}

impl Dump {
    pub fn current(&self) -> Option<&ThreadDump> {
        self.threads.iter().find(|t| t.current)
    }
}

/// Parses faulthandler's all-threads text, rejecting anything outside its grammar.
pub fn parse_dump(text: &[u8]) -> Result<Dump> {
    // Everything faulthandler writes is ASCII except 3.14+'s thread names, raw OS bytes.
    let text = String::from_utf8_lossy(text);
    let text = text.as_ref();
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("text does not end with a newline: {:?}", tail(text)))?;
    let mut dump = Dump::default();
    let mut after_blank = false;
    for (index, line) in body.split('\n').enumerate() {
        let bad = |what: &str| format!("line {}: {what}: {line:?}", index + 1);
        if dump.more_threads {
            return Err(bad("text after the final `...`"));
        }
        let header = line
            .strip_prefix("Current thread 0x")
            .map(|rest| (true, rest))
            .or_else(|| line.strip_prefix("Thread 0x").map(|rest| (false, rest)));
        if let Some((current, rest)) = header {
            if !dump.threads.is_empty() && !after_blank {
                return Err(bad("thread header not preceded by an empty line"));
            }
            let digits = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            let Some(middle) = rest
                .get(digits..)
                .and_then(|r| r.strip_suffix(" (most recent call first):"))
                .filter(|_| digits == 16)
            else {
                return Err(bad("malformed thread header"));
            };
            let name = match middle {
                "" => None,
                _ => match middle.strip_prefix(" [").and_then(|m| m.strip_suffix(']')) {
                    Some(name) if !name.is_empty() => Some(name.to_string()),
                    _ => return Err(bad("malformed thread name")),
                },
            };
            let id = u64::from_str_radix(&rest[..digits], 16).map_err(|e| bad(&e.to_string()))?;
            dump.threads.push(ThreadDump {
                id,
                current,
                name,
                ..ThreadDump::default()
            });
            after_blank = false;
            continue;
        }
        if line.is_empty() {
            if after_blank || dump.threads.is_empty() {
                return Err(bad("unexpected empty line"));
            }
            after_blank = true;
            continue;
        }
        if line == "..." {
            if !after_blank {
                return Err(bad("`...` not preceded by an empty line"));
            }
            dump.more_threads = true;
            after_blank = false;
            continue;
        }
        if after_blank {
            return Err(bad(
                "an empty line must be followed by a thread header or `...`",
            ));
        }
        let thread = dump
            .threads
            .last_mut()
            .ok_or_else(|| bad("line before any thread header"))?;
        if thread.truncated || thread.no_python_frame {
            return Err(bad("line after the end of a thread block"));
        }
        if line == "  Garbage-collecting" {
            if !thread.current || !thread.frames.is_empty() || thread.garbage_collecting {
                return Err(bad("misplaced Garbage-collecting line"));
            }
            thread.garbage_collecting = true;
        } else if line == "  ..." {
            if thread.frames.len() != 100 {
                return Err(bad("`  ...` after fewer than 100 frames"));
            }
            thread.truncated = true;
        } else if line == "  <no Python frame>" || line == "<no Python frame>" {
            if !thread.frames.is_empty() {
                return Err(bad("<no Python frame> after frames"));
            }
            thread.no_python_frame = true;
        } else if let Some(rest) = line.strip_prefix("  File ") {
            thread
                .frames
                .push(parse_frame(rest).ok_or_else(|| bad("malformed frame line"))?);
        } else {
            return Err(bad("not part of faulthandler's format"));
        }
    }
    if after_blank {
        return Err("text ends with an empty line".into());
    }
    if dump.threads.is_empty() {
        return Err("no thread block".into());
    }
    Ok(dump)
}

fn parse_frame(rest: &str) -> Option<Frame> {
    let (file, after) = if let Some(after) = rest.strip_prefix("???, line ") {
        ("???".to_string(), after)
    } else {
        let quoted = rest.strip_prefix('"')?;
        let end = quoted.rfind("\", line ")?;
        (
            quoted[..end].to_string(),
            &quoted[end + "\", line ".len()..],
        )
    };
    let (line, name) = after.split_once(" in ")?;
    let line = match line {
        "???" => None,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        _ => return None,
    };
    Some(Frame {
        file,
        line,
        name: name.to_string(),
    })
}

/// A string as faulthandler prints it: printable ASCII as is (`"` and `\` included), other
/// code points as `\xNN`, `\uNNNN` or `\UNNNNNNNN`, cut after 500 code points with `...`.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for (index, c) in s.chars().enumerate() {
        if index == MAX_STRING_LENGTH {
            out.push_str("...");
            break;
        }
        let cp = c as u32;
        if (0x20..0x7f).contains(&cp) {
            out.push(c);
        } else if cp <= 0xff {
            let _ = write!(out, "\\x{cp:02x}");
        } else if cp <= 0xffff {
            let _ = write!(out, "\\u{cp:04x}");
        } else {
            let _ = write!(out, "\\U{cp:08x}");
        }
    }
    out
}

/// One dump of pytrace's text output: the `Process <pid> …` header and the faulthandler text
/// that follows it, without the empty line that ends the dump.
#[derive(Clone, Debug)]
pub struct TextDump {
    pub pid: u32,
    pub header: String,
    pub body: Vec<u8>,
}

/// Splits pytrace's text output into dumps, checking the header/body/empty-line framing.
pub fn split_text_output(out: &[u8]) -> Result<Vec<TextDump>> {
    if out.is_empty() {
        return Ok(Vec::new());
    }
    if !out.ends_with(b"\n") {
        return Err(format!(
            "output does not end with a newline: {}",
            escaped_tail(out)
        ));
    }
    let mut dumps = Vec::new();
    let mut current: Option<(TextDump, Vec<&[u8]>)> = None;
    for line in out.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"Process ") {
            if let Some(open) = current.take() {
                dumps.push(finish_dump(open)?);
            }
            current = Some((parse_header(line)?, Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        } else {
            return Err(format!(
                "output starts with {:?}, not a `Process <pid> ` header",
                line.escape_ascii().to_string()
            ));
        }
    }
    if let Some(open) = current.take() {
        dumps.push(finish_dump(open)?);
    }
    Ok(dumps)
}

fn parse_header(line: &[u8]) -> Result<TextDump> {
    let text = String::from_utf8_lossy(line)
        .trim_end_matches('\n')
        .to_string();
    let rest = &text["Process ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b' ') {
        return Err(format!(
            "malformed header {text:?}: expected `Process <pid> …`"
        ));
    }
    let pid = rest[..digits]
        .parse()
        .map_err(|e| format!("header {text:?}: {e}"))?;
    Ok(TextDump {
        pid,
        header: text,
        body: Vec::new(),
    })
}

fn finish_dump((mut dump, mut lines): (TextDump, Vec<&[u8]>)) -> Result<TextDump> {
    if lines.last() != Some(&&b"\n"[..]) {
        return Err(format!(
            "the dump under {:?} does not end with an empty line",
            dump.header
        ));
    }
    lines.pop();
    dump.body = lines.concat();
    Ok(dump)
}

fn tail(s: &str) -> &str {
    let start = s.char_indices().rev().nth(60).map_or(0, |(i, _)| i);
    &s[start..]
}

fn escaped_tail(b: &[u8]) -> String {
    b[b.len().saturating_sub(60)..].escape_ascii().to_string()
}

/// Printable ASCII as is; any other byte as `⟨hh⟩`, which faulthandler never writes.
fn visible(line: &[u8]) -> String {
    line.iter()
        .map(|&b| match b {
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("⟨{b:02x}⟩"),
        })
        .collect()
}

/// A readable line diff (`-` expected only, `+` actual only) with three lines of context.
pub fn line_diff(expected: &[u8], actual: &[u8]) -> String {
    let a: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = actual.split_inclusive(|&b| b == b'\n').collect();
    let show = |sign: char, line: &[u8]| {
        let (text, newline) = match line.strip_suffix(b"\n") {
            Some(text) => (text, ""),
            None => (line, "  [no newline at end]"),
        };
        format!("{sign} {}{newline}\n", visible(text))
    };
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = format!(
        "first difference at line {} (byte {})\n",
        prefix + 1,
        a[..prefix].iter().map(|l| l.len()).sum::<usize>()
    );
    if a.len().saturating_mul(b.len()) > 16_000_000 {
        let _ = write!(
            out,
            "{}{}",
            show('-', a.get(prefix).unwrap_or(&&b""[..])),
            show('+', b.get(prefix).unwrap_or(&&b""[..]))
        );
        return out;
    }
    // Longest common subsequence table, then a walk that yields the edit script.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * (m + 1) + j] = if a[i] == b[j] {
                lcs[(i + 1) * (m + 1) + j + 1] + 1
            } else {
                lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &[u8])> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(3)..(k + 4).min(ops.len())]
            .iter()
            .any(|(s, _)| *s != ' ')
    };
    let mut shown = 0;
    let mut skipped = false;
    for (k, (sign, line)) in ops.iter().enumerate() {
        if !near_change(k) {
            skipped = true;
            continue;
        }
        if skipped {
            out.push_str("  ⋮\n");
            skipped = false;
        }
        if shown == 120 {
            out.push_str("  (diff cut here)\n");
            break;
        }
        out.push_str(&show(*sign, line));
        shown += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_faulthandler_rules() {
        assert_eq!(escape("a\"b\\c"), "a\"b\\c");
        assert_eq!(
            escape("\t\n\x7f\u{e9}\u{65e5}\u{1f600}"),
            "\\x09\\x0a\\x7f\\xe9\\u65e5\\U0001f600"
        );
        assert_eq!(escape(&"x".repeat(500)), "x".repeat(500));
        assert_eq!(escape(&"x".repeat(501)), "x".repeat(500) + "...");
        assert_eq!(escape(&"\u{e9}".repeat(501)), "\\xe9".repeat(500) + "...");
    }

    #[test]
    fn parses_blocks_markers_and_odd_file_names() {
        let text = b"Thread 0x00007f0000000001 (most recent call first):\n  File \"a\", line 9\", line 3 in f\n  File \"b.py\", line ??? in <module>\n\nCurrent thread 0x00007f0000000002 (most recent call first):\n  Garbage-collecting\n  File \"c.py\", line 1 in g\n\n...\n";
        let dump = parse_dump(text).unwrap();
        assert_eq!(dump.threads.len(), 2);
        assert_eq!(dump.threads[0].frames[0].file, "a\", line 9");
        assert_eq!(dump.threads[0].frames[1].line, None);
        assert!(dump.threads[1].current && dump.threads[1].garbage_collecting);
        assert!(dump.more_threads);
        assert!(parse_dump(b"Thread 0x1 (most recent call first):\n").is_err());
        assert!(parse_dump(
            b"Thread 0x00007f0000000001 (most recent call first):\n  File \"a\", line 1 in f\n\n"
        )
        .is_err());
    }

    #[test]
    fn splits_dumps_on_headers() {
        let out = b"Process 12 (python3) SIGUSR1\nThread 0x00007f0000000001 (most recent call first):\n  File \"a\", line 1 in f\n\nCurrent thread 0x00007f0000000002 (most recent call first):\n  File \"a\", line 2 in g\n\nProcess 13 x\nThread 0x00007f0000000003 (most recent call first):\n  File \"b\", line 1 in h\n\n";
        let dumps = split_text_output(out).unwrap();
        assert_eq!(dumps.len(), 2);
        assert_eq!(dumps[0].pid, 12);
        assert!(dumps[0].body.ends_with(b"line 2 in g\n"));
        assert_eq!(
            dumps[1].body,
            b"Thread 0x00007f0000000003 (most recent call first):\n  File \"b\", line 1 in h\n"
        );
        assert!(split_text_output(b"Process 12 x\nThread\n").is_err());
        assert!(split_text_output(b"Process12\n\n").is_err());
        assert!(split_text_output(b"hello\n").is_err());
    }

    #[test]
    fn diff_points_at_the_changed_line() {
        let diff = line_diff(b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(
            diff.starts_with("first difference at line 2 (byte 2)"),
            "{diff}"
        );
        assert!(diff.contains("- b\n+ B\n"), "{diff}");
        assert!(line_diff(b"a\n", b"a").contains("[no newline at end]"));
    }
}
