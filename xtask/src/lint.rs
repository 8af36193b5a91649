//! `cargo xtask lint`: rustfmt and clippy over both workspaces, the host one and the eBPF
//! one (which clippy can only check for bpfel-unknown-none, with the toolchain that has a
//! `core` for it: the same route `cargo xtask build` takes).

use std::{env, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{
    build::{workspace_root, CARGO_ENV_TO_CLEAR},
    toolchain::{self, EbpfReadiness, EbpfToolchain},
};

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    println!("lint: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("running {}", toolchain::render(cmd)))?;
    if !status.success() {
        bail!("{what} failed ({status}): {}", toolchain::render(cmd));
    }
    Ok(())
}

/// Fails at the first check that finds something.
pub fn lint() -> Result<()> {
    let root = workspace_root();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        "rustfmt, host workspace",
        Command::new(&cargo)
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&root),
    )?;
    run(
        "rustfmt, eBPF workspace",
        Command::new(&cargo)
            .args(["fmt", "--", "--check"])
            .current_dir(root.join("netcopy-ebpf")),
    )?;
    // The fuzz targets' workspace (fuzz/): formatted like the rest; clippy would need
    // its nightly build (cargo xtask fuzz builds it with warnings shown).
    run(
        "rustfmt, fuzz workspace",
        Command::new(&cargo)
            .args(["fmt", "--", "--check"])
            .current_dir(root.join("fuzz")),
    )?;
    run(
        "clippy, host workspace",
        Command::new(&cargo)
            .args(["clippy", "--all-targets", "--", "-D", "warnings"])
            .current_dir(&root),
    )?;
    let readiness = EbpfReadiness::check();
    let Some((tc, _linker)) = readiness.ready() else {
        bail!(
            "clippy for the eBPF workspace needs its toolchain; install with:\n  {}",
            readiness.missing_commands().join("\n  ")
        );
    };
    let mut cmd = match &tc {
        EbpfToolchain::RustupNightly { toolchain } => {
            let mut c = Command::new("cargo");
            c.arg(format!("+{toolchain}"))
                .args(["clippy", "-Z", "build-std=core"]);
            c
        }
        EbpfToolchain::PrebuiltCore { rustc, cargo } => {
            // This cargo's own cargo-clippy and clippy-driver: rustup's would look for
            // `core` in a sysroot that has none for bpfel.
            let bin = cargo.parent().unwrap_or(Path::new("/usr/bin"));
            if !bin.join("cargo-clippy").is_file() {
                bail!(
                    "clippy for the eBPF workspace needs Debian's clippy beside {}: \
                     apt-get install -y rust-web-clippy (cargo xtask setup does)",
                    cargo.display()
                );
            }
            let path = env::join_paths(
                std::iter::once(bin.to_path_buf())
                    .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
            )?;
            let mut c = Command::new(cargo);
            c.arg("clippy")
                .env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("PATH", path);
            c
        }
    };
    for var in CARGO_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    if let EbpfToolchain::PrebuiltCore { rustc, .. } = &tc {
        cmd.env("RUSTC", rustc);
    }
    cmd.args([
        "--target",
        "bpfel-unknown-none",
        "--release",
        "--",
        "-D",
        "warnings",
    ])
    .env("CARGO_TARGET_DIR", root.join("target/ebpf"))
    .current_dir(root.join("netcopy-ebpf"));
    run("clippy, eBPF workspace", &mut cmd)?;
    println!("lint: ok");
    Ok(())
}
