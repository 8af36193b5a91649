//! What the figures say when put side by side: crossovers, findings, the correlation of
//! copies with CPU, and the study's questions answered.

use std::fmt::Write as _;

use super::text::completion_mode_names;
use crate::{
    experiment::analysis::{
        crossovers::CrossoverPoint,
        findings::{Severity, HIGH_CV, NON_MONOTONIC_DROP},
        num, study, Analysis,
    },
    experiment::results::Results,
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
         \"ranges overlap\": the min-max ranges of the two modes' repeats overlap at that \
         size, so the order there may be noise.\n",
        a.base_threads.unwrap_or(1),
        a.cpu_metric.label()
    );
    if a.crossovers.is_empty() {
        let _ = writeln!(o, "No pair of modes was measured.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| challenger | baseline | metric | threads | crossover (bytes) | earlier leads | per size (challenger vs baseline) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for x in &a.crossovers {
        let per: Vec<String> = x
            .compared
            .iter()
            .map(|c| {
                format!(
                    "{}: {} vs {}{}",
                    format_size(c.size),
                    num(c.challenger),
                    num(c.baseline),
                    match (c.ahead, c.overlap) {
                        (true, false) => " (ahead)",
                        (true, true) => " (ahead, ranges overlap)",
                        (false, true) => " (ranges overlap)",
                        (false, false) => "",
                    }
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            x.challenger,
            x.baseline,
            x.metric.key(),
            x.threads,
            x.point.bytes_text(),
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
    for (x, said) in study::reported_crossovers(&a.crossovers) {
        let here = match x.point {
            CrossoverPoint::At(s) => format!("from {} on", format_size(s)),
            CrossoverPoint::Never => "never".to_string(),
            CrossoverPoint::NoData => "no data".to_string(),
        };
        let _ = writeln!(
            o,
            "- {} over {} in throughput here: {here} ({said}).",
            x.challenger, x.baseline
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
         larger one (non-monotonic); CV between repeats above {:.0} % (high variance); \
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
