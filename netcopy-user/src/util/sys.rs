//! Small facts about the running process and system: privileges, kernel release.

use std::fs;

use anyhow::{bail, Result};

/// True when the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The error every privileged command gives when it is not run as root. Root, not a set
/// of capabilities: netcopy checks the effective user id, and reads and mounts tracefs,
/// which is root's unless an administrator opened it up.
pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root to load eBPF programs; run it with sudo");
    }
    Ok(())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}
