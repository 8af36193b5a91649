//! The initramfs of a guest run: busybox, netcopy and its libraries, kernel modules, the
//! command scripts and `/init`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::{cpio, guest, kernel, kernel::KernelImage, GuestCommand, VmOptions};

fn path_in_archive(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(s.trim_start_matches('/').to_string())
}

/// Builds the initramfs tree: busybox, netcopy and its libraries, modules, scripts.
pub(super) fn initramfs_tree(
    netcopy: &Path,
    kernel: &KernelImage,
    busybox: &Path,
    commands: &[GuestCommand],
    modules: &[(String, PathBuf)],
    opts: &VmOptions,
    nonce: &str,
) -> Result<cpio::Tree> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut t = cpio::Tree::new();
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root", "etc",
    ] {
        t.dir(dir)?;
    }
    t.file("bin/busybox", 0o755, read(busybox)?)?;
    t.symlink("bin/sh", "busybox")?;
    t.char_dev("dev/console", 0o600, 5, 1)?;
    t.char_dev("dev/null", 0o666, 1, 3)?;
    t.file(
        "etc/hosts",
        0o644,
        b"127.0.0.1 localhost netcopy-vm\n::1 localhost ip6-localhost\n".to_vec(),
    )?;
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".to_vec(),
    )?;
    t.file(
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    )?;

    t.file(
        &path_in_archive(Path::new(guest::GUEST_NETCOPY))?,
        0o755,
        read(netcopy)?,
    )?;
    for lib in kernel::shared_libraries(netcopy)? {
        let name = path_in_archive(&lib)?;
        if !t.contains(&name) {
            // fs::read follows symlinks: the file lands at the path the loader asks for.
            t.file(&name, 0o755, read(&lib)?)?;
        }
    }

    // Programs read the kernel config from /boot when /proc/config.gz is missing (Debian).
    if let Some(config) = &kernel.config {
        t.file(
            &format!("boot/config-{}", kernel.release),
            0o644,
            read(config)?,
        )?;
    }

    let mut module_paths = Vec::new();
    for (i, (name, ko)) in modules.iter().enumerate() {
        let path = format!("ncvm/modules/{i:02}-{name}.ko");
        t.file(&path, 0o644, read(ko)?)?;
        module_paths.push((name.clone(), format!("/{path}")));
    }
    for (path, mode, data) in &opts.files {
        t.file(path.trim_start_matches('/'), *mode, data.clone())?;
    }
    t.dir("ncvm/cmd")?;
    for (i, cmd) in commands.iter().enumerate() {
        t.file(
            &format!("ncvm/cmd/{i}.sh"),
            0o755,
            guest::command_script(cmd).into_bytes(),
        )?;
    }
    let init = guest::init_script(&guest::InitSpec {
        nonce,
        command_timeout_secs: opts.command_timeout.as_secs(),
        modules: &module_paths,
        env: &opts.env,
    });
    t.file("init", 0o755, init.into_bytes())?;
    Ok(t)
}
