//! Kernel structure offsets read from the running kernel's BTF (Rust eBPF has no CO-RE).

use btf_rs::{Backend, Btf, Type};

use crate::error::Error;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel structure offsets the eBPF programs need.
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    /// `task_struct.thread.fsbase`: the user thread pointer, which glibc's `pthread_self()`
    /// returns on x86_64.
    pub fsbase: u64,
    /// `task_struct.pid` and `task_struct.tgid`.
    pub task_pid: u64,
    pub task_tgid: u64,
    /// What the kernel side needs to list a process's threads and their names (`tasks.rs`).
    pub threads: ThreadListOffsets,
    /// `task_struct.comm` and `task_struct.on_cpu` (on-demand dumps name the process and
    /// note which threads run; the signal trigger names a dying process).
    pub task_comm: u64,
    pub task_on_cpu: u64,
    /// What the signal trigger reads to tell a death by signal and name it:
    /// `task_struct.{signal, group_leader, start_time}` and
    /// `signal_struct.{flags, group_exit_code, oom_mm}`.
    pub signal: SignalOffsets,
}

/// `task_struct.signal`, `signal_struct.thread_head`, `task_struct.thread_node` (Linux 6.7+)
/// and `task_struct.comm`; all 0 when this kernel lacks one of them, and the kernel side then
/// reports thread names as unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadListOffsets {
    pub task_signal: u64,
    pub signal_thread_head: u64,
    pub task_thread_node: u64,
    pub task_comm: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct SignalOffsets {
    pub task_signal: u64,
    pub task_group_leader: u64,
    pub task_start_time: u64,
    pub flags: u64,
    pub group_exit_code: u64,
    pub oom_mm: u64,
}

pub fn kernel_offsets() -> Result<KernelOffsets, Error> {
    let btf = open_kernel_btf()?;
    let find = |root: &str, path: &[&str]| {
        member_offset(&btf, root, path).ok_or_else(|| {
            Error::KernelSupport(format!("{root}.{} not found in BTF", path.join(".")))
        })
    };
    Ok(KernelOffsets {
        fsbase: find("task_struct", &["thread", "fsbase"])?,
        task_pid: find("task_struct", &["pid"])?,
        task_tgid: find("task_struct", &["tgid"])?,
        threads: thread_list_offsets(&btf),
        task_comm: find("task_struct", &["comm"])?,
        task_on_cpu: find("task_struct", &["on_cpu"])?,
        signal: SignalOffsets {
            task_signal: find("task_struct", &["signal"])?,
            task_group_leader: find("task_struct", &["group_leader"])?,
            task_start_time: find("task_struct", &["start_time"])?,
            flags: find("signal_struct", &["flags"])?,
            group_exit_code: find("signal_struct", &["group_exit_code"])?,
            oom_mm: find("signal_struct", &["oom_mm"])?,
        },
    })
}

/// The kernel's BTF, mapped and read where it is looked at (Linux 6.16+ lets
/// `/sys/kernel/btf/vmlinux` be mapped): the few look-ups pytrace makes cost far less than
/// parsing every type up front, which takes 150–250 ms. Older kernels: parsed whole.
fn open_kernel_btf() -> Result<Btf, Error> {
    Btf::from_file_with_backend(VMLINUX_BTF, Backend::Mmap)
        .or_else(|_| Btf::from_file(VMLINUX_BTF))
        .map_err(|e| Error::KernelSupport(format!("cannot read {VMLINUX_BTF}: {e}")))
}

fn thread_list_offsets(btf: &Btf) -> ThreadListOffsets {
    let found = (
        member_offset(btf, "task_struct", &["signal"]),
        member_offset(btf, "signal_struct", &["thread_head"]),
        member_offset(btf, "task_struct", &["thread_node"]),
        member_offset(btf, "task_struct", &["comm"]),
    );
    match found {
        (Some(task_signal), Some(signal_thread_head), Some(task_thread_node), Some(task_comm))
            if task_signal != 0 && signal_thread_head != 0 && task_thread_node != 0 =>
        {
            ThreadListOffsets {
                task_signal,
                signal_thread_head,
                task_thread_node,
                task_comm,
            }
        }
        _ => ThreadListOffsets::default(),
    }
}

/// Offset in bytes of a nested member path, following struct-typed members and looking
/// through anonymous structs and unions.
fn member_offset(btf: &Btf, root: &str, path: &[&str]) -> Option<u64> {
    let mut ty = btf
        .resolve_types_by_name(root)
        .ok()?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))?;
    let mut bits = 0u64;
    for name in path {
        let (offset, member_ty) = find_member(btf, &ty, name, 0)?;
        bits += offset;
        ty = member_ty;
    }
    Some(bits / 8)
}

/// Bit offset and concrete type of member `name` of `ty`, searching anonymous members too.
fn find_member(btf: &Btf, ty: &Type, name: &str, depth: u32) -> Option<(u64, Type)> {
    let (Type::Struct(s) | Type::Union(s)) = ty else {
        return None;
    };
    if depth > 8 {
        return None;
    }
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        let member_ty = resolve_concrete(btf, btf.resolve_chained_type(m).ok()?)?;
        if member_name == name {
            return Some((m.bit_offset() as u64, member_ty));
        }
        if member_name.is_empty() {
            if let Some((inner, t)) = find_member(btf, &member_ty, name, depth + 1) {
                return Some((m.bit_offset() as u64 + inner, t));
            }
        }
    }
    None
}

/// Strips typedefs and qualifiers.
fn resolve_concrete(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        match &ty {
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                ty = btf.resolve_chained_type(ty.as_btf_type()?).ok()?;
            }
            _ => return Some(ty),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn offsets_are_plausible() {
        if !std::path::Path::new(super::VMLINUX_BTF).exists() {
            eprintln!("no kernel BTF here; skipped");
            return;
        }
        let off = super::kernel_offsets().unwrap();
        assert!(off.fsbase > 0 && off.fsbase < 16384, "{off:?}");
        assert_eq!(off.fsbase % 8, 0);
        // Linux 6.7+ (this machine runs 6.18): the thread list members exist.
        let t = off.threads;
        assert_ne!(t, super::ThreadListOffsets::default(), "{off:?}");
        assert!(t.task_comm > 0 && t.task_comm < 16384, "{off:?}");
    }
}
