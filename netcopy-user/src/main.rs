use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// How many times does my data really get copied on its way through a socket?
#[derive(Parser)]
#[command(name = "netcopy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this kernel offers the tool (probe types, tracepoints, counters, plan).
    Probes(netcopy::kernel::capabilities::ProbesArgs),
    /// The whole experiment: sweep modes x sizes x threads; write results, plots, report.
    Run(netcopy::experiment::sweep::RunArgs),
    /// Run each mode over loopback and check the kernel's copies against its claim.
    Verify(netcopy::ledger::verify::VerifyArgs),
    /// Serve messages in one send mode (two-copy, one-copy, zero-copy) until SIGINT/SIGTERM.
    Server(netcopy::workload::server::ServerArgs),
    /// Request messages from a server with T threads, verify them, report throughput and latency.
    Client(netcopy::workload::client::ClientArgs),
    /// Benchmarks against iperf3 and the machine's limits, and what the probes cost.
    Bench(netcopy::bench::BenchArgs),
    /// Rebuild results.csv, the SVG plots and report.md of a run from DIR/results.json.
    Report(netcopy::experiment::output::report::ReportArgs),
    /// Record every send and receive system call of a process, with the copies the kernel
    /// made inside each (`--pid PID` or `-- COMMAND`).
    Trace(netcopy::trace::TraceArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Probes(args) => netcopy::kernel::capabilities::run(&args),
        Command::Run(args) => netcopy::experiment::sweep::run(&args),
        Command::Verify(args) => netcopy::ledger::verify::run(&args),
        Command::Server(args) => netcopy::workload::server::run_server_command(args),
        Command::Client(args) => netcopy::workload::client::run_client_command(args),
        Command::Bench(args) => netcopy::bench::run(&args),
        Command::Report(args) => netcopy::experiment::output::report::run_report(&args),
        Command::Trace(args) => netcopy::trace::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netcopy: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
