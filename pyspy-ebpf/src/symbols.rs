//! Code objects: proves which code object a frame points at (its fingerprint), and copies what
//! printing it needs (file name, name, first line, line table) into a code record, once per
//! (process, code object, fingerprint): a process killed by the signal is gone before user
//! space could read it.
//!
//! # The fingerprint
//!
//! A freed code object's address is reused by the next one of the same size, often with its
//! name, file name and line table reused at the same addresses too, so an address alone says
//! nothing. The fingerprint mixes, read at this dump:
//!
//! * the code object's header from `co_firstlineno` to its line-table pointer (one read): the
//!   first line and the pointers to file name, name and line table in every version, plus what
//!   lies between — argument/local counts and the `co_code`/`co_consts`/`co_names` pointers up
//!   to 3.10; the qualified-name and local-name pointers from 3.11, and 3.12+'s `co_version`.
//!   None of these is expected to change during the object's life (one that did would only
//!   cost one more record);
//! * the name's and the file name's length, cached hash and state (the hash is the content's:
//!   set when the string is interned, as code names are, or first hashed);
//! * the line table's size, cached hash and first 8 bytes.
//!
//! What it proves: a frame is paired only with a record read from an object that agreed with
//! it on all of that; a reused address with any other first line, name, file name (length or
//! computed hash), or line-table size or start gets a new record.
//!
//! # Proven once per code object and CPU, where the version allows it
//!
//! Reading the strings and the line table costs most of a sample: the interpreter does not
//! touch them while it runs, so each read is a cache miss. From 3.12 every code object carries
//! `co_version`, a serial number given as it is made from a counter that only grows (and
//! stops at 0 when exhausted): a code object made at a freed one's address has another one.
//! It lies in the header window, read for every code object anyway. So when a code object's
//! header window (address, `co_version` ≠ 0, first line, string and line-table pointers…) is
//! exactly what it was when this CPU last proved it with the full fingerprint and sent (or
//! found sent) its record, it is the same object, and that fingerprint is reused without
//! reading anything else (`PROVEN`). Where the version has no such serial (≤3.11) or it is 0,
//! the full fingerprint is read every time: a header that stayed the same proves nothing
//! there, since a new code object can reuse the old one's address and, with them freed too,
//! its strings' and line table's addresses. Entries are also dropped when user space forgets
//! code records (`CODES_EPOCH`), so a reused fingerprint always has its record there.
//! The counter is the process's in 3.12 and each interpreter's from 3.13: two
//! sub-interpreters can give the same number, so a code object of one interpreter made at a
//! freed one's address of another, with the same number and every other header word equal
//! (first line, counts, and pointers to strings and a line table at the same addresses) would
//! be taken for it.
//!
//! What it cannot prove: that a new object with all of these equal (every referenced object
//! reused at the same address, strings of equal length whose hash was never computed or
//! collides, a line table of the same size and the same first 8 bytes but different later
//! bytes) is the old one; nor can any 64-bit hash rule out a collision. A field that does
//! change (a hash computed later, a string interned later) only costs one more record.

use crate::platform::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use pytrace_common::{
    code_flags, kind, CodeChunk, CodeKey, CodeRecord, Counter, ProcInfo, PyStr, BYTES_PREFIX,
    CODE_CHUNK_FIXED, CODE_RECORD_FIXED, LINETABLE_CHUNKS, LINETABLE_LIMIT, LINETABLE_MAX,
    NO_OFFSET, STR_MAX_BYTES, STR_MAX_CODEPOINTS, UNICODE_ASCII_BIT, UNICODE_COMPACT_BIT,
    UNICODE_KIND_MASK, UNICODE_KIND_SHIFT,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    read::{mix, Memory, Window, HEADER_WORDS, WINDOWS, WINDOW_WORDS},
};

/// Code objects already sent to user space, by (process, generation, address, fingerprint).
/// User space removes the keys of records it drops.
#[map]
pub(crate) static SENT_CODES: LruHashMap<CodeKey, u8> = LruHashMap::with_max_entries(65536, 0);

#[map]
static CODE_SCRATCH: PerCpuArray<CodeRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
static CHUNK_SCRATCH: PerCpuArray<CodeChunk> = PerCpuArray::with_max_entries(1, 0);

/// Code objects proven on this CPU (a direct-mapped table by address; a slot keeps the last
/// one proven there). A slot serves twice: within the capture that proved it, for a code
/// object repeated by recursion or by many threads (one look-up per capture, any version);
/// across captures, where `co_version` proves identity (see the module's header).
#[map]
static PROVEN: PerCpuArray<ProvenCodes> = PerCpuArray::with_max_entries(1, 0);

/// Bumped by user space each time it forgets code records (and removes their `SENT_CODES`
/// keys): slots proven before no longer vouch that the record is there.
#[map]
pub(crate) static CODES_EPOCH: Array<u64> = Array::with_max_entries(1, 0);

/// Slots of `PROVEN` (a power of two).
const PROVEN_SLOTS: usize = 512;

/// `ProvenSlot.epoch` of a slot that only serves its own capture: its record was not sent
/// (ring buffer full), its header unreadable, or its version has no `co_version`.
const NO_EPOCH: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
struct ProvenCodes {
    slots: [ProvenSlot; PROVEN_SLOTS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ProvenSlot {
    /// The capture that last proved or used it.
    capture_id: u64,
    code: u64,
    fingerprint: u64,
    /// Hash of the header window as read when proven (address and `co_version` included).
    header: u64,
    /// `CODES_EPOCH` read before the record was found sent or sent; `NO_EPOCH`.
    epoch: u64,
    pid: u32,
    generation: u32,
}

impl ProvenSlot {
    /// Whether this slot proves `code` the same object (see the module's header): proven in
    /// full with the same header (address and non-zero `co_version` included), in the same
    /// process and table generation, and its record still in user space (`epoch` current).
    #[inline(always)]
    fn proves(&self, code: u64, pid: u32, generation: u32, header: u64, epoch: u64) -> bool {
        epoch != NO_EPOCH
            && self.epoch == epoch
            && self.code == code
            && self.header == header
            && self.pid == pid
            && self.generation == generation
    }
}

/// The slot of `PROVEN` for `code`.
#[inline(always)]
fn slot_index(code: u64) -> usize {
    ((code >> 4) ^ (code >> 13)) as usize & (PROVEN_SLOTS - 1)
}

/// This CPU's slot for `code`.
#[inline(always)]
fn slot(code: u64) -> Option<&'static mut ProvenSlot> {
    let table = PROVEN.get_ptr_mut(0)?;
    // SAFETY: per-CPU table; programs on one CPU do not interleave (the walk state's `busy`
    // flag guards nesting), and no other reference to it is alive.
    unsafe { &mut *table }.slots.get_mut(slot_index(code))
}

#[inline(always)]
fn codes_epoch() -> u64 {
    CODES_EPOCH.get(0).copied().unwrap_or(NO_EPOCH)
}

/// The fingerprint of `code` if it was already looked at in this dump.
#[inline(always)]
pub fn seen(dump_id: u64, code: u64) -> Option<u64> {
    let slot = slot(code)?;
    (slot.capture_id == dump_id && slot.code == code).then_some(slot.fingerprint)
}

/// The fingerprint of `code` in this dump (0 when its header cannot be read), sending its
/// code record first if this (process, code object, fingerprint) was not sent yet; noted so
/// that the code object is looked up once per dump ([`seen`]). With `one_stopped_thread`, the
/// capture reads only the thread it interrupted, which stays stopped throughout: see
/// [`read_fields`].
#[inline(always)]
pub fn fingerprint<M: Memory>(
    mem: M,
    pid: u32,
    dump_id: u64,
    code: u64,
    proc: &ProcInfo,
    lost: &mut u32,
    one_stopped_thread: bool,
) -> u64 {
    let Some(slot) = slot(code) else {
        bump(Counter::NoScratch);
        return 0;
    };
    let memo = if one_stopped_thread { dump_id } else { 0 };
    let (fp, header, epoch) = look_up(mem, pid, code, proc, lost, slot, memo);
    slot.capture_id = dump_id;
    slot.code = code;
    slot.fingerprint = fp;
    slot.header = header;
    slot.epoch = epoch;
    slot.pid = pid;
    slot.generation = proc.generation;
    fp
}

/// What one code object's fingerprint is made of, as read.
struct CodeFields {
    filename: u64,
    name: u64,
    linetable: u64,
    firstlineno: i32,
    filename_hdr: Option<StrHeader>,
    name_hdr: Option<StrHeader>,
    /// The line table's size, or `None` when unreadable.
    linetable_size: Option<u64>,
    fingerprint: u64,
}

/// `length` and `state` of a `str`, from the header read for the fingerprint.
#[derive(Clone, Copy)]
struct StrHeader {
    length: u64,
    state: u32,
}

/// The fingerprint of `code` when this CPU's slot for it proves it by its `co_version` (see the
/// module's header): one read, no record to send. Noted for the rest of this dump.
#[inline(always)]
pub fn known<M: Memory>(mem: M, pid: u32, dump_id: u64, code: u64, proc: &ProcInfo) -> Option<u64> {
    let off = &proc.offsets;
    let win = &proc.windows;
    if off.code_version == NO_OFFSET {
        return None;
    }
    let slot = slot(code)?;
    if slot.code != code || slot.pid != pid || slot.epoch == NO_EPOCH {
        return None;
    }
    let scratch = WINDOWS.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this walk.
    let buf = unsafe { &mut (*scratch).code };
    let hdr = Window::read(mem, buf, code, win.code_start, win.code_len)?;
    let header = mix(hdr.mix_into(code, win.code_len), pid as u64);
    if hdr.u32_at(off.code_version) == 0
        || !slot.proves(code, pid, proc.generation, header, codes_epoch())
    {
        return None;
    }
    bump(Counter::CodesByVersion);
    slot.capture_id = dump_id;
    Some(slot.fingerprint)
}

/// (fingerprint, header hash, epoch) of `code`, for its slot: the slot's fingerprint when it
/// proves the same object (see the module's header), else the full fingerprint, sending the
/// record if it was not sent.
#[inline(always)]
fn look_up<M: Memory>(
    mem: M,
    pid: u32,
    code: u64,
    proc: &ProcInfo,
    lost: &mut u32,
    slot: &ProvenSlot,
    memo: u64,
) -> (u64, u64, u64) {
    let off = &proc.offsets;
    let win = &proc.windows;
    let Some(scratch) = WINDOWS.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return (0, 0, NO_EPOCH);
    };
    // SAFETY: per-CPU scratch owned by this walk; the buffers are distinct fields.
    let scratch = unsafe { &mut *scratch };
    let Some(hdr) = Window::read(mem, &mut scratch.code, code, win.code_start, win.code_len) else {
        bump(Counter::CodeReadFailed);
        return (0, 0, NO_EPOCH);
    };
    let header = mix(hdr.mix_into(code, win.code_len), pid as u64);
    let version = if off.code_version != NO_OFFSET {
        hdr.u32_at(off.code_version)
    } else {
        0
    };
    // Read before the record is found sent, or sent: user space forgetting it later bumps it.
    let epoch = if version != 0 {
        codes_epoch()
    } else {
        NO_EPOCH
    };
    if slot.proves(code, pid, proc.generation, header, epoch) {
        bump(Counter::CodesByVersion);
        return (slot.fingerprint, header, epoch);
    }
    let bufs = StrBufs {
        filename: &mut scratch.filename,
        name: &mut scratch.name,
        linetable: &mut scratch.linetable,
        filename_addr: &mut scratch.filename_addr,
        filename_capture: &mut scratch.filename_capture,
    };
    let fields = read_fields(mem, bufs, &hdr, code, proc, memo);
    let key = CodeKey {
        pid,
        generation: proc.generation,
        code,
        fingerprint: fields.fingerprint,
    };
    let sent = SENT_CODES.get_ptr(&key).is_some() || send_code(mem, &key, &fields, proc, lost);
    (
        fields.fingerprint,
        header,
        if sent { epoch } else { NO_EPOCH },
    )
}

/// Buffers of the reads after the header window's, and which file name `filename` holds.
struct StrBufs<'a> {
    filename: &'a mut [u64; HEADER_WORDS],
    name: &'a mut [u64; HEADER_WORDS],
    linetable: &'a mut [u64; HEADER_WORDS],
    filename_addr: &'a mut u64,
    filename_capture: &'a mut u64,
}

/// The rest of the fingerprint of the code object whose header window is `hdr`.
///
/// With `memo` (the capture's id; 0: none), a file name whose header this capture already read
/// is not read again: the code objects of one module share one file-name object, so a stack
/// in one module reads it once instead of once per code object. Sound only where `memo` is
/// given: a capture of the one thread it interrupted, which stays stopped throughout. Each
/// frame of that thread holds a reference to its code object, and each code object one to its
/// file name, so no file name read in the capture can be freed, and its address reused,
/// before the capture ends.
#[inline(always)]
fn read_fields<M: Memory>(
    mem: M,
    scratch: StrBufs<'_>,
    hdr: &Window<'_, WINDOW_WORDS>,
    code: u64,
    proc: &ProcInfo,
    memo: u64,
) -> CodeFields {
    let off = &proc.offsets;
    let win = &proc.windows;
    let filename = hdr.u64_at(off.code_filename);
    let name = hdr.u64_at(off.code_name);
    let linetable = hdr.u64_at(off.code_linetable);
    let firstlineno = hdr.u32_at(off.code_firstlineno) as i32;
    let mut h = hdr.mix_into(code, win.code_len);
    let (filename_hdr, h1) =
        if memo != 0 && *scratch.filename_capture == memo && *scratch.filename_addr == filename {
            held_str_header(scratch.filename, h, proc)
        } else {
            let read = str_header(mem, scratch.filename, filename, h, proc);
            // Noted only when read: a failed read leaves the buffer without a header.
            *scratch.filename_capture = if read.0.is_some() { memo } else { 0 };
            *scratch.filename_addr = filename;
            read
        };
    let (name_hdr, h2) = str_header(mem, scratch.name, name, h1, proc);
    h = h2;
    let linetable_size = match Window::read(
        mem,
        scratch.linetable,
        linetable,
        win.bytes_start,
        win.bytes_len,
    ) {
        Some(w) => {
            let size = w.u64_at(off.bytes_size);
            let mut start = w.u64_at(off.bytes_data);
            // Bytes past the end of the table are not part of it.
            if size < BYTES_PREFIX as u64 {
                start &= (1u64 << (size * 8)) - 1;
            }
            // The header words before the data (size, cached hash), then the data's start.
            h = mix(
                w.mix_into(h, off.bytes_data.wrapping_sub(win.bytes_start)),
                start,
            );
            Some(size)
        }
        None => {
            h = mix(h, 2);
            None
        }
    };
    CodeFields {
        filename,
        name,
        linetable,
        firstlineno,
        filename_hdr,
        name_hdr,
        linetable_size,
        fingerprint: if h == 0 { 1 } else { h },
    }
}

/// Reads a `str`'s header (`length`, `hash`, `state`) in one piece and mixes it into `h`.
#[inline(always)]
fn str_header<M: Memory>(
    mem: M,
    buf: &mut [u64; HEADER_WORDS],
    obj: u64,
    h: u64,
    proc: &ProcInfo,
) -> (Option<StrHeader>, u64) {
    let win = &proc.windows;
    match Window::read(mem, buf, obj, win.str_start, win.str_len) {
        Some(w) => str_fields(&w, h, proc),
        None => (None, mix(h, 1)),
    }
}

/// [`str_header`] of the header a successful read left in `buf`, not read again.
#[inline(always)]
fn held_str_header(buf: &[u64; HEADER_WORDS], h: u64, proc: &ProcInfo) -> (Option<StrHeader>, u64) {
    str_fields(&Window::held(buf, proc.windows.str_start), h, proc)
}

/// A `str` header's fields, and `h` with the header mixed in.
#[inline(always)]
fn str_fields(w: &Window<'_, HEADER_WORDS>, h: u64, proc: &ProcInfo) -> (Option<StrHeader>, u64) {
    let off = &proc.offsets;
    (
        Some(StrHeader {
            length: w.u64_at(off.unicode_length),
            state: w.u32_at(off.unicode_state),
        }),
        w.mix_into(h, proc.windows.str_len),
    )
}

/// Sends the code record (and the rest of a long line table) for `key`; marks it sent when
/// every piece went out, and says whether it did.
#[inline(always)]
fn send_code<M: Memory>(
    mem: M,
    key: &CodeKey,
    f: &CodeFields,
    proc: &ProcInfo,
    lost: &mut u32,
) -> bool {
    let Some(rec) = CODE_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return false;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let rec = unsafe { &mut *rec };
    rec.kind = kind::CODE;
    rec.pid = key.pid;
    rec.code = key.code;
    rec.fingerprint = key.fingerprint;
    rec.generation = key.generation;
    rec.flags = 0;
    rec.firstlineno = f.firstlineno;
    if !copy_str(mem, &mut rec.filename, f.filename, &f.filename_hdr, proc) {
        rec.flags |= code_flags::FILENAME_UNREADABLE;
    }
    if !copy_str(mem, &mut rec.name, f.name, &f.name_hdr, proc) {
        rec.flags |= code_flags::NAME_UNREADABLE;
    }
    let total = copy_linetable(mem, rec, f.linetable, f.linetable_size, proc);
    let copied = rec.linetable_copied;
    let len = CODE_RECORD_FIXED + copied as usize;
    if !emit::prefix(rec, len, Wake::Later) {
        *lost += 1;
        return false;
    }
    bump(Counter::CodesSent);
    if total > copied && !send_chunks(mem, key, f.linetable, total, proc) {
        *lost += 1;
        return false;
    }
    let _ = SENT_CODES.insert(key, &1, 0);
    true
}

/// Sends bytes `LINETABLE_MAX..total` of the line table as continuation records.
#[inline(always)]
fn send_chunks<M: Memory>(mem: M, key: &CodeKey, obj: u64, total: u32, proc: &ProcInfo) -> bool {
    let Some(chunk) = CHUNK_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return false;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let chunk = unsafe { &mut *chunk };
    chunk.kind = kind::CODE_CHUNK;
    chunk.pid = key.pid;
    chunk.code = key.code;
    chunk.fingerprint = key.fingerprint;
    let data = obj.wrapping_add(proc.offsets.bytes_data as u64);
    for i in 1..=LINETABLE_CHUNKS {
        let offset = i * LINETABLE_MAX as u32;
        if offset >= total {
            break;
        }
        let mut n = total - offset;
        if n > LINETABLE_MAX as u32 {
            n = LINETABLE_MAX as u32;
        }
        if !mem.user_bytes(chunk.data.as_mut_ptr(), n, data.wrapping_add(offset as u64)) {
            bump(Counter::LineTableReadFailed);
            return false;
        }
        chunk.offset = offset;
        chunk.len = n;
        if !emit::prefix(chunk, CODE_CHUNK_FIXED + n as usize, Wake::Later) {
            return false;
        }
    }
    true
}

/// Copies a compact `str` whose header (`length` … `state`) was read for the fingerprint: its
/// length, character size and up to 501 code points.
#[inline(always)]
fn copy_str<M: Memory>(
    mem: M,
    dst: &mut PyStr,
    obj: u64,
    hdr: &Option<StrHeader>,
    proc: &ProcInfo,
) -> bool {
    let off = &proc.offsets;
    dst.char_size = 0;
    dst.copied = 0;
    dst.length = 0;
    let Some(hdr) = hdr else {
        bump(Counter::StringReadFailed);
        return false;
    };
    let length = hdr.length;
    // Free-threaded builds: `interned` is a whole byte before the bit fields.
    let state = hdr.state >> (off.unicode_state_shift & 31);
    if state & UNICODE_COMPACT_BIT == 0 {
        bump(Counter::StringReadFailed);
        return false;
    }
    let char_size = (state >> UNICODE_KIND_SHIFT) & UNICODE_KIND_MASK;
    if char_size != 1 && char_size != 2 && char_size != 4 {
        bump(Counter::StringReadFailed);
        return false;
    }
    let data = if state & UNICODE_ASCII_BIT != 0 {
        off.unicode_ascii_data
    } else {
        off.unicode_compact_data
    };
    let chars = if length > STR_MAX_CODEPOINTS + 1 {
        STR_MAX_CODEPOINTS + 1
    } else {
        length
    };
    let mut n = (chars as u32) * char_size;
    if n > STR_MAX_BYTES as u32 {
        n = STR_MAX_BYTES as u32;
    }
    if !mem.user_bytes(dst.data.as_mut_ptr(), n, obj.wrapping_add(data as u64)) {
        bump(Counter::StringReadFailed);
        return false;
    }
    dst.length = length;
    dst.char_size = char_size;
    dst.copied = n;
    true
}

/// Copies the start of the line table (a `bytes` object of `size` bytes) into the record;
/// returns how many bytes of it the record and its continuations carry in all.
#[inline(always)]
fn copy_linetable<M: Memory>(
    mem: M,
    rec: &mut CodeRecord,
    obj: u64,
    size: Option<u64>,
    proc: &ProcInfo,
) -> u32 {
    let off = &proc.offsets;
    rec.linetable_len = 0;
    rec.linetable_copied = 0;
    let Some(size) = size else {
        bump(Counter::LineTableReadFailed);
        rec.flags |= code_flags::LINETABLE_UNREADABLE;
        return 0;
    };
    let mut total = size;
    if total > LINETABLE_LIMIT as u64 {
        bump(Counter::LineTableTruncated);
        rec.flags |= code_flags::LINETABLE_TRUNCATED;
        total = LINETABLE_LIMIT as u64;
    }
    let mut n = total as u32;
    if n > LINETABLE_MAX as u32 {
        n = LINETABLE_MAX as u32;
    }
    if !mem.user_bytes(
        rec.linetable.as_mut_ptr(),
        n,
        obj.wrapping_add(off.bytes_data as u64),
    ) {
        bump(Counter::LineTableReadFailed);
        rec.flags |= code_flags::LINETABLE_UNREADABLE;
        return 0;
    }
    rec.linetable_len = size;
    rec.linetable_copied = n;
    total as u32
}
