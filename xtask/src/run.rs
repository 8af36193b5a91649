//! `cargo xtask run [ARGS]`: build, then `netcopy run ARGS` as root.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::{bail, Result};

pub fn run(netcopy: &Path, args: &[String]) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let mut cmd = if root {
        let mut cmd = Command::new(netcopy);
        cmd.arg("run");
        cmd
    } else {
        if Command::new("sudo").arg("-n").arg("true").status().is_err() {
            bail!(
                "netcopy run loads eBPF programs and needs root, and sudo is not available: \
                 run `cargo xtask run` as root"
            );
        }
        println!("run: not root, re-running netcopy with sudo");
        let mut cmd = Command::new("sudo");
        cmd.arg("--preserve-env=RUST_LOG").arg(netcopy).arg("run");
        cmd
    };
    cmd.args(args);
    // Replace this process: Ctrl-C and the exit code go straight to netcopy.
    let err = cmd.exec();
    bail!("could not start {}: {err}", netcopy.display())
}
