//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (libFuzzer), one after another,
//! each for `--seconds` (or until `--runs` executions), starting from the seeds checked in
//! under `fuzz/seeds/TARGET` and the working corpus `fuzz/corpus/TARGET` that earlier runs
//! grew. Prints each target's executions, rate, crashes and corpus; fails when a target
//! crashed, keeping the crashing input under `fuzz/artifacts/TARGET/`.
//!
//! The targets need a nightly compiler (coverage instrumentation, `-Zsanitizer`); the
//! main workspace does not, which is why `fuzz/` is a workspace of its own.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{build::workspace_root, toolchain};

/// The rustup toolchain the targets are built with.
const NIGHTLY: &str = "nightly";

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds each target runs (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Stop a target after this many executions, if that comes before --seconds.
    #[arg(long)]
    runs: Option<u64>,
    /// Only this target (repeatable); default: every target in fuzz/Cargo.toml.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Only run each target over its seeds and corpus once (no fuzzing): what CI replays.
    #[arg(long)]
    replay: bool,
    /// libFuzzer's sanitizer: address (default) or none.
    #[arg(long, default_value = "address")]
    sanitizer: String,
}

/// What one target's run came to, from libFuzzer's final stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub executions: u64,
    pub exec_per_sec: u64,
    pub new_units: u64,
}

/// Parses the `stat::NAME: VALUE` lines `-print_final_stats=1` makes libFuzzer print.
pub fn parse_final_stats(log: &str) -> Option<Stats> {
    let mut stats = Stats::default();
    let mut seen = false;
    for line in log.lines() {
        let Some((name, value)) = line
            .trim()
            .strip_prefix("stat::")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        match name {
            "number_of_executed_units" => {
                stats.executions = value;
                seen = true;
            }
            "average_exec_per_sec" => stats.exec_per_sec = value,
            "new_units_added" => stats.new_units = value,
            _ => {}
        }
    }
    seen.then_some(stats)
}

/// The crashing input libFuzzer wrote (`Test unit written to PATH`), if any.
pub fn crash_artifact(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split_once("Test unit written to "))
        .map(|(_, path)| path.trim().to_string())
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// `rustup run nightly cargo ...` in fuzz/'s parent, without the variables the outer
/// (stable) cargo set for xtask, which would pin the inner one to stable.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, "cargo"])
        .current_dir(workspace_root());
    for var in crate::build::CARGO_ENV_TO_CLEAR
        .iter()
        .chain(&["CARGO", "RUSTUP_TOOLCHAIN"])
    {
        cmd.env_remove(var);
    }
    cmd
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails with what to do when there is no nightly toolchain; installs cargo-fuzz when it
/// is missing.
fn ensure_tools() -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--version"])) {
        bail!(
            "the fuzz targets need a nightly Rust toolchain and rustup has none here; \
             install one with `rustup toolchain install {NIGHTLY} --profile minimal` \
             (the main workspace itself builds on stable)"
        );
    }
    if !succeeds(nightly_cargo().args(["fuzz", "--version"])) {
        println!("fuzz: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)");
        let status = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !status.success() {
            bail!("cargo install cargo-fuzz --locked failed ({status})");
        }
    }
    Ok(())
}

/// The targets fuzz/Cargo.toml declares, as `cargo fuzz list` prints them.
fn all_targets() -> Result<Vec<String>> {
    let out = nightly_cargo()
        .args(["fuzz", "list"])
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        bail!("fuzz/Cargo.toml declares no fuzz targets");
    }
    Ok(targets)
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.is_ok()).count())
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    ensure_tools()?;
    let all = all_targets()?;
    let targets = if args.targets.is_empty() {
        all
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; the targets are: {}", all.join(", "));
            }
        }
        args.targets.clone()
    };
    let mut build = nightly_cargo();
    build.args(["fuzz", "build", "--sanitizer", &args.sanitizer]);
    println!("fuzz: $ {}", toolchain::render(&build));
    let status = build.status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    let logs = fuzz_dir().join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut crashed = Vec::new();
    for target in &targets {
        let seeds = fuzz_dir().join("seeds").join(target);
        let corpus = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        if count_files(&seeds) == 0 {
            bail!("{} holds no seeds for {target}", seeds.display());
        }
        let mut run = nightly_cargo();
        run.args(["fuzz", "run", "--sanitizer", &args.sanitizer, target])
            .arg(&corpus)
            .arg(&seeds)
            .args([
                "--",
                "-print_final_stats=1",
                "-timeout=10",
                "-rss_limit_mb=2048",
            ]);
        if args.replay {
            run.arg("-runs=0");
        } else {
            run.arg(format!("-max_total_time={}", args.seconds));
            if let Some(runs) = args.runs {
                run.arg(format!("-runs={runs}"));
            }
        }
        let log_path = logs.join(format!("{target}.log"));
        let log_file = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        println!("fuzz: {target}: $ {}", toolchain::render(&run));
        let status = run
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let stats = parse_final_stats(&log);
        let artifact = crash_artifact(&log);
        let crashes = u64::from(!status.success());
        match &stats {
            Some(s) => println!(
                "fuzz: {target}: {} executions ({}/s), {crashes} crashes, corpus {} inputs \
                 ({} new, plus {} seeds); log {}",
                s.executions,
                s.exec_per_sec,
                count_files(&corpus),
                s.new_units,
                count_files(&seeds),
                log_path.display()
            ),
            None => println!(
                "fuzz: {target}: no final stats ({status}); log {}",
                log_path.display()
            ),
        }
        if !status.success() {
            println!(
                "fuzz: {target}: CRASH; the input is kept at {}",
                artifact
                    .as_deref()
                    .unwrap_or("(libFuzzer named no artifact: see the log)")
            );
            crashed.push(target.clone());
        }
    }
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_and_artifacts_are_read_from_libfuzzer_output() {
        let log = "#4194304 pulse  cov: 210 ft: 380 corp: 40/2003b lim: 4096 exec/s: 1398101\n\
                   Done 8388608 runs in 6 second(s)\n\
                   stat::number_of_executed_units: 8388608\n\
                   stat::average_exec_per_sec:     1398101\n\
                   stat::new_units_added:          12\n\
                   stat::slowest_unit_time_sec:    0\n\
                   stat::peak_rss_mb:              48\n";
        assert_eq!(
            parse_final_stats(log),
            Some(Stats {
                executions: 8_388_608,
                exec_per_sec: 1_398_101,
                new_units: 12
            })
        );
        assert_eq!(crash_artifact(log), None);
        let crash = "==1234== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/w/fuzz/artifacts/t/'; Test unit written to /w/fuzz/artifacts/t/crash-ab12\n\
                     stat::number_of_executed_units: 77\n";
        assert_eq!(
            crash_artifact(crash).as_deref(),
            Some("/w/fuzz/artifacts/t/crash-ab12")
        );
        assert_eq!(parse_final_stats(crash).unwrap().executions, 77);
        assert_eq!(parse_final_stats("no stats here"), None);
    }
}
