//! `netcopy probes`: what this kernel offers the tool (the checks are in
//! `kernel::capabilities`).

use std::process::ExitCode;

use anyhow::Result;

use crate::{kernel::capabilities, util::emit};

#[derive(clap::Args, Debug)]
pub struct ProbesArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ProbesArgs) -> Result<ExitCode> {
    let report = capabilities::probe_kernel();
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        emit(&capabilities::render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}
