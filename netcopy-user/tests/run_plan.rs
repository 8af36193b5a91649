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

/// A token file of `mode`, removed on drop.
struct TokenFile(PathBuf);

impl TokenFile {
    fn new(name: &str, mode: u32) -> TokenFile {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "netcopy-run-plan-{}-{name}.token",
            std::process::id()
        ));
        std::fs::write(&path, "a token of the run-plan tests, long enough").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TokenFile(path)
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_bad_agent_address_is_refused_before_anything_starts() {
    let token = TokenFile::new("addr", 0o600);
    for (addr, says) in [
        ("127.0.0.1", "not ADDR:PORT"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1:agent", "not a port number"),
        ("300.0.0.1:7878", "cannot resolve"),
    ] {
        let out = TempPath::new("addr");
        let mut args = SMALL.to_vec();
        args.extend(["--sizes", "4K", "--remote", addr, "--token-file"]);
        args.push(token.0.to_str().unwrap());
        let stderr = refused(&run(&out.0, &args));
        assert!(stderr.contains("--remote"), "names the flag: {stderr}");
        assert!(stderr.contains(says), "{addr}: {stderr}");
        assert!(!out.0.exists(), "the output directory was created");
    }
}

#[test]
fn a_token_file_that_cannot_be_used_is_refused_before_anything_starts() {
    let missing = std::env::temp_dir().join(format!(
        "netcopy-run-plan-{}-missing.token",
        std::process::id()
    ));
    let open = TokenFile::new("open", 0o644);
    let dir = std::env::temp_dir();
    for (path, says) in [
        (missing.as_path(), "reading the token file"),
        (open.0.as_path(), "readable by others"),
        (dir.as_path(), "not a regular file"),
    ] {
        let out = TempPath::new("token");
        let mut args = SMALL.to_vec();
        args.extend([
            "--sizes",
            "4K",
            "--remote",
            "127.0.0.1:7878",
            "--token-file",
        ]);
        args.push(path.to_str().unwrap());
        let stderr = refused(&run(&out.0, &args));
        assert!(stderr.contains("--token-file"), "names the flag: {stderr}");
        assert!(stderr.contains(says), "{}: {stderr}", path.display());
        assert!(!out.0.exists(), "the output directory was created");
    }
}

#[test]
fn namespaces_and_a_remote_agent_together_are_refused_before_anything_starts() {
    let token = TokenFile::new("both", 0o600);
    let out = TempPath::new("both");
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K", "--topology", "netns"]);
    args.extend(["--remote", "127.0.0.1:7878", "--token-file"]);
    args.push(token.0.to_str().unwrap());
    let stderr = refused(&run(&out.0, &args));
    assert!(
        stderr.contains("--topology") && stderr.contains("--remote"),
        "names both flags: {stderr}"
    );
    assert!(!out.0.exists(), "the output directory was created");
    // And the halves of --remote go together.
    let out = TempPath::new("half");
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K", "--remote", "127.0.0.1:7878"]);
    let stderr = refused(&run(&out.0, &args));
    assert!(stderr.contains("--token-file"), "{stderr}");
    let mut args = SMALL.to_vec();
    args.extend(["--sizes", "4K", "--token-file"]);
    args.push(token.0.to_str().unwrap());
    let stderr = refused(&run(&out.0, &args));
    assert!(stderr.contains("--remote"), "{stderr}");
    assert!(!out.0.exists(), "the output directory was created");
}
