//! Outputs of captures. Each reads symbolized [`Capture`]s and writes bytes; none collects or
//! symbolizes anything. Text and JSON write each capture as it comes; an aggregating output
//! writes at [`Output::finish`].

pub mod faulthandler;
mod json;
mod text;

use std::io::{self, Write};

use clap::ValueEnum;

use crate::model::Capture;

/// One consumer of captures.
pub trait Output {
    /// Takes one capture (and writes it, for per-capture formats).
    fn record(&mut self, capture: &Capture, out: &mut dyn Write) -> io::Result<()>;
    /// Writes what was aggregated, once no capture follows.
    fn finish(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatKind {
    /// A `Process …` header line, faulthandler's exact text, an empty line.
    Text,
    /// One JSON object per dump per line.
    Json,
}

/// The writer for `kind`, writing to a file or a pipe.
pub fn new(kind: FormatKind) -> Box<dyn Output> {
    for_output(kind, false)
}

/// The writer for `kind`; `terminal`: the output is a terminal, where control characters in
/// faulthandler's text (3.14's thread names) are shown escaped.
pub fn for_output(kind: FormatKind, terminal: bool) -> Box<dyn Output> {
    match kind {
        FormatKind::Text => Box::new(text::Text { terminal }),
        FormatKind::Json => Box::new(json::Json),
    }
}

/// RFC 3339 UTC time with microseconds.
pub(crate) fn timestamp(time_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(time_ns);
    humantime::format_rfc3339_micros(t).to_string()
}

/// `3.11.7`.
pub(crate) fn version_string(v: (u8, u8, u8)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}
