//! Kernel structure offsets read from the running kernel's BTF (Rust eBPF has no CO-RE).

use btf_rs::{Btf, BtfType, Type};

use crate::error::Error;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `task_struct.thread.fsbase`: the user thread pointer, which glibc's
/// `pthread_self()` returns on x86_64.
pub fn fsbase_offset() -> Result<u64, Error> {
    let btf = Btf::from_file(VMLINUX_BTF)
        .map_err(|e| Error::KernelSupport(format!("cannot read {VMLINUX_BTF}: {e}")))?;
    member_offset(&btf, "task_struct", &["thread", "fsbase"])
        .ok_or_else(|| Error::KernelSupport("task_struct.thread.fsbase not found in BTF".into()))
}

/// Offset in bytes of a nested member path, following struct-typed members.
fn member_offset(btf: &Btf, root: &str, path: &[&str]) -> Option<u64> {
    let mut ty = btf
        .resolve_types_by_name(root)
        .ok()?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))?;
    let mut bits = 0u64;
    for name in path {
        let Type::Struct(s) = &ty else { return None };
        let member = s
            .members
            .iter()
            .find(|m| btf.resolve_name(*m).ok().as_deref() == Some(name))?;
        bits += member.bit_offset() as u64;
        ty = resolve_concrete(btf, btf.resolve_chained_type(member).ok()?)?;
    }
    Some(bits / 8)
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
    fn fsbase_offset_is_inside_task_struct() {
        if !std::path::Path::new(super::VMLINUX_BTF).exists() {
            eprintln!("no kernel BTF here; skipped");
            return;
        }
        let off = super::fsbase_offset().unwrap();
        assert!(off > 0 && off < 16384, "implausible offset {off}");
        assert_eq!(off % 8, 0);
    }
}
