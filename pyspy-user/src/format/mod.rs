//! Output formats. Each reads symbolized [`Dump`]s and writes bytes; none collects or
//! symbolizes anything.

pub mod faulthandler;
mod json;
mod text;

use std::io::{self, Write};

use clap::ValueEnum;

use crate::model::Dump;

/// One output format.
pub trait DumpFormat {
    /// Writes one dump.
    fn write_dump(&mut self, dump: &Dump, out: &mut dyn Write) -> io::Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatKind {
    /// A `Process …` header line, faulthandler's exact text, an empty line.
    Text,
    /// One JSON object per dump per line.
    Json,
}

/// The writer for `kind`, writing to a file or a pipe.
pub fn new(kind: FormatKind) -> Box<dyn DumpFormat> {
    for_output(kind, false)
}

/// The writer for `kind`; `terminal`: the output is a terminal, where control characters in
/// faulthandler's text (3.14's thread names) are shown escaped.
pub fn for_output(kind: FormatKind, terminal: bool) -> Box<dyn DumpFormat> {
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
