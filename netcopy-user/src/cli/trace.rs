//! `netcopy trace`: its arguments, and the command that runs a trace session and prints
//! its summary.

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args};

use crate::trace::{
    session::{self, SessionConfig, Target},
    summary_json,
};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["pid", "command"])))]
pub struct TraceArgs {
    /// Trace this running process (all its threads) until --duration, Ctrl-C/SIGTERM or
    /// its exit.
    #[arg(long)]
    pid: Option<u32>,
    /// Stop tracing after this long (e.g. 10s, 500ms, 2m). With a command, netcopy then
    /// waits for the command to finish without tracing it.
    #[arg(long, value_parser = crate::util::units::duration_arg)]
    duration: Option<Duration>,
    /// Output directory (default: results/trace-<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Room for the calls waiting for netcopy, shared out in one ring per CPU (a power
    /// of two, e.g. 16M); calls that find their CPU's ring full are counted as lost.
    #[arg(long, value_parser = crate::util::units::size_arg, default_value = "16M")]
    ring_size: u64,
    /// The command to start and trace from its first instruction, with its children
    /// (after `--`). netcopy returns its exit code.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

pub fn run(args: &TraceArgs) -> Result<ExitCode> {
    let ring_bytes = u32::try_from(args.ring_size)
        .ok()
        .filter(|b| b.is_power_of_two())
        .ok_or_else(|| {
            anyhow!(
                "--ring-size {} must be a power of two below 4G (e.g. 1M, 8M, 64M)",
                args.ring_size
            )
        })?;
    let target = match args.pid {
        Some(_) if !args.command.is_empty() => {
            bail!("give either --pid or a command after --, not both")
        }
        Some(pid) => Target::Pid(pid),
        None => Target::Command(args.command.clone()),
    };
    let session = session::run(&SessionConfig {
        target,
        duration: args.duration,
        out_dir: args.out.clone(),
        ring_bytes,
    })?;
    if args.json {
        let mut j = summary_json(&session.output);
        j["out_dir"] = serde_json::json!(session.paths.dir);
        if let Some(code) = session.command_exit_code() {
            j["exit_code"] = serde_json::json!(code);
        }
        crate::util::emit(&(serde_json::to_string(&j)? + "\n"))?;
    } else {
        crate::util::emit(&session.output.summary.table())?;
        crate::util::emit(&format!(
            "wrote {} and {} (open it in https://ui.perfetto.dev)\n",
            session.paths.jsonl.display(),
            session.paths.chrome_trace.display()
        ))?;
    }
    let code = session.finish()?;
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_needs_exactly_one_target() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: TraceArgs,
        }
        assert!(Cli::try_parse_from(["t"]).is_err());
        assert!(Cli::try_parse_from(["t", "--pid", "1", "--", "true"]).is_err());
        let cli = Cli::try_parse_from(["t", "--json", "--", "ls", "-l"]).unwrap();
        assert_eq!(
            cli.args.command,
            vec![OsString::from("ls"), OsString::from("-l")]
        );
        assert_eq!(
            cli.args.ring_size,
            u64::from(crate::kernel::maps::DEFAULT_RING_BYTES)
        );
        let cli = Cli::try_parse_from(["t", "--pid", "42", "--duration", "2s"]).unwrap();
        assert_eq!(cli.args.pid, Some(42));
        assert_eq!(cli.args.duration, Some(Duration::from_secs(2)));
    }
}
