//! `netcopy run`: the whole experiment. Checks the command line (where the ends run
//! included), picks the results directory, runs the sweep (`experiment::sweep`) and
//! writes the outputs of its results.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::LazyLock,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};

use super::topology::TopologyArgs;
use crate::{
    experiment::{
        output::write_outputs,
        placement::{self, PinRequest},
        results::{RunConfig, MAX_RESULTS_BYTES, RESULTS_FILE},
        sweep::{self, TRACES_DIR},
    },
    util::{
        affinity::allowed_cpus,
        sys, time,
        units::{duration_arg, format_size, size_arg},
    },
    workload::client::ReceiveMechanism,
    workload::message::FieldLayout,
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
    #[arg(long, value_parser = duration_arg, default_value = "500ms")]
    duration: Duration,
    /// Repetitions of every cell, round-robin across the modes of each (size, threads)
    /// point. Three or more give every figure an interval that can decide a comparison.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Where server and client threads run: `auto` (distinct CPUs when there are at least
    /// two), `none` (the scheduler decides), or SERVER/CLIENT CPU lists such as `0/1`.
    /// With --remote only this host's client is pinned (the server runs on the agent's).
    #[arg(long, default_value = "auto", value_name = "auto|none|SERVER/CLIENT")]
    pin: PinRequest,
    /// A small sweep that finishes in under a minute (4K, 64K, 1M; 1 and 2 threads; 250 ms
    /// stream phases; --repeat repeats).
    #[arg(long)]
    quick: bool,
    /// Output directory (default: results/<UTC timestamp>/). One that already holds a
    /// results.json is refused unless --overwrite is given.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the results of an earlier run in --out (its trace samples are removed first).
    #[arg(long)]
    overwrite: bool,
    /// Do not record a syscall trace sample per cell.
    #[arg(long)]
    no_trace: bool,
    /// Receive mechanisms, comma-separated: copy (recv) and/or zerocopy
    /// (getsockopt(TCP_ZEROCOPY_RECEIVE) on a mapping of the socket). Each is an axis of
    /// the sweep, taking its turns round-robin with the modes.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "copy")]
    recv: Vec<ReceiveMechanism>,
    #[command(flatten)]
    ends: TopologyArgs,
}

impl RunArgs {
    fn config(&self) -> RunConfig {
        let (sizes, threads, stream) = if self.quick {
            (
                vec![4 << 10, 64 << 10, 1 << 20],
                vec![1, 2],
                Duration::from_millis(250),
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
            pin: self.pin.clone(),
            interleaved: true,
            recv: {
                let mut recv = self.recv.clone();
                recv.sort();
                recv.dedup();
                recv
            },
        }
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    // Everything the command line decides is checked before anything starts: a bad plan
    // must not load probes, run the verification or touch a directory first.
    let config = args.config();
    check_plan(&config)?;
    let topology = args.ends.topology()?;
    let allowed = allowed_cpus().context("reading the CPUs this process may run on")?;
    let placement = placement::resolve(&config.pin, &allowed)?;
    let dir = results_dir(args)?;
    sys::require_root("netcopy run")?;
    prepare_results_dir(&dir, args.overwrite)?;
    let results = sweep::run_sweep(
        &config,
        &topology,
        &placement,
        &allowed,
        &dir,
        !args.no_trace,
    )?;
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

/// A generous bound on what one cell adds to results.json (about 8 KiB today).
const BYTES_PER_CELL: u64 = 16 << 10;

/// Refuses a plan the sweep could not carry out, naming the flag at fault.
fn check_plan(config: &RunConfig) -> Result<()> {
    if config.modes.is_empty() || config.sizes.is_empty() || config.threads.is_empty() {
        bail!("nothing to run: give at least one mode, size and thread count");
    }
    for &size in &config.sizes {
        // The message layout is what every cell builds: its limits are the sweep's.
        FieldLayout::new(size).map_err(|e| anyhow!("--sizes {}: {e}", format_size(size)))?;
    }
    let cells =
        config.modes.len() * config.sizes.len() * config.threads.len() * config.repeat as usize;
    if cells as u64 * BYTES_PER_CELL > MAX_RESULTS_BYTES {
        bail!(
            "{cells} cells (modes x sizes x threads x repeats) would make a results.json \
             larger than the {} MiB `netcopy report` reads: sweep fewer",
            MAX_RESULTS_BYTES >> 20
        );
    }
    Ok(())
}

/// The results directory: --out, else a fresh `results/<UTC timestamp>`. A directory that
/// holds an earlier run's results.json is refused unless --overwrite says to replace it.
fn results_dir(args: &RunArgs) -> Result<PathBuf> {
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("results").join(time::utc_timestamp()),
    };
    if dir.exists() && !dir.is_dir() {
        bail!("--out {} exists and is not a directory", dir.display());
    }
    let earlier = dir.join(RESULTS_FILE);
    // symlink_metadata: even a dangling symlink there is something we would replace.
    if fs::symlink_metadata(&earlier).is_ok() && !args.overwrite {
        bail!(
            "{} already holds the results of an earlier run ({}): choose another --out, or \
             pass --overwrite to replace them",
            dir.display(),
            earlier.display()
        );
    }
    Ok(dir)
}

/// Creates the results directory; with `overwrite`, first removes the earlier run's trace
/// samples, which the new run would not all replace.
fn prepare_results_dir(dir: &Path, overwrite: bool) -> Result<()> {
    let traces = dir.join(TRACES_DIR);
    if overwrite && traces.is_dir() {
        fs::remove_dir_all(&traces)
            .with_context(|| format!("removing the earlier run's {}", traces.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
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
