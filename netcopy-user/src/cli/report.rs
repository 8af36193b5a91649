//! `netcopy report DIR`: rebuilds results.csv, the SVG plots and report.md of a run from
//! its results.json alone.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::experiment::{output::write_outputs, results::load_results};

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The results directory of `netcopy run` (the one holding results.json); results.csv,
    /// the SVG plots and report.md are written next to it.
    pub dir: PathBuf,
}

pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let results = load_results(&args.dir)?;
    let written = write_outputs(&args.dir, &results)?;
    if results.interrupted || !results.complete {
        eprintln!(
            "netcopy: note: the run in {} was {}: the report covers the {} cells measured",
            args.dir.display(),
            if results.interrupted {
                "interrupted"
            } else {
                "not complete"
            },
            results.cells.len()
        );
    }
    let mut out = String::new();
    for p in written {
        let _ = writeln!(out, "wrote {}", p.display());
    }
    crate::util::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
