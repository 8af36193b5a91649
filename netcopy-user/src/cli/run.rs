//! `netcopy run`: the whole experiment. Checks the command line, picks the results
//! directory, runs the sweep (`experiment::sweep`) and writes the outputs of its results.

use std::{fs, path::PathBuf, process::ExitCode, sync::LazyLock, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{
    experiment::{output::write_outputs, results::RunConfig, sweep},
    util::{
        sys, time,
        units::{duration_arg, size_arg},
    },
    workload::modes::{default_sweep_names, Mode},
    workload::server::stop_exit_code,
};

/// `--modes` when not given: the modes the mode table puts in the default sweep.
static DEFAULT_MODES: LazyLock<String> = LazyLock::new(default_sweep_names);

/// One entry of `--modes`: a mode of the table, or every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    All,
    One(Mode),
}

fn mode_arg(text: &str) -> Result<ModeArg, String> {
    if text == "all" {
        return Ok(ModeArg::All);
    }
    <Mode as clap::ValueEnum>::from_str(text, false)
        .map(ModeArg::One)
        .map_err(|_| {
            let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
            format!("unknown mode {text:?}: one of all, {}", names.join(", "))
        })
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Modes to measure, comma-separated; `all` for every mode of the table.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = mode_arg,
        default_value = DEFAULT_MODES.as_str()
    )]
    modes: Vec<ModeArg>,
    /// Message sizes, comma-separated (K/M are binary units).
    #[arg(long, value_delimiter = ',', value_parser = size_arg, default_value = "1K,4K,16K,64K,256K,1M")]
    sizes: Vec<u64>,
    /// Client thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Vec<u64>,
    /// Length of each cell's stream (throughput) phase; the latency phase takes half.
    #[arg(long, value_parser = duration_arg, default_value = "1500ms")]
    duration: Duration,
    /// Repetitions of every cell.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// A small sweep that finishes in under a minute (4K, 64K, 1M; 1 and 2 threads; 400 ms).
    #[arg(long)]
    quick: bool,
    /// Output directory (default: results/<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not record a syscall trace sample per cell.
    #[arg(long)]
    no_trace: bool,
}

impl RunArgs {
    fn config(&self) -> RunConfig {
        let (sizes, threads, stream) = if self.quick {
            (
                vec![4 << 10, 64 << 10, 1 << 20],
                vec![1, 2],
                Duration::from_millis(400),
            )
        } else {
            (
                self.sizes.clone(),
                self.threads.iter().map(|&t| t as usize).collect(),
                self.duration,
            )
        };
        let mut modes: Vec<Mode> = Vec::new();
        for arg in &self.modes {
            let named = match *arg {
                ModeArg::All => Mode::ALL.to_vec(),
                ModeArg::One(mode) => vec![mode],
            };
            for mode in named {
                if !modes.contains(&mode) {
                    modes.push(mode);
                }
            }
        }
        RunConfig {
            modes,
            sizes,
            threads,
            repeat: self.repeat,
            stream_seconds: stream.as_secs_f64(),
            rr_seconds: stream.as_secs_f64() / 2.0,
            quick: self.quick,
        }
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    sys::require_root("netcopy run")?;
    let config = args.config();
    if config.modes.is_empty() || config.sizes.is_empty() || config.threads.is_empty() {
        bail!("nothing to run: give at least one mode, size and thread count");
    }
    if let Some(&zero) = config.sizes.iter().find(|&&s| s == 0) {
        bail!("message size {zero} is invalid: sizes must be at least 1 byte");
    }
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("results").join(time::utc_timestamp()),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let results = sweep::run_sweep(&config, &dir, !args.no_trace)?;
    let outputs = write_outputs(&dir, &results)?;
    eprintln!(
        "netcopy run: {} cells{} -> {}",
        results.cells.len(),
        if results.interrupted {
            " (interrupted)"
        } else {
            ""
        },
        dir.display()
    );
    for path in outputs {
        eprintln!("  {}", path.display());
    }
    Ok(if results.interrupted {
        stop_exit_code()
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::workload::modes::MODES;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn modes_default_to_the_tables_default_sweep() {
        let args = Command::parse_from(["netcopy-run"]).run;
        let expected: Vec<Mode> = MODES
            .iter()
            .filter(|s| s.in_default_sweep)
            .map(|s| s.mode)
            .collect();
        assert_eq!(args.config().modes, expected);
    }

    #[test]
    fn all_means_every_mode_of_the_table_once() {
        let args = Command::parse_from(["netcopy-run", "--modes", "one-copy,all"]).run;
        let modes = args.config().modes;
        assert_eq!(modes[0], Mode::OneCopy);
        assert_eq!(modes.len(), Mode::ALL.len());
        assert!(Mode::ALL.iter().all(|m| modes.contains(m)));
        assert!(Command::try_parse_from(["netcopy-run", "--modes", "three-copy"]).is_err());
    }
}
