//! `netcopy probes`: the report is complete, machine-readable, and agrees with the kernel.

mod common;

use std::{path::Path, process::Command};

use serde_json::Value;

const KEYS: &[&str] = &[
    "kprobe",
    "fentry",
    "tracepoint",
    "tp_btf",
    "ringbuf",
    "perf_hw",
    "perf_sw",
    "btf",
];

fn probes_json() -> (Value, std::process::Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(["probes", "--json"])
        .output()
        .expect("run netcopy probes");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probes --json is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out)
}

#[test]
fn probes_json_reports_every_capability_with_a_reason() {
    if !common::privileged("probes_json_reports_every_capability_with_a_reason") {
        return;
    }
    let (json, out) = probes_json();
    assert!(out.status.success());
    for key in KEYS {
        let cap = &json[key];
        assert!(cap["available"].is_boolean(), "{key}: {cap}");
        assert!(
            !cap["reason"].as_str().unwrap_or("").is_empty(),
            "{key} has no reason"
        );
    }
    // What the kernel has must agree with what is reported.
    let kprobe_pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if !kprobe_pmu {
        assert_eq!(json["kprobe"]["available"], false, "{}", json["kprobe"]);
    }
    let tracefs_has_skb = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            Path::new(t)
                .join("events/skb/skb_copy_datagram_iovec")
                .exists()
        });
    if tracefs_has_skb {
        assert_eq!(
            json["tracepoint"]["available"], true,
            "{}",
            json["tracepoint"]
        );
        assert_eq!(
            json["tracepoints"]["skb/skb_copy_datagram_iovec"]["available"],
            true
        );
    }
    assert_eq!(json["perf_sw"]["available"], true, "{}", json["perf_sw"]);
    // The attach plan always observes the receive copy where the tracepoint exists.
    let plan = &json["plan"]["events"];
    let recv = plan
        .as_array()
        .expect("plan events")
        .iter()
        .find(|e| e["event"] == "recv-copy")
        .expect("recv-copy in plan");
    if tracefs_has_skb {
        assert!(recv["chosen"].is_object(), "{recv}");
    }
}

#[test]
fn probes_without_root_reports_instead_of_failing() {
    if !common::privileged("probes_without_root_reports_instead_of_failing") {
        return;
    }
    if Command::new("runuser").arg("--help").output().is_err() {
        eprintln!("runuser not installed; cannot run as another user");
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_netcopy"));
    // nobody must be able to reach the binary; target/ under /root usually is not.
    let copy = std::env::temp_dir().join(format!("netcopy-probes-{}", std::process::id()));
    std::fs::copy(exe, &copy).expect("copy binary");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&copy)
        .args(["probes", "--json"])
        .output()
        .expect("runuser");
    let _ = std::fs::remove_file(&copy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["kprobe"]["available"], false);
    assert!(json["kprobe"]["reason"]
        .as_str()
        .unwrap()
        .contains("needs root"));
    assert!(json["plan_error"].as_str().unwrap().contains("needs root"));
}
