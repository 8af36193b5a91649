//! `netcopy bench`: its arguments, and the output of the report it measures (text, JSON,
//! BENCHMARKS.md).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Result};

use crate::{
    bench::{self, progress::progress, BenchPlan, Part},
    util::{emit, fs::write_atomic},
};

/// `netcopy bench`.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct BenchArgs {
    /// Rounds of each comparison; the two sides alternate within every round. The probe
    /// overhead runs rounds x seconds x 6 blocks of 200 ms windows instead (60 by default).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Seconds of every single run (whole seconds: iperf3 -t takes no fractions).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the method and the figures as Markdown (BENCHMARKS.md) to PATH.
    #[arg(long, value_name = "PATH")]
    write_markdown: Option<PathBuf>,
    /// Run only these parts, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// Runs `netcopy bench`: fails when a part failed (not when one was skipped with a
/// reason).
pub(super) fn run(args: &BenchArgs) -> Result<ExitCode> {
    // Before the measurement, which takes minutes: a bad path fails at once.
    if let Some(path) = &args.write_markdown {
        check_writable(path)?;
    }
    let report = bench::measure(&BenchPlan {
        rounds: args.rounds,
        seconds: args.seconds,
        parts: args.only.clone(),
    });
    if let Some(path) = &args.write_markdown {
        write_atomic(path, bench::markdown::render(&report))?;
        progress(&format!("wrote {}", path.display()));
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        emit(&bench::text::render(&report))?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--write-markdown {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("--write-markdown {}: is a directory", path.display());
    }
    Ok(())
}
