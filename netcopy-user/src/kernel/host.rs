//! What the running kernel offers, read from its own files: config, kallsyms, tracefs.

use std::{
    collections::HashSet,
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use crate::util::sys::kernel_release;

/// Value of a kernel config option (`CONFIG_KPROBES` -> `Some("y")`), from /proc/config.gz
/// or /boot/config-RELEASE. `Ok(None)` when the config is readable and the option unset;
/// an error when no config can be found at all.
pub fn kernel_config(option: &str) -> Result<Option<String>> {
    let text = read_kernel_config()?;
    Ok(config_value(&text, option))
}

fn read_kernel_config() -> Result<String> {
    let mut text = String::new();
    if let Ok(file) = fs::File::open("/proc/config.gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .context("reading /proc/config.gz")?;
        return Ok(text);
    }
    let boot = PathBuf::from(format!("/boot/config-{}", kernel_release()));
    fs::read_to_string(&boot).with_context(|| {
        format!(
            "no kernel config: neither /proc/config.gz nor {} is readable",
            boot.display()
        )
    })
}

fn config_value(text: &str, option: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(option)?;
        rest.strip_prefix('=').map(|v| v.to_string())
    })
}

/// Which of `symbols` appear in /proc/kallsyms (text symbols, any module).
pub fn kallsyms_present(symbols: &[&str]) -> Result<HashSet<String>> {
    let file = fs::File::open("/proc/kallsyms").context("opening /proc/kallsyms")?;
    let wanted: HashSet<&str> = symbols.iter().copied().collect();
    let mut found = HashSet::new();
    for line in BufReader::new(file).lines() {
        let line = line.context("reading /proc/kallsyms")?;
        let mut parts = line.split_whitespace();
        let (_addr, _kind, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(k), Some(n)) => (a, k, n),
            _ => continue,
        };
        if wanted.contains(name) {
            found.insert(name.to_string());
        }
    }
    Ok(found)
}

/// The tracefs mount point, mounting it at /sys/kernel/tracing when absent.
pub fn tracefs() -> Result<PathBuf> {
    for candidate in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(PathBuf::from(candidate));
        }
    }
    let target = Path::new("/sys/kernel/tracing");
    if !target.is_dir() {
        bail!("tracefs is not available: /sys/kernel/tracing does not exist (CONFIG_TRACING off?)");
    }
    mount_tracefs(target)?;
    if target.join("events").is_dir() {
        Ok(target.to_path_buf())
    } else {
        bail!(
            "mounted tracefs at {} but it has no events/ directory",
            target.display()
        )
    }
}

fn mount_tracefs(target: &Path) -> Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in literal");
    let (src, dir, fstype) = (
        c("tracefs"),
        c(target.to_str().unwrap_or("/sys/kernel/tracing")),
        c("tracefs"),
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "tracefs is not mounted and mounting it at {} failed: {err} (needs root)",
            target.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_value_finds_set_and_unset_options() {
        let text = "CONFIG_A=y\n# CONFIG_KPROBES is not set\nCONFIG_AB=m\nCONFIG_S=\"x\"\n";
        assert_eq!(config_value(text, "CONFIG_A").as_deref(), Some("y"));
        assert_eq!(config_value(text, "CONFIG_AB").as_deref(), Some("m"));
        assert_eq!(config_value(text, "CONFIG_KPROBES"), None);
        assert_eq!(config_value(text, "CONFIG_S").as_deref(), Some("\"x\""));
    }
}
