//! `netcopy run` where the ends are not both on loopback: across two namespaces of this
//! kernel, and against a real `netcopy agent` (in a UTS namespace of its own, so that it
//! names another host, over 127.0.0.1). A tiny plan (one size, one thread, two modes, one
//! repeat): each cell records its topology, each copy figure the host that counted it,
//! zero-copy comes out copied with the local-delivery cause (the receiver is on this
//! kernel on both paths), and on two hosts the server's CPU time is the agent's. Nothing
//! of ours (namespaces, agents, servers) is left behind.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use netcopy::workload::netns;
use serde_json::Value;

fn netcopy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
}

/// A directory of ours under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("netcopy-rrun-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const TINY: [&str; 12] = [
    "--modes",
    "two-copy,zero-copy",
    "--sizes",
    "64K",
    "--threads",
    "1",
    "--repeat",
    "1",
    "--duration",
    "200ms",
    "--pin",
    "auto",
];

/// `netcopy run TINY ARGS --out DIR`, which must succeed; its results.json.
fn run(dir: &Path, args: &[&str]) -> Value {
    let out = netcopy()
        .arg("run")
        .args(TINY)
        .args(args)
        .arg("--out")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run netcopy run");
    assert!(
        out.status.success(),
        "netcopy run {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    let json: Value = serde_json::from_str(&text).expect("results.json is JSON");
    assert_eq!(json["schema_version"], 4);
    assert_eq!(json["complete"], true);
    json
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn cause_kinds(v: &Value) -> Vec<&str> {
    v["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["kind"].as_str())
        .collect()
}

fn ledger<'a>(json: &'a Value, mode: &str) -> &'a Value {
    json["verification"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mode"] == mode)
        .unwrap_or_else(|| panic!("no verification of {mode}"))
}

fn cell<'a>(json: &'a Value, mode: &str) -> &'a Value {
    let cells: Vec<&Value> = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["mode"] == mode)
        .collect();
    assert_eq!(cells.len(), 1, "one {mode} cell");
    cells[0]
}

/// What both topologies share: the opening verification exact where the mode does what
/// it claims, zero-copy copied on local delivery, in the verification and in its cell.
fn check_local_receiver(json: &Value, kind: &str) {
    let two = ledger(json, "two-copy");
    assert_eq!(two["verdict"], "match", "{two}");
    for (site, f) in two["sites"].as_object().unwrap() {
        if !f["observed_bytes"].is_null() {
            assert_eq!(f["observed_bytes"], f["expected_bytes"], "two-copy {site}");
        }
    }
    let zc = ledger(json, "zero-copy");
    assert_eq!(zc["verdict"], "degraded", "{zc}");
    assert_eq!(cause_kinds(zc), ["local_delivery"], "{zc}");
    assert_eq!(json["cells"].as_array().unwrap().len(), 2);
    for c in json["cells"].as_array().unwrap() {
        assert_eq!(c["topology"], kind, "{c}");
        assert!(c["stream"]["payload_bytes"].as_u64().unwrap() > 0);
        // Every payload byte the client read was copied to it by this host's kernel.
        assert!(
            c["copies"]["kernel_recv_copy"]["bytes"].as_u64().unwrap()
                >= c["stream"]["payload_bytes"].as_u64().unwrap(),
            "{c}"
        );
    }
    let two = cell(json, "two-copy");
    assert!(cause_kinds(two).is_empty(), "{two}");
    let zc = cell(json, "zero-copy");
    assert_eq!(cause_kinds(zc), ["local_delivery"], "{zc}");
    // The kernel itself flagged copies: every send that left the sender's socket, since
    // the receiver is on this kernel. The sends still queued when the client stopped
    // reading and closed were freed undelivered and are counted apart (their completions
    // are flagged only when a range shares them with sent ones).
    let z = |name: &str| zc["zerocopy"][name].as_u64().unwrap();
    assert_eq!(z("completed_sends"), z("sends"), "{zc}");
    assert!(z("unsent_copied_sends") <= z("unsent_sends"), "{zc}");
    assert!(z("unsent_sends") < z("completed_sends"), "{zc}");
    assert_eq!(
        z("copied_sends") - z("unsent_copied_sends"),
        z("completed_sends") - z("unsent_sends"),
        "every send that left was flagged copied: {zc}"
    );
    assert!(zc["copies"]["deferred_copy"]["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_sweep_across_two_namespaces_records_where_it_ran_and_why_zero_copy_copied() {
    if !common::privileged("run --topology netns") {
        return;
    }
    let _serial = common::serial();
    let dir = TempDir::new("netns");
    let json = run(&dir.0, &["--topology", "netns"]);
    assert_eq!(json["topology"]["kind"], "netns");
    let description = json["topology"]["description"].as_str().unwrap();
    assert!(description.contains("veth"), "{description}");
    check_local_receiver(&json, "netns");
    let here = this_host();
    for c in json["cells"].as_array().unwrap() {
        for (site, f) in c["copies"].as_object().unwrap() {
            assert_eq!(strings(&f["counted_on"]), [here.as_str()], "{site}: {f}");
        }
        // Both processes are on this host: --pin auto places both (2+ CPUs here).
        if c["placement"]["client_cpus"].as_array().unwrap().len() == 1 {
            assert_eq!(c["placement"]["server_cpus"].as_array().unwrap().len(), 1);
        }
        assert!(c["cpu"]["server_cpu_ns"].as_u64().unwrap() > 0);
        assert!(c["trace_sample"].is_string(), "{c}");
    }
    let report = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(
        report.contains("| topology | network namespaces"),
        "report.md names the topology"
    );
    assert!(report.contains("The floor is this host's loopback"));
    let html = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert!(html.contains("<td>topology</td><td>network namespaces"));
    // The answers speak of the path the cells took, not of loopback.
    assert!(report.contains("No. Across these two namespaces of one kernel the kernel copied"));
    assert!(!report.contains("On this loopback"));
    assert!(
        netns::existing().is_empty(),
        "left behind: {:?}",
        netns::existing()
    );
}

/// A `netcopy agent` for one session on 127.0.0.1, in a UTS namespace of its own named
/// `hostname`: its figures then name another host than this one's.
fn start_agent(token: &Path, hostname: &str) -> common::Agent {
    let script = format!(
        "echo {hostname} > /proc/sys/kernel/hostname && exec \"$0\" agent --listen \
         127.0.0.1:0 --token-file \"$1\" --max-sessions 1"
    );
    let mut command = Command::new("unshare");
    command
        .args(["--uts", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_netcopy"))
        .arg(token);
    common::start_agent(command)
}

#[test]
fn a_sweep_against_an_agent_takes_the_servers_figures_from_the_agent() {
    if !common::privileged("run --remote") {
        return;
    }
    let _serial = common::serial();
    let token = common::TokenFile::new("rrun");
    let token = token.0.as_path();
    let agent_host = format!("rrun-agent-{}", std::process::id());
    let mut agent = start_agent(token, &agent_host);
    let dir = TempDir::new("remote");
    let json = run(
        &dir.0,
        &[
            "--remote",
            &agent.addr,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    let here = this_host();
    assert_ne!(here, agent_host);
    let topology = &json["topology"];
    assert_eq!(topology["kind"], "remote");
    assert_eq!(topology["agent"]["hostname"], agent_host.as_str());
    assert_eq!(topology["agent"]["address"], agent.addr.as_str());
    assert!(topology["agent"]["plan"]["events"].is_array(), "{topology}");
    check_local_receiver(&json, "remote");

    // Who counted what: the sender's sites on the agent, send and receive copies on both.
    let both = [agent_host.as_str(), here.as_str()];
    let two = ledger(&json, "two-copy");
    assert_eq!(
        strings(&two["sites"]["user_copy"]["counted_on"]),
        [&agent_host]
    );
    assert_eq!(
        strings(&two["sites"]["kernel_recv_copy"]["counted_on"]),
        both
    );
    for c in json["cells"].as_array().unwrap() {
        let copies = &c["copies"];
        for site in ["user_copy", "deferred_copy", "zerocopy_attach"] {
            assert_eq!(
                strings(&copies[site]["counted_on"]),
                [&agent_host],
                "{site}"
            );
        }
        for site in ["kernel_send_copy", "kernel_recv_copy"] {
            assert_eq!(strings(&copies[site]["counted_on"]), both, "{site}");
        }
        // The server's CPU time and counters came from the agent; only the client here
        // was pinned.
        let cpu = &c["cpu"];
        assert!(cpu["server_cpu_ns"].as_u64().unwrap() > 0, "{cpu}");
        assert!(
            cpu["source"]
                .as_str()
                .unwrap()
                .contains("counted by the agent"),
            "{cpu}"
        );
        assert!(c["server_counters"]["pid"].as_u64().is_some(), "{c}");
        assert_eq!(
            cpu["cycles_per_byte"].is_null(),
            !cpu["hw_unavailable_reason"].is_null(),
            "{cpu}"
        );
        assert!(c["placement"]["server_cpus"].as_array().unwrap().is_empty());
    }
    let report = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(
        report.contains("| sender's host | rrun-agent-"),
        "report.md"
    );
    assert!(report.contains("this host's processes only"), "report.md");
    assert!(report.contains("No. Between these two hosts the kernel copied"));
    let html = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert!(
        html.contains("<td>topology</td><td>two hosts: sender on rrun-agent-"),
        "report.html names the topology"
    );

    let status = agent.child.wait().unwrap();
    assert!(
        status.success(),
        "the agent exits 0 after its session: {status}"
    );
}
