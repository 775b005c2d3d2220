//! Copies what printing a code object needs (file name, name, first line, line table) into a
//! code record, once per code object and process: a process killed by the signal is gone
//! before user space could read it.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use pytrace_common::{
    code_flags, kind, CodeRecord, Counter, ProcInfo, PyStr, CODE_RECORD_FIXED, LINETABLE_MAX,
    STR_MAX_BYTES, STR_MAX_CODEPOINTS, UNICODE_ASCII_BIT, UNICODE_COMPACT_BIT, UNICODE_KIND_MASK,
    UNICODE_KIND_SHIFT,
};

use crate::{
    counters::bump,
    emit::{self, Wake},
    read::Memory,
};

/// Code objects already sent to user space.
#[map]
static SENT_CODES: LruHashMap<CodeKey, u8> = LruHashMap::with_max_entries(65536, 0);

#[map]
static CODE_SCRATCH: PerCpuArray<CodeRecord> = PerCpuArray::with_max_entries(1, 0);

/// Identity of a code object as sent: the object and the three objects the record copies, so a
/// freed and reused address is sent again.
#[repr(C)]
#[derive(Clone, Copy)]
struct CodeKey {
    pid: u32,
    generation: u32,
    code: u64,
    filename: u64,
    name: u64,
    linetable: u64,
}

/// Sends the code record for `code` unless this process's copy was already sent.
#[inline(always)]
pub fn send_code<M: Memory>(mem: M, pid: u32, code: u64, proc: &ProcInfo, lost: &mut u32) {
    let off = &proc.offsets;
    let (Some(filename), Some(name), Some(linetable)) = (
        mem.field_u64(code, off.code_filename),
        mem.field_u64(code, off.code_name),
        mem.field_u64(code, off.code_linetable),
    ) else {
        bump(Counter::CodeReadFailed);
        return;
    };
    let key = CodeKey {
        pid,
        generation: proc.generation,
        code,
        filename,
        name,
        linetable,
    };
    if SENT_CODES.get_ptr(&key).is_some() {
        return;
    }
    let Some(rec) = CODE_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::NoScratch);
        return;
    };
    // SAFETY: per-CPU scratch owned by this walk.
    let rec = unsafe { &mut *rec };
    rec.kind = kind::CODE;
    rec.pid = pid;
    rec.code = code;
    rec.flags = 0;
    rec.firstlineno = match mem.user_u32(code.wrapping_add(off.code_firstlineno as u64)) {
        Some(v) => v as i32,
        None => {
            bump(Counter::CodeReadFailed);
            return;
        }
    };
    if !copy_str(mem, &mut rec.filename, filename, proc) {
        rec.flags |= code_flags::FILENAME_UNREADABLE;
    }
    if !copy_str(mem, &mut rec.name, name, proc) {
        rec.flags |= code_flags::NAME_UNREADABLE;
    }
    let copied = copy_linetable(mem, rec, linetable, proc);
    let len = CODE_RECORD_FIXED + copied as usize;
    if emit::prefix(rec, len, Wake::Later) {
        bump(Counter::CodesSent);
        let _ = SENT_CODES.insert(&key, &1, 0);
    } else {
        *lost += 1;
    }
}

/// Copies a compact `str`: its length, character size and up to 501 code points.
#[inline(always)]
fn copy_str<M: Memory>(mem: M, dst: &mut PyStr, obj: u64, proc: &ProcInfo) -> bool {
    let off = &proc.offsets;
    dst.char_size = 0;
    dst.copied = 0;
    dst.length = 0;
    let (Some(length), Some(state)) = (
        mem.field_u64(obj, off.unicode_length),
        mem.user_u32(obj.wrapping_add(off.unicode_state as u64)),
    ) else {
        bump(Counter::StringReadFailed);
        return false;
    };
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

/// Copies the start of the line table (a `bytes` object); returns the bytes copied.
#[inline(always)]
fn copy_linetable<M: Memory>(mem: M, rec: &mut CodeRecord, obj: u64, proc: &ProcInfo) -> u32 {
    let off = &proc.offsets;
    rec.linetable_len = 0;
    rec.linetable_copied = 0;
    let Some(size) = mem.field_u64(obj, off.bytes_size) else {
        bump(Counter::LineTableReadFailed);
        rec.flags |= code_flags::LINETABLE_UNREADABLE;
        return 0;
    };
    let mut n = size;
    if n > LINETABLE_MAX as u64 {
        bump(Counter::LineTableTruncated);
        rec.flags |= code_flags::LINETABLE_TRUNCATED;
        n = LINETABLE_MAX as u64;
    }
    let n = n as u32;
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
    n
}
