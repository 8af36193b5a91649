//! `cargo xtask test`: setup check, build, unit tests, then the privileged integration
//! tests that load real eBPF programs, then (when qemu is present) the VM test.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::build::{self, workspace_root};

/// Integration test targets that need root: they load and attach eBPF programs.
/// Their names start with `privileged_` so this list cannot drift from the files.
fn privileged_targets() -> Result<Vec<String>> {
    let dir = workspace_root().join("netcopy-user/tests");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".rs") {
            if stem.starts_with("privileged_") {
                out.push(stem.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Totals parsed from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Parses `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_result_line(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut tally = Tally::default();
    for part in rest.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (n, what) = match words.as_slice() {
            [_, n, what, ..] if n.parse::<u64>().is_ok() => (n, what),
            [n, what, ..] => (n, what),
            _ => continue,
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match *what {
            "passed" => tally.passed = n,
            "failed" => tally.failed = n,
            "ignored" => tally.ignored = n,
            _ => {}
        }
    }
    Some(tally)
}

/// Runs a cargo test command, echoing its output and adding up its results.
fn run_cargo_test(args: &[&str], object: &Path) -> Result<(Tally, bool)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("test")
        .args(args)
        .env("NETCOPY_EBPF_OBJECT", object)
        .current_dir(workspace_root())
        .stdout(Stdio::piped());
    println!("test: $ cargo test {}", args.join(" "));
    let mut child = cmd.spawn().context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(t) = parse_result_line(&line) {
            tally.add(t);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((tally, status.success()))
}

fn count_tests(target: &str, object: &Path) -> Result<u64> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "test",
            "-q",
            "-p",
            "netcopy-user",
            "--test",
            target,
            "--",
            "--list",
        ])
        .env("NETCOPY_EBPF_OBJECT", object)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("listing privileged tests")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count() as u64)
}

/// Privileged test targets that also run inside the VM on the other kernel. They assert
/// exact byte counts through whatever strategy that kernel allows (kprobe/fentry on
/// Debian 6.1), and need nothing from the host but their own executable.
const GUEST_TEST_TARGETS: &[&str] = &["privileged_ebpf"];

/// Path of the test executable of integration target `target`, built with the embedded
/// eBPF object.
fn test_executable(target: &str, object: &Path) -> Result<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "test",
            "--no-run",
            "--message-format=json",
            "-p",
            "netcopy-user",
        ])
        .args(["--test", target])
        .env("NETCOPY_EBPF_OBJECT", object)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("building the test executable")?;
    if !out.status.success() {
        bail!("building test target {target} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == target)
        .find_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .with_context(|| format!("cargo reported no executable for test target {target}"))
}

/// Runs GUEST_TEST_TARGETS inside the VM and adds up their results.
fn run_tests_in_guest(object: &Path) -> Result<(Tally, bool)> {
    let mut tally = Tally::default();
    let mut ok = true;
    for target in GUEST_TEST_TARGETS {
        let exe = test_executable(target, object)?;
        println!("test: {target} inside the VM");
        let outcome = crate::vm::run_in_guest(
            &exe,
            &[crate::vm::GuestCommand::netcopy(["--test-threads=1"])],
            &crate::vm::VmOptions::default(),
        )?;
        println!(
            "vm: guest kernel {} ({})",
            outcome.kernel_release,
            outcome
                .kernel_package
                .as_deref()
                .unwrap_or("unknown package")
        );
        for command in &outcome.commands {
            print!("{}", command.stdout);
            if !command.success() {
                eprint!("{}", command.stderr);
                println!("test: {target} in the VM exited with {}", command.exit_code);
                ok = false;
            }
            for line in command.stdout.lines() {
                if let Some(t) = parse_result_line(line) {
                    tally.add(t);
                }
            }
        }
    }
    Ok((tally, ok))
}

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Skip the VM test even when qemu is installed.
    #[arg(long)]
    pub no_vm: bool,
}

pub fn test(args: &TestArgs) -> Result<()> {
    let root_user = crate::is_root();
    let under_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    if under_ci && !root_user {
        bail!("under CI the privileged tests must run, and this is not root");
    }
    let netcopy = build::build_all()?;
    let object = build::ebpf_object_path();
    let mut total = Tally::default();
    let mut ok = true;

    println!("test: unit tests");
    let (t, success) = run_cargo_test(&["--workspace", "--lib", "--bins"], &object)?;
    total.add(t);
    ok &= success;

    let privileged = privileged_targets()?;
    println!("test: integration tests");
    let mut test_args: Vec<String> = vec!["--workspace".into()];
    let mut skipped = 0;
    if root_user {
        // Integration test targets only: `--tests` would run the unit tests again.
        test_args.extend(["--test".into(), "*".into()]);
    } else {
        for entry in std::fs::read_dir(workspace_root().join("netcopy-user/tests"))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".rs") {
                if !privileged.iter().any(|p| p == stem) {
                    test_args.extend(["--test".into(), stem.to_string()]);
                }
            }
        }
        for target in &privileged {
            skipped += count_tests(target, &object)?;
        }
    }
    let arg_refs: Vec<&str> = test_args.iter().map(String::as_str).collect();
    let (t, success) = run_cargo_test(&arg_refs, &object)?;
    total.add(t);
    ok &= success;
    if !root_user {
        println!(
            "skipped: needs root: {skipped} privileged tests ({})",
            privileged.join(", ")
        );
    }

    crate::vm_stage(&netcopy, args.no_vm, &mut ok)?;
    if !args.no_vm && crate::vm::qemu_available() {
        let (t, success) = run_tests_in_guest(&object)?;
        total.add(t);
        ok &= success;
    }

    println!(
        "summary: {} passed, {} failed, {} skipped",
        total.passed, total.failed, skipped
    );
    if !ok || total.failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_result_lines() {
        let t = parse_result_line(
            "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        )
        .unwrap();
        assert_eq!(
            t,
            Tally {
                passed: 12,
                failed: 0,
                ignored: 3
            }
        );
        let t = parse_result_line("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured")
            .unwrap();
        assert_eq!(
            t,
            Tally {
                passed: 1,
                failed: 2,
                ignored: 0
            }
        );
        assert!(parse_result_line("running 3 tests").is_none());
    }
}
