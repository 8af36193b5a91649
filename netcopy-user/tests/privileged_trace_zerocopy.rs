//! `netcopy trace` of real zero-copy senders over loopback (issue 17, item 6): the copies
//! the kernel made after the call, reported in the completions the traced process read,
//! are attributed to the sends they complete and counted in the summary; io_uring
//! requests, which never go through sendmsg(2), are recorded from the io_uring
//! tracepoints. Each test traces `netcopy server --mode M` driven by a client and checks
//! the trace against the server's own totals, which it counts from the completions it
//! reads itself.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// Messages the client asks for, of this size.
const MESSAGES: u32 = 200;
const SIZE: &str = "64K";

fn netcopy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netcopy-trace-zc-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a traced server run left: the trace's summary and syscalls.jsonl, and the
/// server's own `total` figures.
struct TracedRun {
    summary: Value,
    lines: Vec<Value>,
    server: Value,
    /// The traced server's pid.
    pid: u64,
}

/// Traces `netcopy server --mode MODE`, sends it one client run of [`MESSAGES`]
/// messages, stops it with SIGINT (forwarded to the server, which exits) and reads back
/// everything.
fn trace_server(mode: &str, dir: &Path) -> TracedRun {
    let out = dir.join("trace");
    let mut trace = netcopy()
        .args(["trace", "--json", "--out"])
        .arg(&out)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_netcopy"))
        .args(["server", "--json", "--mode", mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netcopy trace");
    let mut stdout = BufReader::new(trace.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let out = trace.wait_with_output().unwrap();
            panic!(
                "no listening line: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["event"] == "listening" {
                break v["addr"].as_str().unwrap().to_string();
            }
        }
    };
    let client = netcopy()
        .args(["client", "--json", "--connect", &addr, "--size", SIZE])
        .args(["--messages", &MESSAGES.to_string()])
        .output()
        .expect("run the client");
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let report: Value = serde_json::from_slice(&client.stdout).unwrap();
    assert_eq!(report["messages"], MESSAGES);
    assert_eq!(report["integrity_errors"], 0);
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(trace.id() as i32, libc::SIGINT) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let output = trace.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let objects: Vec<Value> = rest
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let server = objects
        .iter()
        .find(|v| v["event"] == "totals")
        .unwrap_or_else(|| panic!("no server totals in {rest}"))["total"]
        .clone();
    let summary = objects
        .iter()
        .find(|v| v.get("syscalls").is_some())
        .unwrap_or_else(|| panic!("no trace summary in {rest}"))
        .clone();
    assert_eq!(summary["lost_events"], 0, "{summary}");
    let lines = fs::read_to_string(out.join("syscalls.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pid = stderr
        .lines()
        .find(|l| l.starts_with("netcopy: tracing "))
        .and_then(|l| l.split("(pid ").nth(1))
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no tracing line in {stderr}"));
    TracedRun {
        summary,
        lines,
        server,
        pid,
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_traced_msg_zerocopy_sender_shows_its_sends_copied_after_the_call() {
    if !common::privileged("trace of a MSG_ZEROCOPY sender") {
        return;
    }
    let dir = scratch("msg");
    let run = trace_server("zero-copy", &dir);
    let server = &run.server;
    let sends = u(&server["zerocopy_sends"]);
    assert!(sends >= u64::from(MESSAGES), "{server}");

    // Per call: every MSG_ZEROCOPY sendmsg took the socket's next number, from 0, and
    // its completion came, flagged copied (loopback always copies: PLATFORM.md).
    let zc_sends: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| {
            l["type"] == "syscall"
                && l["syscall"] == "sendmsg"
                && l["flag_names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "MSG_ZEROCOPY")
        })
        .collect();
    assert_eq!(zc_sends.len() as u64, sends);
    let mut sent_bytes = 0;
    for (n, send) in zc_sends.iter().enumerate() {
        let z = &send["zerocopy"];
        assert_eq!(z["seq"], n as u64, "{send}");
        assert_eq!(z["numbers"], 1, "{send}");
        assert_eq!(z["numbering"], "kernel", "{send}");
        assert_eq!(z["completed_copied"], true, "{send}");
        assert_eq!(z["source"], "reported", "{send}");
        sent_bytes += u(&send["returned_bytes"]);
    }
    assert_eq!(sent_bytes, u(&server["zerocopy_bytes"]));

    // Per completion: the recvmsg(MSG_ERRQUEUE) calls that returned one, as many as the
    // server counted, whose ranges cover every send once.
    let notifications: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l["type"] == "syscall" && l["zerocopy"]["notification"].is_object())
        .collect();
    assert_eq!(
        notifications.len() as u64,
        u(&server["completion_notifications"])
    );
    let mut covered = 0;
    for n in &notifications {
        assert_eq!(n["syscall"], "recvmsg");
        assert_eq!(
            n["extended_error"]["ee_origin_name"],
            "SO_EE_ORIGIN_ZEROCOPY"
        );
        assert_eq!(
            n["extended_error"]["ee_code"], 1,
            "SO_EE_CODE_ZEROCOPY_COPIED"
        );
        assert_eq!(n["zerocopy"]["copied"], true);
        let range = &n["zerocopy"]["notification"];
        assert_eq!(
            n["zerocopy"]["sends_completed"],
            u(&range["last"]) - u(&range["first"]) + 1
        );
        covered += u(&n["zerocopy"]["sends_completed"]);
    }
    assert_eq!(covered, sends);

    // The summary: every send completed and copied after the call, none pending, and
    // sendmsg's copies/call and copied/byte count those copies.
    let z = &run.summary["zerocopy"];
    assert_eq!(u(&z["sends"]), sends, "{z}");
    assert_eq!(u(&z["completed_copied"]), u(&server["copied_sends"]));
    assert_eq!(u(&z["completed_copied"]), sends);
    assert_eq!(z["completed_not_copied"], 0);
    assert_eq!(z["never_completed_in_trace"], 0);
    assert_eq!(z["sends_without_zerocopy_number"], 0);
    assert_eq!(z["numbers_completed_but_not_sent_in_trace"], 0);
    assert_eq!(u(&z["notifications"]), notifications.len() as u64);
    assert_eq!(z["source"], "reported");
    let sendmsg = run.summary["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["syscall"] == "sendmsg")
        .unwrap();
    assert_eq!(u(&sendmsg["calls"]), sends, "only zero-copy sendmsg calls");
    assert_eq!(u(&sendmsg["after_call_copy_events"]), sends);
    assert_eq!(u(&sendmsg["after_call_copied_bytes"]), sent_bytes);
    assert_eq!(
        u(&sendmsg["kernel_send_copy_bytes"]),
        0,
        "pinned, not copied, in the call"
    );
    assert_eq!(sendmsg["in_call_copies_per_call"], 0.0);
    assert_eq!(sendmsg["copies_per_call"], 1.0);
    assert_eq!(sendmsg["copied_bytes_per_byte"], 1.0);
    let _ = fs::remove_dir_all(&dir);
}

/// The io_uring rows of a summary, by opcode name.
fn uring_row<'a>(summary: &'a Value, opcode: &str) -> &'a Value {
    summary["io_uring"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["opcode_name"] == opcode)
        .unwrap_or_else(|| panic!("no {opcode} row in {summary}"))
}

#[test]
fn a_traced_io_uring_zerocopy_sender_shows_its_requests_and_their_copied_notifications() {
    if !common::privileged("trace of an io_uring zero-copy sender") {
        return;
    }
    let dir = scratch("uring-zc");
    let run = trace_server("io-uring-zc", &dir);
    let server = &run.server;
    // The sender checks at start that the kernel takes SENDMSG_ZC with REPORT_USAGE:
    // one 1-byte send of its own, traced like the others.
    let (probe_sends, probe_bytes) = (1, 1);
    let sends = u(&server["zerocopy_sends"]) + probe_sends;
    let row = uring_row(&run.summary, "SENDMSG_ZC");
    assert_eq!(u(&row["submitted"]), sends, "{row}");
    assert_eq!(u(&row["completed"]), sends);
    assert_eq!(row["errors"], 0);
    assert_eq!(u(&row["bytes"]), u(&server["zerocopy_bytes"]) + probe_bytes);
    assert_eq!(u(&row["zerocopy_notifications"]), sends);
    assert_eq!(u(&row["after_call_copy_events"]), sends);
    assert_eq!(row["after_call_copied_bytes"], row["bytes"]);
    assert_eq!(row["copies_per_call"], 1.0);
    assert_eq!(row["copied_bytes_per_byte"], 1.0);
    assert_eq!(row["zerocopy_never_completed_in_trace"], 0);
    let z = &run.summary["io_uring_zerocopy"];
    assert_eq!(u(&z["sends"]), sends, "{z}");
    assert_eq!(u(&z["completed_copied"]), sends);
    assert_eq!(
        u(&z["completed_copied"]),
        u(&server["copied_sends"]) + probe_sends
    );
    assert_eq!(z["completed_not_copied"], 0);
    assert_eq!(z["completed_usage_not_reported"], 0);
    assert_eq!(z["never_completed_in_trace"], 0);
    assert_eq!(z["notifications_without_traced_send"], 0);

    // The records: a submit per request (REPORT_USAGE read from the request), a result
    // with IORING_CQE_F_MORE, and a notification flagged copied naming its submit.
    let of_type =
        |t: &str| -> Vec<&Value> { run.lines.iter().filter(|l| l["type"] == t).collect() };
    let submits = of_type("io_uring_submit");
    let completions = of_type("io_uring_complete");
    assert_eq!(submits.len() as u64, sends);
    assert_eq!(completions.len() as u64, 2 * sends);
    for s in &submits {
        assert_eq!(s["opcode_name"], "SENDMSG_ZC");
        assert_eq!(s["zerocopy"]["report_usage"], true, "{s}");
        assert_eq!(s["zerocopy"]["completed_copied"], true, "{s}");
    }
    let notifications: Vec<&&Value> = completions
        .iter()
        .filter(|c| c["notification"] == true)
        .collect();
    assert_eq!(notifications.len() as u64, sends);
    for n in &notifications {
        assert_eq!(n["usage_zc_copied"], true, "{n}");
        assert!(n["zerocopy"]["completes_submit_index"].is_u64(), "{n}");
    }
    for c in completions.iter().filter(|c| c["notification"] == false) {
        assert_eq!(c["opcode_name"], "SENDMSG_ZC");
        assert!(
            c["cflag_names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "IORING_CQE_F_MORE"),
            "{c}"
        );
    }
    // Every event is the server's, wherever the kernel posted it.
    assert!(submits
        .iter()
        .chain(&completions)
        .all(|e| e["pid"] == run.pid));
    // io_uring sends are not sendmsg(2) calls.
    assert!(!run.lines.iter().any(|l| l["syscall"] == "sendmsg"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_traced_io_uring_sender_shows_its_requests_per_opcode_without_notifications() {
    if !common::privileged("trace of an io_uring sender") {
        return;
    }
    let dir = scratch("uring");
    let run = trace_server("io-uring", &dir);
    let server = &run.server;
    let row = uring_row(&run.summary, "SENDMSG");
    assert_eq!(row["submitted"], server["syscalls"], "{row} {server}");
    assert_eq!(row["completed"], row["submitted"]);
    assert_eq!(row["errors"], 0);
    assert_eq!(
        u(&row["bytes"]),
        u(&server["payload_bytes"]) + u(&server["header_bytes"])
    );
    assert_eq!(row["zerocopy_notifications"], 0);
    assert_eq!(row["after_call_copy_events"], 0);
    assert_eq!(run.summary["io_uring_zerocopy"]["sends"], 0);
    let submits = run
        .lines
        .iter()
        .filter(|l| l["type"] == "io_uring_submit")
        .count() as u64;
    assert_eq!(submits, u(&row["submitted"]));
    assert!(!run.lines.iter().any(|l| l["notification"] == true));
    let _ = fs::remove_dir_all(&dir);
}
