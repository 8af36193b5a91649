//! `cargo xtask bench [ARGS]`: build (as `cargo xtask build`), then run
//! `target/release/netcopy bench ARGS` as root, from the workspace root so that the
//! benchmark records the commit it ran from.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::{bail, Result};

use crate::build::workspace_root;

pub fn bench(netcopy: &Path, args: &[String]) -> Result<()> {
    if Command::new("iperf3")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!(
            "bench: iperf3 is not installed; the iperf3 comparisons will be skipped. Install it \
             with `cargo xtask setup` or `apt-get install -y iperf3`"
        );
    }
    let mut cmd = if crate::is_root() {
        Command::new(netcopy)
    } else {
        if Command::new("sudo").args(["-n", "true"]).status().is_err() {
            bail!(
                "netcopy bench loads eBPF programs and needs root, and sudo is not available: \
                 run `cargo xtask bench` as root"
            );
        }
        println!("bench: not root, re-running netcopy with sudo");
        let mut cmd = Command::new("sudo");
        cmd.arg("--preserve-env=RUST_LOG").arg(netcopy);
        cmd
    };
    cmd.arg("bench").args(args).current_dir(workspace_root());
    // Replace this process: Ctrl-C and the exit code go straight to netcopy.
    let err = cmd.exec();
    bail!("could not start {}: {err}", netcopy.display())
}
