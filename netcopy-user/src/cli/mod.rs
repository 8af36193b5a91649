//! The command line: one file per subcommand, each with its clap `Args` and its `run`.
//!
//! Layer: the top one; it may use every layer below and nothing uses it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod probes;
mod verify;

/// How many times does my data really get copied on its way through a socket?
#[derive(Parser)]
#[command(name = "netcopy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this kernel offers the tool (probe types, tracepoints, counters, plan).
    Probes(probes::ProbesArgs),
    /// The whole experiment: sweep modes x sizes x threads; write results, plots, report.
    Run(crate::experiment::sweep::RunArgs),
    /// Run each mode over loopback and check the kernel's copies against its claim.
    Verify(verify::VerifyArgs),
    /// Serve messages in one send mode until SIGINT/SIGTERM.
    Server(crate::workload::server::ServerArgs),
    /// Request messages from a server with T threads, verify them, report throughput and latency.
    Client(crate::workload::client::ClientArgs),
    /// Benchmarks against iperf3 and the machine's limits, and what the probes cost.
    Bench(crate::bench::BenchArgs),
    /// Rebuild results.csv, the SVG plots and report.md of a run from DIR/results.json.
    Report(crate::experiment::output::report::ReportArgs),
    /// Record every send and receive system call of a process, with the copies the kernel
    /// made inside each (`--pid PID` or `-- COMMAND`).
    Trace(crate::trace::TraceArgs),
}

/// Parses the command line and runs the subcommand; errors are printed here, once.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Probes(args) => probes::run(&args),
        Command::Run(args) => crate::experiment::sweep::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Server(args) => crate::workload::server::run_server_command(args),
        Command::Client(args) => crate::workload::client::run_client_command(args),
        Command::Bench(args) => crate::bench::run(&args),
        Command::Report(args) => crate::experiment::output::report::run_report(&args),
        Command::Trace(args) => crate::trace::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netcopy: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
