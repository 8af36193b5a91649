//! The study's questions answered in English from the analysis, as far as the data can
//! answer them, each with the basis of its figures. A comparison ("wins", "lower",
//! "from this size on") is said to be *decided* only where the repeats' intervals do not
//! overlap, and *undecided* otherwise, with the figures either way.
//!
//! One file per kind of question: [`wins`] (who wins where, does zero-copy save CPU),
//! [`claims`] (what the kernel copied, the study's claims about copies), [`crossover`]
//! (from which size a mode overtakes another); this file asks them in order, with the
//! questions on caches and threads.

mod claims;
mod crossover;
mod wins;

use std::collections::BTreeSet;

use super::{
    copies::ModeCopies,
    crossovers::{crossover_pairs, Crossover},
    format::with_interval,
    groups::{find_group, modes_of, CpuMetric, Group},
    hardware::HwAvailability,
    study,
};
use crate::{experiment::results::Results, util::units::format_size, workload::modes::Mode};

/// What the answers are drawn from: the analysis up to, not including, its answers.
pub(super) struct Inputs<'a> {
    pub(super) groups: &'a [Group],
    pub(super) cpu_metric: CpuMetric,
    pub(super) base_threads: Option<usize>,
    pub(super) reference_size: Option<u64>,
    pub(super) crossovers: &'a [Crossover],
    pub(super) hw: &'a HwAvailability,
    pub(super) copies: &'a [ModeCopies],
}

/// An answer to one of the study's questions.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) question: String,
    pub(crate) answer: String,
    /// How the figures behind the answer were obtained.
    pub(crate) basis: String,
}

/// Answers to the study's analysis questions (and to its two claims about copies), as far
/// as the data can answer them.
pub(super) fn answers(results: &Results, a: &Inputs<'_>) -> Vec<Answer> {
    let mut out = Vec::new();
    let Some(threads) = a.base_threads else {
        out.push(Answer {
            question: "Any".to_string(),
            answer: "No cell was measured, so no question can be answered.".to_string(),
            basis: "results.json holds no cells".to_string(),
        });
        return out;
    };
    let groups = a.groups;

    // Which mode wins where.
    out.push(wins::which_mode_wins(a, threads));

    // Does zero-copy reduce CPU per byte here? Asked of each mode of the run that claims
    // no copy, against the modes it challenges.
    for spec in study::zero_copy_modes().filter(|s| results.config.modes.contains(&s.mode)) {
        out.push(wins::zero_copy_cpu_answer(
            a,
            spec,
            threads,
            results.topology.kind,
        ));
    }

    // What the kernel copied per mode.
    out.push(claims::copies_answer(results, a));

    // The study's claim: sendmsg with an iovec avoids the kernel copy.
    for spec in study::iovec_modes() {
        if let Some(one) = copies_of(a, spec.mode) {
            out.push(claims::iovec_claim_answer(one));
        }
    }

    // The study's claim: zero-copy to a local socket avoids the copy.
    for spec in study::zero_copy_modes() {
        if let Some(zc) = copies_of(a, spec.mode) {
            out.push(claims::zero_copy_claim_answer(
                zc,
                &claims::completions(groups, spec.mode),
                results.topology.kind,
            ));
        }
    }

    // Crossover questions: each challenger over the baselines of the study's comparisons.
    for pair in crossover_pairs().filter(|&(_, baseline)| study::is_reference(baseline)) {
        out.push(crossover::crossover_answer(a.crossovers, pair));
    }

    // Cache levels.
    let cache_answer =
        if a.hw.cache_cells == 0 {
            Answer {
                question: "Which cache level shows the most reduction in misses?".to_string(),
                answer: format!(
                    "Cannot be answered from this run: hardware cache counters were unavailable \
                 ({}). The tool counts LLC misses only where a PMU exists; L1/L2 are not \
                 measured.",
                    a.hw.reason_text()
                ),
                basis: "unavailable".to_string(),
            }
        } else {
            let mut parts = Vec::new();
            if let Some(size) = a.reference_size {
                for g in groups
                    .iter()
                    .filter(|g| g.size == size && g.threads == threads)
                {
                    if let Some(m) = g.llc_misses_per_mib {
                        parts.push(format!("{} {}", g.mode, with_interval(&m)));
                    }
                }
            }
            Answer {
                question: "Which cache level shows the most reduction in misses?".to_string(),
                answer: format!(
                "Only the last-level cache is measured (LLC load misses, else cache misses, per \
                 MiB delivered): at {}: {}. L1/L2 are not measured, so no comparison between \
                 levels is made.",
                a.reference_size.map(format_size).unwrap_or_default(),
                if parts.is_empty() { "no figures".to_string() } else { parts.join(", ") }
            ),
                basis: "perf_event_open hardware cache events of the server process".to_string(),
            }
        };
    out.push(cache_answer);

    // Threads.
    if let Some(size) = a.reference_size {
        let thread_counts: BTreeSet<usize> = groups.iter().map(|g| g.threads).collect();
        let lines: Vec<String> = modes_of(groups)
            .into_iter()
            .map(|m| {
                let pts: Vec<String> = thread_counts
                    .iter()
                    .filter_map(|t| {
                        let g = find_group(groups, m, size, *t)?;
                        let text = |s: Option<_>| {
                            s.as_ref()
                                .map(with_interval)
                                .unwrap_or_else(|| "n/a".into())
                        };
                        Some(format!(
                            "{t} thread(s): p50 {} / p99 {} us, {} Gbit/s",
                            text(g.latency_p50_us),
                            text(g.latency_p99_us),
                            text(g.throughput_gbps),
                        ))
                    })
                    .collect();
                format!("{m}: {}", pts.join("; "))
            })
            .collect();
        out.push(Answer {
            question: "How does thread count interact with latency (and cache contention)?"
                .to_string(),
            answer: format!(
                "At {} on {} CPU(s): {}. {}",
                format_size(size),
                results.machine.cpus,
                lines.join(". "),
                if a.hw.cache_cells == 0 {
                    "Cache contention cannot be measured here (no hardware counters), so any \
                     change with threads is reported, not attributed."
                } else {
                    "See the cache-miss table for the counters."
                }
            ),
            basis: "round-trip latency observed by the client in the request/response phase; \
                    throughput from the stream phase"
                .to_string(),
        });
    }
    out
}

fn copies_of<'a>(a: &Inputs<'a>, mode: Mode) -> Option<&'a ModeCopies> {
    a.copies.iter().find(|c| c.mode == mode)
}
