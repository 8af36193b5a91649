//! The study's published figures beside this run's. Where the study gives a number, or a
//! specific statement about a curve, a row says what it said, what this run measured, and
//! what differs and why (a figure this machine cannot measure says so).
//!
//! The study, read critically: it reports one run per point, with no repeats, intervals
//! or data volumes; its cache misses are totals for runs of unstated length; it ran on
//! loopback, where the kernel copies MSG_ZEROCOPY pages anyway, yet explains zero-copy's
//! results by DMA to a NIC that loopback does not have; and it says sendmsg() with an
//! iovec makes the kernel point at the user pages, which it does not (the kernel still
//! copies them into socket buffers; what goes is the user-space serialization). The rows
//! compare only what it states.

use std::cmp::Ordering;

use super::{
    crossovers::{Crossover, CrossoverMetric, CrossoverPoint},
    format::with_interval,
    groups::{find_group, CpuMetric, Group, Stat},
    hardware::HwAvailability,
    study::{attaches_pages, drops_user_copy_only, is_reference},
    REFERENCE_SIZE,
};
use crate::{
    util::units::format_size,
    workload::modes::{Claim, Mode, MODES},
};

/// One figure the study published, beside this run's.
#[derive(Clone, Debug)]
pub(crate) struct ComparisonRow {
    pub(crate) figure: String,
    pub(crate) study: String,
    pub(crate) here: String,
    pub(crate) differs: String,
}

/// What the comparison is drawn from.
pub(super) struct Inputs<'a> {
    pub(super) groups: &'a [Group],
    pub(super) crossovers: &'a [Crossover],
    pub(super) hw: &'a HwAvailability,
    pub(super) cpu_metric: CpuMetric,
    pub(super) base_threads: Option<usize>,
    pub(super) reference_size: Option<u64>,
    pub(super) cpus: usize,
    /// The modes the run measured: a row is about them alone.
    pub(super) modes: &'a [Mode],
}

/// The study's cycles per byte of MSG_ZEROCOPY (its figure 3).
const ZERO_COPY_CYCLES_PER_BYTE: [(u64, &str); 2] = [
    (1 << 10, "about 7 cycles/byte"),
    (256 << 10, "about 0.37 cycles/byte"),
];

/// Which of the study's modes a figure is about, by what the mode claims.
type StudyModes = fn(&Claim) -> bool;

/// The study's LLC misses at 1 MB (its figure 2): which modes, and how many.
const LLC_MISSES_AT_1M: [(StudyModes, &str); 2] = [
    (copies_on_send, "two-copy and one-copy: over 250 million"),
    (attaches_pages, "zero-copy: about 101 million"),
];

/// The study's throughput crossovers over its two-copy baseline (its answers 4 and 5).
const CROSSOVERS: [(StudyModes, &str); 2] = [
    (drops_user_copy_only, "from about 4-8 KB on"),
    (attaches_pages, "from about 64 KB on"),
];

/// The study's A1 and A2: the kernel copies the payload at send.
fn copies_on_send(claim: &Claim) -> bool {
    claim.kernel_send_copy
}

/// The run's modes with the claims of one of the study's.
fn modes_with(a: &Inputs<'_>, claims: StudyModes) -> Vec<Mode> {
    MODES
        .iter()
        .filter(|s| claims(&s.claim) && a.modes.contains(&s.mode))
        .map(|s| s.mode)
        .collect()
}

pub(super) fn study_comparison(a: &Inputs<'_>) -> Vec<ComparisonRow> {
    let Some(threads) = a.base_threads else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (size, said) in ZERO_COPY_CYCLES_PER_BYTE {
        for mode in modes_with(a, attaches_pages) {
            rows.push(cycles_row(a, mode, size, threads, said));
        }
    }
    rows.push(llc_row(a, threads));
    for (claims, said) in CROSSOVERS {
        for x in a.crossovers.iter().filter(|x| {
            x.metric == CrossoverMetric::Throughput
                && claims(&x.challenger.spec().claim)
                && is_reference(x.baseline)
        }) {
            rows.push(crossover_row(a, x, said));
        }
    }
    for mode in modes_with(a, drops_user_copy_only) {
        if let Some(row) = iovec_large_row(a, mode, threads) {
            rows.push(row);
        }
    }
    if let Some(row) = latency_row(a) {
        rows.push(row);
    }
    rows
}

fn stat_or(s: Option<Stat>, unit: &str, missing: &str) -> String {
    s.map(|s| format!("{} {unit}", with_interval(&s)))
        .unwrap_or_else(|| missing.to_string())
}

fn cycles_row(a: &Inputs<'_>, mode: Mode, size: u64, threads: usize, said: &str) -> ComparisonRow {
    let g = find_group(a.groups, mode, size, threads);
    let figure = format!("{mode}: CPU cost per byte at {}", format_size(size));
    let Some(g) = g else {
        return ComparisonRow {
            figure,
            study: said.to_string(),
            here: format!("{} not measured in this run", format_size(size)),
            differs: "no figure to compare".to_string(),
        };
    };
    let (here, differs) = match g.cycles_per_byte {
        Some(c) => (
            format!("{} cycles/byte ({threads} thread(s))", with_interval(&c)),
            "the study states neither its repeats nor its message count; here the median and \
             interval of the repeats"
                .to_string(),
        ),
        None => (
            format!(
                "cycles unavailable; {}: {}",
                a.cpu_metric.label(),
                stat_or(a.cpu_metric.of(g), "ns/byte", "unavailable")
            ),
            format!(
                "no hardware counters here ({}), so CPU time per byte stands in; without a \
                 clock rate (the study states none) the units do not convert. What compares \
                 is the shape: per-byte cost falls with size in both, the per-call cost \
                 being spread over more bytes",
                a.hw.reason_text()
            ),
        ),
    };
    ComparisonRow {
        figure,
        study: said.to_string(),
        here,
        differs,
    }
}

fn llc_row(a: &Inputs<'_>, threads: usize) -> ComparisonRow {
    let size = 1 << 20;
    let here: Vec<String> = LLC_MISSES_AT_1M
        .iter()
        .flat_map(|(claims, _)| modes_with(a, *claims))
        .map(|m| {
            let g = find_group(a.groups, m, size, threads);
            let text = match g {
                None => "1M not measured".to_string(),
                Some(g) => stat_or(g.llc_misses_per_mib, "per MiB", "unavailable"),
            };
            format!("{m}: {text}")
        })
        .collect();
    ComparisonRow {
        figure: "LLC misses at 1 MB messages".to_string(),
        study: LLC_MISSES_AT_1M
            .iter()
            .map(|(_, said)| *said)
            .collect::<Vec<_>>()
            .join("; "),
        here: here.join("; "),
        differs: format!(
            "the study's are totals for runs of unstated length and data volume, so they are \
             no rate and compare with no other run; here they are per MiB delivered{}",
            if a.hw.cache_cells == 0 {
                format!(", and unavailable: {}", a.hw.reason_text())
            } else {
                String::new()
            }
        ),
    }
}

/// `from 16K on, decided` / `never, undecided`.
fn point_text(x: &Crossover) -> String {
    let point = match x.point {
        CrossoverPoint::At(s) => format!("from {} on", format_size(s)),
        CrossoverPoint::Never => "never".to_string(),
        CrossoverPoint::NoData => "no data".to_string(),
    };
    format!(
        "{point}, {}",
        if x.decided { "decided" } else { "undecided" }
    )
}

fn crossover_row(a: &Inputs<'_>, x: &Crossover, said: &str) -> ComparisonRow {
    let at = match x.point {
        CrossoverPoint::At(s) => x.compared.iter().find(|c| c.size == s),
        _ => x.compared.last(),
    };
    let figures = at
        .map(|c| {
            format!(
                " (at {}: {} vs {} Gbit/s)",
                format_size(c.size),
                with_interval(&c.challenger),
                with_interval(&c.baseline)
            )
        })
        .unwrap_or_default();
    let mut differs = format!(
        "the study gives one run with no per-size figures, repeats or intervals; here the \
         crossover must last to the largest size and is decided only where the intervals \
         separate ({} thread(s), {} CPU(s))",
        x.threads, a.cpus
    );
    if x.challenger.spec().claim.zerocopy_attach {
        differs.push_str(
            "; on loopback the kernel copies MSG_ZEROCOPY pages anyway on local delivery (see \
             the verification), so zero-copy adds pinning and completions and removes no copy",
        );
    }
    ComparisonRow {
        figure: format!(
            "throughput crossover of {} over {}",
            x.challenger, x.baseline
        ),
        study: said.to_string(),
        here: format!("{}{figures}", point_text(x)),
        differs,
    }
}

/// The study's "unexpected result": one-copy's throughput drops from 256 KB to 1 MB.
fn iovec_large_row(a: &Inputs<'_>, mode: Mode, threads: usize) -> Option<ComparisonRow> {
    let at = |size| find_group(a.groups, mode, size, threads)?.throughput_gbps;
    let (from, to) = (at(256 << 10)?, at(1 << 20)?);
    let change = match to.decided_order(&from) {
        Some(Ordering::Less) => "fell (decided)",
        Some(_) => "rose (decided)",
        None => "no decided change (the intervals overlap)",
    };
    Some(ComparisonRow {
        figure: format!("{mode}: throughput from 256K to 1M"),
        study: "a noticeable drop at 1 MB (put down to TLB pressure)".to_string(),
        here: format!(
            "{} -> {} Gbit/s at {threads} thread(s): {change}",
            with_interval(&from),
            with_interval(&to)
        ),
        differs: "the study measured no TLB misses and ran each point once, so its drop could \
                  be noise; here it counts only where the intervals separate"
            .to_string(),
    })
}

/// The study's latency against threads at 256 KB: lowest at 2, zero-copy below two-copy
/// at high thread counts.
fn latency_row(a: &Inputs<'_>) -> Option<ComparisonRow> {
    let size = a.reference_size?;
    let mut parts = Vec::new();
    for spec in MODES {
        let mut by_threads: Vec<(usize, Stat)> = a
            .groups
            .iter()
            .filter(|g| g.mode == spec.mode && g.size == size)
            .filter_map(|g| Some((g.threads, g.latency_p50_us?)))
            .collect();
        if by_threads.is_empty() {
            continue;
        }
        by_threads.sort_by_key(|p| p.0);
        let lowest = by_threads
            .iter()
            .min_by(|x, y| x.1.median.total_cmp(&y.1.median))
            .map(|p| p.0)
            .unwrap_or(0);
        parts.push(format!(
            "{}: {} (lowest median at {lowest})",
            spec.mode,
            by_threads
                .iter()
                .map(|(t, s)| format!("{t}: {} us", with_interval(s)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let most = a.groups.iter().map(|g| g.threads).max()?;
    let references: Vec<Mode> = a
        .modes
        .iter()
        .copied()
        .filter(|m| is_reference(*m))
        .collect();
    let versus: Vec<String> = modes_with(a, attaches_pages)
        .into_iter()
        .flat_map(|z| {
            references.iter().filter_map(move |&b| {
                let zc = find_group(a.groups, z, size, most)?.latency_p50_us?;
                let base = find_group(a.groups, b, size, most)?.latency_p50_us?;
                let verdict = match zc.decided_order(&base) {
                    Some(Ordering::Less) => "lower, decided",
                    Some(_) => "higher, decided",
                    None => "undecided, the intervals overlap",
                };
                Some(format!("at {most} threads, {z} against {b}: {verdict}"))
            })
        })
        .collect();
    Some(ComparisonRow {
        figure: format!(
            "p50 latency vs threads at {}{}",
            format_size(size),
            if size == REFERENCE_SIZE {
                ""
            } else {
                " (the measured size nearest to 256K)"
            }
        ),
        study: "lowest at 2 threads, rising sharply at 8; zero-copy below two-copy at high \
                thread counts"
            .to_string(),
        here: format!("{}; {}", parts.join("; "), versus.join("; ")),
        differs: format!(
            "the study states neither its core count nor its placement; here {} CPU(s), and \
             each thread has one request in flight, so beyond that many threads latency \
             grows with the queue of threads per CPU",
            a.cpus
        ),
    })
}
