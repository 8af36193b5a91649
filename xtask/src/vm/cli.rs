//! `cargo xtask vm-test` and the VM stage of `cargo xtask test`: arguments, the run, and
//! the printout of what the guest did.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{
    checks::check_default_outcome, commands::planned_commands, guest_kernel, kernel, qemu,
    run_in_guest, tap, GuestOutcome, VmOptions,
};
use crate::build::workspace_root;

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
}
