//! `cargo xtask build`: the eBPF object first, then the user binary that embeds it.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::toolchain::{self, EbpfToolchain, SetupScope};

pub fn workspace_root() -> PathBuf {
    // xtask's manifest dir is <root>/xtask.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where the eBPF build puts its object.
pub fn ebpf_object_path() -> PathBuf {
    workspace_root().join("target/ebpf/bpfel-unknown-none/release/netcopy")
}

/// Environment variables a parent cargo sets that must not leak into the eBPF build,
/// which uses another toolchain and target.
pub const CARGO_ENV_TO_CLEAR: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "CARGO_MAKEFLAGS",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
];

/// Builds netcopy-ebpf for bpfel-unknown-none and returns the object's path.
pub fn build_ebpf(toolchain: &EbpfToolchain, bpf_linker: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let linker_dir = bpf_linker
        .parent()
        .context("bpf-linker path has no directory")?;
    let path = env::join_paths(
        std::iter::once(linker_dir.to_path_buf())
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )?;
    let mut cmd = match toolchain {
        EbpfToolchain::RustupNightly { toolchain } => {
            let mut cmd = Command::new("cargo");
            cmd.arg(format!("+{toolchain}"))
                .args(["build", "-Z", "build-std=core"]);
            cmd
        }
        EbpfToolchain::PrebuiltCore { rustc, cargo } => {
            let mut cmd = Command::new(cargo);
            cmd.arg("build")
                .env("RUSTC", rustc)
                // aya-ebpf enables the unstable `asm_experimental_arch` feature.
                .env("RUSTC_BOOTSTRAP", "1");
            cmd
        }
    };
    for var in CARGO_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    if let EbpfToolchain::PrebuiltCore { rustc, .. } = toolchain {
        cmd.env("RUSTC", rustc);
    }
    cmd.args(["--target", "bpfel-unknown-none", "--release"])
        .env("CARGO_TARGET_DIR", root.join("target/ebpf"))
        .env("PATH", path)
        .current_dir(root.join("netcopy-ebpf"));
    eprintln!("build: eBPF programs with {}", toolchain.describe());
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {}", toolchain::render(&cmd)))?;
    if !status.success() {
        bail!("building the eBPF programs failed ({status})");
    }
    let object = ebpf_object_path();
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

/// Builds the netcopy binary (release) with the eBPF object embedded.
pub fn build_user(object: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--package", "netcopy-user"])
        .stdout(std::io::stderr())
        .env("NETCOPY_EBPF_OBJECT", object)
        .current_dir(&root)
        .status()
        .context("running cargo build for netcopy-user")?;
    if !status.success() {
        bail!("building netcopy failed ({status})");
    }
    Ok(root.join("target/release/netcopy"))
}

/// Setup check, eBPF object, user binary: what `build`, `run` and `test` all start with.
pub fn build_all() -> Result<PathBuf> {
    let (toolchain, linker) = toolchain::setup(SetupScope {
        ebpf: true,
        ..SetupScope::default()
    })?
    .context("setup returned no eBPF toolchain")?;
    let object = build_ebpf(&toolchain, &linker)?;
    build_user(&object)
}
