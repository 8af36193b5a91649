//! `netcopy client` never reports a run that measured nothing as a success, and with
//! `--json` its failures are in the JSON (`errors`), as `verify --json` puts its own.

use std::{
    net::TcpListener,
    process::{Command, Output},
};

use serde_json::Value;

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .arg("client")
        .args(args)
        .output()
        .expect("run netcopy client")
}

fn json_errors(out: &Output) -> Vec<String> {
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    json["errors"]
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_duration_run_against_a_silent_listener_fails_naming_the_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepted by the kernel's backlog, never answered: the run's time would count from
    // its first message, which must come within --io-timeout.
    for json in [false, true] {
        let mut args = vec![
            "--connect",
            &addr,
            "--size",
            "1K",
            "--duration",
            "500ms",
            "--io-timeout",
            "1s",
        ];
        if json {
            args.push("--json");
        }
        let out = client(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "exit 0 with nothing measured: {stderr}"
        );
        assert!(stderr.contains("no message arrived"), "{stderr}");
        if json {
            let errors = json_errors(&out);
            assert!(errors[0].contains("no message arrived"), "{errors:?}");
        }
    }
    drop(listener);
}

#[test]
fn json_failures_carry_their_cause() {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let out = client(&[
        "--connect",
        &refused,
        "--size",
        "1K",
        "--messages",
        "1",
        "--json",
    ]);
    assert!(!out.status.success());
    let errors = json_errors(&out);
    assert!(
        errors.iter().any(|e| e.contains("cannot connect")),
        "{errors:?}"
    );

    let out = client(&[
        "--connect",
        "127.0.0.1:9",
        "--size",
        "5G",
        "--messages",
        "1",
        "--json",
    ]);
    assert!(!out.status.success());
    let errors = json_errors(&out);
    assert!(errors.iter().any(|e| e.contains("--size")), "{errors:?}");
}

#[test]
fn verify_json_failures_carry_their_cause_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args([
            "verify",
            "--json",
            "--remote",
            "127.0.0.1:9",
            "--token-file",
            "/nonexistent/netcopy-token",
        ])
        .output()
        .expect("run netcopy verify");
    assert!(!out.status.success());
    let errors = json_errors(&out);
    assert!(
        errors.iter().any(|e| e.contains("netcopy-token")),
        "{errors:?}"
    );
}
