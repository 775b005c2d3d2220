//! The collapsed ("folded") format of FlameGraph, inferno and py-spy: one line per unique stack,
//! frames root first as `function (file:line)` separated by `;`, then a space and the number of
//! samples. Lines are sorted; stacks that render alike (e.g. two threads without `--threads`)
//! are one line.
//!
//! Target strings are escaped so a frame stays one frame and a line one line: `\` → `\\`,
//! `;` → `\x3b`, and control characters → `\n`, `\t`, `\r` or `\xNN`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{self, Write},
};

use super::{Aggregate, Node};

/// The folded lines without their trailing newline, sorted, each with its count.
pub fn lines(agg: &Aggregate) -> Vec<(String, u64)> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for (key, counts) in agg.stacks() {
        let mut line = String::new();
        for (i, node) in agg.nodes(key).iter().enumerate() {
            if i > 0 {
                line.push(';');
            }
            escape_into(&mut line, &Node::label(node));
        }
        *merged.entry(line).or_default() += counts.samples;
    }
    merged.into_iter().collect()
}

pub fn write(agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = io::BufWriter::new(out);
    for (stack, count) in lines(agg) {
        writeln!(buf, "{stack} {count}")?;
    }
    buf.flush()
}

/// Appends `s` with `\`, `;` and control characters escaped.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\x3b"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{testing::*, Options, ProfileFormat};

    fn folded(agg: &Aggregate) -> String {
        let mut out = Vec::new();
        ProfileFormat::Folded.write(agg, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn threads_merge_without_threads_option() {
        assert_eq!(
            folded(&small()),
            "main (/app/main.py:1);a (/app/main.py:2) 4\n\
             main (/app/main.py:1);b (/app/main.py:3) 2\n"
        );
    }

    #[test]
    fn threads_option_splits_by_thread() {
        let mut agg = Aggregate::new(
            Options {
                threads: true,
                ..Default::default()
            },
            100,
        );
        agg.record(&sample(10, 11, 1, &[("main", 1), ("a", 2)]));
        agg.record(&sample(10, 12, 1, &[("main", 1), ("a", 2)]));
        agg.record(&sample(10, 12, 1, &[("main", 1), ("a", 2)]));
        assert_eq!(
            folded(&agg),
            "thread 11 (T11);main (/app/main.py:1);a (/app/main.py:2) 1\n\
             thread 12 (T12);main (/app/main.py:1);a (/app/main.py:2) 2\n"
        );
    }

    #[test]
    fn several_processes_get_process_roots() {
        let mut agg = small();
        agg.record(&sample(20, 21, 1, &[("main", 1)]));
        assert_eq!(
            folded(&agg),
            "process 10 (py10);main (/app/main.py:1);a (/app/main.py:2) 4\n\
             process 10 (py10);main (/app/main.py:1);b (/app/main.py:3) 2\n\
             process 20 (py20);main (/app/main.py:1) 1\n"
        );
    }

    #[test]
    fn truncated_is_marked_not_shortened() {
        let mut agg = Aggregate::new(Options::default(), 100);
        let mut s = sample(1, 1, 1, &[("f", 1), ("g", 2)]);
        s.truncated = true;
        agg.record(&s);
        s.truncated = false;
        s.incomplete = Some("unreadable memory".into());
        s.frames.truncate(1);
        agg.record(&s);
        assert_eq!(
            folded(&agg),
            "[incomplete: unreadable memory];g (/app/main.py:2) 1\n\
             [truncated];f (/app/main.py:1);g (/app/main.py:2) 1\n"
        );
    }

    #[test]
    fn target_strings_cannot_split_frames_or_lines() {
        let mut agg = Aggregate::new(Options::default(), 100);
        let mut s = sample(1, 1, 1, &[]);
        s.frames = vec![frame("a;b", "/x\ny\\z\t\u{1}.py", Some(3))];
        agg.record(&s);
        assert_eq!(folded(&agg), "a\\x3bb (/x\\ny\\\\z\\t\\x01.py:3) 1\n");
    }

    #[test]
    fn empty_profile_is_empty() {
        assert_eq!(folded(&Aggregate::new(Options::default(), 99)), "");
    }
}
