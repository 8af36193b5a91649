//! `netcopy agent`: host A of a two-host run. Serves phases to one authenticated
//! controller at a time (`netcopy verify --remote`, `netcopy run --remote` on host B),
//! counting its own servers' copies with its own probes.

use std::{net::TcpListener, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result};

use crate::{
    kernel::CopyProbes,
    remote::{
        agent::{serve, AgentOptions, Phases, SessionEnd},
        auth::Token,
        phases::AgentPhases,
    },
    util::{sys, text::printable, units::duration_arg},
    workload::server::stop_flag_on_signals,
};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Address to accept controllers on, e.g. 0.0.0.0:7878 or [::]:7878. Each phase's
    /// server listens on the address the controller reached.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,
    /// The shared secret, one line, readable by its owner only (chmod 600); the same file
    /// content on the controller's host. It never crosses the wire.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// Exit after this many controller sessions (default: serve until SIGINT/SIGTERM).
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u64>,
    /// A controller silent for this long (between requests, a phase included) is taken
    /// for gone: its phase is stopped and the next controller served.
    #[arg(long, default_value = "10m", value_parser = duration_arg)]
    pub idle_timeout: Duration,
}

pub fn run(args: &AgentArgs) -> Result<ExitCode> {
    let token = Token::from_file(&args.token_file)?;
    sys::require_root("netcopy agent")?;
    let listener = TcpListener::bind(&args.listen).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (address already in use: another agent or program listens there)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {}: {e}{hint}", args.listen)
    })?;
    let local = listener.local_addr()?;
    let stop = stop_flag_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    let probes = CopyProbes::load()?;
    let phases = AgentPhases::new(probes)?;
    // What the controllers will be told: their runs report these modes as unsupported.
    for m in &phases.host().modes {
        if let Some(why) = &m.unsupported {
            eprintln!(
                "netcopy agent: {} is not supported by this kernel: {why}",
                m.mode
            );
        }
    }
    eprintln!("netcopy agent: listening on {local}");
    let options = AgentOptions {
        idle_timeout: args.idle_timeout,
        max_sessions: args.max_sessions,
        ..AgentOptions::default()
    };
    serve(listener, token, phases, options, stop, |peer, end| {
        let what = match end {
            SessionEnd::Bye => "done".to_string(),
            SessionEnd::Refused(why) => format!("refused: {why}"),
            SessionEnd::Lost(why) => format!("lost, its phase stopped: {why}"),
            SessionEnd::Stopped => "stopped by a signal".to_string(),
        };
        // The reasons can quote what the controller sent (an unknown variant's name).
        eprintln!("netcopy agent: controller {peer}: {}", printable(&what));
    })?;
    Ok(ExitCode::SUCCESS)
}
