//! Reading another process's memory: `process_vm_readv`, with `/proc/PID/mem` as fallback.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Fill `buf` with the target's memory at `addr`. Tries `process_vm_readv` first and falls back
/// to `/proc/PID/mem` when it fails for any reason other than the process being gone (e.g. the
/// syscall is filtered, or the pages are not readable through it).
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    match vm_readv(pid, addr, buf) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(e),
        Err(first) => proc_mem_read(pid, addr, buf).map_err(|second| {
            if second.kind() == io::ErrorKind::NotFound {
                first
            } else {
                second
            }
        }),
    }
}

fn vm_readv(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let mut done = 0usize;
    while done < buf.len() {
        let remote_addr = addr
            .checked_add(done as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: buf.len() - done,
        };
        let remote = libc::iovec {
            iov_base: remote_addr as *mut libc::c_void,
            iov_len: buf.len() - done,
        };
        // SAFETY: `local` describes the writable tail of `buf`, which outlives the call; the
        // remote iovec is only interpreted by the kernel in the target's address space.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        done += n as usize;
    }
    Ok(())
}

fn proc_mem_read(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let file = File::open(format!("/proc/{pid}/mem"))?;
    file.read_exact_at(buf, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let data: [u8; 16] = *b"0123456789abcdef";
        let mut out = [0u8; 16];
        read_memory(std::process::id(), data.as_ptr() as u64, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(read_memory(std::process::id(), 8, &mut out).is_err());
    }
}
