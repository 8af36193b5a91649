//! `netcopy report DIR`: rebuilds results.csv, the SVG plots and report.md of a run from
//! its results.json alone.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::experiment::{output::write_outputs, results::load_results};

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The results directory of `netcopy run` (the one holding results.json); results.csv,
    /// the SVG plots and report.md are written next to it. results.json must be a regular
    /// file (or a symlink to one) of at most 256 MiB.
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::experiment::results::MAX_RESULTS_BYTES;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        report: ReportArgs,
    }

    #[test]
    fn help_states_the_size_bound_that_loading_applies() {
        let help = Command::command().render_long_help().to_string();
        assert!(
            help.contains(&format!("at most {} MiB", MAX_RESULTS_BYTES >> 20)),
            "{help}"
        );
    }
}
