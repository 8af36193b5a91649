//! Where the ends run, end to end: two namespaces of this kernel joined by veth, and two
//! "hosts" on this kernel (an agent and a controller, each with its own probes, over
//! loopback). On both paths the receiver is on this kernel, so zero-copy must come out
//! degraded with the local-delivery cause, every other mode exact; and nothing of ours
//! (namespaces, servers) may be left behind.

mod common;

use std::{process::Command, time::Duration};

use netcopy::{
    remote::{auth::Token, controller::Controller, messages::PhaseRequest},
    workload::{modes::MODES, netns},
};
use serde_json::Value;

fn netcopy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
}

fn verify(args: &[&str]) -> Value {
    let out = netcopy()
        .args(["verify", "--json", "--messages", "32"])
        .args(args)
        .output()
        .expect("run netcopy verify");
    assert!(
        out.status.success(),
        "verify {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verify --json prints JSON")
}

/// Zero-copy degraded because the receiver is local; every other mode matches.
fn check_local_receiver(json: &Value) {
    let modes = json["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), MODES.len());
    for m in modes {
        let spec = MODES
            .iter()
            .find(|s| m["mode"] == s.name)
            .expect("a known mode");
        let causes: Vec<&str> = m["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["kind"].as_str())
            .collect();
        if spec.claim.zerocopy_attach && spec.claim.completions.is_some() {
            assert_eq!(m["verdict"], "degraded", "{m}");
            assert_eq!(causes, ["local_delivery"], "{m}");
            assert_eq!(
                m["completions"]["copied_sends"], m["completions"]["completed_sends"],
                "{m}"
            );
        } else {
            assert_eq!(m["verdict"], "match", "{m}");
            assert!(causes.is_empty(), "{m}");
        }
    }
}

#[test]
fn across_two_namespaces_zero_copy_is_copied_on_local_delivery() {
    if !common::privileged("verify --topology netns") {
        return;
    }
    let _serial = common::serial();
    let json = verify(&["--topology", "netns"]);
    assert!(
        json["topology"].as_str().unwrap().contains("veth"),
        "{}",
        json["topology"]
    );
    check_local_receiver(&json);
    for m in json["modes"].as_array().unwrap() {
        assert!(m["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f.as_str().unwrap().contains("unexplained")));
    }
    assert!(
        netns::existing().is_empty(),
        "left behind: {:?}",
        netns::existing()
    );
}

/// A `netcopy agent` on 127.0.0.1 for `sessions` sessions.
fn start_agent(token: &std::path::Path, sessions: u32) -> common::Agent {
    let mut command = netcopy();
    command
        .args(["agent", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(token)
        .args(["--max-sessions", &sessions.to_string()]);
    common::start_agent(command)
}

/// The netcopy servers whose parent is `pid`.
fn servers_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let ppid = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok());
            ppid == Some(pid) && stat.contains("(netcopy-server)")
        })
        .collect()
}

#[test]
fn an_agent_and_a_controller_merge_one_ledger_and_clean_up_after_a_lost_controller() {
    if !common::privileged("netcopy agent") {
        return;
    }
    let _serial = common::serial();
    let token = common::TokenFile::new("topology");
    let token = token.0.as_path();
    let agent = start_agent(token, 2);

    // A controller that starts a phase and vanishes: its server must go, and the agent
    // must serve the next one.
    let t = Token::from_file(token).unwrap();
    let mut lost = Controller::connect(&agent.addr, &t, Duration::from_secs(10)).unwrap();
    lost.start_phase(&PhaseRequest {
        mode: MODES[0].mode,
        max_size: 65536,
        packet_tap: false,
    })
    .unwrap();
    assert_eq!(
        servers_of(agent.child.id()).len(),
        1,
        "the phase's server runs"
    );
    drop(lost);
    for _ in 0..100 {
        if servers_of(agent.child.id()).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        servers_of(agent.child.id()).is_empty(),
        "a server outlived its controller"
    );

    let json = verify(&[
        "--remote",
        &agent.addr,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert!(
        json["topology"].as_str().unwrap().contains("two hosts"),
        "{}",
        json["topology"]
    );
    assert!(
        json["sender_plan"].is_object(),
        "the agent's plan is reported"
    );
    check_local_receiver(&json);
    let mut agent = agent;
    let status = agent.child.wait().unwrap();
    assert!(
        status.success(),
        "the agent exits 0 after its sessions: {status}"
    );
}
