//! The command line: one file per subcommand, each with its clap `Args` and its `run`;
//! `topology` holds the flags `verify` and `run` share (where the two ends run).
//!
//! Layer: the top one; it may use every layer below and nothing uses it.

mod agent;
mod bench;
mod client;
mod modes;
mod probes;
mod report;
mod run;
mod server;
mod topology;
mod trace;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workload::server::{stop_exit_code, Interrupted};

/// How many times does my data really get copied on its way through a socket?
#[derive(Parser)]
#[command(name = "netcopy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Host A of two: serve phases to an authenticated controller (`verify --remote`,
    /// `run --remote`),
    /// counting this host's copies with its own probes.
    Agent(agent::AgentArgs),
    /// List the send modes: how each sends, what it claims, whether this kernel has it.
    Modes(modes::ModesArgs),
    /// Report what this kernel offers the tool (probe types, tracepoints, counters, plan).
    Probes(probes::ProbesArgs),
    /// The whole experiment: sweep modes x sizes x threads (over loopback, two namespaces
    /// or two hosts); write results, plots, report.
    Run(run::RunArgs),
    /// Run each mode (over loopback, two namespaces or two hosts) and check the kernel's
    /// copies against its claim.
    Verify(verify::VerifyArgs),
    /// Serve messages in one send mode until SIGINT/SIGTERM.
    Server(server::ServerArgs),
    /// Request messages from a server with T threads, verify them, report throughput and latency.
    Client(client::ClientArgs),
    /// Benchmarks against iperf3 and the machine's limits, and what the probes cost.
    Bench(bench::BenchArgs),
    /// Rebuild results.csv, the SVG plots and report.md of a run from DIR/results.json.
    Report(report::ReportArgs),
    /// Record every send and receive system call of a process, with the copies the kernel
    /// made inside each (`--pid PID` or `-- COMMAND`).
    Trace(trace::TraceArgs),
}

/// Parses the command line and runs the subcommand; errors are printed here, once.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Agent(args) => agent::run(&args),
        Command::Modes(args) => modes::run(&args),
        Command::Probes(args) => probes::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Server(args) => server::run(&args),
        Command::Client(args) => client::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Trace(args) => trace::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("netcopy: {err:#}");
            stop_exit_code()
        }
        Err(err) => {
            eprintln!("netcopy: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
