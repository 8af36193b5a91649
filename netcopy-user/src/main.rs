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
    Probes(netcopy::capabilities::ProbesArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Probes(args) => netcopy::capabilities::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netcopy: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
