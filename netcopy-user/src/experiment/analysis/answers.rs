//! The study's questions answered in English from the analysis, as far as the data can
//! answer them, each with the basis of its figures.

use netcopy_common::CopySite;
use std::collections::{BTreeMap, BTreeSet};

use super::{
    copies::ModeCopies,
    crossovers::{crossover_pairs, Better, Compared, Crossover, CrossoverPoint},
    format::num,
    groups::{find_group, modes_of, sizes_of, CpuMetric, Group, SiteAggregate, Stat},
    hardware::HwAvailability,
    study,
};
use crate::{
    experiment::results::Results,
    ledger::FigureSource,
    util::units::format_size,
    workload::modes::{Mode, ModeSpec},
};

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

/// Per size: the modes ranked by a metric (best first), as text, and the winner counts.
fn ranking(
    groups: &[Group],
    threads: usize,
    f: &dyn Fn(&Group) -> Option<Stat>,
    better: Better,
    unit: &str,
) -> (Vec<String>, BTreeMap<Mode, usize>) {
    let mut lines = Vec::new();
    let mut wins = BTreeMap::new();
    for size in sizes_of(groups, threads) {
        let mut ranked: Vec<(Mode, f64)> = groups
            .iter()
            .filter(|g| g.threads == threads && g.size == size)
            .filter_map(|g| Some((g.mode, f(g)?.median)))
            .collect();
        if ranked.is_empty() {
            continue;
        }
        ranked.sort_by(|a, b| match better {
            Better::Higher => b.1.total_cmp(&a.1),
            Better::Lower => a.1.total_cmp(&b.1),
        });
        *wins.entry(ranked[0].0).or_insert(0) += 1;
        // Best first: "a 9 > b 7" for higher-is-better, "a 1 < b 2" for lower-is-better.
        let sep = match better {
            Better::Higher => " > ",
            Better::Lower => " < ",
        };
        lines.push(format!(
            "{}: {}",
            format_size(size),
            ranked
                .iter()
                .map(|(m, v)| format!("{m} {} {unit}", num(*v)))
                .collect::<Vec<_>>()
                .join(sep)
        ));
    }
    (lines, wins)
}

fn wins_text(wins: &BTreeMap<Mode, usize>, total: usize) -> String {
    wins.iter()
        .map(|(m, n)| format!("{m} wins at {n} of {total} sizes"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn site_text(s: &SiteAggregate) -> String {
    match s.bytes_per_message {
        Some(b) => format!("{} {} B ({})", s.site, num(b.median), s.source.name()),
        None => format!("{} not observable ({})", s.site, s.how),
    }
}

fn site_median(c: &ModeCopies, site: CopySite) -> Option<(f64, FigureSource)> {
    c.sites
        .iter()
        .find(|s| s.site == site.name())
        .and_then(|s| Some((s.bytes_per_message?.median, s.source)))
}

fn crossover_text(x: &Crossover) -> String {
    // "one-copy 8.69 vs two-copy 7.70 Gbit/s"
    let versus = |c: &Compared| {
        format!(
            "{} {} vs {} {} {}",
            x.challenger,
            num(c.challenger),
            x.baseline,
            num(c.baseline),
            x.metric.unit()
        )
    };
    // "; it also led at 4K, 16K but fell behind again", or nothing.
    let leads = |before: &str, after: &str| {
        if x.earlier_leads.is_empty() {
            return String::new();
        }
        let sizes: Vec<String> = x.earlier_leads.iter().map(|s| format_size(*s)).collect();
        format!("; {before} {} {after}", sizes.join(", "))
    };
    let head = match x.point {
        CrossoverPoint::At(s) => format!(
            "from {} on ({}{})",
            format_size(s),
            x.compared
                .iter()
                .find(|c| c.size == s)
                .map(|c| format!("{} at that size", versus(c)))
                .unwrap_or_default(),
            leads("it also led at", "but fell behind again")
        ),
        CrossoverPoint::Never => format!(
            "never{}{}",
            x.compared
                .last()
                .map(|c| format!(
                    " (at the largest size, {}: {})",
                    format_size(c.size),
                    versus(c)
                ))
                .unwrap_or_default(),
            leads("it led at", "but not for good")
        ),
        CrossoverPoint::NoData => "no size has figures for both modes".to_string(),
    };
    let deciding = match x.point {
        CrossoverPoint::At(s) => x.compared.iter().find(|c| c.size == s),
        _ => x.compared.last(),
    };
    let head = if deciding.is_some_and(|c| c.overlap) {
        format!("{head}; at that size the repeats' ranges overlap, so the order there may be noise")
    } else {
        head
    };
    format!(
        "{} over {} in {} ({} thread(s)): {head}",
        x.challenger,
        x.baseline,
        x.metric.key(),
        x.threads
    )
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
    let nsizes = sizes_of(groups, threads).len();
    let cpu = a.cpu_metric;
    let cpu_of = move |g: &Group| cpu.of(g);

    // Which mode wins where.
    let (tp_lines, tp_wins) = ranking(
        groups,
        threads,
        &|g| g.throughput_gbps,
        Better::Higher,
        "Gbit/s",
    );
    let (cpu_lines, cpu_wins) = ranking(groups, threads, &cpu_of, Better::Lower, "ns/B");
    out.push(Answer {
        question: "Which mode wins where?".to_string(),
        answer: format!(
            "Throughput, {threads} thread(s), median of repeats: {}. {}. \
             CPU per byte ({}): {}. {}.",
            if tp_wins.is_empty() {
                "no data".to_string()
            } else {
                wins_text(&tp_wins, nsizes)
            },
            tp_lines.join("; "),
            cpu.label(),
            if cpu_wins.is_empty() {
                "no data".to_string()
            } else {
                wins_text(&cpu_wins, nsizes)
            },
            if cpu_lines.is_empty() {
                "no CPU figures".to_string()
            } else {
                cpu_lines.join("; ")
            }
        ),
        basis: "throughput observed by the client (payload bytes verified / stream seconds); \
                CPU time measured per process (see the CPU source column of results.csv)"
            .to_string(),
    });

    // Does zero-copy reduce CPU per byte here? Asked of each mode of the run that claims
    // no copy, against the modes it challenges.
    for spec in study::zero_copy_modes().filter(|s| results.config.modes.contains(&s.mode)) {
        out.push(zero_copy_cpu_answer(a, spec, threads));
    }

    // What the kernel copied per mode.
    if a.copies.is_empty() {
        out.push(Answer {
            question: "What did the kernel copy per mode?".to_string(),
            answer: "Cannot be answered: no copy-site figures in the sweep or the verification."
                .to_string(),
            basis: "unavailable".to_string(),
        });
    } else {
        let lines: Vec<String> = a
            .copies
            .iter()
            .map(|c| {
                let verdict = results
                    .verification
                    .iter()
                    .find(|l| l.mode == c.mode)
                    .map(|l| format!(", verification verdict {:?}", l.verdict).to_lowercase())
                    .unwrap_or_default();
                format!(
                    "{} ({} B messages, {}{}): {}{}",
                    c.mode,
                    c.size,
                    c.from,
                    verdict,
                    c.sites.iter().map(site_text).collect::<Vec<_>>().join(", "),
                    c.copies_per_byte
                        .map(|s| format!("; {} bytes copied per byte delivered", num(s.median)))
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push(Answer {
            question: "What did the kernel copy per mode?".to_string(),
            answer: format!(
                "Bytes per delivered message at each copy site: {}.",
                lines.join(". ")
            ),
            basis: "each site says how it was obtained: observed (probe on the copy routine or \
                    the sender's own memcpy), inferred (from the kernel's inputs around the \
                    copy), reported (completion notifications), or not observable"
                .to_string(),
        });
    }

    // The study's claim: sendmsg with an iovec avoids the kernel copy.
    for spec in study::iovec_modes() {
        if let Some(one) = copies_of(a, spec.mode) {
            out.push(iovec_claim_answer(one));
        }
    }

    // The study's claim: zero-copy to a local socket avoids the copy.
    for spec in study::zero_copy_modes() {
        if let Some(zc) = copies_of(a, spec.mode) {
            out.push(zero_copy_claim_answer(zc, &completions(groups, spec.mode)));
        }
    }

    // Crossover questions: each challenger over the baselines of the study's comparisons.
    for pair in crossover_pairs().filter(|&(_, baseline)| study::is_reference(baseline)) {
        let xs: Vec<String> = a
            .crossovers
            .iter()
            .filter(|x| (x.challenger, x.baseline) == pair)
            .map(crossover_text)
            .collect();
        out.push(Answer {
            question: format!(
                "At what message size does {} outperform {}?",
                pair.0, pair.1
            ),
            answer: if xs.is_empty() {
                "Cannot be answered: one of the two modes was not measured.".to_string()
            } else {
                format!("{}.", xs.join(". "))
            },
            basis: "medians of repeats; crossover = the smallest size from which on the \
                    challenger is ahead at every larger measured size"
                .to_string(),
        });
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
                        parts.push(format!("{} {}", g.mode, num(m.median)));
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
                        Some(format!(
                            "{t} thread(s): p50 {} / p99 {} us, {} Gbit/s",
                            g.latency_p50_us
                                .map(|s| num(s.median))
                                .unwrap_or_else(|| "n/a".into()),
                            g.latency_p99_us
                                .map(|s| num(s.median))
                                .unwrap_or_else(|| "n/a".into()),
                            g.throughput_gbps
                                .map(|s| num(s.median))
                                .unwrap_or_else(|| "n/a".into()),
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

/// Sends whose completion the kernel reported, over the sweep's groups of one mode.
struct Completions {
    completed: u64,
    /// Of those, flagged SO_EE_CODE_ZEROCOPY_COPIED.
    copied: u64,
}

fn completions(groups: &[Group], mode: Mode) -> Completions {
    let of_mode = || groups.iter().filter(move |g| g.mode == mode);
    Completions {
        completed: of_mode().map(|g| g.zerocopy.completed_sends).sum(),
        copied: of_mode().map(|g| g.zerocopy.copied_sends).sum(),
    }
}

/// Does a mode that claims no copy cost less CPU per byte than the modes it challenges?
fn zero_copy_cpu_answer(a: &Inputs<'_>, spec: &ModeSpec, threads: usize) -> Answer {
    let groups = a.groups;
    let cpu = a.cpu_metric;
    let cpu_of = move |g: &Group| cpu.of(g);
    let name = spec.name;
    let question = format!("Does {name} reduce CPU per byte here?");
    let mut lines = Vec::new();
    let mut lower = BTreeMap::<Mode, (usize, usize)>::new();
    for size in sizes_of(groups, threads) {
        let Some(z) = find_group(groups, spec.mode, size, threads).and_then(&cpu_of) else {
            continue;
        };
        let mut parts = vec![format!("{name} {}", num(z.median))];
        for &other in spec.challenges {
            if let Some(o) = find_group(groups, other, size, threads).and_then(&cpu_of) {
                let e = lower.entry(other).or_insert((0, 0));
                e.1 += 1;
                if z.median < o.median {
                    e.0 += 1;
                }
                parts.push(format!("{other} {}", num(o.median)));
            }
        }
        lines.push(format!("{}: {} ns/B", format_size(size), parts.join(", ")));
    }
    if lines.is_empty() {
        return Answer {
            question,
            answer: format!("Cannot be answered: {name} has no CPU figures in this run."),
            basis: "unavailable".to_string(),
        };
    }
    let counts = lower
        .iter()
        .map(|(m, (l, n))| format!("lower than {m} at {l} of {n} sizes"))
        .collect::<Vec<_>>()
        .join(", ");
    let copies = copies_of(a, spec.mode);
    let deferred = copies.and_then(|c| site_median(c, CopySite::DeferredCopy));
    let Completions { completed, copied } = completions(groups, spec.mode);
    let why = match (deferred, copies) {
        (Some((d, src)), Some(c)) if d > 0.0 => format!(
            " The reason is in the copy sites: at {} the kernel copied {} B per message of \
             {} B after the send (deferred_copy, {}), and {copied} of {completed} \
             completions were flagged SO_EE_CODE_ZEROCOPY_COPIED: on loopback the copy is \
             moved, not removed.",
            format_size(c.size),
            num(d),
            c.size,
            src.name()
        ),
        (Some((d, src)), Some(c)) => format!(
            " At {} the deferred copy was {} B per message ({}).",
            format_size(c.size),
            num(d),
            src.name()
        ),
        _ => String::new(),
    };
    Answer {
        question,
        answer: format!(
            "{}: {name}'s CPU per byte was {counts}. {}.{why}",
            cpu.label(),
            lines.join("; ")
        ),
        basis: "CPU time measured per process; deferred copy from the copy probes or, where \
                skb_copy_ubufs cannot be probed, reported by the kernel's completion flags"
            .to_string(),
    }
}

/// The study's claim that sendmsg() with an iovec avoids the kernel copy, against what the
/// kernel copied for `one`, a mode that claims exactly that.
fn iovec_claim_answer(one: &ModeCopies) -> Answer {
    let answer = match site_median(one, CopySite::KernelSendCopy) {
        Some((b, src)) => format!(
            "No. With sendmsg() and an iovec the kernel still copied {} B per message of {} B \
             into socket buffers on send (kernel_send_copy, {}); what {} removes is \
             the user-space serialization (user_copy {} B per message).",
            num(b),
            one.size,
            src.name(),
            one.mode,
            site_median(one, CopySite::UserCopy)
                .map(|(u, _)| num(u))
                .unwrap_or_else(|| "not observable".to_string())
        ),
        None => "Not observable on this kernel: no send-path probe.".to_string(),
    };
    Answer {
        question: "Does sendmsg() with an iovec avoid the kernel copy (the study's claim)?"
            .to_string(),
        answer,
        basis: format!("send-path copy site of the {} mode", one.mode),
    }
}

/// The study's claim that MSG_ZEROCOPY to a local socket avoids the copy, against what the
/// kernel copied and reported for `zc`, a mode that claims exactly that.
fn zero_copy_claim_answer(zc: &ModeCopies, completions: &Completions) -> Answer {
    let Completions { completed, copied } = *completions;
    let answer = match site_median(zc, CopySite::DeferredCopy) {
        Some((d, src)) if d > 0.0 || copied > 0 => format!(
            "No. On this loopback the kernel copied the pinned pages after the send: {} B \
             per message of {} B (deferred_copy, {}), and {copied} of {completed} completions \
             were flagged SO_EE_CODE_ZEROCOPY_COPIED. The receive copy remains as well{}.",
            num(d),
            zc.size,
            src.name(),
            site_median(zc, CopySite::KernelRecvCopy)
                .map(|(r, s)| format!(" ({} B per message, {})", num(r), s.name()))
                .unwrap_or_default()
        ),
        Some((d, src)) => format!(
            "Here, yes: the deferred copy was {} B per message ({}) and {copied} of \
             {completed} completions were flagged copied.",
            num(d),
            src.name()
        ),
        None => format!(
            "The deferred copy was not observable; {copied} of {completed} completions were \
             flagged SO_EE_CODE_ZEROCOPY_COPIED."
        ),
    };
    Answer {
        question: "Does MSG_ZEROCOPY to a local socket avoid the copy (the study's claim)?"
            .to_string(),
        answer,
        basis: "deferred copy from the copy probes or the kernel's completion flags \
                (reported); completion counts reported by the kernel on the error queue"
            .to_string(),
    }
}
