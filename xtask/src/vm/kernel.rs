//! Getting Debian's 6.1 kernel and busybox without installing either: `apt-get download`
//! into a cache directory, then `dpkg -x`. Also the pure helpers that pick a package,
//! parse `ldd` and resolve kernel module dependencies.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// The Debian kernel series the VM test boots (kprobes, fentry and BTF, unlike this host).
pub const KERNEL_SERIES: &str = "6.1.0";

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct KernelImage {
    pub vmlinuz: PathBuf,
    /// `uname -r` of that kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The Debian package and its version, when it came from one.
    pub package: Option<String>,
    pub version: Option<String>,
    /// `lib/modules/<release>` of the extracted package, when there is one.
    pub modules_dir: Option<PathBuf>,
    /// `boot/config-<release>`, when there is one.
    pub config: Option<PathBuf>,
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn require_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not found on PATH: the VM test fetches Debian's kernel and busybox with \
             apt-get and dpkg, so it needs a Debian or Ubuntu host (packages `apt` and `dpkg`); \
             or pass --kernel PATH to boot a vmlinuz you already have",
            missing.join(", ")
        );
    }
    Ok(())
}

/// A kernel image package name we can boot, with its ABI number for ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCandidate {
    pub package: String,
    pub abi: u32,
    pub unsigned: bool,
}

/// Picks bootable `linux-image-6.1.0-<abi>-amd64[-unsigned]` packages from a list of
/// names (as printed by `apt-cache pkgnames`), newest ABI first and, for the same ABI,
/// the signed package before the `-unsigned` one. Leaves out -rt, -cloud, -dbg and
/// anything else.
pub fn select_kernel_packages<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<KernelCandidate> {
    let prefix = format!("linux-image-{KERNEL_SERIES}-");
    let mut out: Vec<KernelCandidate> = names
        .into_iter()
        .filter_map(|name| {
            let name = name.trim();
            let rest = name.strip_prefix(&prefix)?;
            let (abi, flavour) = rest.split_once('-')?;
            if abi.is_empty() || !abi.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let unsigned = match flavour {
                "amd64" => false,
                "amd64-unsigned" => true,
                _ => return None,
            };
            Some(KernelCandidate {
                package: name.to_string(),
                abi: abi.parse().ok()?,
                unsigned,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.abi
            .cmp(&a.abi)
            .then(a.unsigned.cmp(&b.unsigned))
            .then(a.package.cmp(&b.package))
    });
    out.dedup();
    out
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn apt_kernel_names() -> Result<Vec<String>> {
    let out = run_quiet(
        Command::new("apt-cache").args(["pkgnames", &format!("linux-image-{KERNEL_SERIES}-")]),
        "apt-cache pkgnames",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// The marker written once a package is fully extracted: holds `package version`.
const DONE_MARKER: &str = ".netcopy-extracted";

/// A package extracted into `<cache>/<package>/`, if complete.
fn extracted(cache: &Path, package: &str) -> Option<(PathBuf, String)> {
    let dir = cache.join(package);
    let marker = fs::read_to_string(dir.join(DONE_MARKER)).ok()?;
    let version = marker.split_whitespace().nth(1).unwrap_or("").to_string();
    Some((dir, version))
}

/// Downloads (unless a .deb is already in the cache) and extracts `package` into
/// `<cache>/<package>/`. Returns the directory and the package version.
fn download_and_extract(cache: &Path, package: &str) -> Result<(PathBuf, String)> {
    if let Some(done) = extracted(cache, package) {
        return Ok(done);
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let find_deb = || -> Option<PathBuf> {
        let prefix = format!("{package}_");
        fs::read_dir(cache)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
    };
    let deb = match find_deb() {
        Some(deb) => deb,
        None => {
            eprintln!("vm: downloading {package} into {}", cache.display());
            let out = Command::new("apt-get")
                .args(["download", package])
                .current_dir(cache)
                .stdin(Stdio::null())
                .output()
                .context("running apt-get download")?;
            if !out.status.success() {
                bail!(
                    "apt-get download {package} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            find_deb().with_context(|| {
                format!(
                    "apt-get download {package} succeeded but left no .deb in {}",
                    cache.display()
                )
            })?
        }
    };
    let version = run_quiet(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"),
        "dpkg-deb -f",
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_default();
    let dir = cache.join(package);
    let tmp = cache.join(format!("{package}.partial"));
    let _ = fs::remove_dir_all(&tmp);
    run_quiet(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp),
        &format!("dpkg -x {}", deb.display()),
    )?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    fs::write(dir.join(DONE_MARKER), format!("{package} {version}\n"))
        .with_context(|| format!("writing {}", dir.join(DONE_MARKER).display()))?;
    // The extracted tree is what we use; the .deb would only take space.
    let _ = fs::remove_file(&deb);
    Ok((dir, version))
}

fn kernel_from_dir(dir: &Path, package: &str, version: String) -> Result<KernelImage> {
    let boot = dir.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("{package} has no boot/ directory ({})", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no boot/vmlinuz-* ({})", boot.display()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let modules_dir = Some(dir.join("lib/modules").join(&release)).filter(|p| p.is_dir());
    let config = Some(boot.join(format!("config-{release}"))).filter(|p| p.is_file());
    Ok(KernelImage {
        vmlinuz,
        release,
        package: Some(package.to_string()),
        version: Some(version).filter(|v| !v.is_empty()),
        modules_dir,
        config,
    })
}

/// The newest cached (already extracted) kernel, for when apt knows none.
fn newest_cached(cache: &Path) -> Option<KernelImage> {
    let names: Vec<String> = fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    select_kernel_packages(names.iter().map(String::as_str))
        .into_iter()
        .find_map(|c| {
            let (dir, version) = extracted(cache, &c.package)?;
            kernel_from_dir(&dir, &c.package, version).ok()
        })
}

/// Gets the newest Debian `linux-image-6.1.0-*-amd64` kernel into `cache` (once; later
/// calls find it there) and returns it.
pub fn debian_kernel(cache: &Path) -> Result<KernelImage> {
    require_tools(&["apt-get", "apt-cache", "dpkg", "dpkg-deb"])?;
    let mut candidates = select_kernel_packages(apt_kernel_names()?.iter().map(String::as_str));
    if candidates.is_empty() {
        if let Some(k) = newest_cached(cache) {
            return Ok(k);
        }
        eprintln!("vm: apt knows no linux-image-{KERNEL_SERIES}-*-amd64; running apt-get update");
        run_quiet(Command::new("apt-get").arg("update"), "apt-get update")?;
        candidates = select_kernel_packages(apt_kernel_names()?.iter().map(String::as_str));
    }
    if candidates.is_empty() {
        bail!(
            "no linux-image-{KERNEL_SERIES}-*-amd64 package is known to apt, even after apt-get \
             update: the VM test needs Debian 12 (bookworm) package lists (add \
             `deb http://deb.debian.org/debian bookworm main` and \
             `deb http://deb.debian.org/debian-security bookworm-security main` to \
             /etc/apt/sources.list), or pass --kernel PATH"
        );
    }
    let mut errors = Vec::new();
    for c in &candidates {
        match download_and_extract(cache, &c.package)
            .and_then(|(dir, version)| kernel_from_dir(&dir, &c.package, version))
        {
            Ok(k) => return Ok(k),
            Err(err) => {
                eprintln!("vm: {}: {err:#}; trying the next candidate", c.package);
                errors.push(format!("{}: {err:#}", c.package));
            }
        }
        if errors.len() >= 3 {
            break;
        }
    }
    bail!(
        "could not get a Debian {KERNEL_SERIES} kernel:\n  {}",
        errors.join("\n  ")
    )
}

/// Wraps a vmlinuz given by the user.
pub fn kernel_from_path(vmlinuz: &Path) -> Result<KernelImage> {
    if !vmlinuz.is_file() {
        bail!("kernel image {} does not exist", vmlinuz.display());
    }
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let boot = vmlinuz.parent().unwrap_or(Path::new("."));
    let modules_dir = vmlinuz
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("lib/modules").join(&release))
        .filter(|p| !release.is_empty() && p.is_dir());
    let config = Some(boot.join(format!("config-{release}"))).filter(|p| p.is_file());
    Ok(KernelImage {
        vmlinuz: vmlinuz.to_path_buf(),
        release,
        package: None,
        version: None,
        modules_dir,
        config,
    })
}

/// A statically linked busybox: from the cached `busybox-static` package, downloaded if
/// needed, else the host's own when busybox-static is installed.
pub fn busybox(cache: &Path) -> Result<PathBuf> {
    let from_cache = |dir: &Path| Some(dir.join("bin/busybox")).filter(|p| p.is_file());
    if let Some((dir, _)) = extracted(cache, "busybox-static") {
        if let Some(p) = from_cache(&dir) {
            return Ok(p);
        }
    }
    let downloaded = if which("apt-get").is_some() && which("dpkg").is_some() {
        download_and_extract(cache, "busybox-static")
    } else {
        Err(anyhow::anyhow!("apt-get or dpkg is not installed"))
    };
    match downloaded {
        Ok((dir, _)) => from_cache(&dir)
            .with_context(|| format!("busybox-static has no bin/busybox ({})", dir.display())),
        Err(err) => {
            let installed = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", "busybox-static"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"));
            if installed && Path::new("/bin/busybox").is_file() {
                return Ok(PathBuf::from("/bin/busybox"));
            }
            bail!(
                "no static busybox for the initramfs ({err:#}): install it with \
                 `apt-get install -y busybox-static`"
            )
        }
    }
}

/// Shared objects a dynamically linked program needs, from `ldd` output: the paths on
/// the right of `=>`, and the dynamic loader's own line. The vDSO has no path and is
/// left out. A missing library is an error.
pub fn parse_ldd(output: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            return Ok(Vec::new());
        }
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("ldd: shared library {} not found", name.trim());
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            let path = PathBuf::from(path);
            if !libs.contains(&path) {
                libs.push(path);
            }
        }
    }
    Ok(libs)
}

/// Runs `ldd` on `binary` and returns the libraries it needs (empty for a static binary).
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .context("running ldd (from the `libc-bin` package) to list netcopy's libraries")?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && !text.contains("not a dynamic executable") {
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    parse_ldd(&text).with_context(|| format!("libraries of {}", binary.display()))
}

/// `depends=` of a kernel module, read from its `.modinfo` strings (so no modinfo or
/// depmod is needed on the host, and the package needs no modules.dep).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    let mut pos = 0;
    while let Some(i) = ko[pos..].windows(KEY.len()).position(|w| w == KEY) {
        let start = pos + i;
        pos = start + KEY.len();
        if start > 0 && ko[start - 1] != 0 {
            continue;
        }
        let end = ko[pos..]
            .iter()
            .position(|&b| b == 0)
            .map_or(ko.len(), |e| pos + e);
        return String::from_utf8_lossy(&ko[pos..end])
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    Vec::new()
}

fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// All `.ko` files under `modules_dir`, by module name (`-` and `_` equivalent).
fn index_modules(modules_dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut index = HashMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                index.insert(module_key(stem), path);
            }
        }
    }
    Ok(index)
}

/// Names listed in `modules.builtin` (so asking for a built-in module is not an error).
fn builtin_modules(modules_dir: &Path) -> Vec<String> {
    fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(module_key)
        .collect()
}

/// Orders `wanted` modules and their dependencies so that each comes after what it
/// depends on. `deps` gives a module's dependencies. Names are returned once each.
pub fn order_modules(
    wanted: &[String],
    deps: &mut dyn FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        deps: &mut dyn FnMut(&str) -> Result<Vec<String>>,
        state: &mut BTreeMap<String, bool>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => bail!("kernel module dependency cycle through {name}"),
            None => {}
        }
        state.insert(name.to_string(), false);
        for dep in deps(name)? {
            visit(&module_key(&dep), deps, state, out)?;
        }
        state.insert(name.to_string(), true);
        out.push(name.to_string());
        Ok(())
    }
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for name in wanted {
        visit(&module_key(name), deps, &mut state, &mut out)?;
    }
    Ok(out)
}

/// Resolves module names to `.ko` files in load order. Built-in modules are dropped.
pub fn resolve_modules(modules_dir: &Path, wanted: &[String]) -> Result<Vec<(String, PathBuf)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let index = index_modules(modules_dir)?;
    let builtin = builtin_modules(modules_dir);
    let mut lookup = |name: &str| -> Result<Vec<String>> {
        if builtin.iter().any(|b| b == name) {
            return Ok(Vec::new());
        }
        let path = index.get(name).with_context(|| {
            format!(
                "kernel module {name} is neither built in nor under {}",
                modules_dir.display()
            )
        })?;
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(module_depends(&bytes))
    };
    let order = order_modules(wanted, &mut lookup)?;
    Ok(order
        .into_iter()
        .filter_map(|name| index.get(&name).map(|p| (name, p.clone())))
        .collect())
}

/// Which of the features the VM test relies on are modules (`=m`), built in (`=y`) or
/// missing in a kernel config file.
pub fn config_report(config: &str) -> Vec<(&'static str, String)> {
    const KEYS: &[&str] = &[
        "CONFIG_BPF_SYSCALL",
        "CONFIG_BPF_JIT",
        "CONFIG_BPF_EVENTS",
        "CONFIG_KPROBES",
        "CONFIG_KPROBE_EVENTS",
        "CONFIG_FUNCTION_TRACER",
        "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
        "CONFIG_DEBUG_INFO_BTF",
        "CONFIG_DEBUG_INFO_BTF_MODULES",
        "CONFIG_TRACING",
        "CONFIG_DEBUG_FS",
        "CONFIG_DEVTMPFS",
        "CONFIG_NET_NS",
        "CONFIG_INET",
        "CONFIG_IPV6",
        "CONFIG_VETH",
        "CONFIG_VIRTIO_NET",
        "CONFIG_SERIAL_8250_CONSOLE",
        "CONFIG_RD_GZIP",
        "CONFIG_PERF_EVENTS",
    ];
    KEYS.iter()
        .map(|key| {
            let set = format!("{key}=");
            let value = config
                .lines()
                .find_map(|l| l.strip_prefix(&set))
                .map(str::to_string)
                .unwrap_or_else(|| "not set".to_string());
            (*key, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_newest_generic_kernel() {
        let names = "linux-image-6.1.0-47-amd64-dbg
linux-image-6.1.0-47-amd64-unsigned
linux-image-6.1.0-47-cloud-amd64-unsigned
linux-image-6.1.0-9-amd64
linux-image-6.1.0-56-rt-amd64
linux-image-6.1.0-56-amd64-unsigned
linux-image-6.1.0-56-amd64
linux-image-6.1.0-56-cloud-amd64
linux-image-6.1.0-100-amd64-unsigned
linux-image-6.1.0-x-amd64
linux-image-6.1.0--amd64
linux-image-6.12.0-1-amd64
linux-image-amd64";
        let picked = select_kernel_packages(names.lines());
        let packages: Vec<&str> = picked.iter().map(|c| c.package.as_str()).collect();
        assert_eq!(
            packages,
            [
                "linux-image-6.1.0-100-amd64-unsigned",
                "linux-image-6.1.0-56-amd64",
                "linux-image-6.1.0-56-amd64-unsigned",
                "linux-image-6.1.0-47-amd64-unsigned",
                "linux-image-6.1.0-9-amd64",
            ]
        );
        assert!(select_kernel_packages(["", "linux-image-6.1.0-1-arm64"]).is_empty());
    }

    #[test]
    fn ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd5a5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0f4e0a0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f4dea0000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0f4e3c0000)
";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n")
            .unwrap()
            .is_empty());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(format!("{err}").contains("libfoo.so.1"));
    }

    #[test]
    fn modinfo_depends() {
        let ko =
            b"\x7fELF....\0license=GPL\0depends=virtio,virtio_ring,net_failover\0retpoline=Y\0";
        assert_eq!(
            module_depends(ko),
            ["virtio", "virtio_ring", "net_failover"]
        );
        assert!(module_depends(b"\0depends=\0name=veth\0").is_empty());
        assert!(module_depends(b"no modinfo here").is_empty());
        // A `depends=` inside another string is not the key.
        assert!(module_depends(b"\0xdepends=foo\0").is_empty());
    }

    #[test]
    fn module_order_puts_dependencies_first() {
        let graph: HashMap<&str, Vec<&str>> = HashMap::from([
            ("virtio_net", vec!["net_failover", "virtio", "virtio_ring"]),
            ("net_failover", vec!["failover"]),
            ("failover", vec![]),
            ("virtio", vec![]),
            ("virtio_ring", vec!["virtio"]),
            (
                "virtio_pci",
                vec!["virtio_pci_modern_dev", "virtio", "virtio_ring"],
            ),
            ("virtio_pci_modern_dev", vec![]),
            ("a", vec!["b"]),
            ("b", vec!["a"]),
        ]);
        let mut deps = |name: &str| -> Result<Vec<String>> {
            graph
                .get(name)
                .map(|d| d.iter().map(|s| s.to_string()).collect())
                .with_context(|| format!("no module {name}"))
        };
        let order = order_modules(&["virtio-net".into(), "virtio_pci".into()], &mut deps).unwrap();
        let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert_eq!(order.len(), 7);
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("virtio") < pos("virtio_ring"));
        assert!(pos("virtio_ring") < pos("virtio_net"));
        assert!(pos("virtio_ring") < pos("virtio_pci"));
        assert!(order_modules(&["a".into()], &mut deps).is_err());
        assert!(order_modules(&["nope".into()], &mut deps).is_err());
    }

    #[test]
    fn config_values() {
        let report = config_report("CONFIG_KPROBES=y\nCONFIG_VETH=m\n# CONFIG_FOO is not set\n");
        let get = |k: &str| report.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(get("CONFIG_KPROBES"), "y");
        assert_eq!(get("CONFIG_VETH"), "m");
        assert_eq!(get("CONFIG_BPF_SYSCALL"), "not set");
    }
}
