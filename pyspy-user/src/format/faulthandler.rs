//! The text `faulthandler.dump_traceback(all_threads=True)` writes, rebuilt from a [`Capture`].
//!
//! This is the body `_Py_DumpTracebackThreads(fd, interp, current_tstate)` writes in
//! CPython's `Python/traceback.c`: one block per thread of the interpreter's list, each a
//! header and the thread's frames, innermost first. What differs between CPython versions
//! is data in a [`Style`], chosen by [`style_for_release`] or [`style_for`].

use crate::model::{Capture, ChainEntry, Frame, PyText, ThreadStack};
use pytrace_common::{MAX_FRAMES, STR_MAX_CODEPOINTS};

/// How the frame loop of one CPython release treats shim frames (entries that belong to
/// the C stack: `FRAME_OWNED_BY_CSTACK`, `FRAME_OWNED_BY_INTERPRETER` in 3.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShimWalk {
    /// The version has no shim frames (3.11 and earlier). Shim entries, which the walker
    /// should not produce there, are passed over.
    Absent,
    /// After a frame is printed, one shim that follows it is stepped over before the depth
    /// check; a shim at the top, or the second of two in a row, is printed as a frame
    /// (3.12.0–3.12.7, 3.13.0).
    AfterFrame,
    /// At the start of every step one shim is stepped over, then the depth is checked; the
    /// second of two shims in a row is printed as a frame (3.12.8+, 3.13.1+).
    BeforeCheck,
    /// Every entry is one step of the depth count; a shim (`FRAME_OWNED_BY_INTERPRETER`)
    /// prints nothing, so a thread 100 entries deep with one shim prints 99 lines (3.14,
    /// 3.15: `dump_frame` returns early for it, and the loop still counts it).
    HiddenCounted,
}

/// How one CPython release's faulthandler writes a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Line written for a thread without a Python frame; `None` writes nothing.
    pub no_frame_line: Option<&'static str>,
    /// Line written when a frame follows the `MAX_FRAMES`th; `None` writes nothing.
    pub truncation_line: Option<&'static str>,
    /// `  Garbage-collecting` follows the current thread's header while the GC runs.
    pub gc_line: bool,
    /// How shim entries of the chain are walked.
    pub shims: ShimWalk,
    /// What a shim the loop prints as a frame comes out as. `None` where CPython reads a
    /// code object that is not there and crashes (3.13: the entry frame's executable is
    /// `None`); such a shim is then passed over without counting.
    pub shim_frame_line: Option<&'static str>,
    /// The same for a shim whose instruction pointer is before its code's first instruction
    /// (3.12's entry frame caught while it is being set up): CPython's line lookup gives the
    /// code's first line for a negative offset.
    pub shim_frame_before_start_line: Option<&'static str>,
    /// The header carries ` [name]` with the OS thread name when it is non-empty (3.14+:
    /// `write_thread_name`, the raw bytes of `pthread_getname_np`).
    pub thread_name: bool,
}

/// `_Py_DumpHexadecimal(fd, tstate->thread_id, sizeof(unsigned long) * 2)` on LP64.
const THREAD_ID_DIGITS: usize = 16;

const INDENTED_NO_FRAME: &str = "  <no Python frame>\n";
const ELLIPSIS: &str = "  ...\n";
/// 3.12's entry frames run the interpreter's trampoline code object: file `<shim>`, name
/// `<interpreter trampoline>`, and a line table of "no line" entries.
const TRAMPOLINE_3_12: &str = "  File \"<shim>\", line ??? in <interpreter trampoline>\n";
/// The trampoline's `co_firstlineno` is 1 (`_Py_MakeShimCode`).
const TRAMPOLINE_3_12_BEFORE_START: &str =
    "  File \"<shim>\", line 1 in <interpreter trampoline>\n";

const STYLE_3_6: Style = Style {
    no_frame_line: None,
    truncation_line: Some(ELLIPSIS),
    gc_line: false,
    shims: ShimWalk::Absent,
    shim_frame_line: None,
    shim_frame_before_start_line: None,
    thread_name: false,
};

const STYLE_3_8: Style = Style {
    no_frame_line: Some("<no Python frame>\n"),
    ..STYLE_3_6
};

const STYLE_3_10: Style = Style {
    no_frame_line: Some(INDENTED_NO_FRAME),
    gc_line: true,
    ..STYLE_3_8
};

const STYLE_3_12_0: Style = Style {
    shims: ShimWalk::AfterFrame,
    shim_frame_line: Some(TRAMPOLINE_3_12),
    shim_frame_before_start_line: Some(TRAMPOLINE_3_12_BEFORE_START),
    ..STYLE_3_10
};

const STYLE_3_12_8: Style = Style {
    shims: ShimWalk::BeforeCheck,
    ..STYLE_3_12_0
};

const STYLE_3_13_0: Style = Style {
    truncation_line: None,
    shim_frame_line: None,
    shim_frame_before_start_line: None,
    ..STYLE_3_12_0
};

const STYLE_3_13_1: Style = Style {
    shims: ShimWalk::BeforeCheck,
    ..STYLE_3_13_0
};

/// 3.14 and 3.15 (`Python/traceback.c`): ` [name]` after the thread id; one loop step per
/// chain entry, shims counted but not printed; at the limit nothing is written (the
/// `plus N frames` branch needs a depth past the limit, which the loop never reaches).
/// Not modelled: a frame whose code object is unreadable, or whose file, line or name
/// cannot be told, is followed by `  <invalid frame>` and ends the thread there; pytrace
/// cannot tell such a frame from one it failed to read, and prints `???` (the dump header
/// then says it is incomplete).
const STYLE_3_14: Style = Style {
    shims: ShimWalk::HiddenCounted,
    thread_name: true,
    ..STYLE_3_13_1
};

/// Styles by release: `(major, minor, first micro)`, oldest first. A release uses the last
/// row at or below it; releases before the first row use the first.
const STYLES: &[((u8, u8, u8), Style)] = &[
    ((3, 6, 0), STYLE_3_6),
    ((3, 8, 0), STYLE_3_8),
    ((3, 10, 0), STYLE_3_10),
    ((3, 12, 0), STYLE_3_12_0),
    ((3, 12, 8), STYLE_3_12_8),
    ((3, 13, 0), STYLE_3_13_0),
    ((3, 13, 1), STYLE_3_13_1),
    ((3, 14, 0), STYLE_3_14),
    // 3.15's `dump_traceback` and `write_thread_id` are 3.14's (its base-frame sentinel is
    // owned by the interpreter, a shim like 3.14's entry frames).
    ((3, 15, 0), STYLE_3_14),
];

/// The style of one CPython release. Releases newer than every known one get the newest
/// style; older ones get the oldest.
pub fn style_for_release(major: u8, minor: u8, micro: u8) -> Style {
    let release = (major, minor, micro);
    STYLES
        .iter()
        .rev()
        .find(|(first, _)| *first <= release)
        .unwrap_or(&STYLES[0])
        .1
}

/// The style of the newest release of a minor version (see [`style_for_release`]; micro
/// releases differ only in how a shim at the top of a chain is handled).
pub fn style_for(major: u8, minor: u8) -> Style {
    style_for_release(major, minor, u8::MAX)
}

/// The whole text of `dump_traceback(all_threads=True)`: the thread blocks separated by an
/// empty line, then `...` when the list went on past `MAX_THREADS`.
pub fn write_threads(out: &mut Vec<u8>, dump: &Capture, style: &Style) {
    for (i, thread) in dump.threads.iter().enumerate() {
        if i != 0 {
            out.push(b'\n');
        }
        write_thread(out, thread, dump.gc_collecting, style);
    }
    if dump.more_threads {
        if !dump.threads.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(b"...\n");
    }
}

fn write_thread(out: &mut Vec<u8>, thread: &ThreadStack, gc_collecting: bool, style: &Style) {
    // `pytrace dump --stuck` only: pytrace's own line before faulthandler's block.
    if let Some(ms) = thread.unchanged_ms {
        out.extend_from_slice(
            format!(
                "Stack unchanged for at least {:.1} s:\n",
                ms as f64 / 1000.0
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(if thread.current {
        b"Current thread 0x".as_slice()
    } else {
        b"Thread 0x".as_slice()
    });
    out.extend_from_slice(
        format!("{:0width$x}", thread.thread_id, width = THREAD_ID_DIGITS).as_bytes(),
    );
    // `write_thread_name`: the raw bytes, only when non-empty and the target could read it.
    if let Some(name) = thread
        .os_name
        .as_deref()
        .filter(|n| style.thread_name && thread.name_seen_by_target && !n.is_empty())
    {
        out.extend_from_slice(b" [");
        out.extend_from_slice(name);
        out.push(b']');
    }
    out.extend_from_slice(b" (most recent call first):\n");
    if thread.current && gc_collecting && style.gc_line {
        out.extend_from_slice(b"  Garbage-collecting\n");
    }
    write_frames(out, thread, style);
}

/// Position in a captured chain: an entry, the real end of the chain, or the part that was
/// not captured.
enum At<'a> {
    Entry(&'a ChainEntry),
    End,
    Unknown,
}

struct Chain<'a> {
    entries: Vec<&'a ChainEntry>,
    /// The captured entries stop before the real chain does.
    cut: bool,
}

impl<'a> Chain<'a> {
    fn at(&self, i: usize) -> At<'a> {
        match self.entries.get(i) {
            Some(e) => At::Entry(e),
            None if self.cut => At::Unknown,
            None => At::End,
        }
    }

    fn is_shim(&self, i: usize) -> bool {
        matches!(self.at(i), At::Entry(ChainEntry::Shim { .. }))
    }
}

/// `dump_traceback(fd, tstate, 0)`: the frame loop, with its depth limit and shim rules.
///
/// Where the loop runs into the uncaptured rest of a chain it stops; if it stops exactly
/// where CPython checks the depth limit and the limit is reached, the rest is taken to hold
/// a frame and the truncation line is written.
fn write_frames(out: &mut Vec<u8>, thread: &ThreadStack, style: &Style) {
    let chain = Chain {
        entries: thread
            .chain
            .iter()
            .filter(|e| style.shims != ShimWalk::Absent || !matches!(e, ChainEntry::Shim { .. }))
            .collect(),
        cut: thread.chain_continues || thread.torn,
    };
    match chain.at(0) {
        At::Entry(_) => {}
        At::End => {
            if let Some(line) = style.no_frame_line {
                out.extend_from_slice(line.as_bytes());
            }
            return;
        }
        At::Unknown => return,
    }
    if style.shims == ShimWalk::HiddenCounted {
        return write_frames_hidden_counted(out, &chain, style);
    }
    let truncate = |out: &mut Vec<u8>| {
        if let Some(line) = style.truncation_line {
            out.extend_from_slice(line.as_bytes());
        }
    };
    // Ends the loop at position `i` if the chain ends or was cut there; `depth` is the depth
    // the next limit check would see.
    let stops_at = |out: &mut Vec<u8>, i: usize, depth: u32| match chain.at(i) {
        At::Entry(_) => false,
        At::End => true,
        At::Unknown => {
            if depth >= MAX_FRAMES {
                truncate(out);
            }
            true
        }
    };

    let mut i = 0;
    let mut depth: u32 = 0;
    loop {
        if style.shims == ShimWalk::BeforeCheck && chain.is_shim(i) {
            i += 1;
            if stops_at(out, i, depth) {
                return;
            }
        }
        if depth >= MAX_FRAMES {
            truncate(out);
            return;
        }
        match chain.at(i) {
            At::Entry(ChainEntry::Frame(frame)) => write_frame(out, frame),
            At::Entry(ChainEntry::Shim { before_start }) => match match before_start {
                false => style.shim_frame_line,
                true => style.shim_frame_before_start_line,
            } {
                Some(line) => out.extend_from_slice(line.as_bytes()),
                None => {
                    i += 1;
                    if stops_at(out, i, depth) {
                        return;
                    }
                    continue;
                }
            },
            At::End | At::Unknown => return,
        }
        i += 1;
        if stops_at(out, i, depth + 1) {
            return;
        }
        if style.shims == ShimWalk::AfterFrame && chain.is_shim(i) {
            i += 1;
            if stops_at(out, i, depth + 1) {
                return;
            }
        }
        depth += 1;
    }
}

/// 3.14+'s loop: every entry counts toward `MAX_FRAMES`, shims print nothing.
fn write_frames_hidden_counted(out: &mut Vec<u8>, chain: &Chain, style: &Style) {
    let mut depth: u32 = 0;
    for i in 0.. {
        if depth >= MAX_FRAMES {
            if let Some(line) = style.truncation_line {
                out.extend_from_slice(line.as_bytes());
            }
            return;
        }
        match chain.at(i) {
            At::Entry(ChainEntry::Frame(frame)) => write_frame(out, frame),
            At::Entry(ChainEntry::Shim { .. }) => {}
            At::End | At::Unknown => return,
        }
        depth += 1;
    }
}

/// `dump_frame`: `  File "<file>", line <n> in <name>` with `???` for what is missing.
fn write_frame(out: &mut Vec<u8>, frame: &Frame) {
    out.extend_from_slice(b"  File ");
    match &frame.filename {
        Some(name) => {
            out.push(b'"');
            escape_into(out, name);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"???"),
    }
    out.extend_from_slice(b", line ");
    match frame.line {
        Some(line) if line >= 0 => out.extend_from_slice(line.to_string().as_bytes()),
        _ => out.extend_from_slice(b"???"),
    }
    out.extend_from_slice(b" in ");
    match &frame.name {
        Some(name) => escape_into(out, name),
        None => out.extend_from_slice(b"???"),
    }
    out.push(b'\n');
}

/// The part of `text` that faulthandler shows (its first 500 code points, as far as they were
/// copied) and whether the string is longer (faulthandler then writes `...`). Every format
/// cuts strings here.
pub fn shown(text: &PyText) -> (&[u32], bool) {
    let n = text.length.min(STR_MAX_CODEPOINTS) as usize;
    (
        &text.codepoints[..n.min(text.codepoints.len())],
        text.length > STR_MAX_CODEPOINTS,
    )
}

/// `_Py_DumpASCII`: the first 500 code points, printable ASCII as is and everything else
/// as `\xNN`, `\uNNNN` or `\UNNNNNNNN` (lowercase hex), then `...` if the string is longer.
pub fn escape_into(out: &mut Vec<u8>, text: &PyText) {
    let (codepoints, cut) = shown(text);
    for &ch in codepoints {
        match ch {
            0x20..=0x7e => out.push(ch as u8),
            0..=0xff => out.extend_from_slice(format!("\\x{ch:02x}").as_bytes()),
            0x100..=0xffff => out.extend_from_slice(format!("\\u{ch:04x}").as_bytes()),
            _ => out.extend_from_slice(format!("\\U{ch:08x}").as_bytes()),
        }
    }
    if cut {
        out.extend_from_slice(b"...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIM: ChainEntry = ChainEntry::Shim {
        before_start: false,
    };
    use pytrace_common::{MAX_CHAIN, MAX_THREADS};

    fn text(s: &str) -> PyText {
        PyText::from_text(s)
    }

    fn cps(codepoints: &[u32]) -> PyText {
        PyText {
            codepoints: codepoints.to_vec(),
            length: codepoints.len() as u64,
        }
    }

    fn frame(file: &str, name: &str, line: i32) -> ChainEntry {
        ChainEntry::Frame(Frame {
            filename: Some(text(file)),
            name: Some(text(name)),
            line: Some(line),
        })
    }

    /// `n` frames `f0` (innermost) … `f{n-1}`, file `m.py`, line = index + 1.
    fn frames(n: usize) -> Vec<ChainEntry> {
        (0..n)
            .map(|i| frame("m.py", &format!("f{i}"), i as i32 + 1))
            .collect()
    }

    fn thread(id: u64, current: bool, chain: Vec<ChainEntry>) -> ThreadStack {
        ThreadStack {
            thread_id: id,
            current,
            chain,
            ..Default::default()
        }
    }

    fn dump_of(threads: Vec<ThreadStack>) -> Capture {
        Capture {
            threads,
            ..Default::default()
        }
    }

    fn render(dump: &Capture, style: &Style) -> String {
        let mut out = Vec::new();
        write_threads(&mut out, dump, style);
        String::from_utf8(out).unwrap()
    }

    /// The expected frame lines for `frames(n)` entries `range`.
    fn frame_lines(range: std::ops::Range<usize>) -> String {
        range
            .map(|i| format!("  File \"m.py\", line {} in f{i}\n", i + 1))
            .collect()
    }

    fn all_styles() -> Vec<((u8, u8, u8), Style)> {
        STYLES.to_vec()
    }

    const HEAD: &str = "Current thread 0x00000000000000ab (most recent call first):\n";

    // ---------------------------------------------------------------- styles

    #[test]
    fn style_table() {
        assert_eq!(style_for(3, 6), STYLE_3_6);
        assert_eq!(style_for(3, 7), STYLE_3_6);
        assert_eq!(style_for(3, 9), STYLE_3_8);
        assert_eq!(style_for(3, 11), STYLE_3_10);
        assert_eq!(style_for(3, 12), STYLE_3_12_8);
        assert_eq!(style_for_release(3, 12, 1), STYLE_3_12_0);
        assert_eq!(style_for_release(3, 12, 7), STYLE_3_12_0);
        assert_eq!(style_for_release(3, 12, 8), STYLE_3_12_8);
        assert_eq!(style_for_release(3, 13, 0), STYLE_3_13_0);
        assert_eq!(style_for_release(3, 13, 1), STYLE_3_13_1);
        assert_eq!(style_for(3, 13), STYLE_3_13_1);
        assert_eq!(style_for(3, 14), STYLE_3_14);
        assert_eq!(style_for(3, 15), STYLE_3_14);
        assert_eq!(style_for(4, 0), STYLE_3_14);
        assert_eq!(style_for(3, 5), STYLE_3_6);
        assert_eq!(style_for(2, 7), STYLE_3_6);
    }

    // ---------------------------------------------------------------- headers, threads

    #[test]
    fn frameless_thread_per_style() {
        let d = dump_of(vec![thread(0xab, true, vec![])]);
        let expect = |s: &Style| s.no_frame_line.unwrap_or_default();
        for (release, style) in all_styles() {
            assert_eq!(
                render(&d, &style),
                format!("{HEAD}{}", expect(&style)),
                "{release:?}"
            );
        }
        assert_eq!(render(&d, &style_for(3, 7)), HEAD);
        assert_eq!(
            render(&d, &style_for(3, 9)),
            format!("{HEAD}<no Python frame>\n")
        );
        assert_eq!(
            render(&d, &style_for(3, 10)),
            format!("{HEAD}  <no Python frame>\n")
        );
        assert_eq!(
            render(&d, &style_for(3, 13)),
            format!("{HEAD}  <no Python frame>\n")
        );
    }

    #[test]
    fn frameless_but_not_captured() {
        // No entry captured, but the chain was not empty: nothing can be printed for it.
        let mut t = thread(0xab, true, vec![]);
        t.chain_continues = true;
        assert_eq!(render(&dump_of(vec![t.clone()]), &style_for(3, 11)), HEAD);
        t.chain_continues = false;
        t.torn = true;
        assert_eq!(render(&dump_of(vec![t]), &style_for(3, 11)), HEAD);
    }

    #[test]
    fn headers_and_separators() {
        let d = dump_of(vec![
            thread(0x7f00_1234_5678, false, frames(1)),
            thread(0, true, frames(2)),
            thread(u64::MAX, false, vec![]),
        ]);
        let expect = "Thread 0x00007f0012345678 (most recent call first):\n".to_string()
            + &frame_lines(0..1)
            + "\nCurrent thread 0x0000000000000000 (most recent call first):\n"
            + &frame_lines(0..2)
            + "\nThread 0xffffffffffffffff (most recent call first):\n  <no Python frame>\n";
        assert_eq!(render(&d, &style_for(3, 11)), expect);
        assert_eq!(render(&dump_of(vec![]), &style_for(3, 11)), "");
    }

    #[test]
    fn hundred_threads_and_more() {
        let threads: Vec<_> = (0..MAX_THREADS as u64)
            .map(|i| thread(i + 1, false, vec![]))
            .collect();
        let mut d = dump_of(threads);
        d.more_threads = true;
        let out = render(&d, &style_for(3, 12));
        let block =
            |i: u64| format!("Thread 0x{i:016x} (most recent call first):\n  <no Python frame>\n");
        let mut expect = (1..=100).map(block).collect::<Vec<_>>().join("\n");
        expect.push_str("\n...\n");
        assert_eq!(out, expect);
        // 3.6/3.7: frameless blocks are bare headers.
        let out = render(&d, &style_for(3, 6));
        assert!(out.ends_with("Thread 0x0000000000000064 (most recent call first):\n\n...\n"));
        d.more_threads = false;
        assert!(render(&d, &style_for(3, 12)).ends_with("<no Python frame>\n"));
    }

    #[test]
    fn gc_line() {
        let mut d = dump_of(vec![
            thread(1, false, frames(1)),
            thread(0xab, true, frames(1)),
        ]);
        d.gc_collecting = true;
        for (release, style) in all_styles() {
            let out = render(&d, &style);
            let gc = "  Garbage-collecting\n";
            let current = format!("{HEAD}{}", if style.gc_line { gc } else { "" });
            assert!(
                out.contains(&(current + &frame_lines(0..1))),
                "{release:?}: {out}"
            );
            assert_eq!(
                out.matches(gc).count(),
                usize::from(style.gc_line),
                "{release:?}"
            );
        }
        assert!(!render(&d, &style_for(3, 9)).contains("Garbage"));
        assert!(render(&d, &style_for(3, 10)).contains("Garbage"));
        // Before a frameless current thread's line.
        let mut d = dump_of(vec![thread(0xab, true, vec![])]);
        d.gc_collecting = true;
        assert_eq!(
            render(&d, &style_for(3, 10)),
            format!("{HEAD}  Garbage-collecting\n  <no Python frame>\n")
        );
    }

    #[test]
    fn missing_parts_print_question_marks() {
        let chain = vec![
            ChainEntry::Frame(Frame {
                filename: None,
                name: None,
                line: None,
            }),
            ChainEntry::Frame(Frame {
                filename: Some(text("")),
                name: Some(text("")),
                line: Some(0),
            }),
            ChainEntry::Frame(Frame {
                filename: Some(text("a.py")),
                name: Some(text("g")),
                line: Some(-5),
            }),
        ];
        let out = render(&dump_of(vec![thread(0xab, true, chain)]), &style_for(3, 12));
        assert_eq!(
            out,
            format!(
                "{HEAD}  File ???, line ??? in ???\n  File \"\", line 0 in \n  File \"a.py\", line ??? in g\n"
            )
        );
    }

    // ---------------------------------------------------------------- depth limit

    fn depth_out(style: &Style, chain: Vec<ChainEntry>, continues: bool) -> String {
        let mut t = thread(0xab, true, chain);
        t.chain_continues = continues;
        render(&dump_of(vec![t]), style)
    }

    #[test]
    fn depth_99_100_101_per_style() {
        for (release, style) in all_styles() {
            let marker = style.truncation_line.unwrap_or("");
            for n in [99, 100] {
                assert_eq!(
                    depth_out(&style, frames(n), false),
                    format!("{HEAD}{}", frame_lines(0..n)),
                    "{release:?} {n}"
                );
            }
            let expect = format!("{HEAD}{}{marker}", frame_lines(0..100));
            assert_eq!(
                depth_out(&style, frames(101), false),
                expect,
                "{release:?} 101"
            );
            assert_eq!(
                depth_out(&style, frames(101), true),
                expect,
                "{release:?} 101+"
            );
            assert_eq!(
                depth_out(&style, frames(MAX_CHAIN), false),
                expect,
                "{release:?} many"
            );
            // Exactly 100 captured and the chain goes on: the rest is taken to be a frame.
            assert_eq!(
                depth_out(&style, frames(100), true),
                expect,
                "{release:?} 100+"
            );
            // Fewer than 100 captured and the chain goes on: print what is known.
            assert_eq!(
                depth_out(&style, frames(50), true),
                format!("{HEAD}{}", frame_lines(0..50)),
                "{release:?} 50+"
            );
        }
        assert!(depth_out(&style_for(3, 12), frames(101), false).ends_with("  ...\n"));
        assert!(!depth_out(&style_for(3, 13), frames(101), false).ends_with("  ...\n"));
    }

    #[test]
    fn trailing_shim_after_100_frames() {
        // 3.12: `frame = frame->previous` reaches the shim, steps over it, finds NULL and
        // breaks before the depth check: no marker. Same in the 3.12.8 loop.
        for style in [
            STYLE_3_12_0,
            STYLE_3_12_8,
            STYLE_3_13_0,
            STYLE_3_13_1,
            STYLE_3_14,
        ] {
            let mut chain = frames(100);
            chain.push(SHIM);
            let plain = format!("{HEAD}{}", frame_lines(0..100));
            assert_eq!(depth_out(&style, chain.clone(), false), plain, "{style:?}");
            // The shim is the 101st entry and the chain goes on past it.
            let marked = format!("{plain}{}", style.truncation_line.unwrap_or(""));
            assert_eq!(depth_out(&style, chain.clone(), true), marked, "{style:?}");
            // A real frame after the shim.
            chain.extend(frames(1));
            assert_eq!(depth_out(&style, chain, false), marked, "{style:?}");
        }
    }

    #[test]
    fn shims_do_not_count() {
        // 100 frames with a shim after every third one and at the end: no marker.
        let mut chain = Vec::new();
        for (i, f) in frames(100).into_iter().enumerate() {
            chain.push(f);
            if i % 3 == 2 {
                chain.push(SHIM);
            }
        }
        chain.push(SHIM);
        let plain = format!("{HEAD}{}", frame_lines(0..100));
        let before_3_14 = || all_styles().into_iter().filter(|(r, _)| *r < (3, 14, 0));
        for (release, style) in before_3_14() {
            assert_eq!(
                depth_out(&style, chain.clone(), false),
                plain,
                "{release:?}"
            );
        }
        // Then one more frame: the marker where the style has one.
        chain.extend(frames(1));
        for (release, style) in before_3_14() {
            let marked = format!("{plain}{}", style.truncation_line.unwrap_or(""));
            assert_eq!(
                depth_out(&style, chain.clone(), false),
                marked,
                "{release:?}"
            );
        }
    }

    /// 3.14 and 3.15: every entry counts toward the 100, shims print nothing, and nothing
    /// marks the cut.
    #[test]
    fn hidden_entries_count_from_3_14() {
        for release in [(3, 14, 0), (3, 14, 10), (3, 15, 2)] {
            let style = style_for_release(release.0, release.1, release.2);
            assert_eq!(style.shims, ShimWalk::HiddenCounted, "{release:?}");
            assert_eq!(style.truncation_line, None, "{release:?}");
            // A thread 100 entries deep, its last one the entry frame: 99 lines.
            let mut chain = frames(99);
            chain.push(ChainEntry::Shim {
                before_start: false,
            });
            assert_eq!(
                depth_out(&style, chain.clone(), false),
                format!("{HEAD}{}", frame_lines(0..99))
            );
            // 100 frames and a shim after every third: 75 frames within the 100 entries.
            let mut chain = Vec::new();
            for (i, f) in frames(100).into_iter().enumerate() {
                chain.push(f);
                if i % 3 == 2 {
                    chain.push(ChainEntry::Shim {
                        before_start: false,
                    });
                }
            }
            assert_eq!(
                depth_out(&style, chain.clone(), true),
                format!("{HEAD}{}", frame_lines(0..75))
            );
            // Chain cut by the walker before the 100th entry: what was captured.
            assert_eq!(
                depth_out(&style, frames(10), true),
                format!("{HEAD}{}", frame_lines(0..10))
            );
        }
    }

    #[test]
    fn thread_names_where_the_version_prints_them() {
        let mut named = thread(0xab, true, frames(1));
        named.os_name = Some(b"Thread-1 (\xc3\xa9)\x1b".to_vec());
        named.name_seen_by_target = true;
        let mut empty = thread(0xcd, false, vec![]);
        empty.os_name = Some(Vec::new());
        empty.name_seen_by_target = true;
        let mut nameless = thread(0xef, false, vec![]);
        nameless.name_seen_by_target = true;
        // Named, but the target could not read the name (another PID namespace's /proc).
        let mut unseen = thread(0x12, false, vec![]);
        unseen.os_name = Some(b"hidden".to_vec());
        let d = dump_of(vec![named, empty, nameless, unseen]);
        let out = |style: &Style| {
            let mut out = Vec::new();
            write_threads(&mut out, &d, style);
            out
        };
        let mut expect = b"Current thread 0x00000000000000ab [Thread-1 (\xc3\xa9)\x1b] (most recent call first):\n".to_vec();
        expect.extend_from_slice(frame_lines(0..1).as_bytes());
        expect.extend_from_slice(
            b"\nThread 0x00000000000000cd (most recent call first):\n  <no Python frame>\n\
              \nThread 0x00000000000000ef (most recent call first):\n  <no Python frame>\n\
              \nThread 0x0000000000000012 (most recent call first):\n  <no Python frame>\n",
        );
        assert_eq!(out(&style_for(3, 14)), expect);
        assert_eq!(out(&style_for(3, 15)), expect);
        let plain = out(&style_for(3, 13));
        assert!(!plain.windows(2).any(|w| w == b" ["), "{plain:?}");
    }

    #[test]
    fn shim_at_the_top() {
        let mut chain = vec![SHIM];
        chain.extend(frames(100));
        // 3.12.0–3.12.7: the top shim is dumped as the trampoline and counts.
        assert_eq!(
            depth_out(&STYLE_3_12_0, chain.clone(), false),
            format!("{HEAD}{TRAMPOLINE_3_12}{}  ...\n", frame_lines(0..99))
        );
        // 3.12.8+: stepped over.
        let plain = format!("{HEAD}{}", frame_lines(0..100));
        assert_eq!(depth_out(&STYLE_3_12_8, chain.clone(), false), plain);
        // 3.13.0 crashes there; passed over. 3.13.1 steps over it.
        for style in [STYLE_3_13_0, STYLE_3_13_1] {
            assert_eq!(depth_out(&style, chain.clone(), false), plain, "{style:?}");
        }
        // 3.14+: the shim prints nothing but is one of the 100.
        assert_eq!(
            depth_out(&STYLE_3_14, chain.clone(), false),
            format!("{HEAD}{}", frame_lines(0..99))
        );
        // 3.11: no shims exist; a stray one is ignored.
        assert_eq!(depth_out(&STYLE_3_10, chain, false), plain);
        // A chain of one shim.
        assert_eq!(
            depth_out(&STYLE_3_12_0, vec![SHIM], false),
            format!("{HEAD}{TRAMPOLINE_3_12}")
        );
        assert_eq!(depth_out(&STYLE_3_12_8, vec![SHIM], false), HEAD);
    }

    #[test]
    fn shim_caught_before_its_first_instruction() {
        // 3.12's entry frame set up part-way: its instruction pointer is before the
        // trampoline's code, and CPython's line lookup gives the code's first line, 1.
        let early = ChainEntry::Shim { before_start: true };
        let mut chain = vec![early.clone()];
        chain.extend(frames(2));
        assert_eq!(
            depth_out(&STYLE_3_12_0, chain.clone(), false),
            format!("{HEAD}{TRAMPOLINE_3_12_BEFORE_START}{}", frame_lines(0..2))
        );
        // Where the shim is stepped over, nothing changes.
        assert_eq!(
            depth_out(&STYLE_3_12_8, chain, false),
            format!("{HEAD}{}", frame_lines(0..2))
        );
        // The second of two shims in a row is printed on 3.12.8+ too.
        let chain = vec![SHIM, early, frame("m.py", "f0", 1)];
        assert_eq!(
            depth_out(&STYLE_3_12_8, chain, false),
            format!("{HEAD}{TRAMPOLINE_3_12_BEFORE_START}{}", frame_lines(0..1))
        );
    }

    #[test]
    fn two_shims_in_a_row() {
        // __del__ run while a frame called from C is popped: its entry frame is still
        // current, and the call into __del__ pushes another. 3.12.1 prints the second as
        // the trampoline (checked against the real interpreter); 3.13.0 crashes on it.
        let chain = vec![
            frame("c.py", "__del__", 4),
            SHIM,
            SHIM,
            frame("c.py", "main", 9),
            frame("c.py", "<module>", 10),
            SHIM,
        ];
        let tail = "  File \"c.py\", line 9 in main\n  File \"c.py\", line 10 in <module>\n";
        let del = "  File \"c.py\", line 4 in __del__\n";
        for style in [STYLE_3_12_0, STYLE_3_12_8] {
            assert_eq!(
                depth_out(&style, chain.clone(), false),
                format!("{HEAD}{del}{TRAMPOLINE_3_12}{tail}"),
                "{style:?}"
            );
        }
        for style in [STYLE_3_13_0, STYLE_3_13_1, STYLE_3_14] {
            assert_eq!(
                depth_out(&style, chain.clone(), false),
                format!("{HEAD}{del}{tail}")
            );
        }
        // The printed trampoline counts towards the 100.
        let mut chain = frames(50);
        chain.extend([SHIM, SHIM]);
        chain.extend(frames(50));
        let out = depth_out(&STYLE_3_12_0, chain, false);
        assert_eq!(out.lines().filter(|l| l.starts_with("  File")).count(), 100);
        assert!(out.ends_with("  ...\n"));
    }

    // ---------------------------------------------------------------- escaping

    fn escaped(t: &PyText) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escape_lengths() {
        assert_eq!(escaped(&text(&"a".repeat(499))), "a".repeat(499));
        assert_eq!(escaped(&text(&"a".repeat(500))), "a".repeat(500));
        assert_eq!(escaped(&text(&"a".repeat(501))), "a".repeat(500) + "...");
        assert_eq!(
            escaped(&text(&"\u{e9}".repeat(501))),
            "\\xe9".repeat(500) + "..."
        );
        assert_eq!(
            escaped(&text(&"\u{1f600}".repeat(600))),
            "\\U0001f600".repeat(500) + "..."
        );
        // As copied by the kernel: 501 code points of a longer string.
        let t = PyText {
            codepoints: vec![u32::from(b'z'); 501],
            length: 100_000,
        };
        assert_eq!(escaped(&t), "z".repeat(500) + "...");
        assert_eq!(escaped(&text("")), "");
    }

    #[test]
    fn escape_characters() {
        let cases: &[(u32, &str)] = &[
            (0x00, "\\x00"),
            (0x09, "\\x09"),
            (0x0a, "\\x0a"),
            (0x1b, "\\x1b"),
            (0x1f, "\\x1f"),
            (0x20, " "),
            (u32::from(b'"'), "\""),
            (u32::from(b'\\'), "\\"),
            (0x7e, "~"),
            (0x7f, "\\x7f"),
            (0x80, "\\x80"),
            (0xa0, "\\xa0"),
            (0xff, "\\xff"),
            (0x100, "\\u0100"),
            (0xdcff, "\\udcff"),
            (0xd800, "\\ud800"),
            (0xffff, "\\uffff"),
            (0x10000, "\\U00010000"),
            (0x10ffff, "\\U0010ffff"),
        ];
        for &(ch, want) in cases {
            assert_eq!(escaped(&cps(&[ch])), want, "U+{ch:04X}");
        }
        assert_eq!(escaped(&text("quo\"te\\back.py")), "quo\"te\\back.py");
        assert_eq!(
            escaped(&cps(&[0x73, 0x75, 0x72, 0xdcff, 0xdc80])),
            "sur\\udcff\\udc80"
        );
        assert_eq!(
            escaped(&text("/srv/d\u{e9}j\u{e0}/\u{65e5}\u{672c}/\u{1f600}.py")),
            "/srv/d\\xe9j\\xe0/\\u65e5\\u672c/\\U0001f600.py"
        );
    }

    // ---------------------------------------------------------------- real output

    fn json_text(v: &serde_json::Value) -> PyText {
        match v {
            serde_json::Value::String(s) => text(s),
            serde_json::Value::Array(a) => cps(&a
                .iter()
                .map(|c| c.as_u64().unwrap() as u32)
                .collect::<Vec<_>>()),
            other => panic!("not a text: {other}"),
        }
    }

    fn json_entry(v: &serde_json::Value) -> ChainEntry {
        match v[0].as_str().unwrap() {
            "s" => SHIM,
            "f" => ChainEntry::Frame(Frame {
                filename: Some(json_text(&v[1])),
                name: Some(json_text(&v[2])),
                line: v[3].as_i64().map(|l| l as i32),
            }),
            other => panic!("entry {other}"),
        }
    }

    /// What the walker captures of a chain: entries up to the `MAX_FRAMES + 1`th frame, at
    /// most `MAX_CHAIN` of them.
    fn captured(full: Vec<ChainEntry>) -> (Vec<ChainEntry>, bool) {
        let mut out = Vec::new();
        let mut nframes = 0;
        for e in &full {
            if out.len() == MAX_CHAIN || nframes == MAX_FRAMES + 1 {
                break;
            }
            if matches!(e, ChainEntry::Frame(_)) {
                nframes += 1;
            }
            out.push(e.clone());
        }
        let continues = out.len() < full.len();
        (out, continues)
    }

    fn fixture(minor: &str) -> &'static str {
        match minor {
            "3.6" => include_str!("../../tests/data/faulthandler/3.6.json"),
            "3.7" => include_str!("../../tests/data/faulthandler/3.7.json"),
            "3.8" => include_str!("../../tests/data/faulthandler/3.8.json"),
            "3.9" => include_str!("../../tests/data/faulthandler/3.9.json"),
            "3.10" => include_str!("../../tests/data/faulthandler/3.10.json"),
            "3.11" => include_str!("../../tests/data/faulthandler/3.11.json"),
            "3.12" => include_str!("../../tests/data/faulthandler/3.12.json"),
            "3.13" => include_str!("../../tests/data/faulthandler/3.13.json"),
            _ => panic!("no fixture for {minor}"),
        }
    }

    fn check_real(minor: &str) {
        let doc: serde_json::Value = serde_json::from_str(fixture(minor)).unwrap();
        let v: Vec<u8> = doc["version"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let style = style_for_release(v[0], v[1], v[2]);
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 9);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            for whole in [false, true] {
                let threads = case["threads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        let full: Vec<ChainEntry> = t["chain"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(json_entry)
                            .collect();
                        let (chain, chain_continues) =
                            if whole { (full, false) } else { captured(full) };
                        ThreadStack {
                            thread_id: t["id"].as_u64().unwrap(),
                            current: t["current"].as_bool().unwrap(),
                            chain,
                            chain_continues,
                            ..Default::default()
                        }
                    })
                    .collect();
                let dump = Capture {
                    python_version: (v[0], v[1], v[2]),
                    gc_collecting: case["gc"].as_bool().unwrap(),
                    more_threads: case["more_threads"].as_bool().unwrap(),
                    threads,
                    ..Default::default()
                };
                let got = render(&dump, &style);
                let want = case["expected"].as_str().unwrap();
                if got != want {
                    let line = got
                        .lines()
                        .zip(want.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.lines().count().min(want.lines().count()));
                    panic!(
                        "{minor} {name} (whole chain: {whole}): first difference at line {line}\n\
                         got:  {:?}\nwant: {:?}",
                        got.lines().nth(line),
                        want.lines().nth(line)
                    );
                }
            }
        }
    }

    #[test]
    fn real_3_6() {
        check_real("3.6");
    }

    #[test]
    fn real_3_7() {
        check_real("3.7");
    }

    #[test]
    fn real_3_8() {
        check_real("3.8");
    }

    #[test]
    fn real_3_9() {
        check_real("3.9");
    }

    #[test]
    fn real_3_10() {
        check_real("3.10");
    }

    #[test]
    fn real_3_11() {
        check_real("3.11");
    }

    #[test]
    fn real_3_12() {
        check_real("3.12");
    }

    #[test]
    fn real_3_13() {
        check_real("3.13");
    }

    /// `dump_traceback(all_threads=False)` on 3.11 with odd file and function names: each
    /// frame line is `escape_into` of the same strings.
    #[test]
    fn real_escapes_3_11() {
        let doc: serde_json::Value = serde_json::from_str(fixture("3.11")).unwrap();
        let case = doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "escapes")
            .unwrap();
        let stack = case["stack_only"].as_str().unwrap();
        let mut lines = stack.lines();
        assert_eq!(lines.next(), Some("Stack (most recent call first):"));
        let chain = &case["threads"][0]["chain"];
        let mut checked = 0;
        // The first two frames, the dumping function and its caller, differ between the two
        // dumps; the rest are the same frames.
        for (entry, line) in chain.as_array().unwrap().iter().zip(lines).skip(2) {
            let ChainEntry::Frame(f) = json_entry(entry) else {
                continue;
            };
            let mut want = Vec::new();
            want.extend_from_slice(b"  File \"");
            escape_into(&mut want, f.filename.as_ref().unwrap());
            want.extend_from_slice(format!("\", line {} in ", f.line.unwrap()).as_bytes());
            escape_into(&mut want, f.name.as_ref().unwrap());
            assert_eq!(String::from_utf8(want).unwrap(), line);
            checked += 1;
        }
        assert!(checked >= 20, "{checked}");
        assert!(stack.contains("\\U0001f600..."));
        assert!(stack.contains("\\udcff\\udc80"));
    }
}
