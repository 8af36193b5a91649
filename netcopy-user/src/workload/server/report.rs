//! What a server's connections did, one report each and their sums, and the text that
//! `netcopy server` prints at its end.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::workload::modes::{Mode, SenderStats};

/// What one connection did. The sender's statistics are flattened into the same object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub id: u64,
    pub peer: String,
    /// Complete request headers received (valid or not).
    pub requests: u64,
    /// Every request byte read, including a truncated last header.
    pub request_bytes_received: u64,
    /// Reply header bytes sent (16 per answered request).
    pub reply_header_bytes: u64,
    /// Error text bytes sent after error reply headers.
    pub reply_error_text_bytes: u64,
    /// Rejected requests, truncated headers and failed sends other than a vanished client.
    pub errors: u64,
    /// Why the connection ended.
    pub end: String,
    /// Set when zero-copy completions did not all arrive in time.
    pub completion_warning: Option<String>,
    #[serde(flatten)]
    pub sender: SenderStats,
}

/// Sums over all connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionTotals {
    pub connections: u64,
    pub requests: u64,
    pub request_bytes_received: u64,
    pub reply_header_bytes: u64,
    pub reply_error_text_bytes: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub sender: SenderStats,
}

impl ConnectionTotals {
    pub(super) fn add(&mut self, report: &ConnectionReport) {
        self.connections += 1;
        self.requests += report.requests;
        self.request_bytes_received += report.request_bytes_received;
        self.reply_header_bytes += report.reply_header_bytes;
        self.reply_error_text_bytes += report.reply_error_text_bytes;
        self.errors += report.errors;
        self.sender.add(&report.sender);
    }
}

/// What [`Server::run`](super::Server::run) returns and `--json` prints as the `totals` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerTotals {
    pub mode: Mode,
    pub addr: SocketAddr,
    /// The first [`LISTED_CONNECTIONS`] connections to end, by id; `total` counts all.
    pub connections: Vec<ConnectionReport>,
    /// Connections counted in `total` but not listed: a long-running server must not keep
    /// a report per connection it ever served.
    #[serde(default)]
    pub unlisted_connections: u64,
    pub total: ConnectionTotals,
}

/// Connection reports a server keeps for its totals; later ones are only added up.
pub const LISTED_CONNECTIONS: usize = 1024;

/// The human-readable totals.
pub fn totals_text(totals: &ServerTotals) -> String {
    let mut text = format!(
        "netcopy server: stopped; mode {}, {} connections{}\n",
        totals.mode,
        totals.total.connections,
        if totals.unlisted_connections > 0 {
            format!(" ({} not listed)", totals.unlisted_connections)
        } else {
            String::new()
        }
    );
    let line = |label: &str, requests: u64, errors: u64, s: &SenderStats| {
        let mut line = format!(
            "  {label}: requests {requests}, messages {}, payload bytes {}, header bytes {}, errors {errors}",
            s.messages, s.payload_bytes, s.header_bytes
        );
        if totals.mode.spec().claim.completions.is_some() {
            line.push_str(&format!(
                ", zero-copy sends {}, completions {} ({} notifications), flagged copied {}, copied bytes {}",
                s.zerocopy_sends, s.completed_sends, s.completion_notifications, s.copied_sends, s.copied_bytes
            ));
        }
        line.push('\n');
        line
    };
    for c in &totals.connections {
        text.push_str(&line(
            &format!("connection {} ({}, {})", c.id, c.peer, c.end),
            c.requests,
            c.errors,
            &c.sender,
        ));
    }
    text.push_str(&line(
        "total",
        totals.total.requests,
        totals.total.errors,
        &totals.total.sender,
    ));
    text.trim_end().to_string()
}
