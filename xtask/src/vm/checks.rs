//! What the default `vm-test` run must show: kprobe or fentry offered and chosen in the
//! guest, verify passing there, and the traced verify recorded exactly.

use anyhow::{bail, Context, Result};

use super::{
    commands::{TRACED_MESSAGES, TRACED_SIZE, URING_TRACE_OUT},
    runner::CommandOutcome,
    GuestCommand, GuestOutcome,
};

/// Fails unless `netcopy probes --json` output reports `kprobe` or `fentry` as available:
/// `{"kprobe": {"available": true, ...}, "fentry": {...}}`.
pub fn check_guest_used_kprobe_or_fentry(probes_json: &serde_json::Value) -> Result<()> {
    let obj = probes_json
        .as_object()
        .context("probes JSON is not an object")?;
    let mut seen = Vec::new();
    for key in ["kprobe", "fentry"] {
        let Some(v) = obj.get(key) else {
            seen.push(format!("{key}: not reported"));
            continue;
        };
        let available = match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Object(o) => o
                .get("available")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            _ => false,
        };
        if available {
            return Ok(());
        }
        let why = v
            .get("reason")
            .or_else(|| v.get("error"))
            .and_then(serde_json::Value::as_str)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        seen.push(format!("{key}: unavailable{why}"));
    }
    bail!(
        "the guest kernel should offer kprobe or fentry, but netcopy reported {}",
        seen.join(", ")
    )
}

/// The traced verify recorded the server's sends exactly: one sendmsg per message, each
/// copying its 16-byte header and payload, and lost nothing.
fn check_traced_verify(stdout: &str) -> Result<()> {
    // The verify table comes first (the traced command's own output), the summary last.
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("`netcopy trace --json` printed no JSON summary in the guest")?;
    let summary: serde_json::Value =
        serde_json::from_str(line).context("the trace summary is not JSON")?;
    if summary["lost_events"] != 0 {
        bail!("the guest trace lost events: {summary}");
    }
    let sendmsg = summary["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["syscall"] == "sendmsg")
        .context("the guest trace recorded no sendmsg")?;
    let bytes = TRACED_MESSAGES * (TRACED_SIZE + 16);
    if sendmsg["calls"] != TRACED_MESSAGES || sendmsg["kernel_send_copy_bytes"] != bytes {
        bail!(
            "the guest trace recorded sendmsg {sendmsg}; expected {TRACED_MESSAGES} calls \
             copying {bytes} bytes"
        );
    }
    Ok(())
}

/// Says whether `netcopy probes --json` found kprobe or fentry in the guest (informative:
/// the verdict that counts is the lead's check on `verify`).
/// The point of the VM test: on the guest kernel netcopy must choose kprobe or fentry
/// strategies (not the tracepoint fallbacks this host uses), and verify must pass there.
pub(super) fn check_default_outcome(outcome: &GuestOutcome) -> Result<()> {
    let find = |sub: &str| {
        let wanted = GuestCommand::netcopy([sub, "--json"]);
        outcome
            .commands
            .iter()
            .find(|c| c.command == wanted)
            .with_context(|| format!("`netcopy {sub} --json` did not run in the guest"))
    };
    let probes = find("probes")?;
    let json: serde_json::Value = serde_json::from_str(&probes.stdout)
        .context("`netcopy probes --json` printed no JSON in the guest")?;
    check_guest_used_kprobe_or_fentry(&json)?;
    println!("vm-test: probes: kprobe or fentry available in the guest");
    let verify = find("verify")?;
    let json: serde_json::Value = serde_json::from_str(&verify.stdout)
        .context("`netcopy verify --json` printed no JSON in the guest")?;
    check_plan_uses_kprobe_or_fentry(&json["plan"])?;
    if !verify.success() {
        bail!(
            "`netcopy verify` failed in the guest (exit {})",
            verify.exit_code
        );
    }
    for mode in json["modes"].as_array().into_iter().flatten() {
        println!(
            "vm-test: verify {}: {}{}",
            mode["mode"].as_str().unwrap_or("?"),
            mode["verdict"].as_str().unwrap_or("?"),
            cause_labels(mode)
        );
        print_caller_chains("vm-test:  ", mode);
        check_chains_cover_the_deferred_copies(mode)?;
    }
    let traced = find_netcopy(outcome, "the traced verify", |a| {
        a[0] == "trace" && !a.iter().any(|s| s == URING_TRACE_OUT)
    })?;
    check_traced_verify(&traced.stdout)?;
    println!(
        "vm-test: trace: {TRACED_MESSAGES} sendmsg calls of the traced server recorded \
         exactly, nothing lost"
    );
    // Once with the best strategy (fexit), once with fentry avoided (the kprobes).
    for (avoid, kind) in [(false, StrategyKind::Fentry), (true, StrategyKind::Kprobe)] {
        let receive = find_netcopy(outcome, "the zero-copy receive verify", |a| {
            a[0] == "verify"
                && a.iter().any(|s| s == "--recv")
                && a.iter().any(|s| s == "--avoid") == avoid
        })?;
        let json: serde_json::Value = serde_json::from_str(&receive.stdout)
            .context("`netcopy verify --recv zerocopy --json` printed no JSON in the guest")?;
        check_recv_mapped_strategy(&json["plan"], kind)?;
        let ledgers = json["modes"].as_array().filter(|m| !m.is_empty());
        for ledger in ledgers.context("the zero-copy receive verify reported no mode")? {
            println!("vm-test: {}", check_recv_mapped_observed(ledger)?);
        }
    }
    let uring = find_netcopy(outcome, "the traced io_uring verify", |a| {
        a[0] == "trace" && a.iter().any(|s| s == URING_TRACE_OUT)
    })?;
    for line in check_traced_io_uring(&uring.stdout)? {
        println!("vm-test: trace: {line}");
    }
    Ok(())
}

/// The netcopy command of `outcome` whose arguments `wanted` picks (`what` names it), and
/// that it succeeded.
fn find_netcopy<'a>(
    outcome: &'a GuestOutcome,
    what: &str,
    wanted: impl Fn(&[String]) -> bool,
) -> Result<&'a CommandOutcome> {
    let run = outcome
        .commands
        .iter()
        .find(|c| matches!(&c.command, GuestCommand::Netcopy(a) if !a.is_empty() && wanted(a)))
        .with_context(|| format!("{what} did not run in the guest"))?;
    if !run.success() {
        bail!(
            "`{}` failed in the guest (exit {}): {}",
            run.command,
            run.exit_code,
            run.stderr.lines().next().unwrap_or("")
        );
    }
    Ok(run)
}

/// The plan chose a strategy of `kind` for the recv-mapped event.
fn check_recv_mapped_strategy(plan: &serde_json::Value, kind: StrategyKind) -> Result<()> {
    let event = plan["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["event"] == "recv-mapped")
        .context("the plan has no recv-mapped event")?;
    let chosen = serde_json::from_value::<StrategyKind>(event["chosen"]["kind"].clone()).ok();
    if chosen != Some(kind) {
        bail!("the guest chose {chosen:?} for recv-mapped, not {kind:?}: {event}");
    }
    Ok(())
}

/// Where fexit or kprobes work, `recv_mapped` is observed at `tcp_zerocopy_receive`: the
/// bytes it saw mapped must be some, exactly what getsockopt told the receiver, and what
/// the ledger expected, in exactly as many calls as the receiver made; the verdict no
/// mismatch. Returns the line that says so.
pub fn check_recv_mapped_observed(ledger: &serde_json::Value) -> Result<String> {
    let mode = ledger["mode"].as_str().unwrap_or("?");
    let site = &ledger["sites"]["recv_mapped"];
    let reported = &ledger["receiver"]["zerocopy"]["mapped_bytes"];
    let reported_calls = &ledger["receiver"]["zerocopy"]["getsockopt_calls"];
    let observed = site["observed_bytes"].as_u64();
    if site["source"] != "observed"
        || observed.is_none_or(|o| o == 0)
        || site["observed_bytes"] != *reported
        || site["observed_bytes"] != site["expected_bytes"]
        || site["calls"] != *reported_calls
        || ledger["verdict"] == "mismatch"
    {
        bail!(
            "{mode} --recv zerocopy in the guest: recv_mapped must be observed (fexit or \
             kprobe on tcp_zerocopy_receive), some bytes, exactly the {reported} bytes the \
             receiver was told and the ledger's expectation, in its {reported_calls} \
             getsockopt calls, without a mismatch; verify said: \
             {}",
            serde_json::to_string_pretty(ledger).unwrap_or_default()
        );
    }
    Ok(format!(
        "zero-copy receive behind {mode}: recv_mapped observed {} bytes in {} calls ({}), \
         the receiver was told {reported}; verdict {}",
        site["observed_bytes"],
        site["calls"],
        site["how"].as_str().unwrap_or("?"),
        ledger["verdict"].as_str().unwrap_or("?")
    ))
}

/// The traced io_uring verify recorded every request of each io_uring mode through the
/// submit tracepoint (6.1: `io_uring_submit_sqe`) and its completion, lost nothing, and
/// heard a notification for every zero-copy send. Every submit beyond the messages is the
/// zero-copy mode's 1-byte support check, so each row's bytes are exact. Returns a line
/// per row.
fn check_traced_io_uring(stdout: &str) -> Result<Vec<String>> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the traced io_uring verify printed no JSON summary in the guest")?;
    let summary: serde_json::Value =
        serde_json::from_str(line).context("the io_uring trace summary is not JSON")?;
    if summary["lost_events"] != 0 {
        bail!("the guest's io_uring trace lost events: {summary}");
    }
    let rows: Vec<&serde_json::Value> = summary["io_uring"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut lines = Vec::new();
    for opcode in ["SENDMSG", "SENDMSG_ZC"] {
        let row = rows
            .iter()
            .find(|r| r["opcode_name"] == opcode)
            .with_context(|| {
                format!("the guest's io_uring trace has no {opcode} row: {summary}")
            })?;
        let submitted = row["submitted"].as_u64().unwrap_or(0);
        let extra = submitted.saturating_sub(TRACED_MESSAGES);
        let bytes = TRACED_MESSAGES * (TRACED_SIZE + 16) + extra;
        let notifications = if opcode == "SENDMSG_ZC" { submitted } else { 0 };
        if submitted < TRACED_MESSAGES
            || row["completed"] != submitted
            || row["errors"] != 0
            || row["bytes"] != bytes
            || row["zerocopy_notifications"] != notifications
        {
            bail!(
                "the guest's io_uring trace recorded {opcode} {row}; expected at least \
                 {TRACED_MESSAGES} submits, each completed without error, {bytes} bytes and \
                 a notification per zero-copy submit"
            );
        }
        lines.push(format!(
            "io_uring {opcode}: {submitted} submits and completions, {bytes} bytes, \
             {notifications} notifications recorded, nothing lost"
        ));
    }
    let z = &summary["io_uring_zerocopy"];
    let sends = rows
        .iter()
        .find(|r| r["opcode_name"] == "SENDMSG_ZC")
        .map(|r| r["submitted"].clone());
    let settled = z["completed_copied"].as_u64().unwrap_or(0)
        + z["completed_not_copied"].as_u64().unwrap_or(0);
    if sends.as_ref() != Some(&z["sends"])
        || Some(settled) != z["sends"].as_u64()
        || z["never_completed_in_trace"] != 0
    {
        bail!(
            "the guest's io_uring trace must settle every zero-copy send with its \
             notification: {z}"
        );
    }
    lines.push(format!(
        "io_uring zero-copy: {} sends, {} notified copied, {} not copied",
        z["sends"], z["completed_copied"], z["completed_not_copied"]
    ));
    Ok(lines)
}

/// ` (causes: local_delivery (observed))` for a ledger of `netcopy verify --json` with
/// causes; empty without.
pub fn cause_labels(ledger: &serde_json::Value) -> String {
    let labels: Vec<String> = ledger["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} ({})",
                c["kind"].as_str().unwrap_or("?"),
                c["source"].as_str().unwrap_or("no source")
            )
        })
        .collect();
    if labels.is_empty() {
        String::new()
    } else {
        format!(" (causes: {})", labels.join(", "))
    }
}

/// Caller frames printed per chain; chains that agree on these are printed as one.
const CHAIN_FRAMES_PRINTED: usize = 6;

/// Prints the caller chains of a ledger's observed causes, innermost caller first,
/// chains that share their first [`CHAIN_FRAMES_PRINTED`] callers summed into one line.
pub fn print_caller_chains(prefix: &str, ledger: &serde_json::Value) {
    for cause in ledger["causes"].as_array().into_iter().flatten() {
        let mut lines: Vec<(String, u64, u64)> = Vec::new();
        for chain in cause["callers"].as_array().into_iter().flatten() {
            let frames: Vec<&str> = chain["callers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .take(CHAIN_FRAMES_PRINTED)
                .collect();
            let frames = frames.join(" <- ");
            let (copies, bytes) = (
                chain["copies"].as_u64().unwrap_or(0),
                chain["bytes"].as_u64().unwrap_or(0),
            );
            match lines.iter_mut().find(|l| l.0 == frames) {
                Some(line) => {
                    line.1 += copies;
                    line.2 += bytes;
                }
                None => lines.push((frames, copies, bytes)),
            }
        }
        for (frames, copies, bytes) in lines {
            println!(
                "{prefix} {} {} caller chain: {copies} copies, {bytes} bytes: {frames}",
                ledger["mode"].as_str().unwrap_or("?"),
                cause["kind"].as_str().unwrap_or("?"),
            );
        }
    }
}

/// Where causes were observed, their caller chains account for every deferred copy the
/// ledger counted: the same copies, the same bytes.
pub fn check_chains_cover_the_deferred_copies(ledger: &serde_json::Value) -> Result<()> {
    let observed: Vec<&serde_json::Value> = ledger["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["source"] == "observed")
        .collect();
    if observed.is_empty() {
        return Ok(());
    }
    let (mut copies, mut bytes) = (0, 0);
    for chain in observed
        .iter()
        .flat_map(|c| c["callers"].as_array().into_iter().flatten())
    {
        copies += chain["copies"].as_u64().unwrap_or(0);
        bytes += chain["bytes"].as_u64().unwrap_or(0);
    }
    let site = &ledger["sites"]["deferred_copy"];
    if site["observed_bytes"] != bytes || site["calls"] != copies {
        bail!(
            "{}: the observed caller chains hold {copies} copies of {bytes} bytes, the \
             deferred_copy site {} of {}",
            ledger["mode"].as_str().unwrap_or("?"),
            site["calls"],
            site["observed_bytes"]
        );
    }
    Ok(())
}

/// The kind of hook a strategy of netcopy's attach plan uses: `kind` of a chosen
/// strategy in `netcopy probes --json` and `netcopy verify --json` (netcopy's
/// `kernel::plan::HookKind`; xtask reads the JSON and does not link netcopy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StrategyKind {
    Fentry,
    Kprobe,
    TpBtf,
    Tracepoint,
}

/// Fails unless the attach plan observed the send path through fentry or kprobes.
pub fn check_plan_uses_kprobe_or_fentry(plan: &serde_json::Value) -> Result<()> {
    let events = plan["events"]
        .as_array()
        .context("verify JSON has no plan.events")?;
    let send = events
        .iter()
        .find(|e| e["event"] == "send-path")
        .context("the plan has no send-path event")?;
    let chosen = &send["chosen"];
    let label = chosen["label"].as_str().unwrap_or("");
    let kind = serde_json::from_value::<StrategyKind>(chosen["kind"].clone()).ok();
    if matches!(kind, Some(StrategyKind::Fentry | StrategyKind::Kprobe)) {
        println!("vm-test: guest send path observed with: {label}");
        Ok(())
    } else {
        bail!(
            "the guest chose `{}` for the send path, not a kprobe or fentry strategy",
            if label.is_empty() { "nothing" } else { label }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kprobe_or_fentry_check() {
        let ok = serde_json::json!({"kprobe": {"available": true}, "fentry": {"available": false}});
        assert!(check_guest_used_kprobe_or_fentry(&ok).is_ok());
        let ok = serde_json::json!({"kprobe": {"available": false}, "fentry": {"available": true}});
        assert!(check_guest_used_kprobe_or_fentry(&ok).is_ok());
        let bad = serde_json::json!({
            "kprobe": {"available": false, "reason": "CONFIG_KPROBES is not set"},
            "fentry": {"available": false}
        });
        let err = check_guest_used_kprobe_or_fentry(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONFIG_KPROBES is not set"), "{err}");
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!({})).is_err());
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!([1])).is_err());
        assert!(check_guest_used_kprobe_or_fentry(&serde_json::json!({"kprobe": "yes"})).is_err());
    }

    #[test]
    fn traced_verify_check() {
        let summary = |calls: u64, bytes: u64, lost: u64| {
            format!(
                "one-copy -- MATCH\n{}\n",
                serde_json::json!({
                    "lost_events": lost,
                    "syscalls": [
                        {"syscall": "sendto", "calls": 2, "kernel_send_copy_bytes": 40},
                        {"syscall": "sendmsg", "calls": calls, "kernel_send_copy_bytes": bytes},
                    ]
                })
            )
        };
        let exact = TRACED_MESSAGES * (TRACED_SIZE + 16);
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact, 0)).is_ok());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact - 1, 0)).is_err());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES - 1, exact, 0)).is_err());
        assert!(check_traced_verify(&summary(TRACED_MESSAGES, exact, 3)).is_err());
        assert!(check_traced_verify("netcopy: error: cannot trace\n").is_err());
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn chains_must_hold_every_deferred_copy() {
        let ledger = |calls: u64, bytes: u64| {
            serde_json::json!({
                "mode": "m",
                "sites": {"deferred_copy": {"calls": calls, "observed_bytes": bytes}},
                "causes": [{"kind": "local_delivery", "source": "observed", "callers": [
                    {"callers": ["a+0x1"], "copies": 2, "bytes": 100},
                    {"callers": ["b+0x1"], "copies": 1, "bytes": 50}
                ]}]
            })
        };
        assert!(check_chains_cover_the_deferred_copies(&ledger(3, 150)).is_ok());
        assert!(check_chains_cover_the_deferred_copies(&ledger(3, 151)).is_err());
        assert!(check_chains_cover_the_deferred_copies(&ledger(4, 150)).is_err());
        let inferred = serde_json::json!({
            "mode": "m",
            "sites": {"deferred_copy": {"calls": 9, "observed_bytes": 9}},
            "causes": [{"kind": "local_delivery", "source": "inferred"}]
        });
        assert!(check_chains_cover_the_deferred_copies(&inferred).is_ok());
    }
}

#[cfg(test)]
mod plan_check_tests {
    use super::*;

    /// A plan as `netcopy verify --json` prints it, with the send path's strategy labelled
    /// `label`; its kind is the label's first word, as netcopy's labels are written.
    fn plan(label: &str) -> serde_json::Value {
        let kind = label.split([' ', '/']).next().unwrap_or("");
        with_kind(label, kind)
    }

    fn with_kind(label: &str, kind: &str) -> serde_json::Value {
        serde_json::json!({"events": [
            {"event": "recv-copy", "chosen": {
                "label": "tracepoint skb/skb_copy_datagram_iovec", "kind": "tracepoint"
            }},
            {"event": "send-path", "chosen": {"label": label, "kind": kind}}
        ]})
    }

    #[test]
    fn accepts_fentry_and_kprobe_send_paths_only() {
        assert!(check_plan_uses_kprobe_or_fentry(&plan("fentry/fexit tcp_sendmsg_locked")).is_ok());
        assert!(
            check_plan_uses_kprobe_or_fentry(&plan("kprobe/kretprobe tcp_sendmsg_locked")).is_ok()
        );
        let err = check_plan_uses_kprobe_or_fentry(&plan("tp_btf tcp_sendmsg_locked"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a kprobe or fentry"), "{err}");
        let none = serde_json::json!({"events": [{"event": "send-path", "chosen": null}]});
        assert!(check_plan_uses_kprobe_or_fentry(&none).is_err());
        assert!(check_plan_uses_kprobe_or_fentry(&serde_json::json!({})).is_err());
    }

    #[test]
    fn the_kind_decides_not_the_label() {
        let fentry_label = "fentry/fexit tcp_sendmsg_locked";
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "fentry")).is_ok());
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "tp_btf")).is_err());
        assert!(check_plan_uses_kprobe_or_fentry(&with_kind(fentry_label, "fexit")).is_err());
        let no_kind = serde_json::json!({"events": [
            {"event": "send-path", "chosen": {"label": fentry_label}}
        ]});
        assert!(check_plan_uses_kprobe_or_fentry(&no_kind).is_err());
    }
}

#[cfg(test)]
mod receive_and_uring_tests {
    use super::*;

    fn ledger(source: &str, observed: u64, reported: u64, verdict: &str) -> serde_json::Value {
        ledger_with_calls(source, observed, reported, verdict, 3, 3)
    }

    fn ledger_with_calls(
        source: &str,
        observed: u64,
        reported: u64,
        verdict: &str,
        calls: u64,
        getsockopt_calls: u64,
    ) -> serde_json::Value {
        serde_json::json!({
            "mode": "zero-copy",
            "verdict": verdict,
            "receiver": {"mechanism": "zerocopy", "zerocopy": {
                "mapped_bytes": reported, "getsockopt_calls": getsockopt_calls
            }},
            "sites": {"recv_mapped": {
                "source": source, "observed_bytes": observed, "expected_bytes": reported,
                "calls": calls, "how": "fexit tcp_zerocopy_receive"
            }}
        })
    }

    #[test]
    fn recv_mapped_strategy_must_be_of_the_kind_asked_for() {
        let plan = |kind: &str| {
            serde_json::json!({"events": [
                {"event": "recv-mapped", "chosen": {"label": "x", "kind": kind}}
            ]})
        };
        assert!(check_recv_mapped_strategy(&plan("kprobe"), StrategyKind::Kprobe).is_ok());
        assert!(check_recv_mapped_strategy(&plan("fentry"), StrategyKind::Kprobe).is_err());
        let none = serde_json::json!({"events": [{"event": "recv-mapped", "chosen": null}]});
        assert!(check_recv_mapped_strategy(&none, StrategyKind::Fentry).is_err());
    }

    #[test]
    fn recv_mapped_must_be_observed_and_equal_to_the_report() {
        let ok = check_recv_mapped_observed(&ledger("observed", 4096, 4096, "degraded")).unwrap();
        assert!(ok.contains("observed 4096 bytes"), "{ok}");
        assert!(check_recv_mapped_observed(&ledger("reported", 4096, 4096, "match")).is_err());
        assert!(check_recv_mapped_observed(&ledger("observed", 4097, 4096, "match")).is_err());
        assert!(check_recv_mapped_observed(&ledger("observed", 0, 0, "match")).is_err());
        assert!(check_recv_mapped_observed(&ledger("observed", 4096, 4096, "mismatch")).is_err());
        // One tcp_zerocopy_receive call more than the receiver made (its support check
        // counted while the process was watched): not exact.
        let extra_call = ledger_with_calls("observed", 4096, 4096, "degraded", 143, 142);
        assert!(check_recv_mapped_observed(&extra_call).is_err());
    }

    fn summary(zc_submitted: u64, zc_bytes: u64, notified: u64, lost: u64) -> String {
        let plain = TRACED_MESSAGES * (TRACED_SIZE + 16);
        format!(
            "io-uring -- MATCH\n{}\n",
            serde_json::json!({
                "lost_events": lost,
                "io_uring": [
                    {"opcode_name": "SENDMSG", "submitted": TRACED_MESSAGES,
                     "completed": TRACED_MESSAGES, "errors": 0, "bytes": plain,
                     "zerocopy_notifications": 0},
                    {"opcode_name": "SENDMSG_ZC", "submitted": zc_submitted,
                     "completed": zc_submitted, "errors": 0, "bytes": zc_bytes,
                     "zerocopy_notifications": notified},
                ],
                "io_uring_zerocopy": {"sends": zc_submitted, "completed_copied": notified,
                                      "completed_not_copied": 0, "never_completed_in_trace": 0}
            })
        )
    }

    #[test]
    fn io_uring_trace_must_record_every_request_and_notification_exactly() {
        // The messages and the zero-copy mode's 1-byte support check.
        let sends = TRACED_MESSAGES + 1;
        let bytes = TRACED_MESSAGES * (TRACED_SIZE + 16) + 1;
        let lines = check_traced_io_uring(&summary(sends, bytes, sends, 0)).unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains(&format!("{sends} submits")), "{lines:?}");
        assert!(check_traced_io_uring(&summary(sends, bytes + 1, sends, 0)).is_err());
        assert!(check_traced_io_uring(&summary(sends, bytes, sends - 1, 0)).is_err());
        assert!(check_traced_io_uring(&summary(sends, bytes, sends, 2)).is_err());
        assert!(
            check_traced_io_uring("netcopy: error: io_uring tracing is not possible\n").is_err()
        );
        let no_rows = format!(
            "{}\n",
            serde_json::json!({"lost_events": 0, "io_uring": []})
        );
        assert!(check_traced_io_uring(&no_rows).is_err());
    }
}
