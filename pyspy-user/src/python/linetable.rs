//! Line numbers from a copied CPython line table, computed as `PyCode_Addr2Line` does.
//!
//! faulthandler's `dump_frame` prints `PyCode_Addr2Line(code, addr)` and `???` when that is
//! negative. Three table formats exist:
//!
//! * 3.6–3.9 `co_lnotab`: pairs of (unsigned byte delta, signed line delta); the line is the
//!   sum of the line deltas of every pair whose running byte offset is `<= addr`.
//! * 3.10 `co_linetable`: pairs of (unsigned byte delta, signed line delta), each pair one
//!   address range; a line delta of -128 marks a range without a line. Ranges of length 0
//!   are folded into the next one.
//! * 3.11+ location table: entries of one header byte (bit 7 set, bits 3–6 a code, bits 0–2
//!   the length in code units minus one) and code-dependent payload bytes.
//!
//! The decoders follow CPython's C step by step, including its `int` arithmetic (wrapping),
//! and never read outside `table`: a read past the end yields 0, which is what CPython reads
//! there (the NUL that ends every `bytes` object's data). Nothing here panics.

use std::cell::Cell;

/// Which line-table format a code object carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTableKind {
    /// 3.6–3.9 `co_lnotab`.
    Lnotab,
    /// 3.10 `co_linetable`.
    Linetable310,
    /// 3.11+ `co_linetable` (location table).
    Locations311,
}

/// `PyCode_Addr2Line(code, addr)` for a code object with this line table and
/// `co_firstlineno`.
///
/// `addr` is a byte offset into `co_code`, as faulthandler passes it to `PyCode_Addr2Line`
/// (whose parameter is a C `int`: it is taken modulo 2³², as the C conversion does).
/// Returns `None` where faulthandler prints `???` (a negative result).
pub fn addr2line(kind: LineTableKind, table: &[u8], firstlineno: i32, addr: i64) -> Option<i32> {
    addr2line_partial(kind, table, table.len(), firstlineno, addr).flatten()
}

/// [`addr2line`] for a table of `len` bytes of which only the first `table.len()` are known.
/// Returns `None` when the answer depends on bytes not known (the line cannot be had), else
/// what [`addr2line`] of the whole table returns: the walk stops at the first range that
/// covers `addr`, so a known prefix often suffices.
pub fn addr2line_partial(
    kind: LineTableKind,
    table: &[u8],
    len: usize,
    firstlineno: i32,
    addr: i64,
) -> Option<Option<i32>> {
    let table = Table {
        bytes: &table[..table.len().min(len)],
        len,
        missing: Cell::new(false),
    };
    let addrq = addr as i32;
    let line = match kind {
        LineTableKind::Lnotab => lnotab_addr2line(&table, firstlineno, addrq),
        LineTableKind::Linetable310 => {
            if addrq < 0 {
                firstlineno
            } else {
                Ranges310::new(&table, firstlineno).line_at(addrq)
            }
        }
        LineTableKind::Locations311 => {
            if addrq < 0 {
                firstlineno
            } else {
                Ranges311::new(&table, firstlineno).line_at(addrq)
            }
        }
    };
    (!table.missing.get()).then_some((line >= 0).then_some(line))
}

/// A line table of `len` bytes, of which `bytes` (a prefix) are known.
struct Table<'a> {
    bytes: &'a [u8],
    len: usize,
    /// Set when a byte inside the table but past the known prefix was needed.
    missing: Cell<bool>,
}

impl Table<'_> {
    /// Byte `i` of the table; 0 past its end (and past the known prefix, noting it).
    fn byte(&self, i: usize) -> u8 {
        match self.bytes.get(i) {
            Some(&b) => b,
            None => {
                if i < self.len {
                    self.missing.set(true);
                }
                0
            }
        }
    }
}

/// 3.6–3.9: walk the (byte delta, line delta) pairs while the running offset is `<= addrq`.
/// An odd trailing byte is not part of any pair.
fn lnotab_addr2line(table: &Table, firstlineno: i32, addrq: i32) -> i32 {
    let mut line = firstlineno;
    let mut addr: i32 = 0;
    for pair in 0..table.len / 2 {
        addr = addr.wrapping_add(i32::from(table.byte(2 * pair)));
        if table.missing.get() || addr > addrq {
            break;
        }
        line = line.wrapping_add(i32::from(table.byte(2 * pair + 1) as i8));
        if table.missing.get() {
            break;
        }
    }
    line
}

/// The state of CPython's `PyCodeAddressRange` while it walks forward through a table.
struct Range {
    /// Index of the next unread table byte (`opaque.lo_next`).
    next: usize,
    /// `[start, end)` in bytes of the current range, and its line (-1: none).
    start: i32,
    end: i32,
    line: i32,
    /// Running line (`opaque.computed_line`).
    computed: i32,
}

impl Range {
    fn new(firstlineno: i32) -> Self {
        Range {
            next: 0,
            start: -1,
            end: 0,
            line: -1,
            computed: firstlineno,
        }
    }
}

/// 3.10 `co_linetable` walker (`advance`, `PyLineTable_NextAddressRange`).
struct Ranges310<'a> {
    table: &'a Table<'a>,
    r: Range,
}

impl<'a> Ranges310<'a> {
    fn new(table: &'a Table<'a>, firstlineno: i32) -> Self {
        Ranges310 {
            table,
            r: Range::new(firstlineno),
        }
    }

    fn at_end(&self) -> bool {
        self.r.next >= self.table.len
    }

    fn advance(&mut self) {
        let r = &mut self.r;
        r.start = r.end;
        r.end = r.end.wrapping_add(i32::from(self.table.byte(r.next)));
        let ldelta = self.table.byte(r.next + 1) as i8;
        r.next += 2;
        if ldelta == -128 {
            r.line = -1;
        } else {
            r.computed = r.computed.wrapping_add(i32::from(ldelta));
            r.line = r.computed;
        }
    }

    /// Moves to the next non-empty range; false at the end of the table. CPython folds
    /// empty ranges without checking for the end (a well-formed table never ends with one);
    /// here running out while folding also ends the walk.
    fn next_range(&mut self) -> bool {
        if self.at_end() {
            return false;
        }
        self.advance();
        while self.r.start == self.r.end {
            if self.at_end() {
                return false;
            }
            self.advance();
        }
        true
    }

    /// `_PyCode_CheckLineNumber` from a fresh range, for `addrq >= 0` (only forward steps).
    fn line_at(mut self, addrq: i32) -> i32 {
        while self.r.end <= addrq {
            if !self.next_range() || self.table.missing.get() {
                return -1;
            }
        }
        self.r.line
    }
}

/// Location-table entry codes (`PY_CODE_LOCATION_INFO_*`).
const LOC_ONE_LINE1: u8 = 11;
const LOC_ONE_LINE2: u8 = 12;
const LOC_NO_COLUMNS: u8 = 13;
const LOC_LONG: u8 = 14;
/// A header byte with this value in bits 3–7 (entry bit included) starts a range without a
/// line (`is_no_line_marker`).
const NO_LINE_MARKER: u8 = 0x1f;

/// 3.11+ location-table walker (`advance`, `_PyLineTable_NextAddressRange`).
struct Ranges311<'a> {
    table: &'a Table<'a>,
    r: Range,
}

impl<'a> Ranges311<'a> {
    fn new(table: &'a Table<'a>, firstlineno: i32) -> Self {
        Ranges311 {
            table,
            r: Range::new(firstlineno),
        }
    }

    /// `scan_varint`: 6-bit chunks, bit 6 = more follow. Shifts wrap as on x86-64.
    fn scan_varint(&self, mut i: usize) -> u32 {
        let mut read = u32::from(self.table.byte(i));
        let mut val = read & 63;
        let mut shift: u32 = 0;
        while read & 64 != 0 {
            i += 1;
            read = u32::from(self.table.byte(i));
            shift = shift.wrapping_add(6);
            val |= (read & 63).wrapping_shl(shift);
        }
        val
    }

    fn scan_signed_varint(&self, i: usize) -> i32 {
        let uval = self.scan_varint(i);
        if uval & 1 != 0 {
            -((uval >> 1) as i32)
        } else {
            (uval >> 1) as i32
        }
    }

    /// `get_line_delta` of the entry whose header byte is at `i`: NONE, ONE_LINE0 and the
    /// short forms (0–9) keep the line.
    fn line_delta(&self, i: usize) -> i32 {
        match (self.table.byte(i) >> 3) & 15 {
            LOC_NO_COLUMNS | LOC_LONG => self.scan_signed_varint(i + 1),
            LOC_ONE_LINE1 => 1,
            LOC_ONE_LINE2 => 2,
            _ => 0,
        }
    }

    fn advance(&mut self) {
        let head = self.table.byte(self.r.next);
        let delta = self.line_delta(self.r.next);
        let r = &mut self.r;
        r.computed = r.computed.wrapping_add(delta);
        r.line = if head >> 3 == NO_LINE_MARKER {
            -1
        } else {
            r.computed
        };
        r.start = r.end;
        r.end = r.end.wrapping_add((i32::from(head & 7) + 1) * 2);
        loop {
            r.next += 1;
            if r.next >= self.table.len || self.table.byte(r.next) & 128 != 0 {
                break;
            }
        }
    }

    /// `_PyCode_CheckLineNumber` from a fresh range, for `addrq >= 0` (only forward steps).
    fn line_at(mut self, addrq: i32) -> i32 {
        while self.r.end <= addrq {
            if self.r.next >= self.table.len {
                return -1;
            }
            self.advance();
            if self.table.missing.get() {
                return -1;
            }
        }
        self.r.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One code object of a fixture written by `tools/linetables/dump.py`.
    struct Case {
        name: String,
        unit: String,
        firstlineno: i32,
        table: Vec<u8>,
        /// `(addr, PyCode_Addr2Line result)` for every byte offset tried.
        lines: Vec<(i64, i32)>,
        /// `(f_lasti, f_lineno)` of real frames (-1: `None`).
        frames: Vec<(i64, i32)>,
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    fn fixture(minor: &str) -> &'static str {
        match minor {
            "3.6" => include_str!("../../tests/data/linetables/3.6.json"),
            "3.7" => include_str!("../../tests/data/linetables/3.7.json"),
            "3.8" => include_str!("../../tests/data/linetables/3.8.json"),
            "3.9" => include_str!("../../tests/data/linetables/3.9.json"),
            "3.10" => include_str!("../../tests/data/linetables/3.10.json"),
            "3.11" => include_str!("../../tests/data/linetables/3.11.json"),
            "3.12" => include_str!("../../tests/data/linetables/3.12.json"),
            "3.13" => include_str!("../../tests/data/linetables/3.13.json"),
            _ => panic!("no fixture for {minor}"),
        }
    }

    fn load(minor: &str) -> (LineTableKind, Vec<Case>) {
        let doc: serde_json::Value = serde_json::from_str(fixture(minor)).unwrap();
        let kind = match doc["kind"].as_str().unwrap() {
            "Lnotab" => LineTableKind::Lnotab,
            "Linetable310" => LineTableKind::Linetable310,
            "Locations311" => LineTableKind::Locations311,
            other => panic!("kind {other}"),
        };
        let mut cases = Vec::new();
        for c in doc["codes"].as_array().unwrap() {
            let mut addr = c["low"].as_i64().unwrap();
            let mut lines = Vec::new();
            for run in c["lines"].as_array().unwrap() {
                let line = run[0].as_i64().unwrap() as i32;
                for _ in 0..run[1].as_u64().unwrap() {
                    lines.push((addr, line));
                    addr += 1;
                }
            }
            let frames = c["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (f[0].as_i64().unwrap(), f[1].as_i64().unwrap() as i32))
                .collect();
            cases.push(Case {
                name: c["name"].as_str().unwrap().to_string(),
                unit: c["unit"].as_str().unwrap().to_string(),
                firstlineno: c["firstlineno"].as_i64().unwrap() as i32,
                table: hex(c["table"].as_str().unwrap()),
                lines,
                frames,
            });
        }
        (kind, cases)
    }

    fn expect(raw: i32) -> Option<i32> {
        (raw >= 0).then_some(raw)
    }

    fn check_fixture(minor: &str, kind: LineTableKind) {
        let (fixture_kind, cases) = load(minor);
        assert_eq!(fixture_kind, kind, "{minor}");
        let mut checked = 0;
        for c in &cases {
            for &(addr, raw) in &c.lines {
                let got = addr2line(kind, &c.table, c.firstlineno, addr);
                assert_eq!(
                    got,
                    expect(raw),
                    "{minor} {}/{} addr {addr} (raw {raw})",
                    c.unit,
                    c.name
                );
                checked += 1;
            }
            for &(lasti, lineno) in &c.frames {
                let got = addr2line(kind, &c.table, c.firstlineno, lasti);
                assert_eq!(
                    got,
                    expect(lineno),
                    "{minor} {}/{} f_lasti {lasti}",
                    c.unit,
                    c.name
                );
            }
        }
        assert!(checked > 1000, "{minor}: only {checked} offsets");
    }

    #[test]
    fn cpython_3_6() {
        check_fixture("3.6", LineTableKind::Lnotab);
    }

    #[test]
    fn cpython_3_7() {
        check_fixture("3.7", LineTableKind::Lnotab);
    }

    #[test]
    fn cpython_3_8() {
        check_fixture("3.8", LineTableKind::Lnotab);
    }

    #[test]
    fn cpython_3_9() {
        check_fixture("3.9", LineTableKind::Lnotab);
    }

    #[test]
    fn cpython_3_10() {
        check_fixture("3.10", LineTableKind::Linetable310);
    }

    #[test]
    fn cpython_3_11() {
        check_fixture("3.11", LineTableKind::Locations311);
    }

    #[test]
    fn cpython_3_12() {
        check_fixture("3.12", LineTableKind::Locations311);
    }

    #[test]
    fn cpython_3_13() {
        check_fixture("3.13", LineTableKind::Locations311);
    }

    const KINDS: [LineTableKind; 3] = [
        LineTableKind::Lnotab,
        LineTableKind::Linetable310,
        LineTableKind::Locations311,
    ];

    #[test]
    fn empty_table() {
        assert_eq!(addr2line(LineTableKind::Lnotab, &[], 7, 0), Some(7));
        assert_eq!(addr2line(LineTableKind::Lnotab, &[], 7, 100), Some(7));
        assert_eq!(addr2line(LineTableKind::Linetable310, &[], 7, 0), None);
        assert_eq!(addr2line(LineTableKind::Locations311, &[], 7, 0), None);
        for kind in KINDS {
            assert_eq!(addr2line(kind, &[], 7, -1), Some(7));
            assert_eq!(addr2line(kind, &[], -3, -1), None);
        }
    }

    #[test]
    fn addr_is_a_c_int() {
        let t = [0x80 | (13 << 3), 2];
        // 2^32 converts to 0, 2^32 - 2 to -2.
        assert_eq!(
            addr2line(LineTableKind::Locations311, &t, 5, 1 << 32),
            Some(6)
        );
        assert_eq!(
            addr2line(LineTableKind::Locations311, &t, 5, (1 << 32) - 2),
            Some(5)
        );
    }

    /// xorshift64*: deterministic bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut tables: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 64],
            vec![0x00; 64],
            vec![0x7f; 64],
            vec![0xc0; 33],
            vec![0x80],
            vec![0xf0],
            vec![0x00, 0x80, 0x00],
        ];
        for _ in 0..400 {
            let len = (rng.next() % 96) as usize;
            tables.push((0..len).map(|_| rng.next() as u8).collect());
        }
        // Truncations of a real 3.11 table.
        let (_, cases) = load("3.11");
        let real = &cases.iter().max_by_key(|c| c.table.len()).unwrap().table;
        for cut in 0..real.len().min(200) {
            tables.push(real[..cut].to_vec());
        }
        let addrs = [
            i64::MIN,
            -1,
            0,
            1,
            2,
            3,
            17,
            255,
            256,
            4096,
            i32::MAX as i64,
            i64::MAX,
        ];
        for t in &tables {
            for kind in KINDS {
                for first in [i32::MIN, -1, 0, 1, i32::MAX] {
                    for &a in &addrs {
                        let _ = addr2line(kind, t, first, a);
                    }
                }
                for a in 0..(t.len() as i64 * 16 + 4) {
                    let _ = addr2line(kind, t, 1, a);
                }
            }
        }
    }

    /// A known prefix of a table either gives the whole table's answer or says it cannot:
    /// never another line. Every fixture code object, cut at several places, every offset.
    #[test]
    fn prefix_gives_the_line_or_nothing() {
        for (minor, kind) in [
            ("3.8", LineTableKind::Lnotab),
            ("3.10", LineTableKind::Linetable310),
            ("3.11", LineTableKind::Locations311),
            ("3.12", LineTableKind::Locations311),
        ] {
            let (_, cases) = load(minor);
            let (mut known, mut unknown) = (0, 0);
            for c in &cases {
                let n = c.table.len();
                for cut in [0, n.min(1), n / 3, n / 2, n.saturating_sub(1), n] {
                    for &(addr, _) in &c.lines {
                        let whole = addr2line(kind, &c.table, c.firstlineno, addr);
                        match addr2line_partial(kind, &c.table[..cut], n, c.firstlineno, addr) {
                            Some(line) => {
                                assert_eq!(line, whole, "{minor} {} cut {cut} addr {addr}", c.name);
                                known += 1;
                            }
                            None => {
                                assert!(cut < n, "{minor} {}: whole table unknown", c.name);
                                unknown += 1;
                            }
                        }
                    }
                }
            }
            assert!(
                known > 0 && unknown > 0,
                "{minor}: {known} known, {unknown} unknown"
            );
        }
    }
}
