//! What the netcopy binary under test says about itself: its subcommands and its mode
//! table (`netcopy modes --json`).

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Whether `netcopy <sub> --help` succeeds, i.e. the binary has that subcommand.
pub fn has_subcommand(netcopy: &Path, sub: &str) -> bool {
    Command::new(netcopy)
        .args([sub, "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The names of the send modes whose row of `netcopy modes --json` satisfies `wanted`, in
/// the table's order: the VM stages pick modes by their claims, never by name (the mode
/// table is the one place that names them).
pub fn modes_where(
    netcopy: &Path,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<String>> {
    let output = Command::new(netcopy)
        .args(["modes", "--json"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} modes --json", netcopy.display()))?;
    if !output.status.success() {
        bail!(
            "`{} modes --json` failed ({}): {}",
            netcopy.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("`netcopy modes --json` printed no JSON")?;
    Ok(json["modes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| wanted(m))
        .filter_map(|m| m["name"].as_str().map(String::from))
        .collect())
}
