//! `netcopy modes`: the mode table as users (and the test harness) read it: each mode's
//! name, how it sends, what it claims, and whether this kernel supports it.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::{
    util::emit,
    workload::modes::{Claim, MODES},
};

#[derive(clap::Args, Debug)]
pub struct ModesArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ModeRow {
    name: &'static str,
    how: &'static str,
    claims: &'static str,
    claim: Claim,
    in_default_sweep: bool,
    bench_peer: bool,
    /// None when this kernel supports it; else why not.
    unavailable: Option<String>,
}

pub fn run(args: &ModesArgs) -> Result<ExitCode> {
    let rows: Vec<ModeRow> = MODES
        .iter()
        .map(|s| ModeRow {
            name: s.name,
            how: s.how,
            claims: s.claims,
            claim: s.claim,
            in_default_sweep: s.in_default_sweep,
            bench_peer: s.bench_peer,
            unavailable: (s.available)().err().map(|e| e.to_string()),
        })
        .collect();
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:<12} {}\n{:<12} claims: {}{}{}\n",
            r.name,
            r.how,
            "",
            r.claims,
            if r.in_default_sweep {
                ""
            } else {
                " (not in the default sweep)"
            },
            match &r.unavailable {
                Some(why) => format!("; unavailable here: {why}"),
                None => String::new(),
            }
        ));
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
