use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod build;
mod fuzz;
mod lint;
mod run;
mod soak;
mod testing;
mod toolchain;
mod vm;

/// Developer tasks for netcopy.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check for the eBPF toolchain, bpf-linker, qemu, iperf3 and chromium (the report
    /// test); install what is missing.
    Setup {
        /// Only report what is missing, install nothing.
        #[arg(long)]
        check: bool,
    },
    /// Build the eBPF programs, then the netcopy binary (release) that embeds them.
    Build,
    /// Build, then run `netcopy run ARGS` as root (the whole experiment).
    Run {
        /// Arguments for `netcopy run` (see `netcopy run --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run `netcopy bench ARGS` as root: against iperf3, the machine's memcpy
    /// ceiling, and what the probes cost (e.g. `cargo xtask bench --write-markdown BENCHMARKS.md`).
    Bench {
        /// Arguments for `netcopy bench` (see `netcopy bench --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt --check and clippy -D warnings over both workspaces (host and eBPF).
    Lint,
    /// Build, then run unit tests, privileged integration tests and the VM test.
    Test(testing::TestArgs),
    /// Soak every mode's server under churn (well-formed, quitting, slow and garbage
    /// clients on loopback) and check that RSS, open fds and threads stay flat: after the
    /// warm-up, the last half's max <= the first half's max + slack (RSS 8 MiB; threads 7
    /// and fds 35, what the churn's at most 7 open connections may hold in the server);
    /// after the churn, fds and threads back to their idle values; every well-formed
    /// client verified its data. See RELIABILITY.md.
    Soak(soak::SoakArgs),
    /// Boot Debian's 6.1 kernel in qemu (TCG) and run netcopy probes/verify inside it.
    VmTest(vm::VmTestArgs),
    /// Run the cargo-fuzz targets in fuzz/ (needs the nightly toolchain; installs
    /// cargo-fuzz if absent): each for --seconds, printing executions and crashes.
    Fuzz(fuzz::FuzzArgs),
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The VM test stage of `cargo xtask test`.
pub fn vm_stage(netcopy: &std::path::Path, skip: bool, ok: &mut bool) -> anyhow::Result<()> {
    vm::vm_stage(netcopy, skip, ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { check } => setup(check),
        Command::Build => build::build_all().map(|path| println!("build: {}", path.display())),
        Command::Run { args } => build::build_all().and_then(|netcopy| run::run(&netcopy, &args)),
        Command::Bench { args } => {
            build::build_all().and_then(|netcopy| bench::bench(&netcopy, &args))
        }
        Command::Lint => lint::lint(),
        Command::Test(args) => testing::test(&args),
        Command::VmTest(args) => vm::vm_test(&args),
        Command::Fuzz(args) => fuzz::fuzz(&args),
        Command::Soak(args) => soak::soak(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn setup(check: bool) -> anyhow::Result<()> {
    if check {
        let readiness = toolchain::EbpfReadiness::check();
        match readiness.ready() {
            Some((tc, linker)) => {
                println!("eBPF toolchain: {}", tc.describe());
                println!("bpf-linker: {}", linker.display());
                Ok(())
            }
            None => anyhow::bail!(
                "not ready to build eBPF; install with:\n  {}",
                readiness.missing_commands().join("\n  ")
            ),
        }
    } else {
        toolchain::setup(toolchain::SetupScope {
            ebpf: true,
            vm: true,
            bench: true,
            report: true,
        })
        .map(|_| ())
    }
}
