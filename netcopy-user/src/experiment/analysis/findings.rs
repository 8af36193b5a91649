//! Findings: what a reader must know before trusting a figure, most important first.

use std::collections::BTreeMap;

use super::{
    format::{num, with_interval},
    groups::{planned_cells, Group, Stat},
    hardware::HwAvailability,
};
use crate::{
    experiment::results::Results,
    ledger::Verdict,
    util::units::format_size,
    workload::modes::{Mode, ModeSpec, MODES},
};

/// CV between repeats above which a group is flagged (10 %).
pub(crate) const HIGH_CV: f64 = 0.10;
/// Relative drop of median throughput from one size to the next larger one above which a
/// mode's throughput curve is flagged non-monotonic (10 %), when the intervals of the two
/// sizes also do not overlap (a drop within the noise is no finding).
pub(crate) const NON_MONOTONIC_DROP: f64 = 0.10;

/// How important a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    /// Belongs at the top of the report.
    Headline,
    Warning,
    Note,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FindingKind {
    Interrupted,
    ZeroCopyCopied,
    VerificationDegraded,
    VerificationMismatch,
    VerificationUnsupported,
    IntegrityErrors,
    NonMonotonicThroughput,
    HighVariance,
    HardwareCountersUnavailable,
    EventNotObservable,
    ZeroCopyNotCopied,
    /// What zero-copy receive mapped, per sending mode, and why not more.
    ReceiveMapped,
}

#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub(crate) kind: FindingKind,
    pub(crate) severity: Severity,
    pub(crate) text: String,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn group_label(g: &Group) -> String {
    format!("{} {} x{}", g.mode, format_size(g.size), g.threads)
}

/// The modes whose kernel reports each send's completion, saying whether it copied the
/// pages after all (MSG_ZEROCOPY): the ones a "copied" finding can be about.
pub(crate) fn completion_modes() -> impl Iterator<Item = &'static ModeSpec> {
    MODES.iter().filter(|s| s.claim.completions.is_some())
}

/// Flags what a reader must know, most important first.
pub(super) fn findings(results: &Results, groups: &[Group], hw: &HwAvailability) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |kind, severity, text: String| {
        out.push(Finding {
            kind,
            severity,
            text,
        })
    };

    if results.interrupted || !results.complete {
        push(
            FindingKind::Interrupted,
            Severity::Headline,
            format!(
                "the run was {}: {} of {} planned cells were measured; every figure below \
                 covers only those",
                if results.interrupted {
                    "interrupted"
                } else {
                    "not complete"
                },
                results.cells.len(),
                planned_cells(results)
            ),
        );
    }

    // Completions flagged copied, from the sweep itself, for each mode whose kernel reports
    // its sends' completions (MSG_ZEROCOPY).
    for spec in completion_modes() {
        let name = spec.name;
        let zc: Vec<&Group> = groups.iter().filter(|g| g.mode == spec.mode).collect();
        let completed: u64 = zc.iter().map(|g| g.zerocopy.completed_sends).sum();
        let copied: u64 = zc.iter().map(|g| g.zerocopy.copied_sends).sum();
        let copied_bytes: u64 = zc.iter().map(|g| g.zerocopy.copied_bytes).sum();
        let sends: u64 = zc.iter().map(|g| g.zerocopy.sends).sum();
        let unsent: u64 = zc.iter().map(|g| g.zerocopy.unsent_sends).sum();
        if copied > 0 {
            // A group where every send that left the socket was flagged: the sends freed
            // unsent when the client closed say nothing of the path.
            let cells_all = zc
                .iter()
                .filter(|g| {
                    let (sent, sent_copied) = g.zerocopy.sent_and_copied();
                    sent > 0 && sent_copied == sent
                })
                .count();
            let unsent_note = if unsent == 0 {
                String::new()
            } else {
                let (sent, sent_copied): (u64, u64) = zc
                    .iter()
                    .map(|g| g.zerocopy.sent_and_copied())
                    .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
                format!(
                    "; {unsent} of the completions were of sends that never left the socket \
                     (the kernel freed them unsent when the client stopped reading and \
                     closed, so they say nothing of the path): {sent_copied} of the {sent} \
                     sends that left were flagged"
                )
            };
            push(
                FindingKind::ZeroCopyCopied,
                Severity::Headline,
                format!(
                    "{name} did NOT avoid the copy: {copied} of {completed} completions \
                     (completed MSG_ZEROCOPY sends, of {sends} sent) were flagged \
                     SO_EE_CODE_ZEROCOPY_COPIED by the kernel, {copied_bytes} bytes in all \
                     (reported by the kernel in the completion notifications){unsent_note}; \
                     in {cells_all} of {} {name} groups every completion{} was flagged",
                    zc.len(),
                    if unsent == 0 {
                        ""
                    } else {
                        " of a send that left the socket"
                    }
                ),
            );
        } else if completed > 0 {
            push(
                FindingKind::ZeroCopyNotCopied,
                Severity::Note,
                format!(
                    "0 of {completed} {name} completions were flagged \
                     SO_EE_CODE_ZEROCOPY_COPIED: the kernel reports that it sent the pinned \
                     pages without copying them"
                ),
            );
        }
    }

    for ledger in &results.verification {
        match ledger.verdict {
            Verdict::Match => {}
            Verdict::Degraded => push(
                FindingKind::VerificationDegraded,
                // A receive mechanism that could map nothing behind a copying sender is
                // expected on every path: worth a warning, not the top of the report.
                if ledger
                    .findings
                    .first()
                    .is_some_and(|f| f.starts_with(crate::ledger::receive::NOTHING_MAPPED))
                {
                    Severity::Warning
                } else {
                    Severity::Headline
                },
                format!(
                    "verification of {}{}: degraded: {}",
                    ledger.mode,
                    match ledger.receiver.mechanism {
                        crate::workload::client::ReceiveMechanism::Copy => String::new(),
                        other => format!(" (receive {other})"),
                    },
                    ledger
                        .findings
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "no finding recorded".to_string())
                ),
            ),
            Verdict::Unsupported => push(
                FindingKind::VerificationUnsupported,
                Severity::Note,
                format!(
                    "{} was not measured: {}",
                    ledger.mode,
                    ledger
                        .findings
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "not supported by this kernel".to_string())
                ),
            ),
            Verdict::Mismatch => push(
                FindingKind::VerificationMismatch,
                Severity::Headline,
                format!(
                    "verification of {}: MISMATCH, the kernel's copies differ from the mode's \
                     claim in a way nothing explains: {}",
                    ledger.mode,
                    ledger
                        .findings
                        .iter()
                        .filter(|f| f.starts_with("MISMATCH"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
        }
    }

    let bad: Vec<String> = groups
        .iter()
        .filter(|g| g.integrity_errors > 0)
        .map(|g| format!("{} ({} errors)", group_label(g), g.integrity_errors))
        .collect();
    if !bad.is_empty() {
        push(
            FindingKind::IntegrityErrors,
            Severity::Headline,
            format!(
                "integrity errors (wrong checksum, sequence or stamp) in {} groups: {}",
                bad.len(),
                bad.join(", ")
            ),
        );
    }

    // Non-monotonic throughput over size, per mode and thread count.
    let mut series: BTreeMap<(Mode, usize), Vec<(u64, Stat)>> = BTreeMap::new();
    for g in groups {
        if let Some(t) = g.throughput_gbps {
            series
                .entry((g.mode, g.threads))
                .or_default()
                .push((g.size, t));
        }
    }
    for ((mode, threads), mut pts) in series {
        pts.sort_by_key(|p| p.0);
        for w in pts.windows(2) {
            let ((s0, a), (s1, b)) = (w[0], w[1]);
            let fell = a.median > 0.0 && b.median < a.median * (1.0 - NON_MONOTONIC_DROP);
            if fell && b.decided_order(&a) == Some(std::cmp::Ordering::Less) {
                push(
                    FindingKind::NonMonotonicThroughput,
                    Severity::Warning,
                    format!(
                        "{mode}, {threads} thread(s): median throughput fell from {} Gbit/s at \
                         {} to {} Gbit/s at {} ({}; the intervals do not overlap)",
                        with_interval(&a),
                        format_size(s0),
                        with_interval(&b),
                        format_size(s1),
                        pct(b.median / a.median - 1.0),
                    ),
                );
            }
        }
    }

    for (what, f) in [
        (
            "throughput",
            (|g: &Group| g.throughput_gbps) as fn(&Group) -> Option<Stat>,
        ),
        ("server+client CPU per byte", |g: &Group| {
            g.total_ns_per_byte
        }),
    ] {
        let noisy: Vec<String> = groups
            .iter()
            .filter_map(|g| {
                let s = f(g)?;
                let cv = s.cv?;
                (cv > HIGH_CV).then(|| {
                    format!(
                        "{} (CV {}, {}-{})",
                        group_label(g),
                        pct(cv),
                        num(s.min),
                        num(s.max)
                    )
                })
            })
            .collect();
        if !noisy.is_empty() {
            let with_cv = groups
                .iter()
                .filter(|g| f(g).and_then(|s| s.cv).is_some())
                .count();
            push(
                FindingKind::HighVariance,
                Severity::Warning,
                format!(
                    "high variance between repeats of {what} (CV above {}) in {} of {with_cv} \
                     groups: {}",
                    pct(HIGH_CV),
                    noisy.len(),
                    noisy.join(", ")
                ),
            );
        }
    }

    if hw.cells > 0 && hw.none_available() {
        push(
            FindingKind::HardwareCountersUnavailable,
            Severity::Warning,
            format!(
                "hardware counters (cycles, cache misses) were unavailable in all {} cells, so \
                 cycles per byte and cache misses are not reported: {}",
                hw.cells,
                hw.reason_text()
            ),
        );
    } else if hw.cycles_cells < hw.cells || hw.cache_cells < hw.cells {
        push(
            FindingKind::HardwareCountersUnavailable,
            Severity::Note,
            format!(
                "hardware counters were partly unavailable: cycles in {} of {} cells, cache \
                 misses in {} of {} cells: {}",
                hw.cycles_cells,
                hw.cells,
                hw.cache_cells,
                hw.cells,
                hw.reason_text()
            ),
        );
    }

    for e in &results.plan.events {
        if e.strategy.is_none() {
            let why: Vec<String> = e
                .rejected
                .iter()
                .map(|(label, reason)| format!("{label}: {reason}"))
                .collect();
            push(
                FindingKind::EventNotObservable,
                Severity::Note,
                format!(
                    "kernel event {} was not observable on this kernel ({})",
                    e.event,
                    if why.is_empty() {
                        "no strategy was tried".to_string()
                    } else {
                        why.join("; ")
                    }
                ),
            );
        }
    }

    out.sort_by_key(|f| (f.severity, f.kind));
    out
}
