//! Finds the toolchain that builds netcopy's eBPF programs, and installs what is missing.
//!
//! Two routes build Rust eBPF (see README.md):
//! - a rustup nightly with the rust-src component: `cargo +nightly build -Z build-std=core`;
//! - Debian's rustc-web, whose package libstd-rust-web-dev-bpf ships a prebuilt `core`
//!   for bpfel-unknown-none (the only route on machines where rust-src cannot be fetched).
//!
//! Both need bpf-linker. Checks come first and each install runs only for what is absent,
//! so a second `cargo xtask setup` installs nothing.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The bpf-linker release we install; it builds with the stable toolchain here and links
/// against Debian's LLVM 22.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages of the rustc-web route.
pub const DEBIAN_EBPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
];
/// Debian's clippy for the rustc-web route (`cargo xtask lint` of the eBPF workspace).
pub const DEBIAN_EBPF_LINT_PACKAGES: &[&str] = &["rust-web-clippy"];
/// Debian packages the VM test needs.
pub const DEBIAN_VM_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static"];
/// Debian packages the benchmarks compare against: iperf3 (throughput), bpftrace (copy
/// counting), linux-perf's `perf trace` and strace (syscall tracing).
pub const DEBIAN_BENCH_PACKAGES: &[&str] = &["iperf3", "bpftrace", "linux-perf", "strace"];
/// Debian packages the report test needs: headless Chromium opens report.html.
pub const DEBIAN_REPORT_PACKAGES: &[&str] = &["chromium"];

/// How the eBPF crate gets built on this machine.
#[derive(Clone, Debug)]
pub enum EbpfToolchain {
    /// `cargo +TOOLCHAIN build -Z build-std=core`.
    RustupNightly { toolchain: String },
    /// `RUSTC_BOOTSTRAP=1 RUSTC=rustc cargo build` with a prebuilt bpf `core`.
    PrebuiltCore { rustc: PathBuf, cargo: PathBuf },
}

impl EbpfToolchain {
    pub fn describe(&self) -> String {
        match self {
            EbpfToolchain::RustupNightly { toolchain } => {
                format!("rustup {toolchain} with rust-src (-Z build-std=core)")
            }
            EbpfToolchain::PrebuiltCore { rustc, .. } => {
                format!(
                    "{} with a prebuilt core for bpfel-unknown-none",
                    rustc.display()
                )
            }
        }
    }
}

/// What the machine has for building eBPF, and what it lacks.
#[derive(Debug)]
pub struct EbpfReadiness {
    pub toolchain: Option<EbpfToolchain>,
    pub bpf_linker: Option<PathBuf>,
}

impl EbpfReadiness {
    pub fn check() -> Self {
        Self {
            toolchain: find_rustup_nightly().or_else(find_prebuilt_core),
            bpf_linker: find_bpf_linker(),
        }
    }

    pub fn ready(&self) -> Option<(EbpfToolchain, PathBuf)> {
        Some((self.toolchain.clone()?, self.bpf_linker.clone()?))
    }

    /// The exact commands that would make this machine ready.
    pub fn missing_commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.toolchain.is_none() {
            out.push(format!(
                "apt-get install -y {}   # or: rustup toolchain install nightly --component rust-src",
                DEBIAN_EBPF_PACKAGES.join(" ")
            ));
        }
        if self.bpf_linker.is_none() {
            out.push(bpf_linker_install_command());
        }
        out
    }
}

fn bpf_linker_install_command() -> String {
    format!(
        "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version {BPF_LINKER_VERSION} \
         --no-default-features --features llvm-22"
    )
}

fn home() -> PathBuf {
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// The cargo bin directory, where `cargo install` puts bpf-linker.
pub fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
        .join("bin")
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .chain(std::iter::once(cargo_bin_dir()))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub fn find_bpf_linker() -> Option<PathBuf> {
    find_in_path("bpf-linker")
}

fn find_rustup_nightly() -> Option<EbpfToolchain> {
    let rustup = find_in_path("rustup")?;
    let out = Command::new(rustup)
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    listed
        .lines()
        .any(|l| l.starts_with("rust-src"))
        .then(|| EbpfToolchain::RustupNightly {
            toolchain: "nightly".to_string(),
        })
}

fn find_prebuilt_core() -> Option<EbpfToolchain> {
    let rustc = PathBuf::from("/usr/bin/rustc");
    let cargo = PathBuf::from("/usr/bin/cargo");
    if !rustc.is_file() || !cargo.is_file() {
        return None;
    }
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    has_core_rlib(&sysroot.join("lib/rustlib/bpfel-unknown-none/lib"))
        .then_some(EbpfToolchain::PrebuiltCore { rustc, cargo })
}

fn has_core_rlib(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libcore-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false)
}

/// True for Debian and its derivatives, where we know the package names.
fn is_debian_like() -> bool {
    Path::new("/usr/bin/apt-get").exists() && Path::new("/usr/bin/dpkg-query").exists()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Debian packages of `wanted` that are not installed.
fn missing_packages(wanted: &[&str]) -> Vec<String> {
    wanted
        .iter()
        .filter(|pkg| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|s| s.to_string())
        .collect()
}

/// What `setup` should make present.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetupScope {
    pub ebpf: bool,
    pub vm: bool,
    pub bench: bool,
    pub report: bool,
}

/// Installs what `scope` needs and is missing, printing each step. Returns the eBPF
/// toolchain when `scope.ebpf`.
pub fn setup(scope: SetupScope) -> Result<Option<(EbpfToolchain, PathBuf)>> {
    let mut packages: Vec<&str> = Vec::new();
    let before = EbpfReadiness::check();
    if scope.ebpf && before.toolchain.is_none() {
        packages.extend(DEBIAN_EBPF_PACKAGES);
    }
    if scope.ebpf && before.bpf_linker.is_none() {
        // bpf-linker links against Debian's LLVM 22.
        packages.push("llvm-22-dev");
    }
    let prebuilt_route = !matches!(before.toolchain, Some(EbpfToolchain::RustupNightly { .. }));
    if scope.ebpf && prebuilt_route && is_debian_like() {
        packages.extend(DEBIAN_EBPF_LINT_PACKAGES);
    }
    if scope.vm {
        packages.extend(DEBIAN_VM_PACKAGES);
    }
    if scope.bench {
        packages.extend(DEBIAN_BENCH_PACKAGES);
    }
    if scope.report {
        packages.extend(DEBIAN_REPORT_PACKAGES);
    }
    packages.sort_unstable();
    packages.dedup();
    let missing = if is_debian_like() {
        missing_packages(&packages)
    } else {
        Vec::new()
    };
    if !missing.is_empty() {
        if !is_debian_like() || !is_root() {
            bail!(
                "missing packages: {}. Install them as root with:\n  apt-get update && apt-get install -y {}",
                missing.join(" "),
                missing.join(" ")
            );
        }
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        run_step(Command::new("apt-get").arg("update").arg("-q"))?;
        run_step(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    } else if !packages.is_empty() && is_debian_like() {
        eprintln!("setup: Debian packages present: {}", packages.join(" "));
    }
    if !scope.ebpf {
        return Ok(None);
    }
    let mut readiness = EbpfReadiness::check();
    if readiness.bpf_linker.is_none() {
        if !Path::new("/usr/lib/llvm-22").is_dir() {
            bail!(
                "bpf-linker is missing and LLVM 22 is not installed. Install with:\n  {}",
                readiness.missing_commands().join("\n  ")
            );
        }
        eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} (takes a few minutes)");
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_step(
            Command::new(cargo)
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
        readiness = EbpfReadiness::check();
    }
    match readiness.ready() {
        Some(ready) => {
            eprintln!(
                "setup: eBPF toolchain: {}; bpf-linker: {}",
                ready.0.describe(),
                ready.1.display()
            );
            Ok(Some(ready))
        }
        None => bail!(
            "no toolchain can build the eBPF programs on this machine. Install with:\n  {}",
            readiness.missing_commands().join("\n  ")
        ),
    }
}

pub fn run_step(cmd: &mut Command) -> Result<()> {
    eprintln!("setup: $ {}", render(cmd));
    // Setup's own output goes to stderr, like cargo's: stdout stays for the results of
    // the command that asked for the setup (e.g. `cargo xtask bench --json`).
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {}", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", render(cmd));
    }
    Ok(())
}

pub fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().to_string();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_core_is_recognised_by_its_rlib() {
        let dir = std::env::temp_dir().join(format!("xtask-core-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!has_core_rlib(&dir), "empty directory");
        std::fs::write(dir.join("libcompiler_builtins-abc.rlib"), b"").unwrap();
        assert!(!has_core_rlib(&dir), "another crate's rlib");
        std::fs::write(dir.join("libcore-0123abcd.rlib"), b"").unwrap();
        assert!(has_core_rlib(&dir));
        assert!(!has_core_rlib(&dir.join("missing")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_parts_come_with_the_commands_that_install_them() {
        let nothing = EbpfReadiness {
            toolchain: None,
            bpf_linker: None,
        };
        let commands = nothing.missing_commands();
        assert_eq!(commands.len(), 2);
        assert!(commands[0].contains("libstd-rust-web-dev-bpf"));
        assert!(commands[0].contains("rust-src"));
        assert!(commands[1].contains("cargo install bpf-linker"));
        assert!(commands[1].contains("LLVM_PREFIX=/usr/lib/llvm-22"));
        assert!(nothing.ready().is_none());
        let ready = EbpfReadiness {
            toolchain: Some(EbpfToolchain::RustupNightly {
                toolchain: "nightly".into(),
            }),
            bpf_linker: Some(PathBuf::from("/usr/bin/bpf-linker")),
        };
        assert!(ready.missing_commands().is_empty());
        assert!(ready.ready().is_some());
    }
}
