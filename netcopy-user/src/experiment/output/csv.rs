//! `results.csv`: one row per cell, flat columns, for spreadsheets and scripts; an
//! unavailable figure is an empty field, never 0.

use crate::{
    experiment::analysis::groups::site_names,
    experiment::placement::cpu_list_text,
    experiment::results::{Cell, Results},
    kernel::perf::CounterKind,
};

/// The CSV file in a results directory.
pub(super) const CSV_FILE: &str = "results.csv";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV's header, in column order.
fn csv_header(results: &Results) -> Vec<String> {
    let mut h: Vec<String> = [
        "mode",
        "size",
        "threads",
        "repeat",
        "throughput_gbps",
        "stream_messages",
        "stream_payload_bytes",
        "stream_seconds",
        "stream_integrity_errors",
        "stream_discarded_bytes",
        "latency_kind",
        "latency_transactions",
        "latency_p50_us",
        "latency_p90_us",
        "latency_p99_us",
        "latency_p999_us",
        "latency_max_us",
        "latency_mean_us",
        "latency_samples",
        "latency_integrity_errors",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for site in site_names(results) {
        for col in [
            "bytes",
            "calls",
            "bytes_per_message",
            "source",
            "counted_on",
        ] {
            h.push(format!("{site}_{col}"));
        }
    }
    h.extend(
        [
            "copies_per_byte",
            "zc_sends",
            "zc_notifications",
            "zc_completed_sends",
            "zc_copied_sends",
            "zc_copied_bytes",
            "zc_enobufs_retries",
            "zc_unsent_sends",
            "zc_unsent_copied_sends",
            "server_cpu_ns",
            "client_cpu_ns",
            "cpu_source",
            "server_ns_per_byte",
            "total_ns_per_byte",
            "cycles_per_byte",
            "llc_misses_per_mib",
            "hw_unavailable_reason",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for who in ["server", "client"] {
        for kind in CounterKind::ALL {
            h.push(format!("{who}_{}", kind.name()));
        }
    }
    h.push("trace_sample".to_string());
    // Where the cell ran; empty when unpinned or not recorded.
    h.push("server_cpus".to_string());
    h.push("client_cpus".to_string());
    // How the client received, and what zero-copy receive got copied; empty for copy.
    for col in ["recv", "recv_copybuf_bytes", "recv_skip_hint_bytes"] {
        h.push(col.to_string());
    }
    // Where the ends ran: loopback, netns (two namespaces) or remote (two hosts).
    h.push("topology".to_string());
    h
}

/// The host(s) whose kernel counted a figure, `+` between two; a figure from before
/// results.json recorded it was counted on the run's own host.
fn counted_on(results: &Results, hosts: &[String]) -> String {
    if hosts.is_empty() {
        results.machine.hostname.clone()
    } else {
        hosts.join("+")
    }
}

fn csv_row(results: &Results, c: &Cell) -> Vec<String> {
    let l = &c.latency.latency_us;
    let mut r = vec![
        c.mode.name().to_string(),
        c.size.to_string(),
        c.threads.to_string(),
        c.repeat.to_string(),
        c.stream.throughput_gbps.to_string(),
        c.stream.messages.to_string(),
        c.stream.payload_bytes.to_string(),
        c.stream.seconds.to_string(),
        c.stream.integrity_errors.to_string(),
        c.stream.discarded_bytes.to_string(),
        serde_json::to_value(c.latency.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        c.latency.transactions.to_string(),
    ];
    let has_latency = c.latency.transactions > 0 || l.samples > 0;
    for v in [l.p50, l.p90, l.p99, l.p999, l.max, l.mean] {
        r.push(if has_latency {
            v.to_string()
        } else {
            String::new()
        });
    }
    r.push(l.samples.to_string());
    r.push(c.latency.integrity_errors.to_string());
    for site in site_names(results) {
        match c.copies.get(&site) {
            Some(f) => {
                r.push(opt(f.bytes));
                r.push(opt(f.calls));
                r.push(opt(f.bytes_per_message));
                r.push(f.source.name().to_string());
                r.push(counted_on(results, &f.counted_on));
            }
            None => {
                r.extend([String::new(), String::new(), String::new()]);
                r.push("not recorded".to_string());
                r.push(String::new());
            }
        }
    }
    let z = &c.zerocopy;
    r.push(opt(c.copies_per_byte));
    for v in [
        z.sends,
        z.notifications,
        z.completed_sends,
        z.copied_sends,
        z.copied_bytes,
        z.enobufs_retries,
        z.unsent_sends,
        z.unsent_copied_sends,
    ] {
        r.push(v.to_string());
    }
    r.push(opt(c.cpu.server_cpu_ns));
    r.push(opt(c.cpu.client_cpu_ns));
    r.push(c.cpu.source.clone());
    r.push(opt(c.cpu.server_ns_per_byte));
    r.push(opt(c.cpu.total_ns_per_byte));
    r.push(opt(c.cpu.cycles_per_byte));
    r.push(opt(c.cpu.llc_misses_per_mib));
    r.push(c.cpu.hw_unavailable_reason.clone().unwrap_or_default());
    for readings in [&c.server_counters, &c.client_counters] {
        for kind in CounterKind::ALL {
            // Unavailable (or not read): an empty field, never 0.
            r.push(opt(readings.as_ref().and_then(|rd| rd.get(kind).value())));
        }
    }
    r.push(c.trace_sample.clone().unwrap_or_default());
    let placement = c.placement.clone().unwrap_or_default();
    r.push(cpu_list_text(&placement.server_cpus));
    r.push(cpu_list_text(&placement.client_cpus));
    r.push(c.recv.to_string());
    r.push(opt(c.zerocopy_receive.map(|z| z.copybuf_bytes)));
    r.push(opt(c.zerocopy_receive.map(|z| z.skip_hint_bytes)));
    r.push(c.topology.name().to_string());
    r
}

/// One row per cell, flat columns; unavailable figures are empty fields.
pub(super) fn render_csv(results: &Results) -> String {
    let mut out = String::new();
    let line = |fields: Vec<String>| {
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    };
    out.push_str(&line(csv_header(results)));
    out.push('\n');
    for c in &results.cells {
        out.push_str(&line(csv_row(results, c)));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
