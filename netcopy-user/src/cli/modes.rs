//! `netcopy modes`: the mode table as this kernel sees it -- every send mode with how it
//! sends, what it claims, and whether this kernel can run it (with why not). Scripts (the
//! xtask VM stages) pick modes by their claims from `--json` instead of naming them.

use std::{io::Write as _, process::ExitCode};

use anyhow::Result;
use serde::Serialize;

use crate::workload::modes::{Completions, ModeSpec, MODES};

#[derive(clap::Args, Debug)]
pub struct ModesArgs {
    /// One JSON object with a `modes` array instead of the table.
    #[arg(long)]
    json: bool,
}

/// One row of the table, as `--json` prints it.
#[derive(Serialize)]
struct ModeRow {
    name: &'static str,
    how: &'static str,
    claims: &'static str,
    user_copy: bool,
    kernel_send_copy: bool,
    zerocopy_attach: bool,
    page_reference: bool,
    /// `error_queue`, `ring`, or null for a mode without completions.
    completions: Option<&'static str>,
    in_default_sweep: bool,
    bench_peer: bool,
    /// Null when this kernel can run the mode, else why not.
    unsupported: Option<String>,
}

impl ModeRow {
    fn of(spec: &ModeSpec) -> ModeRow {
        let claim = spec.claim;
        ModeRow {
            name: spec.name,
            how: spec.how,
            claims: spec.claims,
            user_copy: claim.user_copy,
            kernel_send_copy: claim.kernel_send_copy,
            zerocopy_attach: claim.zerocopy_attach,
            page_reference: claim.page_reference,
            completions: claim.completions.map(|c| match c {
                Completions::ErrorQueue => "error_queue",
                Completions::Ring => "ring",
            }),
            in_default_sweep: spec.in_default_sweep,
            bench_peer: spec.bench_peer,
            unsupported: (spec.available)().err().map(|e| e.to_string()),
        }
    }
}

pub fn run(args: &ModesArgs) -> Result<ExitCode> {
    let rows: Vec<ModeRow> = MODES.iter().map(ModeRow::of).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::json!({ "modes": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for row in &rows {
        let support = match &row.unsupported {
            None => "supported here".to_string(),
            Some(why) => format!("NOT supported by this kernel: {why}"),
        };
        writeln!(
            out,
            "{:<12} {}\n{:<12} claims {}; {support}",
            row.name, row.how, "", row.claims
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
