//! `cargo xtask vm-test`: boot Debian's 6.1 kernel (which has kprobes, fentry and BTF,
//! unlike the 6.18 kernel of our machines) in qemu under TCG with a small initramfs, run
//! netcopy commands in it and bring back each command's exit code, stdout and stderr.
//!
//! Pieces:
//! - [`kernel`]: `apt-get download` + `dpkg -x` of `linux-image-6.1.0-*-amd64` and
//!   `busybox-static` into `target/vm/cache/` (once), `ldd`, kernel modules.
//! - [`cpio`]: the newc archive writer for the initramfs.
//! - [`guest`]: the `/init` script and the parser of the records it sends back on the
//!   second serial port.
//! - [`qemu`]: running qemu with a deadline.
//!
//! The lower-level entry point is [`run_in_guest`]; [`vm_test`] is the command.

pub mod cpio;
pub mod guest;
pub mod kernel;
pub mod qemu;
pub mod tap;

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};

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

fn path_in_archive(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(s.trim_start_matches('/').to_string())
}

/// Builds the initramfs tree: busybox, netcopy and its libraries, modules, scripts.
fn initramfs_tree(
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
    let result = qemu::run(&qemu::QemuRun {
        kernel: &kernel.vmlinuz,
        initrd: &initrd,
        append: append.join(" "),
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        data_path: &data_path,
        console_path: &console_path,
        timeout: opts.timeout,
        echo: opts.echo_console,
        boot_marker: format!("@@NCVM:{nonce}:BOOT"),
        extra_args: &opts.qemu_args,
        netns: opts.netns.as_deref(),
    });
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

/// Fails unless `netcopy probes --json` output reports `kprobe` or `fentry` as available:
/// `{"kprobe": {"available": true, ...}, "fentry": {...}}`.
pub fn check_guest_used_kprobe_or_fentry(probes_json: &serde_json::Value) -> Result<()> {
    let obj = probes_json
        .as_object()
        .context("probes JSON is not an object")?;
    let mut seen = Vec::new();
    for key in ["kprobe", "fentry"] {
        let Some(v) = obj.get(key) else {
            seen.push(format!("{key}: not reported"));
            continue;
        };
        let available = match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Object(o) => o
                .get("available")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            _ => false,
        };
        if available {
            return Ok(());
        }
        let why = v
            .get("reason")
            .or_else(|| v.get("error"))
            .and_then(serde_json::Value::as_str)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        seen.push(format!("{key}: unavailable{why}"));
    }
    bail!(
        "the guest kernel should offer kprobe or fentry, but netcopy reported {}",
        seen.join(", ")
    )
}

/// Diagnostic shell commands for `--debug`.
pub fn debug_commands() -> Vec<GuestCommand> {
    [
        "uname -a; cat /proc/cmdline",
        "ls -l /sys/kernel/btf/vmlinux && echo btf: yes || echo btf: no",
        "grep -c . /proc/kallsyms",
        "for e in skb/skb_copy_datagram_iovec tcp/tcp_sendmsg_locked sock/sock_send_length \
         sock/sock_recv_length net/net_dev_xmit; do \
         if [ -d /sys/kernel/tracing/events/$e ]; then echo \"$e: present\"; \
         else echo \"$e: absent\"; fi; done",
        "grep -E 'tcp_sendmsg_locked|skb_zerocopy_iter_stream|skb_copy_ubufs|msg_zerocopy_callback\
         |msg_zerocopy_complete|skb_copy_datagram_iter|_copy_from_iter' /proc/kallsyms | head -30",
        // fentry needs the function in available_filter_functions; kprobe only in kallsyms.
        "grep -c . /sys/kernel/tracing/available_filter_functions; \
         grep -E '^(tcp_sendmsg|tcp_sendmsg_locked|skb_zerocopy_iter_stream|__zerocopy_sg_from_iter\
         |skb_copy_ubufs|msg_zerocopy_callback|__msg_zerocopy_callback|msg_zerocopy_complete\
         |skb_copy_datagram_iter|_copy_from_iter|_copy_from_iter_nocache|csum_and_copy_from_iter\
         |csum_and_copy_from_iter_full|copy_page_from_iter)( |$)' \
         /sys/kernel/tracing/available_filter_functions",
        // Whether a kprobe can be placed on each copy site (through tracefs, no BPF needed).
        "cd /sys/kernel/tracing && i=0; for f in tcp_sendmsg_locked _copy_from_iter \
         _copy_from_iter_nocache csum_and_copy_from_iter skb_zerocopy_iter_stream \
         __zerocopy_sg_from_iter skb_copy_ubufs msg_zerocopy_callback skb_copy_datagram_iter; do \
         if echo \"p:ncvm/k$i $f\" >> kprobe_events 2>/dev/null; then echo \"kprobe $f: ok\"; \
         else echo \"kprobe $f: failed\"; fi; i=$((i+1)); done; echo > kprobe_events",
        "mount; ip -o link; lsmod; free -m; nproc",
    ]
    .into_iter()
    .map(GuestCommand::shell)
    .collect()
}

/// `cargo xtask vm-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct VmTestArgs {
    /// The netcopy binary to test (default: build it, then use target/release/netcopy).
    #[arg(long, value_name = "PATH")]
    pub netcopy: Option<PathBuf>,
    /// Do not build; use target/release/netcopy as it is.
    #[arg(long)]
    pub no_build: bool,
    /// Run `netcopy ARGS` in the guest instead of the default commands (`probes --json`,
    /// then `verify --json` when the binary has it). Repeatable; ARGS split at whitespace.
    #[arg(long = "run", value_name = "ARGS", allow_hyphen_values = true)]
    pub run: Vec<String>,
    /// Also run this busybox shell script in the guest (repeatable).
    #[arg(long = "shell", value_name = "SCRIPT")]
    pub shell: Vec<String>,
    /// Also report what the guest kernel offers (BTF, kallsyms, tracepoints, filter functions).
    #[arg(long)]
    pub debug: bool,
    /// Boot this vmlinuz instead of Debian's newest linux-image-6.1.0-*-amd64.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Load these kernel modules (with dependencies) before the commands; `--module=` loads none.
    #[arg(long = "module", value_name = "NAME", default_values_t = ["veth".to_string()])]
    pub modules: Vec<String>,
    /// Overall limit for the guest run, boot included (seconds).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Limit for each command inside the guest (seconds).
    #[arg(long, default_value_t = 300)]
    pub command_timeout: u64,
    /// Guest memory (MiB).
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Copy the guest console to stderr as it arrives.
    #[arg(long)]
    pub console: bool,
    /// Print the kernel config values the VM test depends on (built in, module or missing).
    #[arg(long)]
    pub show_config: bool,
    /// Skip the tap stage (two hosts: the guest's agent behind a tap, verify --remote here).
    #[arg(long)]
    pub no_tap: bool,
}

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

fn locate_netcopy(args: &VmTestArgs) -> Result<PathBuf> {
    if let Some(path) = &args.netcopy {
        if !path.is_file() {
            bail!("--netcopy {} does not exist", path.display());
        }
        return Ok(path.clone());
    }
    if args.no_build {
        let path = workspace_root().join("target/release/netcopy");
        if !path.is_file() {
            bail!(
                "{} does not exist: run `cargo xtask build` or drop --no-build",
                path.display()
            );
        }
        return Ok(path);
    }
    crate::build::build_all()
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

/// The mode the traced verify runs: the bench's peer, whose claim is the one the trace
/// check counts on (one sendmsg per message, its bytes copied by the kernel).
fn traced_mode(netcopy: &Path) -> Result<String> {
    modes_where(netcopy, |m| {
        m["bench_peer"] == true
            && m["kernel_send_copy"] == true
            && m["user_copy"] == false
            && m["completions"].is_null()
    })?
    .into_iter()
    .next()
    .context(
        "the mode table has no bench peer that copies in the kernel without a user copy or \
         completions, which the traced verify checks",
    )
}

/// The commands `vm-test` runs for these arguments.
fn planned_commands(args: &VmTestArgs, netcopy: &Path) -> Result<Vec<GuestCommand>> {
    let mut commands: Vec<GuestCommand> = if args.run.is_empty() {
        for sub in ["probes", "verify"] {
            if !has_subcommand(netcopy, sub) {
                bail!(
                    "{} has no `{sub}` subcommand; rebuild it, or say what to run with --run ARGS",
                    netcopy.display()
                );
            }
        }
        vec![
            GuestCommand::netcopy(["probes", "--json"]),
            GuestCommand::netcopy(["verify", "--json"]),
            traced_verify(&traced_mode(netcopy)?),
        ]
    } else {
        args.run
            .iter()
            .map(|a| GuestCommand::netcopy(a.split_whitespace()))
            .collect()
    };
    commands.extend(args.shell.iter().map(GuestCommand::shell));
    if args.debug {
        commands.extend(debug_commands());
    }
    Ok(commands)
}

/// Messages of the traced verify run in the guest.
const TRACED_MESSAGES: u64 = 4;
/// Their payload size.
const TRACED_SIZE: u64 = 65536;

/// `netcopy trace` of a `netcopy verify` of `mode` (the plain sendmsg one): the syscall
/// tracer's programs must load and record on the guest kernel too (its verifier is older
/// than the host's).
fn traced_verify(mode: &str) -> GuestCommand {
    GuestCommand::netcopy([
        "trace".to_string(),
        "--json".into(),
        "--out".into(),
        "/tmp/netcopy-trace".into(),
        "--".into(),
        guest::GUEST_NETCOPY.into(),
        "verify".into(),
        "--mode".into(),
        mode.into(),
        "--size".into(),
        TRACED_SIZE.to_string(),
        "--messages".into(),
        TRACED_MESSAGES.to_string(),
    ])
}

/// The traced verify recorded the server's sends exactly: one sendmsg per message, each
/// copying its 16-byte header and payload, and lost nothing.
fn check_traced_verify(stdout: &str) -> Result<()> {
    // The verify table comes first (the traced command's own output), the summary last.
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("`netcopy trace --json` printed no JSON summary in the guest")?;
    let summary: serde_json::Value =
        serde_json::from_str(line).context("the trace summary is not JSON")?;
    if summary["lost_events"] != 0 {
        bail!("the guest trace lost events: {summary}");
    }
    let sendmsg = summary["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["syscall"] == "sendmsg")
        .context("the guest trace recorded no sendmsg")?;
    let bytes = TRACED_MESSAGES * (TRACED_SIZE + 16);
    if sendmsg["calls"] != TRACED_MESSAGES || sendmsg["kernel_send_copy_bytes"] != bytes {
        bail!(
            "the guest trace recorded sendmsg {sendmsg}; expected {TRACED_MESSAGES} calls \
             copying {bytes} bytes"
        );
    }
    Ok(())
}

/// True when qemu-system-x86_64 is installed.
pub fn qemu_available() -> bool {
    qemu::find_qemu().is_ok()
}

/// The VM stage of `cargo xtask test` with an already built `netcopy`: runs the default
/// `vm-test` commands in the guest. Skipped (with a line saying so) when asked or when
/// qemu is not installed, except under CI (`CI=true`), where missing qemu is a failure.
/// A failed guest command or a guest that cannot be run clears `ok`.
pub fn vm_stage(netcopy: &Path, skip: bool, ok: &mut bool) -> Result<()> {
    if skip {
        println!("skipped: VM test (--no-vm)");
        return Ok(());
    }
    if let Err(err) = qemu::find_qemu() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("under CI the VM test must run: {err:#}");
        }
        println!("skipped: VM test: {err:#}");
        return Ok(());
    }
    println!(
        "test: VM test (Debian {} kernel in qemu, TCG)",
        kernel::KERNEL_SERIES
    );
    let args = VmTestArgs {
        netcopy: Some(netcopy.to_path_buf()),
        ..VmTestArgs::default()
    };
    if let Err(err) = vm_test(&args) {
        println!("test: VM test FAILED: {err:#}");
        *ok = false;
    }
    Ok(())
}

impl Default for VmTestArgs {
    fn default() -> Self {
        Self {
            netcopy: None,
            no_build: false,
            run: Vec::new(),
            shell: Vec::new(),
            debug: false,
            kernel: None,
            modules: vec!["veth".into()],
            timeout: 600,
            command_timeout: 300,
            memory: 2048,
            cpus: 2,
            console: false,
            show_config: false,
            no_tap: false,
        }
    }
}

/// `cargo xtask vm-test`: run netcopy in a Debian 6.1 guest; an error unless every
/// command exits 0.
pub fn vm_test(args: &VmTestArgs) -> Result<()> {
    let netcopy = locate_netcopy(args)?;
    let commands = planned_commands(args, &netcopy)?;
    let mut opts = VmOptions {
        kernel: args.kernel.clone(),
        memory_mib: args.memory,
        cpus: args.cpus,
        timeout: Duration::from_secs(args.timeout),
        command_timeout: Duration::from_secs(args.command_timeout),
        modules: args
            .modules
            .iter()
            .filter(|m| !m.is_empty())
            .cloned()
            .collect(),
        echo_console: args.console,
        ..VmOptions::default()
    };
    if let Ok(level) = std::env::var("RUST_LOG") {
        opts.env.push(("RUST_LOG".into(), level));
    }
    if args.show_config {
        let k = guest_kernel(&opts)?;
        match &k.config {
            Some(path) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                println!("vm-test: kernel config {}:", path.display());
                for (key, value) in kernel::config_report(&text) {
                    println!("  {key}={value}");
                }
            }
            None => println!("vm-test: no config file next to {}", k.vmlinuz.display()),
        }
    }
    println!(
        "vm-test: running {} command(s) in a qemu (TCG) guest with {}",
        commands.len(),
        netcopy.display()
    );
    let outcome = run_in_guest(&netcopy, &commands, &opts)?;
    print_outcome(&outcome);
    let default_run = args.run.is_empty() && args.shell.is_empty() && !args.debug;
    if default_run {
        check_default_outcome(&outcome)?;
    }
    if default_run && !args.no_tap && outcome.all_succeeded() {
        println!("vm-test: tap stage (the guest as host A behind a vnet_hdr tap, this host as B)");
        tap::tap_stage(&netcopy, &opts)?;
        println!("vm-test: tap stage ok");
    }
    if outcome.all_succeeded() {
        println!(
            "vm-test: ok ({} command(s) exited 0)",
            outcome.commands.len()
        );
        return Ok(());
    }

    let failed: Vec<String> = outcome
        .commands
        .iter()
        .filter(|c| !c.success())
        .map(|c| {
            let why = if c.timed_out {
                " (timed out)".to_string()
            } else {
                String::new()
            };
            format!("`{}` exited {}{why}", c.command, c.exit_code)
        })
        .collect();
    bail!(
        "in the {} guest: {}; console ({}) ends:\n{}",
        outcome.kernel_release,
        failed.join("; "),
        outcome.console_log_path.display(),
        qemu::tail(outcome.console_log.as_bytes(), 10)
    )
}

/// Says whether `netcopy probes --json` found kprobe or fentry in the guest (informative:
/// the verdict that counts is the lead's check on `verify`).
/// The point of the VM test: on the guest kernel netcopy must choose kprobe or fentry
/// strategies (not the tracepoint fallbacks this host uses), and verify must pass there.
fn check_default_outcome(outcome: &GuestOutcome) -> Result<()> {
    let find = |sub: &str| {
        let wanted = GuestCommand::netcopy([sub, "--json"]);
        outcome
            .commands
            .iter()
            .find(|c| c.command == wanted)
            .with_context(|| format!("`netcopy {sub} --json` did not run in the guest"))
    };
    let probes = find("probes")?;
    let json: serde_json::Value = serde_json::from_str(&probes.stdout)
        .context("`netcopy probes --json` printed no JSON in the guest")?;
    check_guest_used_kprobe_or_fentry(&json)?;
    println!("vm-test: probes: kprobe or fentry available in the guest");
    let verify = find("verify")?;
    let json: serde_json::Value = serde_json::from_str(&verify.stdout)
        .context("`netcopy verify --json` printed no JSON in the guest")?;
    check_plan_uses_kprobe_or_fentry(&json["plan"])?;
    if !verify.success() {
        bail!(
            "`netcopy verify` failed in the guest (exit {})",
            verify.exit_code
        );
    }
    for mode in json["modes"].as_array().into_iter().flatten() {
        println!(
            "vm-test: verify {}: {}",
            mode["mode"].as_str().unwrap_or("?"),
            mode["verdict"].as_str().unwrap_or("?")
        );
    }
    let traced = outcome
        .commands
        .iter()
        .find(|c| matches!(&c.command, GuestCommand::Netcopy(a) if a.first().is_some_and(|s| s == "trace")))
        .context("the traced verify did not run in the guest")?;
    if !traced.success() {
        bail!(
            "`{}` failed in the guest (exit {}): {}",
            traced.command,
            traced.exit_code,
            traced.stderr.lines().next().unwrap_or("")
        );
    }
    check_traced_verify(&traced.stdout)?;
    println!(
        "vm-test: trace: {TRACED_MESSAGES} sendmsg calls of the traced server recorded \
         exactly, nothing lost"
    );
    Ok(())
}

/// The kind of hook a strategy of netcopy's attach plan uses: `kind` of a chosen
/// strategy in `netcopy probes --json` and `netcopy verify --json` (netcopy's
/// `kernel::plan::HookKind`; xtask reads the JSON and does not link netcopy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StrategyKind {
    Fentry,
    Kprobe,
    TpBtf,
    Tracepoint,
}

/// Fails unless the attach plan observed the send path through fentry or kprobes.
pub fn check_plan_uses_kprobe_or_fentry(plan: &serde_json::Value) -> Result<()> {
    let events = plan["events"]
        .as_array()
        .context("verify JSON has no plan.events")?;
    let send = events
        .iter()
        .find(|e| e["event"] == "send-path")
        .context("the plan has no send-path event")?;
    let chosen = &send["chosen"];
    let label = chosen["label"].as_str().unwrap_or("");
    let kind = serde_json::from_value::<StrategyKind>(chosen["kind"].clone()).ok();
    if matches!(kind, Some(StrategyKind::Fentry | StrategyKind::Kprobe)) {
        println!("vm-test: guest send path observed with: {label}");
        Ok(())
    } else {
        bail!(
            "the guest chose `{}` for the send path, not a kprobe or fentry strategy",
            if label.is_empty() { "nothing" } else { label }
        )
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("?".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// Prints a guest run for a human.
pub fn print_outcome(o: &GuestOutcome) {
    println!(
        "vm: guest kernel {} ({}); boot {} (guest uptime at init {}), qemu ran {}, preparing took {}",
        o.kernel_release,
        o.kernel_package.as_deref().unwrap_or("kernel given by path"),
        secs(o.boot_time),
        o.guest_uptime_at_init
            .map_or("?".to_string(), |u| format!("{u:.2} s")),
        secs(Some(o.qemu_time)),
        secs(Some(o.prepare_time)),
    );
    for (name, code) in &o.modules {
        if *code != 0 {
            println!("vm: insmod {name} exited {code} (see the console log)");
        }
    }
    for c in &o.commands {
        println!(
            "==== guest: {} -> exit {}{} in {}",
            c.command,
            c.exit_code,
            if c.timed_out { " (timed out)" } else { "" },
            secs(c.duration)
        );
        if !c.stdout.is_empty() {
            print!("{}", c.stdout);
            if !c.stdout.ends_with('\n') {
                println!();
            }
        }
        if !c.stderr.is_empty() {
            println!("---- stderr:");
            print!("{}", c.stderr);
            if !c.stderr.ends_with('\n') {
                println!();
            }
        }
    }
    println!(
        "vm: console log: {} (run directory {})",
        o.console_log_path.display(),
        o.run_dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kprobe_or_fentry_check() {
        let ok = serde_json::json!({"kprobe": {"available": true}, "fentry": {"available": false}});
        assert!(check_guest_used_kprobe_or_fentry(&ok).is_ok());
        let ok = serde_json::json!({"kprobe": {"available": false}, "fentry": {"available": true}});
        assert!(check_guest_used_kprobe_or_fentry(&ok).is_ok());
        let bad = serde_json::json!({
            "kprobe": {"available": false, "reason": "CONFIG_KPROBES is not set"},
            "fentry": {"available": false}
        });
        let err = check_guest_used_kprobe_or_fentry(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONFIG_KPROBES is not set"), "{err}");
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!({})).is_err());
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!([1])).is_err());
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!({"kprobe": "yes"})).is_err());
    }

    #[test]
    fn traced_verify_check() {
        let summary = |calls: u64, bytes: u64, lost: u64| {
            format!(
                "one-copy -- MATCH\n{}\n",
                serde_json::json!({
                    "lost_events": lost,
                    "syscalls": [
                        {"syscall": "sendto", "calls": 2, "kernel_send_copy_bytes": 40},
                        {"syscall": "sendmsg", "calls": calls, "kernel_send_copy_bytes": bytes},
                    ]
                })
            )
        };
        let exact = TRACED_MESSAGES * (TRACED_SIZE + 16);
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact, 0)).is_ok());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact - 1, 0)).is_err());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES - 1, exact, 0)).is_err());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact, 3)).is_err());
        assert!(check_traced_verify("netcopy: error: cannot trace\n").is_err());
    }

    #[test]
    fn default_args_match_the_cli() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: VmTestArgs,
        }
        let parsed = Cli::parse_from(["vm-test"]).args;
        let default = VmTestArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

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

#[cfg(test)]
mod plan_check_tests {
    use super::*;

    /// A plan as `netcopy verify --json` prints it, with the send path's strategy labelled
    /// `label`; its kind is the label's first word, as netcopy's labels are written.
    fn plan(label: &str) -> serde_json::Value {
        let kind = label.split([' ', '/']).next().unwrap_or("");
        with_kind(label, kind)
    }

    fn with_kind(label: &str, kind: &str) -> serde_json::Value {
        serde_json::json!({"events": [
            {"event": "recv-copy", "chosen": {
                "label": "tracepoint skb/skb_copy_datagram_iovec", "kind": "tracepoint"
            }},
            {"event": "send-path", "chosen": {"label": label, "kind": kind}}
        ]})
    }

    #[test]
    fn accepts_fentry_and_kprobe_send_paths_only() {
        assert!(check_plan_uses_kprobe_or_fentry(&plan("fentry/fexit tcp_sendmsg_locked")).is_ok());
        assert!(
            check_plan_uses_kprobe_or_fentry(&plan("kprobe/kretprobe tcp_sendmsg_locked")).is_ok()
        );
        let err = check_plan_uses_kprobe_or_fentry(&plan("tp_btf tcp_sendmsg_locked"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a kprobe or fentry"), "{err}");
        let none = serde_json::json!({"events": [{"event": "send-path", "chosen": null}]});
        assert!(check_plan_uses_kprobe_or_fentry(&none).is_err());
        assert!(check_plan_uses_kprobe_or_fentry(&serde_json::json!({})).is_err());
    }

    #[test]
    fn the_kind_decides_not_the_label() {
        let fentry_label = "fentry/fexit tcp_sendmsg_locked";
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "fentry")).is_ok());
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "tp_btf")).is_err());
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "fexit")).is_err());
        let no_kind = serde_json::json!({"events": [
            {"event": "send-path", "chosen": {"label": fentry_label}}
        ]});
        assert!(check_plan_uses_kprobe_or_fentry(&no_kind).is_err());
    }
}
