//! Running commands in the guest: what to run ([`GuestCommand`]), how ([`VmOptions`]),
//! and what came back ([`GuestOutcome`]); [`run_in_guest`] boots qemu and reads the records.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};

use super::{cpio, guest, initramfs::initramfs_tree, kernel, qemu};
use crate::build::workspace_root;
use kernel::KernelImage;

/// One command to run in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestCommand {
    /// Arguments for the netcopy binary (without the program name), e.g. `["probes", "--json"]`.
    Netcopy(Vec<String>),
    /// A busybox `sh` script, for looking around in the guest.
    Shell(String),
}

impl GuestCommand {
    pub fn netcopy<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Netcopy(args.into_iter().map(Into::into).collect())
    }

    pub fn shell(script: impl Into<String>) -> Self {
        Self::Shell(script.into())
    }
}

impl fmt::Display for GuestCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Netcopy(args) => {
                write!(f, "netcopy")?;
                for a in args {
                    write!(f, " {}", guest::shell_quote(a))?;
                }
                Ok(())
            }
            Self::Shell(script) => write!(f, "sh -c {}", guest::shell_quote(script)),
        }
    }
}

/// How to run the guest.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// A vmlinuz to boot instead of Debian's newest 6.1 kernel.
    pub kernel: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// For the whole run, boot included; qemu is killed when it passes.
    pub timeout: Duration,
    /// From qemu's start until `/init` runs; past it the boot counts as stalled (TCG boots
    /// here take 10-20 s).
    pub boot_timeout: Duration,
    /// For each command inside the guest (busybox `timeout`, SIGTERM then SIGKILL 10 s later).
    pub command_timeout: Duration,
    /// Kernel modules to load before the commands (with their dependencies), e.g. `veth`.
    pub modules: Vec<String>,
    /// Environment for the commands.
    pub env: Vec<(String, String)>,
    /// Extra kernel command line words.
    pub append: Vec<String>,
    /// Extra qemu arguments.
    pub qemu_args: Vec<String>,
    /// `target/vm`: the package cache lives in `cache/`, each run in `runs/<id>/`.
    pub work_dir: PathBuf,
    /// Copy the guest console to stderr as it arrives.
    pub echo_console: bool,
    /// Run qemu inside this network namespace (see [`tap`]).
    pub netns: Option<String>,
    /// Extra files for the initramfs: (path inside, mode, contents).
    pub files: Vec<(String, u32, Vec<u8>)>,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            kernel: None,
            memory_mib: 2048,
            cpus: 2,
            timeout: Duration::from_secs(600),
            boot_timeout: Duration::from_secs(120),
            command_timeout: Duration::from_secs(300),
            modules: Vec::new(),
            env: vec![("RUST_BACKTRACE".into(), "1".into())],
            append: Vec::new(),
            qemu_args: Vec::new(),
            work_dir: workspace_root().join("target/vm"),
            echo_console: false,
            netns: None,
            files: Vec::new(),
        }
    }
}

/// What one command did in the guest.
#[derive(Clone, Debug)]
pub struct CommandOutcome {
    pub command: GuestCommand,
    /// The shell's exit status: 128+N when killed by signal N (143 after the timeout's TERM).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Guest wall time of the command.
    pub duration: Option<Duration>,
    /// The command ran into `VmOptions::command_timeout`.
    pub timed_out: bool,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Everything a guest run produced.
#[derive(Clone, Debug)]
pub struct GuestOutcome {
    /// `uname -r` inside the guest.
    pub kernel_release: String,
    /// The Debian package and version the kernel came from, e.g. `linux-image-6.1.0-56-amd64 6.1.192-2`.
    pub kernel_package: Option<String>,
    pub commands: Vec<CommandOutcome>,
    /// Kernel modules loaded and insmod's exit code.
    pub modules: Vec<(String, i32)>,
    /// The whole serial console (ttyS0).
    pub console_log: String,
    pub console_log_path: PathBuf,
    /// The run's directory under `target/vm/runs/`.
    pub run_dir: PathBuf,
    /// Host time from qemu's start until `/init` was running.
    pub boot_time: Option<Duration>,
    /// Guest uptime when `/init` started.
    pub guest_uptime_at_init: Option<f64>,
    /// Host time from qemu's start to its exit.
    pub qemu_time: Duration,
    /// Host time spent getting the kernel and building the initramfs.
    pub prepare_time: Duration,
}

impl GuestOutcome {
    pub fn all_succeeded(&self) -> bool {
        self.commands.iter().all(CommandOutcome::success)
    }
}

fn run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
}

fn nonce() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut x = now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    // splitmix64: spread the bits so the nonce looks like nothing a program would print.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", x ^ (x >> 31))
}

/// How many times a guest whose boot stalled is booted (see [`qemu::BootStalled`]).
pub const BOOT_ATTEMPTS: u32 = 2;

/// Runs qemu, booting again when a boot stalls before `/init`; the stalled boot's console
/// is kept beside the run's as `console-stalled-N.log`. Commands have not run in a boot
/// that stalled, so nothing is run twice.
fn boot_with_retries(run: &qemu::QemuRun, run_dir: &Path) -> Result<qemu::QemuResult> {
    let mut attempt = 1;
    loop {
        match qemu::run(run) {
            Err(e) if attempt < BOOT_ATTEMPTS && e.is::<qemu::BootStalled>() => {
                let kept = run_dir.join(format!("console-stalled-{attempt}.log"));
                let _ = fs::rename(run.console_path, &kept);
                let _ = fs::remove_file(run.data_path);
                eprintln!(
                    "vm: {e:#}\nvm: booting the guest again (attempt {} of {BOOT_ATTEMPTS}; the stalled boot's console is {})",
                    attempt + 1,
                    kept.display()
                );
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Gets the kernel the options ask for (Debian's newest 6.1 unless `opts.kernel`).
pub fn guest_kernel(opts: &VmOptions) -> Result<KernelImage> {
    match &opts.kernel {
        Some(path) => kernel::kernel_from_path(path),
        None => kernel::debian_kernel(&opts.work_dir.join("cache")),
    }
}

/// Boots the guest kernel with an initramfs holding `netcopy_binary` and runs `commands`
/// in order, each under `opts.command_timeout`. Returns each command's exit code, stdout
/// and stderr. Errors when the guest cannot be prepared or started, when it does not
/// finish in time, or when it stops before reporting every command; a command that
/// fails is not an error here (see [`GuestOutcome::all_succeeded`]).
pub fn run_in_guest(
    netcopy_binary: &Path,
    commands: &[GuestCommand],
    opts: &VmOptions,
) -> Result<GuestOutcome> {
    let prepare_start = Instant::now();
    qemu::find_qemu()?;
    if !netcopy_binary.is_file() {
        bail!("netcopy binary {} does not exist", netcopy_binary.display());
    }
    let kernel = guest_kernel(opts)?;
    let busybox = kernel::busybox(&opts.work_dir.join("cache"))?;
    let modules = match (&kernel.modules_dir, opts.modules.is_empty()) {
        (_, true) => Vec::new(),
        (Some(dir), false) => kernel::resolve_modules(dir, &opts.modules)?,
        (None, false) => bail!(
            "kernel modules {:?} were asked for, but {} has no lib/modules/{} next to it",
            opts.modules,
            kernel.vmlinuz.display(),
            kernel.release
        ),
    };

    let run_dir = opts.work_dir.join("runs").join(run_id());
    fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let last = opts.work_dir.join("last");
    let _ = fs::remove_file(&last);
    let _ = std::os::unix::fs::symlink(
        run_dir.strip_prefix(&opts.work_dir).unwrap_or(&run_dir),
        &last,
    );

    let nonce = nonce();
    let tree = initramfs_tree(
        netcopy_binary,
        &kernel,
        &busybox,
        commands,
        &modules,
        opts,
        &nonce,
    )?;
    let archive = tree.write_newc(Vec::new())?;
    let initrd = run_dir.join("initramfs.cpio.gz");
    fs::write(&initrd, cpio::gzip(&archive)?)
        .with_context(|| format!("writing {}", initrd.display()))?;
    drop(archive);
    if let Some((_, init)) = tree.entries().find(|(n, _)| n.as_str() == "init") {
        if let cpio::EntryKind::File(data) = &init.kind {
            let _ = fs::write(run_dir.join("init.sh"), data);
        }
    }
    drop(tree);
    let prepare_time = prepare_start.elapsed();

    let mut append = vec![
        "console=ttyS0".to_string(),
        "panic=-1".into(),
        "rdinit=/init".into(),
        "mitigations=off".into(),
        "loglevel=4".into(),
    ];
    append.extend(opts.append.iter().cloned());
    let console_path = run_dir.join("console.log");
    let data_path = run_dir.join("records.log");
    let run = qemu::QemuRun {
        kernel: &kernel.vmlinuz,
        initrd: &initrd,
        append: append.join(" "),
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        data_path: &data_path,
        console_path: &console_path,
        timeout: opts.timeout,
        boot_timeout: Some(opts.boot_timeout),
        echo: opts.echo_console,
        boot_marker: format!("@@NCVM:{nonce}:BOOT"),
        extra_args: &opts.qemu_args,
        netns: opts.netns.as_deref(),
    };
    let result = boot_with_retries(&run, &run_dir);
    // The initramfs can be rebuilt in a second; do not keep tens of MB per run.
    let _ = fs::remove_file(&initrd);
    let result = result?;

    let data = fs::read(&data_path).unwrap_or_default();
    let mut records = guest::parse_records(&data, &nonce)
        .with_context(|| format!("reading the guest's records from {}", data_path.display()))?;
    if !records.done {
        // ttyS1 missing or cut short: try the console.
        let from_console = guest::parse_records(&result.console, &nonce).with_context(|| {
            format!(
                "reading the guest's records from {}",
                console_path.display()
            )
        })?;
        if from_console.done {
            records = from_console;
        }
    }
    if !records.done {
        let why = if String::from_utf8_lossy(&result.console).contains("Kernel panic") {
            "the guest kernel panicked"
        } else {
            "the guest stopped before reporting all commands"
        };
        bail!(
            "{why} (console: {}); last lines:\n{}",
            console_path.display(),
            qemu::tail(&result.console, 25)
        );
    }
    if records.commands.len() != commands.len() {
        bail!(
            "the guest reported {} commands, {} were asked for (console: {})",
            records.commands.len(),
            commands.len(),
            console_path.display()
        );
    }
    let limit = opts.command_timeout.as_secs_f64();
    let outcomes = commands
        .iter()
        .zip(records.commands)
        .enumerate()
        .map(|(i, (cmd, rec))| {
            let exit_code = rec.exit_code.with_context(|| {
                format!("the guest reported no exit code for command {i} ({cmd})")
            })?;
            let duration = match (rec.started, rec.ended) {
                (Some(a), Some(b)) if b >= a => Some(Duration::from_secs_f64(b - a)),
                _ => None,
            };
            let timed_out = matches!(exit_code, 124 | 137 | 143)
                && duration.is_some_and(|d| d.as_secs_f64() + 0.5 >= limit);
            Ok(CommandOutcome {
                command: cmd.clone(),
                exit_code,
                stdout: String::from_utf8_lossy(&rec.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&rec.stderr).into_owned(),
                duration,
                timed_out,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(GuestOutcome {
        kernel_release: records.kernel_release.unwrap_or_default(),
        kernel_package: kernel
            .package
            .as_ref()
            .map(|p| format!("{p} {}", kernel.version.as_deref().unwrap_or("?"))),
        commands: outcomes,
        modules: records.modules,
        console_log: String::from_utf8_lossy(&result.console).into_owned(),
        console_log_path: console_path,
        run_dir,
        boot_time: result.boot_time,
        guest_uptime_at_init: records.boot_uptime,
        qemu_time: result.elapsed,
        prepare_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_display() {
        assert_eq!(
            GuestCommand::netcopy(["probes", "--json"]).to_string(),
            "netcopy probes --json"
        );
        assert_eq!(
            GuestCommand::shell("uname -r").to_string(),
            "sh -c 'uname -r'"
        );
    }

    #[test]
    fn nonces_differ_and_are_hex() {
        let a = nonce();
        std::thread::sleep(Duration::from_millis(1));
        let b = nonce();
        assert_ne!(a, b);
        assert!(a.len() == 16 && a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
