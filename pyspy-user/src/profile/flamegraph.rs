//! The flame graph: an interactive SVG drawn by inferno from the folded lines
//! ([`super::folded`]), with the sample, process and loss totals in its subtitle. As in every
//! flame graph, frames narrower than 0.1% of the width are not drawn; the folded file has them.

use std::io::{self, Write};

use inferno::flamegraph::{
    self,
    color::{MultiPalette, Palette},
};

use super::{folded, Aggregate};

pub fn write(agg: &Aggregate, out: &mut dyn Write) -> io::Result<()> {
    let lines: Vec<String> = folded::lines(agg)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    let mut options = flamegraph::Options::default();
    options.title = "pytrace".into();
    options.count_name = "samples".into();
    options.subtitle = Some(subtitle(agg));
    // inferno's Python palette (standard library, site-packages and own code in their own
    // hues), chosen by name rather than at random, so one profile always draws the same.
    options.colors = Palette::Multi(MultiPalette::Python);
    options.hash = true;
    options.deterministic = true;
    let drawn = flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out);
    match drawn {
        // With no sample inferno still writes a complete SVG (saying there was no input), then
        // returns this error; an empty recording is not an error.
        Err(e) if lines.is_empty() && e.kind() == io::ErrorKind::InvalidData => Ok(()),
        other => other,
    }
}

/// `1234 samples at 99 Hz, 2 processes, 3 threads; truncated 1; incomplete 2 (…); lost 5 (…)`.
fn subtitle(agg: &Aggregate) -> String {
    let t = agg.total();
    let mut s = format!(
        "{} samples at {} Hz, {} processes, {} threads",
        t.samples,
        agg.hz(),
        agg.processes().len(),
        agg.threads().len()
    );
    if agg.options().gil_only {
        s += &format!("; GIL holders only ({} left out)", agg.filtered_no_gil());
    }
    if agg.truncated() > 0 {
        s += &format!("; truncated {}", agg.truncated());
    }
    for (what, by_reason) in [
        ("incomplete", agg.incomplete()),
        ("lost", agg.lost_samples()),
    ] {
        if !by_reason.is_empty() {
            let total: u64 = by_reason.values().sum();
            let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            s += &format!("; {what} {total} ({})", reasons.join(", "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{testing::*, ProfileFormat};

    fn svg(agg: &Aggregate) -> String {
        let mut out = Vec::new();
        ProfileFormat::Flamegraph.write(agg, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// inferno's SVG starts with a `<!DOCTYPE svg …>`.
    pub fn parse_svg(text: &str) -> roxmltree::Document<'_> {
        let opt = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(text, opt).expect("well-formed XML")
    }

    #[test]
    fn well_formed_svg_with_every_frame() {
        let mut agg = small();
        let mut s = sample(10, 11, 1, &[("<deep & \"odd\">", 9)]);
        s.truncated = true;
        agg.record(&s);
        agg.lost("ring buffer full", 3);
        let text = svg(&agg);
        let doc = parse_svg(&text);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        for want in [
            "main (/app/main.py:1) (6 samples, 85.71%)",
            "a (/app/main.py:2) (4 samples, 57.14%)",
            "b (/app/main.py:3) (2 samples, 28.57%)",
            "[truncated] (1 samples, 14.29%)",
            "<deep & \"odd\"> (/app/main.py:9) (1 samples, 14.29%)",
        ] {
            assert!(titles.contains(&want), "{want:?} not in {titles:?}");
        }
        assert!(text.contains("7 samples at 100 Hz, 1 processes, 2 threads; truncated 1; lost 3 (ring buffer full: 3)"));
    }

    #[test]
    fn same_profile_same_svg() {
        assert_eq!(svg(&small()), svg(&small()));
    }

    #[test]
    fn empty_profile_is_still_an_svg() {
        let text = svg(&Aggregate::new(Default::default(), 99));
        let doc = parse_svg(&text);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
    }
}
