//! The client's report: the threads' tallies merged, latency percentiles, and its text form.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{
    config::{ClientConfig, Pattern, ReceiveMechanism, Verification},
    receive::{ThreadOutcome, MAX_REPORTED_ERRORS},
    zerocopy::ZeroCopyReceiveFigures,
};
use crate::{util::units::format_size, workload::modes::Mode};

/// What the latency samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    RoundTrip,
    ArrivalInterval,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: u64,
}

/// The result of a client run (complete or partial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// The server's mode from its reply; `None` if no reply arrived.
    pub mode: Option<Mode>,
    pub size: u64,
    pub threads: usize,
    pub pattern: Pattern,
    /// What was checked of every message (older reports: full).
    #[serde(default = "full_verification")]
    pub verification: Verification,
    /// Complete, verified messages.
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    pub seconds: f64,
    /// Payload bits per second / 1e9.
    pub throughput_gbps: f64,
    pub latency_kind: LatencyKind,
    pub latency_us: LatencySummary,
    /// Messages with a wrong checksum, sequence number or stamp.
    pub integrity_errors: u64,
    pub requests_sent: u64,
    pub request_bytes_sent: u64,
    pub reply_header_bytes: u64,
    pub reply_error_text_bytes: u64,
    /// Header bytes of the complete messages (verified or not).
    pub message_header_bytes: u64,
    /// Every byte read from the server.
    pub received_bytes: u64,
    /// Bytes read but not counted above: a partial last message thrown away at the end of
    /// a duration run, and the payloads of messages that failed verification.
    pub discarded_bytes: u64,
    /// What went wrong, per thread (at most a few).
    pub errors: Vec<String>,
    /// How the bytes were taken from the sockets (older reports: copy).
    #[serde(default)]
    pub recv: ReceiveMechanism,
    /// `--recv zerocopy`: what the kernel mapped and copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerocopy_receive: Option<ZeroCopyReceiveReport>,
}

/// What `--recv zerocopy` got from the kernel, in all and per connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZeroCopyReceiveReport {
    /// False on a kernel without TCP_ZEROCOPY_RECEIVE (or without the mapping of a TCP
    /// socket); `unsupported` says why, and nothing was received.
    pub supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    pub total: ZeroCopyReceiveFigures,
    /// One per connection, in thread order.
    pub connections: Vec<ZeroCopyReceiveFigures>,
}

fn full_verification() -> Verification {
    Verification::Full
}

impl ClientReport {
    pub(super) fn empty(config: &ClientConfig) -> Self {
        ClientReport {
            mode: None,
            size: config.size,
            threads: config.threads,
            pattern: config.pattern,
            verification: config.verification,
            messages: 0,
            bytes: 0,
            seconds: 0.0,
            throughput_gbps: 0.0,
            latency_kind: latency_kind(config.pattern),
            latency_us: LatencySummary::default(),
            integrity_errors: 0,
            requests_sent: 0,
            request_bytes_sent: 0,
            reply_header_bytes: 0,
            reply_error_text_bytes: 0,
            message_header_bytes: 0,
            received_bytes: 0,
            discarded_bytes: 0,
            errors: Vec::new(),
            recv: config.recv,
            zerocopy_receive: (config.recv == ReceiveMechanism::ZeroCopy).then(|| {
                ZeroCopyReceiveReport {
                    supported: true,
                    ..Default::default()
                }
            }),
        }
    }
}

fn latency_kind(pattern: Pattern) -> LatencyKind {
    match pattern {
        Pattern::Stream => LatencyKind::ArrivalInterval,
        Pattern::Rr => LatencyKind::RoundTrip,
    }
}

/// A failed run: what went wrong, and what was measured before.
#[derive(Debug, Clone)]
pub struct ClientFailure {
    pub message: String,
    /// Boxed: a report is large and failures are rare.
    pub report: Box<ClientReport>,
}

impl std::fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientFailure {}

pub(super) fn merge(config: &ClientConfig, outcomes: &[ThreadOutcome]) -> ClientReport {
    let mut report = ClientReport::empty(config);
    let mut histogram: Option<Histogram<u64>> = Histogram::new(3).ok();
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for outcome in outcomes {
        report.mode = report.mode.or(outcome.mode);
        report.messages += outcome.messages;
        report.bytes += outcome.bytes;
        report.integrity_errors += outcome.integrity_errors;
        report.requests_sent += outcome.requests_sent;
        report.request_bytes_sent += outcome.request_bytes_sent;
        report.reply_header_bytes += outcome.reply_header_bytes;
        report.reply_error_text_bytes += outcome.reply_error_text_bytes;
        report.message_header_bytes += outcome.message_header_bytes;
        report.received_bytes += outcome.received_bytes;
        report.discarded_bytes += outcome.discarded_bytes;
        if let (Some(zc), Some(mine)) = (report.zerocopy_receive.as_mut(), &outcome.zerocopy) {
            zc.total.add(mine);
            zc.connections.push(*mine);
        }
        for note in outcome.integrity_notes.iter().chain(outcome.error.iter()) {
            if report.errors.len() < MAX_REPORTED_ERRORS {
                report.errors.push(note.clone());
            }
        }
        if let (Some(total), Some(mine)) = (histogram.as_mut(), outcome.histogram.as_ref()) {
            let _ = total.add(mine);
        }
        first_start = match (first_start, outcome.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_end = match (last_end, outcome.ended) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let (Some(start), Some(end)) = (first_start, last_end) {
        report.seconds = end.saturating_duration_since(start).as_secs_f64();
    }
    if report.seconds > 0.0 {
        report.throughput_gbps = report.bytes as f64 * 8.0 / report.seconds / 1e9;
    }
    if let Some(histogram) = histogram.filter(|h| !h.is_empty()) {
        let us = |nanos: u64| nanos as f64 / 1000.0;
        report.latency_us = LatencySummary {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
            samples: histogram.len(),
        };
    }
    report
}

/// The human-readable report.
pub fn report_text(report: &ClientReport) -> String {
    let mode = report
        .mode
        .map(|m| m.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let kind = match report.latency_kind {
        LatencyKind::RoundTrip => "round trip",
        LatencyKind::ArrivalInterval => "arrival interval",
    };
    let l = &report.latency_us;
    format!(
        "mode {mode}, size {}, threads {}, pattern {}: {} messages, {} payload bytes in {:.3} s = {:.3} Gbit/s\n\
         latency ({kind}, us): p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}, mean {:.1} ({} samples)\n\
         integrity errors: {}{}\n\
         protocol bytes: requests {}, reply headers {}, error text {}, message headers {}; received {} (discarded {})",
        format_size(report.size),
        report.threads,
        match report.pattern {
            Pattern::Stream => "stream",
            Pattern::Rr => "rr",
        },
        report.messages,
        report.bytes,
        report.seconds,
        report.throughput_gbps,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        l.mean,
        l.samples,
        report.integrity_errors,
        match report.verification {
            Verification::Full => "",
            Verification::Framing => " (framing only: payload checksums not checked)",
        },
        report.request_bytes_sent,
        report.reply_header_bytes,
        report.reply_error_text_bytes,
        report.message_header_bytes,
        report.received_bytes,
        report.discarded_bytes,
    ) + &receive_text(report)
}

/// The receive mechanism's line, for `--recv zerocopy`.
fn receive_text(report: &ClientReport) -> String {
    let Some(zc) = &report.zerocopy_receive else {
        return String::new();
    };
    if !zc.supported {
        return format!(
            "\nreceive zerocopy: {}",
            zc.unsupported
                .as_deref()
                .unwrap_or("not supported by this kernel")
        );
    }
    let line = |f: &ZeroCopyReceiveFigures| {
        format!(
            "mapped {} ({}), copied {} (copy buffer {}, after skip hint {}); {} getsockopt, {} recv",
            f.mapped_bytes,
            f.mapped_fraction()
                .map_or("-".to_string(), |p| format!("{:.3}%", p * 100.0)),
            f.copied_bytes(),
            f.copybuf_bytes,
            f.skip_hint_bytes,
            f.getsockopt_calls,
            f.recv_calls
        )
    };
    let mut out = format!("\nreceive zerocopy: {}", line(&zc.total));
    if zc.connections.len() > 1 {
        for (index, connection) in zc.connections.iter().enumerate() {
            out.push_str(&format!("\n  connection {index}: {}", line(connection)));
        }
    }
    out
}
