//! How the run was made: the machine and kernel, how each kernel event was observed, and
//! the exact verification of every mode's copies that opens the run.

use std::{
    fmt::Write as _,
    time::{Duration, UNIX_EPOCH},
};

use super::text::cell;
use crate::{
    experiment::analysis::num,
    experiment::placement::Placement,
    experiment::results::{Results, TopologyKind},
    util::{time::rfc3339, units::format_size},
};

pub(super) fn machine_section(o: &mut String, r: &Results) {
    let m = &r.machine;
    let _ = writeln!(o, "## Machine and kernel\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| host | {} |", cell(&m.hostname));
    let _ = writeln!(o, "| kernel | {} |", cell(&m.kernel));
    let _ = writeln!(o, "| CPUs | {} ({}) |", m.cpus, cell(&m.cpu_model));
    let _ = writeln!(
        o,
        "| memory | {:.1} GiB |",
        m.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(
        o,
        "| hardware counters | {} |",
        if m.perf_hw_available {
            "available".to_string()
        } else {
            format!("unavailable: {}", cell(&m.perf_hw_reason))
        }
    );
    let _ = writeln!(o, "| topology | {} |", cell(&r.topology.text()));
    if let Some(agent) = &r.topology.agent {
        let _ = writeln!(
            o,
            "| sender's host | {}, kernel {}, behind netcopy agent at {}: the server's copies, \
             CPU time and counters were counted there, the client's here |",
            cell(&agent.hostname),
            cell(&agent.kernel),
            cell(&agent.address)
        );
    }
    let _ = writeln!(o, "| started | {} |", unix_time(r.started_at_unix));
    let _ = writeln!(
        o,
        "| finished | {} |",
        r.finished_at_unix
            .map(unix_time)
            .unwrap_or_else(|| "not finished".to_string())
    );
    let _ = writeln!(
        o,
        "| state | {} |",
        match (r.complete, r.interrupted) {
            (true, _) => "complete",
            (false, true) => "interrupted",
            (false, false) => "not complete",
        }
    );
    let c = &r.config;
    let _ = writeln!(
        o,
        "| plan | modes {}; sizes {}; threads {}; {} repeat(s); stream {} s and \
         request/response {} s per cell{} |",
        c.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        c.sizes
            .iter()
            .map(|s| format_size(*s))
            .collect::<Vec<_>>()
            .join(", "),
        c.threads
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        c.repeat,
        num(c.stream_seconds),
        num(c.rr_seconds),
        if c.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(o, "| phases | {} |", cell(&phases_text(r)));
    let _ = writeln!(
        o,
        "| order | {} |",
        if c.interleaved {
            "for each size and thread count, the repeats round-robin across the modes, the \
             mode order rotating by one each repeat"
        } else {
            "every cell of one mode after another (before schema 2)"
        }
    );
    let remote = if r.topology.kind == TopologyKind::Remote {
        " (--pin placed this host's processes only: the server ran on the agent's host, \
         where its scheduler put it)"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "| placement | --pin {}: {}{remote} |\n",
        c.pin,
        cell(&placement_text(r))
    );
}

/// How long each phase of the run lasts, so that a reader can judge what a figure rests on.
fn phases_text(r: &Results) -> String {
    let c = &r.config;
    let mut parts = Vec::new();
    if let Some(w) = r.verification.first().map(|l| &l.workload) {
        parts.push(format!(
            "verification: {} messages of {} per mode, copies counted exactly",
            w.messages,
            format_size(w.message_size)
        ));
    }
    if let Some(f) = &r.machine_floor {
        parts.push(format!(
            "machine floor: {} s of 1-byte ping-pong per placement and repeat",
            num(f.seconds)
        ));
    }
    parts.push(format!(
        "each cell: a stream phase of {} s (throughput, copies, CPU), a request/response \
         phase of {} s (latency), each with a server of its own",
        num(c.stream_seconds),
        num(c.rr_seconds)
    ));
    if r.cells.iter().any(|c| c.trace_sample.is_some()) {
        parts.push(if r.topology.kind == TopologyKind::Remote {
            "and a short traced sample with a server of its own (not measured; the client's \
             calls only: the server ran on the agent's host)"
                .to_string()
        } else {
            "and a short traced sample with a server of its own (not measured)".to_string()
        });
    }
    parts.join("; ")
}

/// Where the cells' server and client ran: one line per distinct placement.
fn placement_text(r: &Results) -> String {
    let mut seen: Vec<(Option<&Placement>, usize)> = Vec::new();
    for c in &r.cells {
        match seen.iter_mut().find(|(p, _)| *p == c.placement.as_ref()) {
            Some((_, n)) => *n += 1,
            None => seen.push((c.placement.as_ref(), 1)),
        }
    }
    if seen.is_empty() {
        return "no cell measured".to_string();
    }
    seen.iter()
        .map(|(p, n)| {
            let what = p
                .map(|p| p.describe())
                .unwrap_or_else(|| "not recorded (unpinned: before schema 2)".to_string());
            if seen.len() == 1 {
                format!("{what}, in every cell")
            } else {
                format!("{what} in {n} cells")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn plan_section(o: &mut String, r: &Results) {
    let _ = writeln!(
        o,
        "## Probe strategies: how each kernel event was observed\n"
    );
    if r.plan.events.is_empty() {
        let _ = writeln!(o, "No attach plan was recorded.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| event | strategy used | sites (how obtained) | better strategies rejected (why) |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    for e in &r.plan.events {
        let sources = if e.sources.is_empty() {
            "-".to_string()
        } else {
            e.sources
                .iter()
                .map(|(s, how)| format!("{s}: {how}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let rejected = if e.rejected.is_empty() {
            "-".to_string()
        } else {
            e.rejected
                .iter()
                .map(|(l, why)| format!("{l}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            cell(&e.event),
            e.strategy
                .as_deref()
                .map(cell)
                .unwrap_or_else(|| "**not observable**".to_string()),
            cell(&sources),
            cell(&rejected)
        );
    }
    o.push('\n');
}

pub(super) fn verification_section(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Verification: expected vs observed copies per mode\n");
    if r.verification.is_empty() {
        let _ = writeln!(o, "No verification was recorded in this run.\n");
        return;
    }
    let _ = writeln!(
        o,
        "Expected: what the mode's claim implies (payload + protocol bytes). Observed: what \
         the kernel (or the sender) counted. A site that cannot be observed on this kernel \
         says so.\n"
    );
    for l in &r.verification {
        let _ = writeln!(
            o,
            "### {}{}: {}{}\n",
            l.mode,
            receive_suffix(l.receiver.mechanism),
            format!("{:?}", l.verdict).to_lowercase(),
            crate::ledger::causes::beside_verdict(&l.causes)
        );
        let w = &l.workload;
        let _ = writeln!(
            o,
            "{} messages of {} B, {} request(s).\n",
            w.messages, w.message_size, w.requests
        );
        let _ = writeln!(
            o,
            "| site | expected bytes | observed bytes | calls | source | agrees | how |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        let mut names: Vec<&String> = l.sites.keys().collect();
        names.sort_by_key(|n| {
            crate::ledger::SITES
                .iter()
                .position(|s| s.name() == n.as_str())
                .unwrap_or(usize::MAX)
        });
        for n in names {
            let f = &l.sites[n];
            let _ = writeln!(
                o,
                "| {} | {} ({} + {}) | {} | {} | {} | {} | {} |",
                cell(n),
                f.expected_bytes,
                f.expected_payload_bytes,
                f.expected_protocol_bytes,
                f.observed_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "unavailable".to_string()),
                f.calls.map(|c| c.to_string()).unwrap_or_default(),
                f.source.name(),
                match f.agrees() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                },
                cell(&f.how)
            );
        }
        o.push('\n');
        for f in &l.findings {
            let _ = writeln!(o, "- {}", f);
        }
        if !l.findings.is_empty() {
            o.push('\n');
        }
        for cause in l.causes.iter().filter(|c| !c.callers.is_empty()) {
            let _ = writeln!(
                o,
                "Callers of `skb_copy_ubufs` behind {} ({}):\n",
                cause.cause.kind(),
                cause.source.name()
            );
            let _ = writeln!(o, "| copies | bytes | caller chain (innermost first) |");
            let _ = writeln!(o, "|---|---|---|");
            for chain in &cause.callers {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} |",
                    chain.copies,
                    chain.bytes,
                    cell(&chain.callers.join(" <- "))
                );
            }
            o.push('\n');
        }
    }
}

/// `, receive zerocopy` after a mode received other than with recv(); nothing for copy
/// (so that copy-only runs read as before).
pub(super) fn receive_suffix(recv: crate::workload::client::ReceiveMechanism) -> String {
    match recv {
        crate::workload::client::ReceiveMechanism::Copy => String::new(),
        other => format!(", receive {other}"),
    }
}

/// `2023-11-14 22:13:20 UTC`: a time of results.json (seconds since the Unix epoch).
fn unix_time(t: u64) -> String {
    // humantime writes dates up to the end of year 9999; a later one is no time a run can
    // have, so it is printed as recorded rather than made into a date.
    const YEAR_10000: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_secs(t)) {
        Some(at) if t < YEAR_10000 => {
            let iso = rfc3339(at);
            let iso = iso.strip_suffix('Z').unwrap_or(&iso);
            format!("{} UTC", iso.replacen('T', " ", 1))
        }
        _ => format!("{t} s after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_is_utc_civil() {
        assert_eq!(unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(
            unix_time(u64::MAX),
            format!("{} s after the Unix epoch", u64::MAX)
        );
    }
}
