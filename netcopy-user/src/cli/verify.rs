//! `netcopy verify`: each mode's copies checked against its claim, over loopback, across
//! two namespaces of this kernel, or against an agent on another host (the runs and the
//! judgement are in `experiment::verify` and `ledger`).

use std::process::ExitCode;

use anyhow::Result;

use super::topology::TopologyArgs;
use crate::{
    experiment::verify::{self, VerifyPlan},
    kernel::{
        plan::{HookKind, HookKinds},
        LoadOptions,
    },
    util::{emit, units::size_arg},
    workload::{client::ReceiveMechanism, modes::Mode, server::Interrupted},
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
    #[command(flatten)]
    pub ends: TopologyArgs,
    /// Hold an ETH_P_ALL packet socket open on the sender's device while each mode runs:
    /// what a running tcpdump does to zero-copy, on purpose.
    #[arg(long)]
    pub packet_tap: bool,
    /// How the client receives: copy (recv) or zerocopy (getsockopt(TCP_ZEROCOPY_RECEIVE)
    /// on a mapping of the socket). With --topology netns and zerocopy, the namespaces'
    /// veth devices get MTU 4148 (one page per segment), and the report says so.
    #[arg(long, value_enum, default_value_t = ReceiveMechanism::Copy)]
    pub recv: ReceiveMechanism,
}

/// Runs `netcopy verify`. With `--json` a failure is a JSON object too, its cause in
/// `errors` (as `client --json` reports one), besides the error on stderr.
pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    match run_verify(args) {
        Err(err) if args.json && err.downcast_ref::<Interrupted>().is_none() => {
            eprintln!("netcopy: error: {err:#}");
            let failure = serde_json::json!({ "errors": [format!("{err:#}")] });
            emit(&format!("{}\n", serde_json::to_string_pretty(&failure)?))?;
            Ok(ExitCode::FAILURE)
        }
        result => result,
    }
}

fn run_verify(args: &VerifyArgs) -> Result<ExitCode> {
    let topology = args.ends.topology()?;
    let plan = VerifyPlan {
        modes: args.modes.clone(),
        size: args.size,
        messages: args.messages,
        load: LoadOptions {
            avoid: HookKinds::of(&args.avoid),
            ..LoadOptions::default()
        },
        topology,
        packet_tap: args.packet_tap,
        recv: args.recv,
    };
    let verification = verify::verify(&plan)?;
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
