//! Small facts about the running process and system: privileges, kernel release,
//! executables on PATH, a process's CPU time.

use std::{env, fs, path::PathBuf};

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

/// The first executable file called `name` in a directory of PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// CPU seconds of process `pid` (all its threads, live and exited), from its CPU clock;
/// None when the process is gone.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: valid out-pointer; a pid that is gone yields an error code.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec and a clock id the kernel handed out.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}
