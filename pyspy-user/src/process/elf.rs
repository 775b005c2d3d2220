//! Reading an interpreter ELF file on disk: symbols, `PT_LOAD` layout, read-only data, and the
//! `_PyRuntime` fallbacks (`.PyRuntime` section, `xdebugpy` cookie).
//!
//! Files are memory-mapped read-only, so a 30 MB libpython with debug info costs only the pages
//! of the headers, symbol tables and the few sections actually looked at, without a system call
//! per read.
//! Only 64-bit ELF files are handled.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use object::elf::{
    FileHeader64, Sym64, DT_GNU_HASH, DT_HASH, DT_STRSZ, DT_STRTAB, DT_SYMTAB, PF_W, PF_X,
};
use object::read::elf::{Dyn, ElfFile64, GnuHashTable, HashTable, ProgramHeader, Sym};
use object::read::StringTable;
use object::{
    Endianness, Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadRef, SegmentFlags,
};

use super::maps::Mapping;

/// First 8 bytes of `_Py_DebugOffsets`, the first member of `_PyRuntime` in CPython 3.13+.
pub const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";

/// A `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub writable: bool,
    pub executable: bool,
}

/// How a link-time address of `_PyRuntime` was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeSource {
    /// `_PyRuntime` in `.dynsym`, `.symtab`, or the `PT_DYNAMIC` symbol table.
    Symbol,
    /// Start of the `.PyRuntime` section (3.10+ builds).
    Section,
    /// The `xdebugpy` cookie found in a writable `PT_LOAD` segment (3.13+).
    Cookie,
}

/// An ELF file opened for symbol and data lookups.
pub struct ElfImage {
    path: PathBuf,
    map: memmap2::Mmap,
}

type Elf<'a> = ElfFile64<'a, Endianness, &'a [u8]>;

fn invalid(path: &Path, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {err}", path.display()),
    )
}

impl ElfImage {
    /// Open `path` and check that it parses as a 64-bit ELF file.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::from_file(path, File::open(path)?)
    }

    /// [`Self::open`] for a file already opened from `path`.
    pub fn from_file(path: &Path, file: File) -> io::Result<Self> {
        // SAFETY: the mapping is private and read-only; pytrace only reads interpreter files,
        // which are not modified in place while a process runs them (replacing one creates a
        // new inode, which this mapping does not see).
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        let image = ElfImage {
            path: path.to_owned(),
            map,
        };
        image.parse()?;
        Ok(image)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn parse(&self) -> io::Result<Elf<'_>> {
        ElfFile64::parse(&self.map[..]).map_err(|e| invalid(&self.path, e))
    }

    /// The `PT_LOAD` segments, in file order.
    pub fn load_segments(&self) -> io::Result<Vec<LoadSegment>> {
        let elf = self.parse()?;
        Ok(elf
            .segments()
            .map(|seg| {
                let (offset, filesz) = seg.file_range();
                let flags = match seg.flags() {
                    SegmentFlags::Elf { p_flags } => p_flags,
                    _ => 0,
                };
                LoadSegment {
                    vaddr: seg.address(),
                    memsz: seg.size(),
                    offset,
                    filesz,
                    writable: flags & PF_W != 0,
                    executable: flags & PF_X != 0,
                }
            })
            .collect())
    }

    /// Link-time address of a defined symbol, from `.dynsym`, then `.symtab` (local symbols
    /// included), then the `PT_DYNAMIC` symbol table when the file has no `.dynsym` section.
    pub fn symbol_address(&self, name: &str) -> io::Result<Option<u64>> {
        Ok(self.symbol_addresses(&[name])?[0])
    }

    /// [`Self::symbol_address`] for several names in one pass over the symbol tables.
    pub fn symbol_addresses(&self, names: &[&str]) -> io::Result<Vec<Option<u64>>> {
        let elf = self.parse()?;
        let mut found: Vec<Option<u64>> = vec![None; names.len()];
        for sym in elf.dynamic_symbols().chain(elf.symbols()) {
            if sym.is_undefined() {
                continue;
            }
            let Ok(name) = sym.name_bytes() else { continue };
            if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
                found[i].get_or_insert(sym.address());
            }
        }
        if elf.dynamic_symbol_table().is_none() {
            for (i, name) in names.iter().enumerate() {
                if found[i].is_none() {
                    found[i] = self.dynamic_segment_symbol(&elf, name.as_bytes());
                }
            }
        }
        Ok(found)
    }

    /// Symbol lookup through `DT_SYMTAB`/`DT_STRTAB` and the hash tables of `PT_DYNAMIC`, for
    /// files whose section headers were removed.
    fn dynamic_segment_symbol(&self, elf: &Elf<'_>, wanted: &[u8]) -> Option<u64> {
        let endian = elf.endian();
        let data = elf.data();
        let segments = self.load_segments().ok()?;
        for ph in elf.elf_program_headers() {
            let Ok(Some(entries)) = ph.dynamic(endian, data) else {
                continue;
            };
            let (mut symtab, mut strtab, mut strsz, mut gnu_hash, mut hash) =
                (None, None, None, None, None);
            for entry in entries {
                let value = entry.d_val(endian);
                match u32::try_from(entry.d_tag(endian)) {
                    Ok(DT_SYMTAB) => symtab = Some(value),
                    Ok(DT_STRTAB) => strtab = Some(value),
                    Ok(DT_STRSZ) => strsz = Some(value),
                    Ok(DT_GNU_HASH) => gnu_hash = Some(value),
                    Ok(DT_HASH) => hash = Some(value),
                    _ => {}
                }
            }
            let sym_off = vaddr_to_offset(&segments, symtab?)?;
            let str_off = vaddr_to_offset(&segments, strtab?)?;
            let count = if let Some(addr) = gnu_hash {
                let bytes = segment_tail(&segments, data, addr)?;
                GnuHashTable::<FileHeader64<Endianness>>::parse(endian, bytes)
                    .ok()?
                    .symbol_table_length(endian)?
            } else {
                let bytes = segment_tail(&segments, data, hash?)?;
                HashTable::<FileHeader64<Endianness>>::parse(endian, bytes)
                    .ok()?
                    .symbol_table_length()
            };
            let syms: &[Sym64<Endianness>] = data.read_slice_at(sym_off, count as usize).ok()?;
            let strings = StringTable::new(data, str_off, str_off + strsz?);
            for sym in syms {
                if !sym.is_undefined(endian) && sym.name(endian, strings) == Ok(wanted) {
                    return Some(sym.st_value(endian));
                }
            }
        }
        None
    }

    /// Address of a section by name, when the file has section headers.
    pub fn section_address(&self, name: &str) -> io::Result<Option<u64>> {
        let elf = self.parse()?;
        Ok(elf.section_by_name(name).map(|s| s.address()))
    }

    /// File bytes at a link-time virtual address (only initialised data: within `p_filesz`).
    pub fn read_at(&self, vaddr: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
        let segments = self.load_segments()?;
        let Some(offset) = vaddr_to_offset(&segments, vaddr) else {
            return Ok(None);
        };
        let in_file = segments
            .iter()
            .any(|s| s.vaddr <= vaddr && vaddr + len <= s.vaddr + s.filesz);
        if !in_file {
            return Ok(None);
        }
        let elf = self.parse()?;
        Ok(elf
            .data()
            .read_bytes_at(offset, len)
            .ok()
            .map(<[u8]>::to_vec))
    }

    /// An unsigned integer of the file's word size and byte order at a link-time address.
    pub fn read_u64_at(&self, vaddr: u64) -> io::Result<Option<u64>> {
        let elf = self.parse()?;
        let little = elf.endian() == Endianness::Little;
        Ok(self.read_at(vaddr, 8)?.map(|b| {
            let bytes: [u8; 8] = b.try_into().unwrap_or([0; 8]);
            if little {
                u64::from_le_bytes(bytes)
            } else {
                u64::from_be_bytes(bytes)
            }
        }))
    }

    /// The read-only data where string literals live: `.rodata`, or the non-writable `PT_LOAD`
    /// segments joined by NUL bytes when the file has no section headers.
    pub fn read_only_data(&self) -> io::Result<Cow<'_, [u8]>> {
        let elf = self.parse()?;
        if let Some(section) = elf.section_by_name(".rodata") {
            if let Ok(data) = section.data() {
                return Ok(Cow::Borrowed(data));
            }
        }
        let mut out = Vec::new();
        for seg in self.load_segments()?.iter().filter(|s| !s.writable) {
            if let Ok(bytes) = elf.data().read_bytes_at(seg.offset, seg.filesz) {
                out.extend_from_slice(bytes);
                out.push(0);
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Link-time address of the first 8-aligned `cookie` in the file data of a writable
    /// `PT_LOAD` segment.
    pub fn find_cookie(&self, cookie: &[u8; 8]) -> io::Result<Option<u64>> {
        let elf = self.parse()?;
        for seg in self.load_segments()?.iter().filter(|s| s.writable) {
            let Ok(bytes) = elf.data().read_bytes_at(seg.offset, seg.filesz) else {
                continue;
            };
            let hit = memchr::memmem::find_iter(bytes, cookie)
                .find(|&i| (seg.vaddr + i as u64).is_multiple_of(8));
            if let Some(i) = hit {
                return Ok(Some(seg.vaddr + i as u64));
            }
        }
        Ok(None)
    }

    /// Link-time address of `_PyRuntime`: its symbol, else the `.PyRuntime` section, else (when
    /// `cookie_scan`, meaningful for 3.13+) the `xdebugpy` cookie.
    pub fn find_runtime(&self, cookie_scan: bool) -> io::Result<Option<(u64, RuntimeSource)>> {
        if let Some(addr) = self.symbol_address("_PyRuntime")? {
            return Ok(Some((addr, RuntimeSource::Symbol)));
        }
        if let Some(addr) = self.section_address(".PyRuntime")? {
            return Ok(Some((addr, RuntimeSource::Section)));
        }
        if cookie_scan {
            if let Some(addr) = self.find_cookie(DEBUG_COOKIE)? {
                return Ok(Some((addr, RuntimeSource::Cookie)));
            }
        }
        Ok(None)
    }
}

/// File offset of a link-time address inside the file part of a `PT_LOAD` segment.
pub fn vaddr_to_offset(segments: &[LoadSegment], vaddr: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
        .map(|s| s.offset + (vaddr - s.vaddr))
}

/// Bytes from a link-time address to the end of its segment's file data.
fn segment_tail<'a, R: ReadRef<'a>>(
    segments: &[LoadSegment],
    data: R,
    vaddr: u64,
) -> Option<&'a [u8]> {
    let seg = segments
        .iter()
        .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)?;
    let offset = seg.offset + (vaddr - seg.vaddr);
    data.read_bytes_at(offset, seg.offset + seg.filesz - offset)
        .ok()
}

/// Load bias (runtime address − link-time address) of a file from its mappings.
///
/// A mapping at `start` with file offset `off` covers the segment whose page-aligned file range
/// contains `off`; that segment's page-aligned `p_vaddr` plus `off − page_down(p_offset)` was
/// placed at `start`. Every mapping votes for the bias of each segment it may belong to (pages
/// shared by two segments vote twice); the bias with the most votes wins, ties going to the
/// lowest file offset. Non-PIE executables come out with a bias of 0.
pub fn load_bias(segments: &[LoadSegment], mappings: &[&Mapping], page_size: u64) -> Option<u64> {
    let page_down = |x: u64| x & !(page_size - 1);
    let mut sorted: Vec<&Mapping> = mappings.to_vec();
    sorted.sort_by_key(|m| m.offset);
    let mut votes: Vec<(u64, usize)> = Vec::new();
    for m in sorted {
        for seg in segments {
            let first = page_down(seg.offset);
            if m.offset < first || m.offset >= seg.offset + seg.filesz.max(1) {
                continue;
            }
            let link = page_down(seg.vaddr) + (m.offset - first);
            let bias = m.start.wrapping_sub(link);
            match votes.iter_mut().find(|(b, _)| *b == bias) {
                Some((_, n)) => *n += 1,
                None => votes.push((bias, 1)),
            }
        }
    }
    let best = votes.iter().map(|(_, n)| *n).max()?;
    votes.into_iter().find(|(_, n)| *n == best).map(|(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(start: u64, offset: u64) -> Mapping {
        Mapping {
            start,
            end: start + 0x1000,
            readable: true,
            writable: false,
            executable: false,
            offset,
            dev_major: 0,
            dev_minor: 0,
            inode: 1,
            path: Some(PathBuf::from("/x")),
            deleted: false,
        }
    }

    fn seg(vaddr: u64, offset: u64, filesz: u64, writable: bool) -> LoadSegment {
        LoadSegment {
            vaddr,
            memsz: filesz,
            offset,
            filesz,
            writable,
            executable: false,
        }
    }

    #[test]
    fn bias_of_non_pie_executable_is_zero() {
        // Layout of Debian's /usr/bin/python3.11.
        let segs = [
            seg(0x400000, 0, 0x1e3e8, false),
            seg(0x41f000, 0x1f000, 0x2b2289, false),
            seg(0x6d2000, 0x2d2000, 0x272968, false),
            seg(0x945dc8, 0x544dc8, 0x13e4b0, true),
        ];
        let maps = [
            mapping(0x400000, 0),
            mapping(0x41f000, 0x1f000),
            mapping(0x6d2000, 0x2d2000),
            mapping(0x945000, 0x544000),
        ];
        let refs: Vec<&Mapping> = maps.iter().collect();
        assert_eq!(load_bias(&segs, &refs, 0x1000), Some(0));
    }

    #[test]
    fn bias_of_shared_library() {
        let segs = [
            seg(0, 0, 0x2000, false),
            seg(0x3000, 0x2000, 0x1000, false),
            seg(0x5e00, 0x3e00, 0x400, true),
        ];
        let base = 0x7f00_0000_0000;
        let maps = [
            mapping(base + 0x5000, 0x3000),
            mapping(base, 0),
            mapping(base + 0x3000, 0x2000),
        ];
        let refs: Vec<&Mapping> = maps.iter().collect();
        assert_eq!(load_bias(&segs, &refs, 0x1000), Some(base));
        assert_eq!(load_bias(&segs, &[], 0x1000), None);
    }

    #[test]
    fn offsets_outside_file_data_are_unmapped() {
        let segs = [seg(0x1000, 0x1000, 0x100, true)];
        assert_eq!(vaddr_to_offset(&segs, 0x1050), Some(0x1050));
        assert_eq!(vaddr_to_offset(&segs, 0x1100), None);
    }
}
