//! Escaping of text that comes from a target (its `comm`, paths read from `/proc`, names in
//! its memory) wherever pytrace prints it, so that no process can move the reader's cursor,
//! clear their terminal or forge a line of pytrace's output by choosing its own name.
//!
//! One rule, [`escape_into`]: C0 control characters (U+0000–U+001F), DEL (U+007F) and C1
//! control characters (U+0080–U+009F) print as `\xNN`; Unicode's bidirectional formatting
//! characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which reorder what a
//! terminal shows, as `\uNNNN`; bytes that are not UTF-8 as `\xNN`. In text pytrace writes
//! itself (headers, errors, notes: [`field`]) a backslash prints as `\\` and a newline is
//! escaped too, so that every escape is unambiguous and a name stays on its line. In
//! faulthandler's text shown on a terminal ([`for_terminal`]) newlines and backslashes are
//! faulthandler's own and kept.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What [`escape_into`] keeps as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A value inside a line pytrace writes: newlines and backslashes are escaped as well.
    Field,
    /// Whole lines of faulthandler's text: newlines and backslashes are kept.
    Lines,
}

/// Whether `c` is escaped in `mode`.
fn needs_escape(c: char, mode: Mode) -> bool {
    match c {
        '\n' | '\\' => mode == Mode::Field,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            true
        }
        _ => false,
    }
}

/// A character a terminal acts on (C0 and C1 controls, DEL, bidirectional formatting), other
/// than the newline.
pub fn is_terminal_control(c: char) -> bool {
    c != '\n' && needs_escape(c, Mode::Lines)
}

/// Appends `input` to `out` with what `mode` escapes escaped (see the module's rule).
pub fn escape_into(out: &mut String, input: &[u8], mode: Mode) {
    for chunk in input.utf8_chunks() {
        for c in chunk.valid().chars() {
            if !needs_escape(c, mode) {
                out.push(c);
            } else if c == '\\' {
                out.push_str("\\\\");
            } else if (c as u32) <= 0xff {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// `text` ready to be placed inside a line pytrace writes.
pub fn field(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, Mode::Field)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(&mut out, text.as_bytes(), Mode::Field);
    Cow::Owned(out)
}

/// Raw bytes (a `comm` copied by the kernel, a path) ready to be placed inside a line.
pub fn field_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    escape_into(&mut out, bytes, Mode::Field);
    out
}

/// Lines of text, unchanged unless they hold control characters (or bytes that are not
/// UTF-8), which are escaped: what a terminal is given.
pub fn for_terminal(bytes: &[u8]) -> Cow<'_, [u8]> {
    let clean = match std::str::from_utf8(bytes) {
        Ok(s) => !s.chars().any(|c| needs_escape(c, Mode::Lines)),
        Err(_) => false,
    };
    if clean {
        return Cow::Borrowed(bytes);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    escape_into(&mut out, bytes, Mode::Lines);
    Cow::Owned(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(field("python3.12"), Cow::Borrowed("python3.12")));
        assert!(matches!(field("caf\u{e9} \u{1f600}"), Cow::Borrowed(_)));
        assert!(matches!(for_terminal(b"a\\b\nc\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(field("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(field("a\nProcess 1"), "a\\x0aProcess 1");
        assert_eq!(field("tab\there\r"), "tab\\x09here\\x0d");
        assert_eq!(field("del\u{7f}csi\u{9b}"), "del\\x7fcsi\\x9b");
        assert_eq!(field("a\u{202e}b"), "a\\u202eb");
        assert_eq!(field("back\\x1b"), "back\\\\x1b");
        assert_eq!(field_bytes(b"ok\xff\x1b"), "ok\\xff\\x1b");
        assert_eq!(field_bytes(b"caf\xc3\xa9"), "caf\u{e9}");
    }

    #[test]
    fn lines_keep_newlines_and_backslashes() {
        assert_eq!(
            &*for_terminal(b"Thread 0x1 [\x1b]0;x\x07]\n  File \"a\\b\"\n"),
            b"Thread 0x1 [\\x1b]0;x\\x07]\n  File \"a\\b\"\n"
        );
        assert_eq!(&*for_terminal(b"\xc2\x9b2J\n"), b"\\x9b2J\n");
        assert_eq!(&*for_terminal(b"\xff\n"), b"\\xff\n");
    }
}
