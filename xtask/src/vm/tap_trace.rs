//! The traced senders of the tap stage (issue 17): `netcopy trace` of a zero-copy server
//! in the guest, pulled from this host over the tap, must say from its own outputs (the
//! per-call or per-request `zerocopy` fields of syscalls.jsonl and the summary's figures)
//! that the kernel did not copy the sends after the call; and, with a packet socket open
//! on the guest's NIC (which makes the kernel copy them for the tap), that it did. Two
//! senders: MSG_ZEROCOPY with completions from the error queue, and io_uring's
//! SENDMSG_ZC with its notifications in the ring.
//!
//! The guest's server serves one connection (`--exit-after 1`) and exits, so its trace
//! ends by itself; the guest command then prints the trace's syscalls.jsonl after the
//! trace's own stdout (the server's `listening` and `totals` lines, then the summary),
//! and the stage's record stream brings all of it back. The server's totals, which it
//! counts from the completions it reads itself, are what the trace must agree with.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{guest::shell_quote, guest::GUEST_NETCOPY, GuestCommand};

/// Messages the client pulls from each traced server, of this size.
pub(super) const MESSAGES: u64 = 200;
pub(super) const SIZE: &str = "64K";
/// The traced server's port in the guest (the agent has the one below).
const PORT: u16 = 7879;
/// How long the client keeps trying while the guest starts the trace (loading its
/// programs under TCG takes a while) and its server.
const CONNECT_WAIT: Duration = Duration::from_secs(240);

/// The zero-copy mechanism a traced server sends with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Sender {
    /// sendmsg(MSG_ZEROCOPY), completions read from the socket's error queue.
    #[default]
    ErrorQueue,
    /// io_uring SENDMSG_ZC (or SEND_ZC), notifications in the completion ring.
    IoUring,
}

impl Sender {
    pub(super) const ALL: [Sender; 2] = [Sender::ErrorQueue, Sender::IoUring];

    pub(super) fn label(self) -> &'static str {
        match self {
            Sender::ErrorQueue => "zero-copy sender",
            Sender::IoUring => "io_uring zero-copy sender",
        }
    }

    /// What its sends are called in the figures' line.
    fn sends_name(self) -> &'static str {
        match self {
            Sender::ErrorQueue => "MSG_ZEROCOPY sends",
            Sender::IoUring => "SENDMSG_ZC/SEND_ZC submits",
        }
    }

    /// The summary row its sends are in.
    fn row_name(self) -> &'static str {
        match self {
            Sender::ErrorQueue => "sendmsg",
            Sender::IoUring => "SENDMSG_ZC",
        }
    }

    /// The mode table's `completions` of its mode.
    fn completions(self) -> &'static str {
        match self {
            Sender::ErrorQueue => "error_queue",
            Sender::IoUring => "ring",
        }
    }
}

/// One traced pass: the plain tap, or with a packet socket open on the guest's NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    Plain,
    PacketSocket,
}

impl Pass {
    pub(super) const ALL: [Pass; 2] = [Pass::Plain, Pass::PacketSocket];

    pub(super) fn label(self) -> &'static str {
        match self {
            Pass::Plain => "over the tap",
            Pass::PacketSocket => "with a packet socket on the guest's NIC",
        }
    }

    fn out_dir(self, sender: Sender) -> String {
        let tap = match self {
            Pass::Plain => "plain",
            Pass::PacketSocket => "tapped",
        };
        let sender = match sender {
            Sender::ErrorQueue => "zc",
            Sender::IoUring => "uring-zc",
        };
        format!("/tmp/netcopy-{sender}-trace-{tap}")
    }
}

/// The mode a traced server sends with: the table's sender that attaches pinned pages
/// and takes its completions where `sender` does (the error queue, the ring).
pub(super) fn sender_mode(netcopy: &Path, sender: Sender) -> Result<String> {
    super::modes_where(netcopy, |m| {
        m["zerocopy_attach"] == true && m["completions"] == sender.completions()
    })?
    .into_iter()
    .next()
    .with_context(|| {
        format!(
            "the mode table has no mode that attaches pinned pages with completions from \
             `{}`, which the tap stage's traced {} runs",
            sender.completions(),
            sender.label()
        )
    })
}

/// The guest command of one pass: the traced server, then its syscalls.jsonl.
pub(super) fn guest_command(
    mode: &str,
    guest_addr: &str,
    sender: Sender,
    pass: Pass,
) -> GuestCommand {
    let dir = pass.out_dir(sender);
    let tap = match pass {
        Pass::Plain => "",
        Pass::PacketSocket => " --packet-tap eth0",
    };
    GuestCommand::shell(format!(
        "{GUEST_NETCOPY} trace --json --out {dir} -- {GUEST_NETCOPY} server --json --mode {} \
         --listen {guest_addr}:{PORT} --exit-after 1{tap} && cat {dir}/syscalls.jsonl",
        shell_quote(mode)
    ))
}

/// Runs `netcopy client` against the guest's traced server (`client` is the command to
/// run it inside the stage's namespace), retrying while the server is not yet listening;
/// returns the client's report once it pulled every message intact.
pub(super) fn pull(
    mut client: impl FnMut() -> std::process::Command,
    guest_addr: &str,
    sender: Sender,
    pass: Pass,
) -> Result<Value> {
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        let output = client()
            .args([
                "client",
                "--json",
                "--connect",
                &format!("{guest_addr}:{PORT}"),
            ])
            .args(["--size", SIZE, "--messages", &MESSAGES.to_string()])
            .output()
            .context("running netcopy client")?;
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if output.status.success() {
            if report["messages"] != MESSAGES || report["integrity_errors"] != 0 {
                bail!(
                    "the client of the traced {} ({}) pulled {} messages with {} \
                     integrity errors; {MESSAGES} intact were asked for",
                    sender.label(),
                    pass.label(),
                    report["messages"],
                    report["integrity_errors"]
                );
            }
            return Ok(report);
        }
        if refused(&report) && Instant::now() < deadline {
            thread::sleep(Duration::from_secs(1));
            continue;
        }
        bail!(
            "the client of the traced {} ({}) exited {}: {}",
            sender.label(),
            pass.label(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

/// The client found nobody listening (yet), and received nothing.
fn refused(report: &Value) -> bool {
    report["messages"] == 0
        && report["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|e| e.contains("Connection refused"))
}

/// What one traced pass printed in the guest.
pub(super) struct TracedSender {
    summary: Value,
    /// The server's own `total` figures.
    server: Value,
    /// The lines of syscalls.jsonl.
    records: Vec<Value>,
}

/// Splits the guest command's stdout into the server's totals, the trace summary and
/// the syscalls.jsonl lines.
pub(super) fn parse_traced_sender(stdout: &str) -> Result<TracedSender> {
    let (mut summary, mut server, mut records) = (None, None, Vec::new());
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("a line of the traced sender's output is not JSON: {line}"))?;
        if v.get("type").is_some() {
            records.push(v);
        } else if v["event"] == "totals" {
            server = Some(v["total"].clone());
        } else if v.get("syscalls").is_some() && v.get("zerocopy").is_some() {
            summary = Some(v);
        }
    }
    Ok(TracedSender {
        summary: summary.context("the traced sender printed no trace summary")?,
        server: server.context("the traced server printed no totals")?,
        records,
    })
}

/// The figures of one traced pass, each from where the user would read it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Figures {
    sender: Sender,
    /// From syscalls.jsonl: MSG_ZEROCOPY sendmsg calls (io_uring: zero-copy send
    /// submits), and how their completion said the kernel treated them
    /// (`zerocopy.completed_copied`: true, false, or none yet).
    sends: u64,
    sends_copied: u64,
    sends_not_copied: u64,
    sends_uncompleted: u64,
    sent_bytes: u64,
    /// From syscalls.jsonl: the error-queue reads that returned a completion range
    /// (io_uring: the notification CQEs).
    notifications: u64,
    notifications_copied: u64,
    /// The summary's `zerocopy` object (io_uring: `io_uring_zerocopy`).
    summary_sends: u64,
    summary_copied: u64,
    summary_not_copied: u64,
    summary_never_completed: u64,
    summary_notifications: u64,
    summary_notifications_copied: u64,
    /// The summary's sendmsg row (io_uring: its SENDMSG_ZC row).
    sendmsg_calls: u64,
    sendmsg_errors: u64,
    after_call_copy_events: u64,
    after_call_copied_bytes: u64,
    copies_per_call: Option<f64>,
    copied_bytes_per_byte: Option<f64>,
    /// The server's own counts, from the completions it read.
    server_sends: u64,
    server_copied: u64,
    server_notifications: u64,
    lost_events: u64,
    /// io_uring: zero-copy submits on other rings than the connection's (the server's
    /// start-up check), and how many of them were flagged copied; not judged.
    other_ring_sends: u64,
    other_ring_copied: u64,
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

impl Figures {
    pub(super) fn of(sender: Sender, t: &TracedSender) -> Figures {
        let mut f = match sender {
            Sender::ErrorQueue => Figures::of_error_queue(t),
            Sender::IoUring => Figures::of_io_uring(t),
        };
        f.server_sends = count(&t.server["zerocopy_sends"]);
        f.server_copied = count(&t.server["copied_sends"]);
        f.server_notifications = count(&t.server["completion_notifications"]);
        f.lost_events = count(&t.summary["lost_events"]);
        f
    }

    /// The io_uring figures of the ring that sent to the client. The server's start-up
    /// check sends one byte with SENDMSG_ZC over loopback, on a ring of its own, and the
    /// kernel copies it (loopback always does): the trace records it like any other
    /// request. Its ring (any but the one with the most zero-copy submits) is counted
    /// apart and taken off the summary's figures, which cover every ring.
    fn of_io_uring(t: &TracedSender) -> Figures {
        let mut f = Figures {
            sender: Sender::IoUring,
            ..Figures::default()
        };
        let zero_copy_op =
            |r: &Value| r["opcode_name"] == "SENDMSG_ZC" || r["opcode_name"] == "SEND_ZC";
        let submits = |r: &&Value| r["type"] == "io_uring_submit" && zero_copy_op(r);
        let mut per_ring: std::collections::BTreeMap<String, u64> = Default::default();
        for r in t.records.iter().filter(submits) {
            *per_ring.entry(r["ring"].to_string()).or_default() += 1;
        }
        let main_ring = per_ring
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ring, _)| ring.clone());
        let mut other = Figures::default();
        // Bytes of the other rings' sends flagged copied: to take off the summary's row.
        let mut other_copied_bytes = 0;
        for r in &t.records {
            let on_main = Some(r["ring"].to_string()) == main_ring;
            let into = if on_main { &mut f } else { &mut other };
            if submits(&r) {
                let bytes = count(&r["zerocopy"]["sent_bytes"]);
                into.sends += 1;
                into.sent_bytes += bytes;
                match r["zerocopy"]["completed_copied"].as_bool() {
                    Some(true) => {
                        into.sends_copied += 1;
                        if !on_main {
                            other_copied_bytes += bytes;
                        }
                    }
                    Some(false) => into.sends_not_copied += 1,
                    None => into.sends_uncompleted += 1,
                }
            }
            if r["type"] == "io_uring_complete" && r["notification"] == true {
                into.notifications += 1;
                into.notifications_copied += u64::from(r["usage_zc_copied"] == true);
            }
        }
        let z = &t.summary["io_uring_zerocopy"];
        f.summary_sends = count(&z["sends"]).saturating_sub(other.sends);
        f.summary_copied = count(&z["completed_copied"]).saturating_sub(other.sends_copied);
        f.summary_not_copied =
            count(&z["completed_not_copied"]).saturating_sub(other.sends_not_copied);
        f.summary_never_completed =
            count(&z["never_completed_in_trace"]).saturating_sub(other.sends_uncompleted);
        // The rows are per opcode, over every ring: the other rings come off, then the
        // ratios are of what is left.
        let (mut notifications, mut submitted, mut copy_events, mut copied_bytes) = (0, 0, 0, 0);
        for row in t.summary["io_uring"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| zero_copy_op(r))
        {
            notifications += count(&row["zerocopy_notifications"]);
            submitted += count(&row["submitted"]);
            copy_events += count(&row["after_call_copy_events"]);
            copied_bytes += count(&row["after_call_copied_bytes"]);
        }
        f.summary_notifications = notifications.saturating_sub(other.notifications);
        // One notification per send, flagged as its send was.
        f.summary_notifications_copied = f.summary_copied;
        f.sendmsg_calls = submitted.saturating_sub(other.sends);
        f.after_call_copy_events = copy_events.saturating_sub(other.sends_copied);
        f.after_call_copied_bytes = copied_bytes.saturating_sub(other_copied_bytes);
        if f.sendmsg_calls > 0 {
            f.copies_per_call = Some(f.after_call_copy_events as f64 / f.sendmsg_calls as f64);
        }
        if f.sent_bytes > 0 {
            f.copied_bytes_per_byte = Some(f.after_call_copied_bytes as f64 / f.sent_bytes as f64);
        }
        f.other_ring_sends = other.sends;
        f.other_ring_copied = other.sends_copied;
        f
    }

    fn of_error_queue(t: &TracedSender) -> Figures {
        let mut f = Figures::default();
        for r in t.records.iter().filter(|r| r["type"] == "syscall") {
            // A call that failed (ENOBUFS, when the socket's option memory is full) sent
            // nothing and took no completion number: the sender retries it.
            let zerocopy_send = r["syscall"] == "sendmsg"
                && r["error"].is_null()
                && r["flag_names"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "MSG_ZEROCOPY"));
            if zerocopy_send {
                f.sends += 1;
                f.sent_bytes += count(&r["returned_bytes"]);
                match r["zerocopy"]["completed_copied"].as_bool() {
                    Some(true) => f.sends_copied += 1,
                    Some(false) => f.sends_not_copied += 1,
                    None => f.sends_uncompleted += 1,
                }
            }
            if r["zerocopy"]["notification"].is_object() {
                f.notifications += 1;
                f.notifications_copied += u64::from(r["zerocopy"]["copied"] == true);
            }
        }
        let z = &t.summary["zerocopy"];
        f.summary_sends = count(&z["sends"]);
        f.summary_copied = count(&z["completed_copied"]);
        f.summary_not_copied = count(&z["completed_not_copied"]);
        f.summary_never_completed = count(&z["never_completed_in_trace"]);
        f.summary_notifications = count(&z["notifications"]);
        f.summary_notifications_copied = count(&z["notifications_flagged_copied"]);
        let sendmsg = t.summary["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["syscall"] == "sendmsg");
        if let Some(s) = sendmsg {
            f.sendmsg_calls = count(&s["calls"]);
            f.sendmsg_errors = count(&s["errors"]);
            f.after_call_copy_events = count(&s["after_call_copy_events"]);
            f.after_call_copied_bytes = count(&s["after_call_copied_bytes"]);
            f.copies_per_call = s["copies_per_call"].as_f64();
            f.copied_bytes_per_byte = s["copied_bytes_per_byte"].as_f64();
        }
        f
    }

    /// One line for the stage's log.
    pub(super) fn line(&self) -> String {
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
        format!(
            "syscalls.jsonl: {} {} ({} bytes), {} completed copied, {} not copied, {} \
             uncompleted; {} notifications, {} flagged copied | summary: {} sends, {} \
             completed copied, {} not copied, {} never completed, {} notifications ({} \
             flagged copied); {} {} calls ({} failed), {} copies after the call ({} bytes), \
             copies/call {}, copied/byte {} | server: {} sends, {} copied, {} notifications{}",
            self.sends,
            self.sender.sends_name(),
            self.sent_bytes,
            self.sends_copied,
            self.sends_not_copied,
            self.sends_uncompleted,
            self.notifications,
            self.notifications_copied,
            self.summary_sends,
            self.summary_copied,
            self.summary_not_copied,
            self.summary_never_completed,
            self.summary_notifications,
            self.summary_notifications_copied,
            self.sender.row_name(),
            self.sendmsg_calls,
            self.sendmsg_errors,
            self.after_call_copy_events,
            self.after_call_copied_bytes,
            ratio(self.copies_per_call),
            ratio(self.copied_bytes_per_byte),
            self.server_sends,
            self.server_copied,
            self.server_notifications,
            if self.other_ring_sends > 0 {
                format!(
                    " | other rings (the server's start-up check over loopback): {} submits, {} \
                     flagged copied",
                    self.other_ring_sends, self.other_ring_copied
                )
            } else {
                String::new()
            },
        )
    }
}

/// Whether the figures of `pass` say what the kernel did: every send completed within
/// the trace, the trace agreeing with the server's own counts, and then, over the plain
/// tap, nothing copied after the call (copies/call 0.00); with a packet socket, every
/// send copied after the call.
pub(super) fn judge(pass: Pass, f: &Figures) -> Result<()> {
    let fail = |why: String| -> Result<()> {
        bail!(
            "the traced {} {}: {why} ({})",
            f.sender.label(),
            pass.label(),
            f.line()
        )
    };
    if f.lost_events != 0 {
        return fail(format!("the trace lost {} events", f.lost_events));
    }
    if f.sends == 0 || f.sends != f.summary_sends || f.sends != f.server_sends {
        return fail(format!(
            "syscalls.jsonl, the summary and the server must count the same {}, and some",
            f.sender.sends_name()
        ));
    }
    if f.sends_uncompleted != 0 || f.summary_never_completed != 0 {
        return fail("every send must complete within the trace".into());
    }
    if f.notifications != f.summary_notifications || f.notifications != f.server_notifications {
        return fail(
            "syscalls.jsonl, the summary and the server must count the same notifications".into(),
        );
    }
    if (f.sends_copied, f.sends_not_copied) != (f.summary_copied, f.summary_not_copied)
        || f.summary_copied != f.server_copied
    {
        return fail(
            "the per-call copied flags, the summary and the server must agree on which \
             sends were copied"
                .into(),
        );
    }
    if f.sendmsg_calls != f.sends + f.sendmsg_errors {
        return fail(format!(
            "the server's only {} calls are its {}",
            f.sender.row_name(),
            f.sender.sends_name()
        ));
    }
    match pass {
        Pass::Plain => {
            if f.sends_copied != 0
                || f.notifications_copied != 0
                || f.summary_notifications_copied != 0
            {
                return fail(
                    "the trace says the kernel copied sends after the call, but over the \
                     plain tap (scatter-gather NIC, no packet socket) it sends the pages by \
                     reference"
                        .into(),
                );
            }
            if f.after_call_copy_events != 0
                || f.after_call_copied_bytes != 0
                || f.copies_per_call != Some(0.0)
            {
                return fail(format!(
                    "{} must show no copy after the call and copies/call 0.00",
                    f.sender.row_name()
                ));
            }
        }
        Pass::PacketSocket => {
            if f.sends_not_copied != 0 || f.notifications_copied != f.notifications {
                return fail(
                    "with a packet socket open the kernel copies every send for the tap, \
                     and the trace must say so"
                        .into(),
                );
            }
            if f.after_call_copy_events != f.sends || f.after_call_copied_bytes != f.sent_bytes {
                return fail(format!(
                    "{} must count one copy after the call per send, of its bytes",
                    f.sender.row_name()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A traced pass's stdout: `sends` sends of 65552 bytes completed in `ranges`
    /// notifications, all flagged `copied` or none.
    fn stdout(sends: u64, ranges: u64, copied: bool) -> String {
        let mut lines = vec![
            r#"{"addr":"169.254.202.2:7879","event":"listening","mode":"m"}"#.to_string(),
            serde_json::json!({"event": "totals", "total": {
                "zerocopy_sends": sends,
                "copied_sends": if copied { sends } else { 0 },
                "completion_notifications": ranges,
            }})
            .to_string(),
            serde_json::json!({
                "lost_events": 0,
                "syscalls": [
                    {"syscall": "sendto", "calls": 1, "copies_per_call": 1.0},
                    {"syscall": "sendmsg", "calls": sends, "errors": 0,
                     "after_call_copy_events": if copied { sends } else { 0 },
                     "after_call_copied_bytes": if copied { sends * 65552 } else { 0 },
                     "copies_per_call": if copied { 1.0 } else { 0.0 },
                     "copied_bytes_per_byte": if copied { 1.0 } else { 0.0 }},
                ],
                "zerocopy": {
                    "sends": sends,
                    "completed_copied": if copied { sends } else { 0 },
                    "completed_not_copied": if copied { 0 } else { sends },
                    "never_completed_in_trace": 0,
                    "notifications": ranges,
                    "notifications_flagged_copied": if copied { ranges } else { 0 },
                },
            })
            .to_string(),
        ];
        for seq in 0..sends {
            lines.push(
                serde_json::json!({
                    "type": "syscall", "syscall": "sendmsg", "returned_bytes": 65552,
                    "error": null,
                    "flag_names": ["MSG_NOSIGNAL", "MSG_ZEROCOPY"],
                    "zerocopy": {"seq": seq, "completed_copied": copied, "source": "reported"},
                })
                .to_string(),
            );
        }
        for _ in 0..ranges {
            lines.push(
                serde_json::json!({
                    "type": "syscall", "syscall": "recvmsg",
                    "flag_names": ["MSG_DONTWAIT", "MSG_ERRQUEUE"],
                    "zerocopy": {"copied": copied, "notification": {"first": 0, "last": 0}},
                })
                .to_string(),
            );
        }
        lines.push(r#"{"type":"syscall","syscall":"recvfrom","zerocopy":null}"#.into());
        lines.join("\n") + "\n"
    }

    fn figures(text: &str) -> Figures {
        Figures::of(Sender::ErrorQueue, &parse_traced_sender(text).unwrap())
    }

    #[test]
    fn figures_come_from_the_records_the_summary_and_the_server() {
        let f = figures(&stdout(200, 67, false));
        assert_eq!((f.sends, f.sends_not_copied, f.sends_copied), (200, 200, 0));
        assert_eq!(f.sent_bytes, 200 * 65552);
        assert_eq!((f.notifications, f.summary_notifications), (67, 67));
        assert_eq!((f.sendmsg_calls, f.copies_per_call), (200, Some(0.0)));
        assert_eq!((f.server_sends, f.server_notifications), (200, 67));
        assert!(f.line().contains("copies/call 0.00"), "{}", f.line());
        assert!(parse_traced_sender("netcopy: tracing\n").is_err());
        assert!(parse_traced_sender("{not json\n").is_err());
    }

    #[test]
    fn the_plain_tap_needs_every_send_uncopied() {
        assert!(judge(Pass::Plain, &figures(&stdout(200, 67, false))).is_ok());
        let err = judge(Pass::Plain, &figures(&stdout(200, 67, true)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("copied sends after the call"), "{err}");
        // One send flagged copied is enough to fail.
        let mut f = figures(&stdout(200, 67, false));
        (f.sends_copied, f.sends_not_copied) = (1, 199);
        (f.summary_copied, f.summary_not_copied, f.server_copied) = (1, 199, 1);
        assert!(judge(Pass::Plain, &f).is_err());
        // No copy flagged, but copies counted after the call.
        let mut f = figures(&stdout(200, 67, false));
        f.copies_per_call = Some(0.01);
        assert!(judge(Pass::Plain, &f).is_err());
        // Nothing sent proves nothing.
        assert!(judge(Pass::Plain, &figures(&stdout(0, 0, false))).is_err());
    }

    #[test]
    fn the_packet_socket_pass_needs_every_send_copied() {
        assert!(judge(Pass::PacketSocket, &figures(&stdout(200, 109, true))).is_ok());
        assert!(judge(Pass::PacketSocket, &figures(&stdout(200, 109, false))).is_err());
        let mut f = figures(&stdout(200, 109, true));
        f.after_call_copied_bytes -= 1;
        assert!(judge(Pass::PacketSocket, &f).is_err());
    }

    #[test]
    fn the_trace_must_agree_with_the_server_and_complete_every_send() {
        for pass in Pass::ALL {
            let copied = pass == Pass::PacketSocket;
            let good = figures(&stdout(200, 80, copied));
            assert!(judge(pass, &good).is_ok());
            let mut f = figures(&stdout(200, 80, copied));
            f.server_sends = 201;
            assert!(judge(pass, &f).is_err());
            let mut f = figures(&stdout(200, 80, copied));
            f.server_notifications = 79;
            assert!(judge(pass, &f).is_err());
            let mut f = figures(&stdout(200, 80, copied));
            f.summary_never_completed = 1;
            assert!(judge(pass, &f).is_err());
            let mut f = figures(&stdout(200, 80, copied));
            f.lost_events = 3;
            assert!(judge(pass, &f).is_err());
        }
        // A send whose completion never came.
        let text = stdout(2, 1, false).replacen(
            r#""completed_copied":false"#,
            r#""completed_copied":null"#,
            1,
        );
        let f = figures(&text);
        assert_eq!(f.sends_uncompleted, 1);
        assert!(judge(Pass::Plain, &f).is_err());
    }

    /// An io_uring pass's stdout: `sends` SENDMSG_ZC requests of 65552 bytes on ring
    /// 0xa, each with its result and its notification, all flagged `copied` or none;
    /// before them the server's start-up check, one byte on ring 0xb, flagged copied
    /// (loopback). The summary covers both rings.
    fn uring_stdout(sends: u64, copied: bool) -> String {
        let copied_sends = if copied { sends } else { 0 };
        let mut lines = vec![
            serde_json::json!({"event": "totals", "total": {
                "zerocopy_sends": sends,
                "copied_sends": copied_sends,
                "completion_notifications": sends,
            }})
            .to_string(),
            serde_json::json!({
                "lost_events": 0,
                "syscalls": [{"syscall": "recvfrom", "calls": 1}],
                "zerocopy": {"sends": 0},
                "io_uring": [{"opcode_name": "SENDMSG_ZC", "submitted": sends + 1,
                    "completed": sends + 1, "errors": 0, "zerocopy_notifications": sends + 1,
                    "after_call_copy_events": copied_sends + 1,
                    "after_call_copied_bytes": copied_sends * 65552 + 1,
                    "copies_per_call": (copied_sends + 1) as f64 / (sends + 1) as f64,
                    "copied_bytes_per_byte": 0.5}],
                "io_uring_zerocopy": {
                    "sends": sends + 1,
                    "completed_copied": copied_sends + 1,
                    "completed_not_copied": sends - copied_sends,
                    "never_completed_in_trace": 0,
                },
            })
            .to_string(),
        ];
        let mut request = |ring: &str, bytes: u64, copied: bool| {
            lines.push(
                serde_json::json!({"type": "io_uring_submit", "opcode_name": "SENDMSG_ZC",
                    "ring": ring, "zerocopy": {"sent_bytes": bytes, "notified": true,
                        "completed_copied": copied, "source": "reported"}})
                .to_string(),
            );
            lines.push(
                serde_json::json!({"type": "io_uring_complete", "opcode_name": "SENDMSG_ZC",
                    "ring": ring, "res": bytes, "notification": false})
                .to_string(),
            );
            lines.push(
                serde_json::json!({"type": "io_uring_complete", "opcode_name": "SENDMSG_ZC",
                    "ring": ring, "notification": true, "usage_zc_copied": copied})
                .to_string(),
            );
        };
        request("0xb", 1, true);
        for _ in 0..sends {
            request("0xa", 65552, copied);
        }
        lines.join("\n") + "\n"
    }

    fn uring_figures(text: &str) -> Figures {
        Figures::of(Sender::IoUring, &parse_traced_sender(text).unwrap())
    }

    #[test]
    fn io_uring_figures_come_from_its_submits_notifications_and_rows() {
        let f = uring_figures(&uring_stdout(200, false));
        assert_eq!((f.sends, f.sends_not_copied, f.sends_copied), (200, 200, 0));
        assert_eq!(f.sent_bytes, 200 * 65552);
        assert_eq!((f.notifications, f.summary_notifications), (200, 200));
        assert_eq!((f.sendmsg_calls, f.copies_per_call), (200, Some(0.0)));
        assert!(
            f.line().contains("200 SENDMSG_ZC/SEND_ZC submits"),
            "{}",
            f.line()
        );
        assert!(judge(Pass::Plain, &f).is_ok());
        let err = judge(Pass::Plain, &uring_figures(&uring_stdout(200, true)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("io_uring zero-copy sender over the tap"),
            "{err}"
        );
        assert!(judge(Pass::PacketSocket, &uring_figures(&uring_stdout(200, true))).is_ok());
        assert!(judge(
            Pass::PacketSocket,
            &uring_figures(&uring_stdout(200, false))
        )
        .is_err());
        // A notification that never came.
        let text = uring_stdout(3, false).replacen(r#""notified":true"#, r#""notified":false"#, 1);
        let text = text.replacen(
            r#""completed_copied":false"#,
            r#""completed_copied":null"#,
            1,
        );
        let f = uring_figures(&text);
        assert_eq!(f.sends_uncompleted, 1);
        assert!(judge(Pass::Plain, &f).is_err());
        // The error-queue reading of the same output finds no sends at all.
        let f = figures(&uring_stdout(200, false));
        assert!(judge(Pass::Plain, &f).is_err());
    }

    #[test]
    fn only_a_refused_connection_is_retried() {
        let refused_report = serde_json::json!({"messages": 0, "errors": [
            "thread 0: cannot connect to 169.254.202.2:7879: Connection refused (os error 111) \
             (is the server running?)"
        ]});
        assert!(refused(&refused_report));
        let reset = serde_json::json!({"messages": 0, "errors": ["Connection reset by peer"]});
        assert!(!refused(&reset));
        let partial = serde_json::json!({"messages": 3, "errors": ["Connection refused"]});
        assert!(!refused(&partial));
        assert!(!refused(&Value::Null));
    }

    #[test]
    fn the_guest_command_traces_a_server_that_ends_by_itself() {
        let plain =
            guest_command("m", "169.254.202.2", Sender::ErrorQueue, Pass::Plain).to_string();
        assert!(plain.contains("--exit-after 1"), "{plain}");
        assert!(plain.contains("cat /tmp/netcopy-zc-trace-plain/syscalls.jsonl"));
        assert!(!plain.contains("--packet-tap"));
        let tapped =
            guest_command("m", "169.254.202.2", Sender::ErrorQueue, Pass::PacketSocket).to_string();
        assert!(tapped.contains("--packet-tap eth0"), "{tapped}");
        let uring = guest_command("u", "169.254.202.2", Sender::IoUring, Pass::Plain).to_string();
        assert!(
            uring.contains("cat /tmp/netcopy-uring-zc-trace-plain/syscalls.jsonl"),
            "{uring}"
        );
    }
}
