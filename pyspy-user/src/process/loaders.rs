//! The dynamic loaders running processes use, so that pytrace probes each one's
//! `_dl_debug_state` hook (called after every library load), not only the host's: a process
//! started from a container image, or from a runtime unpacked with its own glibc, maps a
//! loader of its own.

use std::{collections::BTreeSet, os::unix::fs::MetadataExt, path::PathBuf};

use super::procfs;

/// File names of the dynamic loaders pytrace knows how to probe.
const LOADER_PREFIXES: [&[u8]; 2] = [b"ld-linux", b"ld-musl"];

/// Host paths of the distinct loader files mapped by the running processes (one path per
/// file, by device and inode), besides `known`.
pub fn mapped_loaders(known: &[PathBuf]) -> Vec<PathBuf> {
    let identity = |path: &PathBuf| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let mut seen: BTreeSet<(u64, u64)> = known.iter().filter_map(identity).collect();
    let mut found = Vec::new();
    for pid in procfs::all_pids() {
        let Ok(maps) = procfs::read_maps(pid) else {
            continue;
        };
        let same_root = procfs::same_root(pid);
        for mapping in maps.iter().filter(|m| m.is_file() && !m.deleted) {
            let is_loader = mapping
                .file_name()
                .is_some_and(|n| LOADER_PREFIXES.iter().any(|p| n.starts_with(p)));
            let Some(path) = mapping.path.as_ref().filter(|_| is_loader) else {
                continue;
            };
            let host = match same_root {
                true => path.clone(),
                false => procfs::in_root(pid, path),
            };
            if let Some(id) = identity(&host) {
                if seen.insert(id) {
                    found.push(host);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_loader_is_found_unless_known() {
        let own = super::mapped_loaders(&[]);
        assert!(
            own.iter().any(|p| p.to_string_lossy().contains("ld-linux")),
            "{own:?}"
        );
        let again = super::mapped_loaders(&own);
        assert!(again.is_empty(), "{again:?}");
    }
}
