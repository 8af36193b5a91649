//! Embeds the eBPF object built by `cargo xtask build` into the netcopy binary, so that
//! the binary is self-contained (it is copied as is into VM images).
//!
//! Host-only builds (`cargo build`, clippy, unit tests) must work on machines without the
//! eBPF toolchain, so a missing object is not a build error: the binary then says, when it
//! needs the programs, that it was built without them and how to build them.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(netcopy_ebpf_embedded)");
    println!("cargo:rerun-if-env-changed=NETCOPY_EBPF_OBJECT");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("NETCOPY_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/bpfel-unknown-none/release/netcopy"));
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("netcopy-ebpf.o");
    match fs::read(&object) {
        Ok(bytes) => {
            fs::write(&out, bytes).expect("write OUT_DIR/netcopy-ebpf.o");
            println!("cargo:rustc-cfg=netcopy_ebpf_embedded");
        }
        Err(_) => {
            fs::write(&out, []).expect("write OUT_DIR/netcopy-ebpf.o");
        }
    }
}
