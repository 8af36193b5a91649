//! `netcopy verify` end to end: exact byte figures per mode and site, at several sizes.

mod common;

use std::process::Command;

use serde_json::Value;

fn verify(size: &str, messages: u64) -> (Value, bool) {
    verify_with(size, messages, &[])
}

fn verify_with(size: &str, messages: u64, extra: &[&str]) -> (Value, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(["verify", "--json", "--size", size, "--messages"])
        .arg(messages.to_string())
        .args(extra)
        .output()
        .expect("run netcopy verify");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.success())
}

fn site<'a>(mode: &'a Value, name: &str) -> &'a Value {
    &mode["sites"][name]
}

fn observed(mode: &Value, name: &str) -> u64 {
    site(mode, name)["observed_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} not observed: {}", site(mode, name)))
}

/// Checks one run of every mode with `messages` messages of `size` bytes.
fn check(size_text: &str, size: u64, messages: u64) {
    let (json, passed) = verify(size_text, messages);
    assert!(passed, "verify failed: {json:#}");
    let modes = json["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), netcopy::workload::modes::MODES.len());
    let payload = size * messages;
    // Protocol bytes per run: 16-byte message headers, one 24-byte request and one
    // 16-byte reply header.
    let headers = 16 * messages;
    let control = 24 + 16;
    for mode in modes {
        let name = mode["mode"].as_str().unwrap();
        // Every byte the client received was copied once to user memory.
        assert_eq!(
            observed(mode, "kernel_recv_copy"),
            payload + headers + control,
            "{name} receive copy"
        );
        assert_eq!(
            site(mode, "kernel_recv_copy")["expected_payload_bytes"],
            payload
        );
        match name {
            "two-copy" => {
                assert_eq!(mode["verdict"], "match", "{mode:#}");
                assert_eq!(observed(mode, "user_copy"), payload + headers);
                assert_eq!(
                    observed(mode, "kernel_send_copy"),
                    payload + headers + control
                );
                assert_eq!(observed(mode, "zerocopy_attach"), 0);
                assert_eq!(observed(mode, "page_reference"), 0);
            }
            "one-copy" => {
                assert_eq!(mode["verdict"], "match", "{mode:#}");
                assert_eq!(observed(mode, "user_copy"), 0);
                // The iovec spares the user-space copy, not the kernel's.
                assert_eq!(
                    observed(mode, "kernel_send_copy"),
                    payload + headers + control
                );
                assert_eq!(observed(mode, "zerocopy_attach"), 0);
            }
            "zero-copy" => {
                assert_eq!(observed(mode, "user_copy"), 0);
                assert_eq!(observed(mode, "kernel_send_copy"), control);
                assert_eq!(observed(mode, "zerocopy_attach"), payload + headers);
                assert_eq!(observed(mode, "zerocopy_completions"), payload + headers);
                // Over loopback the kernel copies the pinned pages after all, and says so.
                assert_eq!(mode["verdict"], "degraded", "{mode:#}");
                assert_eq!(observed(mode, "deferred_copy"), payload + headers);
                assert!(mode["findings"][0]
                    .as_str()
                    .unwrap()
                    .contains("did NOT avoid the copy"));
            }
            "io-uring" => {
                // One-copy's sendmsg through a ring: io_uring reaches tcp_sendmsg_locked
                // without the sendmsg system call, and the probes see it as the server's.
                assert_eq!(mode["verdict"], "match", "{mode:#}");
                assert_eq!(observed(mode, "user_copy"), 0);
                assert_eq!(
                    observed(mode, "kernel_send_copy"),
                    payload + headers + control
                );
                assert_eq!(observed(mode, "zerocopy_attach"), 0);
                assert_eq!(observed(mode, "page_reference"), 0);
            }
            "io-uring-zc" => {
                assert_eq!(observed(mode, "user_copy"), 0);
                assert_eq!(observed(mode, "kernel_send_copy"), control);
                assert_eq!(observed(mode, "zerocopy_attach"), payload + headers);
                assert_eq!(observed(mode, "page_reference"), 0);
                assert_eq!(observed(mode, "zerocopy_completions"), payload + headers);
                assert_eq!(site(mode, "zerocopy_completions")["source"], "reported");
                // Loopback: copied after all, and every notification says so.
                assert_eq!(mode["verdict"], "degraded", "{mode:#}");
                assert_eq!(observed(mode, "deferred_copy"), payload + headers);
                assert!(mode["findings"][0]
                    .as_str()
                    .unwrap()
                    .contains("IORING_NOTIF_USAGE_ZC_COPIED"));
            }
            "sendfile" | "splice" => {
                // Page references all the way: no copy on the send path, and nothing
                // copied after it (spliced pages are not zero-copy pages to orphan).
                assert_eq!(mode["verdict"], "match", "{mode:#}");
                assert_eq!(observed(mode, "user_copy"), 0);
                assert_eq!(observed(mode, "kernel_send_copy"), control);
                assert_eq!(observed(mode, "zerocopy_attach"), 0);
                assert_eq!(observed(mode, "page_reference"), payload + headers);
                assert_eq!(observed(mode, "deferred_copy"), 0);
            }
            other => panic!("unknown mode {other}"),
        }
    }
}

#[test]
fn verify_counts_exact_bytes_per_mode_at_odd_and_round_sizes() {
    if !common::privileged("verify_counts_exact_bytes_per_mode_at_odd_and_round_sizes") {
        return;
    }
    let _serial = common::serial();
    check("1", 1, 7);
    check("4095", 4095, 33);
    check("65537", 65537, 9);
    check("1M", 1 << 20, 5);
}

/// With tp_btf ruled out the receive copy comes from the next strategy in rank, the
/// classic tracepoint, and its figures are as exact.
#[test]
fn the_fallback_receive_strategy_counts_the_same_bytes() {
    if !common::privileged("the_fallback_receive_strategy_counts_the_same_bytes") {
        return;
    }
    let _serial = common::serial();
    let (size, messages) = (65537u64, 9u64);
    let (json, _) = verify_with(
        "65537",
        messages,
        &["--mode", "one-copy", "--avoid", "tp_btf"],
    );
    let recv = json["plan"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "recv-copy")
        .expect("recv-copy in the plan");
    assert_eq!(
        recv["chosen"]["label"], "tracepoint skb/skb_copy_datagram_iovec",
        "{recv:#}"
    );
    assert!(
        recv["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("avoided on request"),
        "{recv:#}"
    );
    let mode = &json["modes"][0];
    assert_eq!(
        observed(mode, "kernel_recv_copy"),
        size * messages + 16 * messages + 24 + 16
    );
}

/// `recv_mapped` is observed at `tcp_zerocopy_receive` where fexit or kprobes work, and
/// must then equal what getsockopt told the client; where neither does (this project's
/// 6.18 machines), it is the client's report, and both the plan and the figure say why.
#[test]
fn recv_mapped_says_whether_it_was_observed_or_reported_and_why() {
    if !common::privileged("recv_mapped_says_whether_it_was_observed_or_reported_and_why") {
        return;
    }
    let _serial = common::serial();
    let (json, passed) = verify_with("65536", 8, &["--mode", "zero-copy", "--recv", "zerocopy"]);
    assert!(passed, "{json:#}");
    let event = json["plan"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "recv-mapped")
        .expect("recv-mapped in the plan");
    let mode = &json["modes"][0];
    let mapped = site(mode, "recv_mapped");
    let reported = &mode["receiver"]["zerocopy"]["mapped_bytes"];
    assert!(reported.as_u64().unwrap() > 0, "{mode:#}");
    assert_eq!(mapped["observed_bytes"], *reported, "{mapped:#}");
    let how = mapped["how"].as_str().unwrap();
    if event["chosen"].is_null() {
        // Both strategies were tried, best first, each with the kernel's reason.
        let rejected: Vec<&str> = event["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["label"].as_str().unwrap())
            .collect();
        assert_eq!(rejected.len(), 2, "{event:#}");
        assert!(
            rejected[0].starts_with("fexit tcp_zerocopy_receive"),
            "{event:#}"
        );
        assert!(rejected[1].starts_with("kprobe/kretprobe tcp_zerocopy_receive"));
        assert_eq!(mapped["source"], "reported", "{mapped:#}");
        assert!(
            how.contains("summed by the receiver")
                && how.contains("no fexit or kprobe on tcp_zerocopy_receive works on this kernel"),
            "{how}"
        );
    } else {
        assert_eq!(mapped["source"], "observed", "{mapped:#}");
        assert!(how.contains("tcp_zerocopy_receive"), "{how}");
    }
}

#[test]
fn verify_rejects_bad_arguments_without_running() {
    for args in [
        &["verify", "--avoid", "uprobe"][..],
        &["verify", "--size", "0"],
        &["verify", "--size", "12Q"],
        &["verify", "--messages", "0"],
        &["verify", "--mode", "three-copy"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
            .args(args)
            .output()
            .expect("run netcopy");
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!out.stderr.is_empty(), "{args:?} printed no error");
    }
}

#[test]
fn a_verification_that_observed_no_copy_is_an_error_not_a_match() {
    if !common::privileged("verify with every hook avoided") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args([
            "verify",
            "--mode",
            "two-copy",
            "--messages",
            "4",
            "--avoid",
            "tp_btf,tracepoint,fentry,kprobe",
        ])
        .output()
        .expect("run netcopy verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "passed having compared nothing: {stdout}"
    );
    assert!(!stdout.contains("MATCH"), "{stdout}");
    assert!(stderr.contains("nothing was compared"), "{stderr}");
}

/// Two verifications at once keep their counts apart: each sees its own bytes exactly
/// (different message counts, so a leak from one into the other would show).
#[test]
fn two_verifies_at_once_keep_their_counts_apart() {
    if !common::privileged("two verifies at once") {
        return;
    }
    let start = |messages: u64| {
        Command::new(env!("CARGO_BIN_EXE_netcopy"))
            .args(["verify", "--json", "--mode", "two-copy", "--size", "64K"])
            .args(["--messages", &messages.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start netcopy verify")
    };
    let runs = [(400u64, start(400)), (900u64, start(900))];
    for (messages, child) in runs {
        let out = child.wait_with_output().expect("wait for verify");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert!(out.status.success(), "{json:#}");
        let mode = &json["modes"][0];
        // Payload, 16-byte message headers, one request and one reply header.
        let expected = messages * ((64 << 10) + 16) + 24 + 16;
        assert_eq!(observed(mode, "kernel_recv_copy"), expected, "{messages}");
    }
}
