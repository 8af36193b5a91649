//! What the figures say when put side by side: crossovers, findings, the correlation of
//! copies with CPU, and the study's questions answered.

use std::fmt::Write as _;

use super::text::{cell, completion_mode_names};
use crate::{
    experiment::analysis::{
        crossovers::Separation,
        findings::{Severity, HIGH_CV, NON_MONOTONIC_DROP},
        format::with_interval,
        groups::MIN_REPEATS_TO_DECIDE,
        Analysis,
    },
    experiment::results::Results,
    experiment::results::INTERVAL_METHOD,
    util::units::format_size,
};

pub(super) fn crossover_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "## Crossovers\n");
    let _ = writeln!(
        o,
        "Definition: at {} thread(s), for each size measured in both modes, the challenger is \
         *ahead* when its median over the repeats is strictly better than the baseline's \
         (higher throughput; lower {}). The crossover is the smallest size from which on \
         the challenger is ahead at that size **and every larger measured size**; a lead \
         that is lost again at a larger size does not count (it is listed as an earlier \
         lead). \"never\": the challenger is not ahead at the largest size measured. \
         Figures are median [interval] of the repeats ({INTERVAL_METHOD}). *Decided*: the \
         intervals are clear of each other at the crossover, at every larger size and at \
         the size just below it (for \"never\": at the largest size), each side with at \
         least {MIN_REPEATS_TO_DECIDE} repeats; otherwise *undecided*, and the order may be \
         noise.\n",
        a.base_threads.unwrap_or(1),
        a.cpu_metric.label()
    );
    if a.crossovers.is_empty() {
        let _ = writeln!(o, "No pair of modes was measured.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| challenger | baseline | metric | threads | crossover (bytes) | decided | earlier leads | per size (challenger vs baseline) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for x in &a.crossovers {
        let per: Vec<String> = x
            .compared
            .iter()
            .map(|c| {
                format!(
                    "{}: {} vs {} ({})",
                    format_size(c.size),
                    with_interval(&c.challenger),
                    with_interval(&c.baseline),
                    match c.separation {
                        Separation::Ahead => "ahead, decided",
                        Separation::Behind => "behind, decided",
                        Separation::Undecided if c.ahead => "ahead, undecided",
                        Separation::Undecided => "behind, undecided",
                    }
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            x.challenger,
            x.baseline,
            x.metric.key(),
            x.threads,
            x.point.bytes_text(),
            if x.decided { "decided" } else { "undecided" },
            if x.earlier_leads.is_empty() {
                "-".to_string()
            } else {
                x.earlier_leads
                    .iter()
                    .map(|s| format_size(*s))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            per.join("; "),
            x.metric.unit()
        );
    }
    o.push('\n');
}

/// The study's published figures beside this run's, with what differs and why.
pub(super) fn study_comparison_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "## The study side by side\n");
    let _ = writeln!(
        o,
        "Every figure the study gives as a number, or as a specific statement about a curve, \
         beside this run's (median [interval] of the repeats). The study reports one run per \
         point with no repeats, intervals or data volumes, on loopback, where the kernel \
         copies MSG_ZEROCOPY pages anyway; its claims about copies are answered below.\n"
    );
    if a.study_comparison.is_empty() {
        let _ = writeln!(o, "No cell was measured.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| figure | the study | this run | what differs, and why |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    for r in &a.study_comparison {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            cell(&r.figure),
            cell(&r.study),
            cell(&r.here),
            cell(&r.differs)
        );
    }
    o.push('\n');
}

pub(super) fn findings_section(o: &mut String, r: &Results, a: &Analysis) {
    let _ = writeln!(o, "## Findings\n");
    let _ = writeln!(
        o,
        "Flagged automatically: {} completions flagged copied; verification verdicts; \
         integrity errors; throughput falling by more than {:.0} % from one size to the next \
         larger one with intervals that do not overlap (non-monotonic); CV between repeats above {:.0} % (high variance); \
         hardware counters unavailable; kernel events not observable.\n",
        completion_mode_names(r, None),
        NON_MONOTONIC_DROP * 100.0,
        HIGH_CV * 100.0
    );
    if a.findings.is_empty() {
        let _ = writeln!(o, "None.\n");
    }
    for f in &a.findings {
        let tag = match f.severity {
            Severity::Headline => "important",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(o, "- [{tag}] {}", f.text);
    }
    o.push('\n');
}

pub(super) fn correlation_section(o: &mut String, a: &Analysis) {
    let c = &a.correlation;
    let _ = writeln!(
        o,
        "## Correlation: bytes copied per byte delivered vs CPU per byte\n"
    );
    let _ = writeln!(
        o,
        "Pearson r between each cell's `copies_per_byte` (sum of the copy sites / payload \
         bytes) and its {}, over every cell with both figures. `copies_per_byte` takes \
         about one value per mode, so r says whether the modes that copy more also cost more \
         CPU per byte, not why.\n",
        c.cpu.label()
    );
    match c.all.r {
        Some(r) => {
            let _ = writeln!(o, "- all cells: r = {r:.3} (n = {})", c.all.n);
        }
        None => {
            let _ = writeln!(
                o,
                "- all cells: undefined (n = {}; needs at least 3 cells and both figures varying)",
                c.all.n
            );
        }
    }
    if !c.per_size.is_empty() {
        let _ = writeln!(
            o,
            "- within one size (per-byte CPU falls with size whatever the copies, so the \
             overall r mixes the two): {}",
            c.per_size
                .iter()
                .filter_map(|(s, p)| Some(format!(
                    "{}: r = {:.3} (n = {})",
                    format_size(*s),
                    p.r?,
                    p.n
                )))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    o.push('\n');
}

pub(super) fn answers_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "## Answers to the study's questions\n");
    for ans in &a.answers {
        let _ = writeln!(
            o,
            "### {}\n\n{}\n\n*Basis:* {}\n",
            ans.question, ans.answer, ans.basis
        );
    }
}
