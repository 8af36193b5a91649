//! `netcopy verify`: each mode's copies checked against its claim (the runs and the
//! judgement are in `ledger::verify`).

use std::process::ExitCode;

use anyhow::Result;

use crate::{
    kernel::{
        plan::{HookKind, HookKinds},
        LoadOptions,
    },
    ledger::verify,
    util::{emit, units::size_arg},
    workload::modes::Mode,
};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Modes to verify (repeatable); every mode by default.
    #[arg(long = "mode", value_enum)]
    pub modes: Vec<Mode>,
    /// Payload bytes per message (K/M are binary units).
    #[arg(long, default_value = "64K", value_parser = size_arg)]
    pub size: u64,
    /// Messages per mode.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub messages: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Hook kinds not to use (comma-separated or repeated): each figure then comes from
    /// the next strategy in rank, to cross-check one way of observing against another.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    pub avoid: Vec<HookKind>,
}

pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    let options = LoadOptions {
        avoid: HookKinds::of(&args.avoid),
        ..LoadOptions::default()
    };
    let verification = verify::verify(&args.modes, args.size, args.messages, options)?;
    if args.json {
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&verification)?
        ))?;
    } else {
        emit(&verify::render(&verification))?;
    }
    Ok(if verification.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
