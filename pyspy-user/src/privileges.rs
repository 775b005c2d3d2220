//! The capabilities pytrace needs, checked once at start (with `capget`, through the `caps`
//! crate), so that it refuses to start rather than run without seeing anything.
//!
//! Found by running pytrace with reduced sets (as root under `setpriv --bounding-set`, and as
//! another user with ambient capabilities) against root's and other users' interpreters:
//! - `CAP_BPF` and `CAP_PERFMON`: load the eBPF programs and attach them through perf events
//!   (`CAP_SYS_ADMIN` grants both, as the kernel's `bpf_capable` and `perfmon_capable` do);
//! - `CAP_SYS_PTRACE`: read another process's `/proc/PID/maps`, `exe`, `root` and memory
//!   (ptrace read access: a root target holds capabilities that a reduced pytrace lacks);
//! - `CAP_DAC_READ_SEARCH`: open the interpreter files those processes map whoever owns them
//!   (a pyenv build under a `0700` home, a container's files); `CAP_DAC_OVERRIDE`, which
//!   container runtimes grant by default, does as well.
//!
//! Optional: `CAP_SYS_ADMIN` for the host-wide uprobe on the dynamic loader (a uprobe perf
//! event with raw samples needs it while `kernel.perf_event_paranoid` is above -1; without it
//! processes that `dlopen` libpython later are missed, and pytrace says so at start), and
//! `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE` for `/proc/PID/map_files`, the only way to an
//! interpreter file deleted since it was mapped.

use caps::{CapSet, Capability};

use crate::error::Error;

fn has(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

/// The required capabilities missing from the effective set, by name (`bpf`: the eBPF
/// programs will be loaded; `pytrace dump --reader process-vm` loads none).
pub fn missing(bpf: bool) -> Vec<Capability> {
    let admin = has(Capability::CAP_SYS_ADMIN) || !bpf;
    [
        (Capability::CAP_BPF, admin),
        (Capability::CAP_PERFMON, admin),
        (Capability::CAP_SYS_PTRACE, false),
        (
            Capability::CAP_DAC_READ_SEARCH,
            has(Capability::CAP_DAC_OVERRIDE),
        ),
    ]
    .into_iter()
    .filter(|&(cap, granted)| !granted && !has(cap))
    .map(|(cap, _)| cap)
    .collect()
}

/// Refuses to start without every required capability, naming those missing.
pub fn check(bpf: bool) -> Result<(), Error> {
    let missing = missing(bpf);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
    Err(Error::Privileges(format!(
        "pytrace needs {} in its effective capabilities (root has them)",
        names.join(", ")
    )))
}

/// Whether the host-wide uprobe on the dynamic loader can be attached.
pub fn can_attach_uprobes() -> bool {
    has(Capability::CAP_SYS_ADMIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_kernels() {
        assert_eq!(Capability::CAP_SYS_PTRACE.to_string(), "CAP_SYS_PTRACE");
        assert_eq!(
            Capability::CAP_DAC_READ_SEARCH.to_string(),
            "CAP_DAC_READ_SEARCH"
        );
    }
}
