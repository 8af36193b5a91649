//! `netcopy run` checks its whole plan and its output directory before anything starts:
//! no probe is loaded, no verification runs and nothing is written when the command line
//! cannot be carried out, and an earlier run's results are never overwritten silently.
//! No root needed: these checks come before the privilege check.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// A directory path under the system temp dir (not created), removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path =
            std::env::temp_dir().join(format!("netcopy-run-plan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `netcopy run ARGS --out DIR`, kept small so that a check that is missing costs seconds.
fn run(out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("running netcopy run")
}

const SMALL: [&str; 9] = [
    "--modes",
    "two-copy",
    "--threads",
    "1",
    "--repeat",
    "1",
    "--duration",
    "100ms",
    "--no-trace",
];

fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "netcopy run succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing started: no probe plan printed, no verification, no sweep.
    for started in ["writing to", "verify ", "send-path", "Gbit/s"] {
        assert!(
            !stderr.contains(started),
            "something started ({started:?}): {stderr}"
        );
    }
    stderr
}

#[test]
fn a_size_beyond_the_protocol_is_refused_before_anything_starts() {
    let out = TempPath::new("10g");
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K,10G"]);
    let stderr = refused(&run(&out.0, &args));
    assert!(stderr.contains("--sizes"), "names the flag: {stderr}");
    assert!(stderr.contains("10G"), "names the size: {stderr}");
    assert!(
        !stderr.contains("--max-size"),
        "speaks of a flag the user never passed: {stderr}"
    );
    assert!(!out.0.exists(), "the output directory was created");
}

#[test]
fn an_earlier_runs_results_are_not_overwritten() {
    let out = TempPath::new("earlier");
    std::fs::create_dir_all(&out.0).unwrap();
    let earlier = "{\"schema_version\": 1, \"an earlier run\": true}";
    std::fs::write(out.0.join("results.json"), earlier).unwrap();
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K"]);
    let stderr = refused(&run(&out.0, &args));
    assert!(stderr.contains("results.json"), "{stderr}");
    assert!(
        stderr.contains("--overwrite"),
        "names the way out: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.0.join("results.json")).unwrap(),
        earlier,
        "the earlier results changed"
    );
}

#[test]
fn a_placement_on_cpus_this_process_cannot_use_is_refused_before_anything_starts() {
    let out = TempPath::new("pin");
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K", "--pin", "0/999"]);
    let stderr = refused(&run(&out.0, &args));
    assert!(stderr.contains("--pin 0/999"), "names the flag: {stderr}");
    assert!(stderr.contains("client CPU 999"), "{stderr}");
    assert!(!out.0.exists(), "the output directory was created");
}
