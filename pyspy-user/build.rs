//! Builds the eBPF object from `pyspy-ebpf` (nightly, `bpfel-unknown-none`, `build-std=core`)
//! and leaves it in OUT_DIR for `include_bytes_aligned!`.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "pyspy-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../pyspy-ebpf"),
        ..Default::default()
    };
    println!("cargo:rerun-if-changed=../pytrace-common/src");
    aya_build::build_ebpf([ebpf], Toolchain::Nightly)
        .context("building the eBPF programs (run `cargo xtask setup` first)")
        .map_err(|e| anyhow!("{e:#}"))
}
