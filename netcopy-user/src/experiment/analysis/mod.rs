//! Analysis of a `netcopy run`: pure functions from [`Results`] to the figures that the
//! plots and the report show. Nothing here reads a file or touches the kernel, and nothing
//! panics on odd input: a figure that cannot be computed is `None` (or "never", or a
//! finding), never a made-up number.
//!
//! Definitions used throughout (the report repeats them):
//! - A *group* is one (mode, message size, thread count); its repeats are aggregated into
//!   a [`Stat`]: median, min, max, mean and coefficient of variation (CV = sample standard
//!   deviation / mean, n - 1 in the denominator; undefined for fewer than 2 repeats).
//! - *High variance*: CV above [`HIGH_CV`] (10 %) between the repeats of one group.
//! - *Non-monotonic throughput*: a mode's median throughput at one size is more than
//!   [`NON_MONOTONIC_DROP`] (10 %) below its median at the next smaller measured size, at
//!   the same thread count.
//! - *Crossover* of a challenger over a baseline: see [`crossover_point`].
//! - *CPU per byte*: CPU time of server and client together per payload byte delivered
//!   ([`CpuMetric::Total`]), because on loopback the receive path and the deferred copy of
//!   "zero-copy" pages run in softirq context charged to whichever process is on the CPU;
//!   the server-only figure is used only when no cell has the total.

use std::collections::{BTreeMap, BTreeSet};

use netcopy_common::CopySite;
use serde::Serialize;

use crate::{
    experiment::results::{Cell, Results, ZeroCopyFigures},
    kernel::perf::{CounterKind, CounterValue},
    ledger::{self, FigureSource, Verdict},
    util::units::format_size,
    workload::modes::Mode,
};

/// CV between repeats above which a group is flagged (10 %).
pub const HIGH_CV: f64 = 0.10;
/// Relative drop of median throughput from one size to the next larger one above which a
/// mode's throughput curve is flagged non-monotonic (10 %).
pub const NON_MONOTONIC_DROP: f64 = 0.10;
/// The size the study used for its latency figure; the nearest measured size stands in.
pub const REFERENCE_SIZE: u64 = 256 * 1024;

/// Median, range and spread of one figure over the repeats of a group.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation / mean; None for n < 2 or a zero mean.
    pub cv: Option<f64>,
}

/// The [`Stat`] of the finite values among `values`; None when there is none.
pub fn stat(values: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let mean = v.iter().sum::<f64>() / n as f64;
    let cv = if n >= 2 && mean != 0.0 {
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some(var.sqrt() / mean.abs())
    } else {
        None
    };
    Some(Stat {
        n,
        median,
        min: v[0],
        max: v[n - 1],
        mean,
        cv,
    })
}

/// Pearson's correlation coefficient of paired samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Pearson {
    /// None when n < 3 or either variable is constant.
    pub r: Option<f64>,
    pub n: usize,
}

/// Pearson r over the pairs whose both values are finite.
pub fn pearson(pairs: &[(f64, f64)]) -> Pearson {
    let p: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let n = p.len();
    if n < 3 {
        return Pearson { r: None, n };
    }
    let mx = p.iter().map(|q| q.0).sum::<f64>() / n as f64;
    let my = p.iter().map(|q| q.1).sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &p {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    let denom = (sxx * syy).sqrt();
    let r = if denom > 0.0 && denom.is_finite() {
        Some((sxy / denom).clamp(-1.0, 1.0))
    } else {
        None
    };
    Pearson { r, n }
}

/// One copy site of a group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteAggregate {
    pub site: String,
    /// Bytes per delivered message over the repeats where the site was observable.
    pub bytes_per_message: Option<Stat>,
    /// How the figure was obtained (the first repeat's source; Unavailable if never seen).
    pub source: FigureSource,
    pub how: String,
    /// Repeats in which the site was not observable.
    pub unavailable_repeats: usize,
}

/// One (mode, size, threads) with its repeats aggregated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub mode: Mode,
    pub size: u64,
    pub threads: usize,
    pub repeats: usize,
    pub throughput_gbps: Option<Stat>,
    /// Request/response latency percentiles (rr phase), microseconds.
    pub latency_p50_us: Option<Stat>,
    pub latency_p99_us: Option<Stat>,
    pub server_ns_per_byte: Option<Stat>,
    pub total_ns_per_byte: Option<Stat>,
    pub cycles_per_byte: Option<Stat>,
    pub llc_misses_per_mib: Option<Stat>,
    pub copies_per_byte: Option<Stat>,
    /// Keyed by ledger site name.
    pub sites: BTreeMap<String, SiteAggregate>,
    /// Stream and rr phases, all repeats.
    pub integrity_errors: u64,
    /// Summed over the repeats.
    pub zerocopy: ZeroCopyFigures,
}

/// The site names in ledger order, then any other name the cells carry.
pub fn site_names(results: &Results) -> Vec<String> {
    let mut names: Vec<String> = ledger::SITES.iter().map(|s| s.name().to_string()).collect();
    let extra: BTreeSet<&String> = results
        .cells
        .iter()
        .flat_map(|c| c.copies.keys())
        .filter(|k| !names.contains(k))
        .collect();
    names.extend(extra.into_iter().cloned());
    names
}

fn collect<F: Fn(&Cell) -> Option<f64>>(cells: &[&Cell], f: F) -> Option<Stat> {
    let v: Vec<f64> = cells.iter().filter_map(|c| f(c)).collect();
    stat(&v)
}

/// Aggregates the cells per (mode, size, threads), sorted by mode, threads, size.
pub fn groups(results: &Results) -> Vec<Group> {
    let mut by_key: BTreeMap<(Mode, usize, u64), Vec<&Cell>> = BTreeMap::new();
    for c in &results.cells {
        by_key
            .entry((c.mode, c.threads, c.size))
            .or_default()
            .push(c);
    }
    let names = site_names(results);
    by_key
        .into_iter()
        .map(|((mode, threads, size), cells)| {
            let latency_ok =
                |c: &Cell| c.latency.transactions > 0 || c.latency.latency_us.samples > 0;
            let mut sites = BTreeMap::new();
            for name in &names {
                let figs: Vec<_> = cells.iter().filter_map(|c| c.copies.get(name)).collect();
                if figs.is_empty() {
                    continue;
                }
                let values: Vec<f64> = figs.iter().filter_map(|f| f.bytes_per_message).collect();
                let seen = figs.iter().find(|f| f.bytes_per_message.is_some());
                let first = seen.copied().unwrap_or(figs[0]);
                sites.insert(
                    name.clone(),
                    SiteAggregate {
                        site: name.clone(),
                        bytes_per_message: stat(&values),
                        source: if seen.is_some() {
                            first.source
                        } else {
                            FigureSource::Unavailable
                        },
                        how: first.how.clone(),
                        unavailable_repeats: cells.len() - values.len(),
                    },
                );
            }
            let mut zerocopy = ZeroCopyFigures::default();
            for c in &cells {
                let z = &c.zerocopy;
                zerocopy.sends += z.sends;
                zerocopy.notifications += z.notifications;
                zerocopy.completed_sends += z.completed_sends;
                zerocopy.copied_sends += z.copied_sends;
                zerocopy.copied_bytes += z.copied_bytes;
                zerocopy.enobufs_retries += z.enobufs_retries;
            }
            Group {
                mode,
                size,
                threads,
                repeats: cells.len(),
                throughput_gbps: collect(&cells, |c| Some(c.stream.throughput_gbps)),
                latency_p50_us: collect(&cells, |c| {
                    latency_ok(c).then_some(c.latency.latency_us.p50)
                }),
                latency_p99_us: collect(&cells, |c| {
                    latency_ok(c).then_some(c.latency.latency_us.p99)
                }),
                server_ns_per_byte: collect(&cells, |c| c.cpu.server_ns_per_byte),
                total_ns_per_byte: collect(&cells, |c| c.cpu.total_ns_per_byte),
                cycles_per_byte: collect(&cells, |c| c.cpu.cycles_per_byte),
                llc_misses_per_mib: collect(&cells, |c| c.cpu.llc_misses_per_mib),
                copies_per_byte: collect(&cells, |c| c.copies_per_byte),
                sites,
                integrity_errors: cells
                    .iter()
                    .map(|c| c.stream.integrity_errors + c.latency.integrity_errors)
                    .sum(),
                zerocopy,
            }
        })
        .collect()
}

/// Which CPU-per-byte figure the analysis uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CpuMetric {
    /// Server + client CPU ns per payload byte.
    Total,
    /// Server CPU ns per payload byte (when no cell has the client's CPU time).
    Server,
}

impl CpuMetric {
    pub fn of(self, g: &Group) -> Option<Stat> {
        match self {
            CpuMetric::Total => g.total_ns_per_byte,
            CpuMetric::Server => g.server_ns_per_byte,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            CpuMetric::Total => "CPU ns per byte (server + client)",
            CpuMetric::Server => "CPU ns per byte (server only)",
        }
    }
    /// Chooses [`CpuMetric::Total`] when any cell has it.
    pub fn choose(results: &Results) -> CpuMetric {
        if results
            .cells
            .iter()
            .any(|c| c.cpu.total_ns_per_byte.is_some())
        {
            CpuMetric::Total
        } else {
            CpuMetric::Server
        }
    }
}

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Better {
    Higher,
    Lower,
}

/// Where a challenger overtakes a baseline for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CrossoverPoint {
    /// The smallest measured size from which on the challenger is ahead at every larger
    /// measured size.
    At(u64),
    /// The challenger is not ahead at the largest size measured for both.
    Never,
    /// No size has a figure for both modes.
    NoData,
}

impl CrossoverPoint {
    /// `4096` / `never` / `no data` (the form the report's table uses).
    pub fn bytes_text(self) -> String {
        match self {
            CrossoverPoint::At(s) => s.to_string(),
            CrossoverPoint::Never => "never".to_string(),
            CrossoverPoint::NoData => "no data".to_string(),
        }
    }
}

/// The crossover of a challenger over a baseline.
///
/// `points` are (size, challenger median, baseline median) at the sizes where both were
/// measured, in any order. The challenger is *ahead* at a size when its median is strictly
/// better (higher for [`Better::Higher`], lower for [`Better::Lower`]); a tie is not ahead.
/// The crossover is the smallest size s such that the challenger is ahead at s and at every
/// measured size above s: a win that is lost again at a larger size does not count (it is
/// reported separately, see [`Crossover::earlier_leads`]). When the challenger is not ahead
/// at the largest size the answer is [`CrossoverPoint::Never`].
pub fn crossover_point(points: &[(u64, f64, f64)], better: Better) -> CrossoverPoint {
    let mut p: Vec<(u64, f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, a, b)| a.is_finite() && b.is_finite())
        .collect();
    if p.is_empty() {
        return CrossoverPoint::NoData;
    }
    p.sort_by_key(|q| q.0);
    let mut at = None;
    for &(size, a, b) in p.iter().rev() {
        if ahead(a, b, better) {
            at = Some(size);
        } else {
            break;
        }
    }
    at.map_or(CrossoverPoint::Never, CrossoverPoint::At)
}

fn ahead(a: f64, b: f64, better: Better) -> bool {
    match better {
        Better::Higher => a > b,
        Better::Lower => a < b,
    }
}

/// The metric a crossover is computed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CrossoverMetric {
    Throughput,
    Cpu(CpuMetric),
}

impl CrossoverMetric {
    /// `throughput` / `cpu_ns_per_byte` (the form the report's table uses).
    pub fn key(self) -> &'static str {
        match self {
            CrossoverMetric::Throughput => "throughput",
            CrossoverMetric::Cpu(_) => "cpu_ns_per_byte",
        }
    }
    pub fn better(self) -> Better {
        match self {
            CrossoverMetric::Throughput => Better::Higher,
            CrossoverMetric::Cpu(_) => Better::Lower,
        }
    }
    pub fn of(self, g: &Group) -> Option<Stat> {
        match self {
            CrossoverMetric::Throughput => g.throughput_gbps,
            CrossoverMetric::Cpu(m) => m.of(g),
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            CrossoverMetric::Throughput => "Gbit/s",
            CrossoverMetric::Cpu(_) => "ns/B",
        }
    }
}

/// One size compared in a crossover.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Compared {
    pub size: u64,
    pub challenger: f64,
    pub baseline: f64,
    pub ahead: bool,
    /// The repeats' min..max ranges of the two modes overlap: the order may be noise.
    pub overlap: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Crossover {
    pub challenger: Mode,
    pub baseline: Mode,
    pub metric: CrossoverMetric,
    pub threads: usize,
    pub point: CrossoverPoint,
    pub compared: Vec<Compared>,
    /// Sizes below the crossover (or anywhere, for "never") where the challenger was ahead
    /// but fell behind again at a larger size.
    pub earlier_leads: Vec<u64>,
}

/// The mode pairs compared: (challenger, baseline).
pub const CROSSOVER_PAIRS: [(Mode, Mode); 3] = [
    (Mode::OneCopy, Mode::TwoCopy),
    (Mode::ZeroCopy, Mode::TwoCopy),
    (Mode::ZeroCopy, Mode::OneCopy),
];

/// The thread count crossovers and size plots use: 1 when measured, else the smallest.
pub fn base_threads(groups: &[Group]) -> Option<usize> {
    let threads: BTreeSet<usize> = groups.iter().map(|g| g.threads).collect();
    if threads.contains(&1) {
        Some(1)
    } else {
        threads.first().copied()
    }
}

/// The measured size nearest to `target` on a log scale (ties go to the larger size).
pub fn nearest_size(sizes: impl IntoIterator<Item = u64>, target: u64) -> Option<u64> {
    let t = (target.max(1) as f64).log2();
    sizes.into_iter().filter(|s| *s > 0).min_by(|a, b| {
        let da = ((*a as f64).log2() - t).abs();
        let db = ((*b as f64).log2() - t).abs();
        da.total_cmp(&db).then(b.cmp(a))
    })
}

/// The group of (mode, size, threads).
pub fn find_group(groups: &[Group], mode: Mode, size: u64, threads: usize) -> Option<&Group> {
    groups
        .iter()
        .find(|g| g.mode == mode && g.size == size && g.threads == threads)
}

/// Crossovers of every pair in [`CROSSOVER_PAIRS`] whose modes were both measured, in
/// throughput and in CPU per byte, at `threads`.
pub fn crossovers(groups: &[Group], cpu: CpuMetric, threads: usize) -> Vec<Crossover> {
    let modes: BTreeSet<Mode> = groups.iter().map(|g| g.mode).collect();
    let mut out = Vec::new();
    for metric in [CrossoverMetric::Throughput, CrossoverMetric::Cpu(cpu)] {
        for (challenger, baseline) in CROSSOVER_PAIRS {
            if !modes.contains(&challenger) || !modes.contains(&baseline) {
                continue;
            }
            let mut compared = Vec::new();
            for g in groups
                .iter()
                .filter(|g| g.mode == challenger && g.threads == threads)
            {
                let Some(b) = find_group(groups, baseline, g.size, threads) else {
                    continue;
                };
                if let (Some(a), Some(b)) = (metric.of(g), metric.of(b)) {
                    compared.push(Compared {
                        size: g.size,
                        challenger: a.median,
                        baseline: b.median,
                        ahead: ahead(a.median, b.median, metric.better()),
                        overlap: a.min <= b.max && b.min <= a.max,
                    });
                }
            }
            compared.sort_by_key(|c| c.size);
            let points: Vec<_> = compared
                .iter()
                .map(|c| (c.size, c.challenger, c.baseline))
                .collect();
            let point = crossover_point(&points, metric.better());
            let limit = match point {
                CrossoverPoint::At(s) => s,
                _ => u64::MAX,
            };
            let earlier_leads = compared
                .iter()
                .filter(|c| c.ahead && c.size < limit)
                .map(|c| c.size)
                .collect();
            out.push(Crossover {
                challenger,
                baseline,
                metric,
                threads,
                point,
                compared,
                earlier_leads,
            });
        }
    }
    out
}

/// How important a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// Belongs at the top of the report.
    Headline,
    Warning,
    Note,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FindingKind {
    Interrupted,
    ZeroCopyCopied,
    VerificationDegraded,
    VerificationMismatch,
    IntegrityErrors,
    NonMonotonicThroughput,
    HighVariance,
    HardwareCountersUnavailable,
    EventNotObservable,
    ZeroCopyNotCopied,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub text: String,
}

/// Where the hardware-counter figures are, and why not.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HwAvailability {
    pub cells: usize,
    /// Cells with cycles per byte.
    pub cycles_cells: usize,
    /// Cells with LLC (or cache) misses per MiB.
    pub cache_cells: usize,
    /// Distinct reasons given for missing hardware figures.
    pub reasons: Vec<String>,
}

impl HwAvailability {
    pub fn none_available(&self) -> bool {
        self.cycles_cells == 0 && self.cache_cells == 0
    }
    /// The reasons joined for one line of text.
    pub fn reason_text(&self) -> String {
        if self.reasons.is_empty() {
            "no reason was recorded".to_string()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// Collects where cycles and cache-miss figures exist and the reasons where they do not.
pub fn hw_availability(results: &Results) -> HwAvailability {
    // Reason -> the events it was given for (empty: given for hardware counters at large).
    let mut reasons: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    if !results.machine.perf_hw_available && !results.machine.perf_hw_reason.is_empty() {
        reasons
            .entry(results.machine.perf_hw_reason.clone())
            .or_default();
    }
    let mut hw = HwAvailability {
        cells: results.cells.len(),
        ..Default::default()
    };
    for c in &results.cells {
        if c.cpu.cycles_per_byte.is_some() {
            hw.cycles_cells += 1;
        }
        if c.cpu.llc_misses_per_mib.is_some() {
            hw.cache_cells += 1;
        }
        if c.cpu.cycles_per_byte.is_none() || c.cpu.llc_misses_per_mib.is_none() {
            if let Some(r) = &c.cpu.hw_unavailable_reason {
                reasons.entry(r.clone()).or_default();
            }
            for readings in [&c.server_counters, &c.client_counters]
                .into_iter()
                .flatten()
            {
                for kind in [
                    CounterKind::Cycles,
                    CounterKind::CacheMisses,
                    CounterKind::LlcLoadMisses,
                ] {
                    if let CounterValue::Unavailable { reason } = readings.get(kind) {
                        if !reason.is_empty() {
                            reasons.entry(reason).or_default().insert(kind.perf_name());
                        }
                    }
                }
            }
        }
    }
    // The same failure is reported once per thread and event; keep one line per cause.
    let mut merged: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for (reason, kinds) in reasons {
        let (general, event) = generalize_reason(&reason);
        let entry = merged.entry(general).or_default();
        entry.extend(kinds);
        if let Some(event) = event {
            if let Some(kind) = CounterKind::ALL.iter().find(|k| k.perf_name() == event) {
                entry.insert(kind.perf_name());
            }
        }
    }
    hw.reasons = merged
        .into_iter()
        .map(|(reason, kinds)| {
            if kinds.is_empty() {
                reason
            } else {
                format!(
                    "{} ({})",
                    reason,
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        })
        .collect();
    hw
}

/// `perf_event_open(cycles) on thread 12 of process 12 failed: E...` ->
/// (`perf_event_open failed: E...`, Some("cycles")): the cause without the thread, process
/// and event it was met on.
fn generalize_reason(reason: &str) -> (String, Option<String>) {
    let mut text = reason.to_string();
    let mut event = None;
    if let Some(rest) = text.strip_prefix("perf_event_open(") {
        if let Some(end) = rest.find(')') {
            event = Some(rest[..end].to_string());
            text = format!("perf_event_open{}", &rest[end + 1..]);
        }
    }
    for marker in [" on the current process", " on thread "] {
        if let Some(start) = text.find(marker) {
            let tail = &text[start + marker.len()..];
            let end = if marker == " on thread " {
                // "<tid> of process <pid>"
                tail.find(" failed").unwrap_or(0)
            } else {
                0
            };
            text = format!("{}{}", &text[..start], &tail[end..]);
        }
    }
    (text, event)
}

/// The planned number of cells.
pub fn planned_cells(results: &Results) -> usize {
    let c = &results.config;
    c.modes.len() * c.sizes.len() * c.threads.len() * c.repeat as usize
}

/// Formats a number with about three significant digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn group_label(g: &Group) -> String {
    format!("{} {} x{}", g.mode, format_size(g.size), g.threads)
}

/// Flags what a reader must know, most important first.
pub fn findings(results: &Results, groups: &[Group], hw: &HwAvailability) -> Vec<Finding> {
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

    // Zero-copy completions flagged copied, from the sweep itself.
    let zc: Vec<&Group> = groups.iter().filter(|g| g.mode == Mode::ZeroCopy).collect();
    let completed: u64 = zc.iter().map(|g| g.zerocopy.completed_sends).sum();
    let copied: u64 = zc.iter().map(|g| g.zerocopy.copied_sends).sum();
    let copied_bytes: u64 = zc.iter().map(|g| g.zerocopy.copied_bytes).sum();
    let sends: u64 = zc.iter().map(|g| g.zerocopy.sends).sum();
    if copied > 0 {
        let cells_all = zc
            .iter()
            .filter(|g| {
                g.zerocopy.completed_sends > 0
                    && g.zerocopy.copied_sends == g.zerocopy.completed_sends
            })
            .count();
        push(
            FindingKind::ZeroCopyCopied,
            Severity::Headline,
            format!(
                "zero-copy did NOT avoid the copy: {copied} of {completed} completions \
                 (completed MSG_ZEROCOPY sends, of {sends} sent) were flagged \
                 SO_EE_CODE_ZEROCOPY_COPIED by the kernel, {copied_bytes} bytes in all \
                 (reported by the kernel in the completion notifications); in {cells_all} of \
                 {} zero-copy groups every completion was flagged",
                zc.len()
            ),
        );
    } else if completed > 0 {
        push(
            FindingKind::ZeroCopyNotCopied,
            Severity::Note,
            format!(
                "0 of {completed} zero-copy completions were flagged SO_EE_CODE_ZEROCOPY_COPIED: \
                 the kernel reports that it sent the pinned pages without copying them"
            ),
        );
    }

    for ledger in &results.verification {
        match ledger.verdict {
            Verdict::Match => {}
            Verdict::Degraded => push(
                FindingKind::VerificationDegraded,
                Severity::Headline,
                format!(
                    "verification of {}: degraded: {}",
                    ledger.mode,
                    ledger
                        .findings
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "no finding recorded".to_string())
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
            if a.median > 0.0 && b.median < a.median * (1.0 - NON_MONOTONIC_DROP) {
                push(
                    FindingKind::NonMonotonicThroughput,
                    Severity::Warning,
                    format!(
                        "{mode}, {threads} thread(s): median throughput fell from {} Gbit/s at \
                         {} to {} Gbit/s at {} ({}; repeats {}-{} vs {}-{})",
                        num(a.median),
                        format_size(s0),
                        num(b.median),
                        format_size(s1),
                        pct(b.median / a.median - 1.0),
                        num(a.min),
                        num(a.max),
                        num(b.min),
                        num(b.max)
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

/// Correlation between bytes copied per byte delivered and CPU per byte.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopyCostCorrelation {
    pub cpu: CpuMetric,
    /// Over every cell with both figures.
    pub all: Pearson,
    /// Within each size (size is a confounder: per-byte CPU falls with size whatever the
    /// copies), for sizes with a defined r.
    pub per_size: Vec<(u64, Pearson)>,
}

pub fn copy_cost_correlation(results: &Results, cpu: CpuMetric) -> CopyCostCorrelation {
    let y = |c: &Cell| match cpu {
        CpuMetric::Total => c.cpu.total_ns_per_byte,
        CpuMetric::Server => c.cpu.server_ns_per_byte,
    };
    let pairs = |filter: &dyn Fn(&Cell) -> bool| -> Vec<(f64, f64)> {
        results
            .cells
            .iter()
            .filter(|c| filter(c))
            .filter_map(|c| Some((c.copies_per_byte?, y(c)?)))
            .collect()
    };
    let sizes: BTreeSet<u64> = results.cells.iter().map(|c| c.size).collect();
    CopyCostCorrelation {
        cpu,
        all: pearson(&pairs(&|_| true)),
        per_size: sizes
            .into_iter()
            .map(|s| (s, pearson(&pairs(&|c: &Cell| c.size == s))))
            .filter(|(_, p)| p.r.is_some())
            .collect(),
    }
}

/// What each mode copied at one size, from the sweep (or from the verification run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModeCopies {
    pub mode: Mode,
    pub size: u64,
    pub threads: usize,
    /// In [`site_names`] order.
    pub sites: Vec<SiteAggregate>,
    pub copies_per_byte: Option<Stat>,
    /// "sweep" or "verification".
    pub from: &'static str,
}

/// Copies per message per mode at `size` and `threads`; a mode without copy figures in the
/// sweep falls back to its verification ledger (observed bytes / messages).
pub fn mode_copies(
    results: &Results,
    groups: &[Group],
    size: u64,
    threads: usize,
) -> Vec<ModeCopies> {
    let names = site_names(results);
    let modes: BTreeSet<Mode> = groups
        .iter()
        .map(|g| g.mode)
        .chain(results.verification.iter().map(|l| l.mode))
        .collect();
    let mut out = Vec::new();
    for mode in modes {
        if let Some(g) = find_group(groups, mode, size, threads).filter(|g| !g.sites.is_empty()) {
            out.push(ModeCopies {
                mode,
                size,
                threads,
                sites: names
                    .iter()
                    .filter_map(|n| g.sites.get(n).cloned())
                    .collect(),
                copies_per_byte: g.copies_per_byte,
                from: "sweep",
            });
        } else if let Some(l) = results.verification.iter().find(|l| l.mode == mode) {
            let msgs = l.workload.messages;
            let sites = names
                .iter()
                .filter_map(|n| {
                    let f = l.sites.get(n)?;
                    let per = f
                        .observed_bytes
                        .filter(|_| msgs > 0)
                        .map(|b| b as f64 / msgs as f64);
                    Some(SiteAggregate {
                        site: n.clone(),
                        bytes_per_message: per.and_then(|p| stat(&[p])),
                        source: f.source,
                        how: f.how.clone(),
                        unavailable_repeats: usize::from(per.is_none()),
                    })
                })
                .collect();
            out.push(ModeCopies {
                mode,
                size: l.workload.message_size,
                threads: 1,
                sites,
                copies_per_byte: None,
                from: "verification",
            });
        }
    }
    out
}

/// An answer to one of the study's questions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    pub question: String,
    pub answer: String,
    /// How the figures behind the answer were obtained.
    pub basis: String,
}

/// Everything the plots and the report need.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub groups: Vec<Group>,
    pub cpu_metric: CpuMetric,
    /// The thread count of the size plots and crossovers.
    pub base_threads: Option<usize>,
    /// The measured size nearest to 256 KiB.
    pub reference_size: Option<u64>,
    pub crossovers: Vec<Crossover>,
    pub hw: HwAvailability,
    pub findings: Vec<Finding>,
    pub correlation: CopyCostCorrelation,
    pub copies: Vec<ModeCopies>,
    pub answers: Vec<Answer>,
}

pub fn analyze(results: &Results) -> Analysis {
    let groups = groups(results);
    let cpu_metric = CpuMetric::choose(results);
    let base = base_threads(&groups);
    let reference_size = nearest_size(groups.iter().map(|g| g.size), REFERENCE_SIZE);
    let crossovers = base
        .map(|t| crossovers(&groups, cpu_metric, t))
        .unwrap_or_default();
    let hw = hw_availability(results);
    let findings = findings(results, &groups, &hw);
    let correlation = copy_cost_correlation(results, cpu_metric);
    let copies = match (reference_size, base) {
        (Some(s), Some(t)) => mode_copies(results, &groups, s, t),
        _ => mode_copies(results, &groups, 0, 0),
    };
    let mut a = Analysis {
        groups,
        cpu_metric,
        base_threads: base,
        reference_size,
        crossovers,
        hw,
        findings,
        correlation,
        copies,
        answers: Vec::new(),
    };
    a.answers = answers(results, &a);
    a
}

fn modes_of(groups: &[Group]) -> Vec<Mode> {
    groups
        .iter()
        .map(|g| g.mode)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn sizes_of(groups: &[Group], threads: usize) -> Vec<u64> {
    groups
        .iter()
        .filter(|g| g.threads == threads)
        .map(|g| g.size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
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
pub fn answers(results: &Results, a: &Analysis) -> Vec<Answer> {
    let mut out = Vec::new();
    let Some(threads) = a.base_threads else {
        out.push(Answer {
            question: "Any".to_string(),
            answer: "No cell was measured, so no question can be answered.".to_string(),
            basis: "results.json holds no cells".to_string(),
        });
        return out;
    };
    let groups = &a.groups;
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

    // Does zero-copy reduce CPU per byte here?
    let mut zc_lines = Vec::new();
    let mut lower = BTreeMap::<Mode, (usize, usize)>::new();
    for size in sizes_of(groups, threads) {
        let Some(z) = find_group(groups, Mode::ZeroCopy, size, threads).and_then(&cpu_of) else {
            continue;
        };
        let mut parts = vec![format!("zero-copy {}", num(z.median))];
        for other in [Mode::TwoCopy, Mode::OneCopy] {
            if let Some(o) = find_group(groups, other, size, threads).and_then(&cpu_of) {
                let e = lower.entry(other).or_insert((0, 0));
                e.1 += 1;
                if z.median < o.median {
                    e.0 += 1;
                }
                parts.push(format!("{other} {}", num(o.median)));
            }
        }
        zc_lines.push(format!("{}: {} ns/B", format_size(size), parts.join(", ")));
    }
    let zc_copies = a.copies.iter().find(|c| c.mode == Mode::ZeroCopy);
    let deferred = zc_copies.and_then(|c| site_median(c, CopySite::DeferredCopy));
    let zc_groups: Vec<&Group> = groups.iter().filter(|g| g.mode == Mode::ZeroCopy).collect();
    let copied: u64 = zc_groups.iter().map(|g| g.zerocopy.copied_sends).sum();
    let completed: u64 = zc_groups.iter().map(|g| g.zerocopy.completed_sends).sum();
    if zc_lines.is_empty() {
        out.push(Answer {
            question: "Does zero-copy reduce CPU per byte here?".to_string(),
            answer: "Cannot be answered: zero-copy has no CPU figures in this run.".to_string(),
            basis: "unavailable".to_string(),
        });
    } else {
        let counts = lower
            .iter()
            .map(|(m, (l, n))| format!("lower than {m} at {l} of {n} sizes"))
            .collect::<Vec<_>>()
            .join(", ");
        let why = match (deferred, zc_copies) {
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
        out.push(Answer {
            question: "Does zero-copy reduce CPU per byte here?".to_string(),
            answer: format!(
                "{}: zero-copy's CPU per byte was {counts}. {}.{why}",
                cpu.label(),
                zc_lines.join("; ")
            ),
            basis: "CPU time measured per process; deferred copy from the copy probes or, where \
                    skb_copy_ubufs cannot be probed, reported by the kernel's completion flags"
                .to_string(),
        });
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
    if let Some(one) = a.copies.iter().find(|c| c.mode == Mode::OneCopy) {
        let answer = match site_median(one, CopySite::KernelSendCopy) {
            Some((b, src)) => format!(
                "No. With sendmsg() and an iovec the kernel still copied {} B per message of {} B \
                 into socket buffers on send (kernel_send_copy, {}); what one-copy removes is \
                 the user-space serialization (user_copy {} B per message).",
                num(b),
                one.size,
                src.name(),
                site_median(one, CopySite::UserCopy)
                    .map(|(u, _)| num(u))
                    .unwrap_or_else(|| "not observable".to_string())
            ),
            None => "Not observable on this kernel: no send-path probe.".to_string(),
        };
        out.push(Answer {
            question: "Does sendmsg() with an iovec avoid the kernel copy (the study's claim)?"
                .to_string(),
            answer,
            basis: "send-path copy site of the one-copy mode".to_string(),
        });
    }

    // The study's claim: zero-copy to a local socket avoids the copy.
    if let Some(zc) = zc_copies {
        let answer = match deferred {
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
        out.push(Answer {
            question: "Does MSG_ZEROCOPY to a local socket avoid the copy (the study's claim)?"
                .to_string(),
            answer,
            basis: "deferred copy from the copy probes or the kernel's completion flags \
                    (reported); completion counts reported by the kernel on the error queue"
                .to_string(),
        });
    }

    // Crossover questions.
    for (q, pair) in [
        (
            "At what message size does one-copy outperform two-copy?",
            (Mode::OneCopy, Mode::TwoCopy),
        ),
        (
            "At what message size does zero-copy outperform two-copy?",
            (Mode::ZeroCopy, Mode::TwoCopy),
        ),
    ] {
        let xs: Vec<String> = a
            .crossovers
            .iter()
            .filter(|x| (x.challenger, x.baseline) == pair)
            .map(crossover_text)
            .collect();
        out.push(Answer {
            question: q.to_string(),
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

#[cfg(test)]
mod reason_tests {
    use super::generalize_reason;

    #[test]
    fn per_thread_reasons_collapse_to_one_cause() {
        let (a, ea) = generalize_reason(
            "perf_event_open(cycles) on thread 29894 of process 29894 failed: ENOENT (errno 2): no PMU",
        );
        let (b, eb) = generalize_reason(
            "perf_event_open(cache-misses) on thread 7 of process 3 failed: ENOENT (errno 2): no PMU",
        );
        let (c, _) = generalize_reason(
            "perf_event_open(cycles) on the current process failed: ENOENT (errno 2): no PMU",
        );
        assert_eq!(a, "perf_event_open failed: ENOENT (errno 2): no PMU");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(ea.as_deref(), Some("cycles"));
        assert_eq!(eb.as_deref(), Some("cache-misses"));
        assert_eq!(generalize_reason("something else").0, "something else");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossover_simple() {
        let pts = [(1024, 1.0, 2.0), (4096, 3.0, 2.5), (65536, 9.0, 5.0)];
        assert_eq!(
            crossover_point(&pts[..1], Better::Higher),
            CrossoverPoint::Never
        );
        assert_eq!(
            crossover_point(&pts, Better::Higher),
            CrossoverPoint::At(4096)
        );
        // Same data for a lower-is-better metric: the challenger is ahead only at 1024.
        assert_eq!(crossover_point(&pts, Better::Lower), CrossoverPoint::Never);
    }

    #[test]
    fn crossover_never_and_no_data() {
        let pts = [(1024, 1.0, 2.0), (4096, 1.0, 2.5)];
        assert_eq!(crossover_point(&pts, Better::Higher), CrossoverPoint::Never);
        assert_eq!(crossover_point(&[], Better::Higher), CrossoverPoint::NoData);
        let nan = [(1024, f64::NAN, 1.0)];
        assert_eq!(
            crossover_point(&nan, Better::Higher),
            CrossoverPoint::NoData
        );
        // A tie is not a lead.
        assert_eq!(
            crossover_point(&[(1, 2.0, 2.0)], Better::Higher),
            CrossoverPoint::Never
        );
    }

    #[test]
    fn crossover_that_flips_back_counts_only_the_lasting_lead() {
        // Ahead at 4K, behind at 16K, ahead from 64K on.
        let pts = [
            (1024, 1.0, 2.0),
            (4096, 3.0, 2.0),
            (16384, 3.0, 4.0),
            (65536, 6.0, 5.0),
            (262144, 8.0, 7.0),
        ];
        assert_eq!(
            crossover_point(&pts, Better::Higher),
            CrossoverPoint::At(65536)
        );
        // Ahead in the middle, behind at the largest size: never.
        let back = [(1024, 1.0, 2.0), (4096, 3.0, 2.0), (16384, 1.0, 4.0)];
        assert_eq!(
            crossover_point(&back, Better::Higher),
            CrossoverPoint::Never
        );
        // Unsorted input is sorted by size first.
        let unsorted = [(65536, 6.0, 5.0), (1024, 1.0, 2.0), (4096, 3.0, 2.0)];
        assert_eq!(
            crossover_point(&unsorted, Better::Higher),
            CrossoverPoint::At(4096)
        );
    }

    #[test]
    fn crossovers_record_earlier_leads() {
        let mk = |mode, size, gbps: f64| Group {
            mode,
            size,
            threads: 1,
            repeats: 1,
            throughput_gbps: stat(&[gbps]),
            latency_p50_us: None,
            latency_p99_us: None,
            server_ns_per_byte: None,
            total_ns_per_byte: stat(&[1.0 / gbps]),
            cycles_per_byte: None,
            llc_misses_per_mib: None,
            copies_per_byte: None,
            sites: BTreeMap::new(),
            integrity_errors: 0,
            zerocopy: ZeroCopyFigures::default(),
        };
        let groups = vec![
            mk(Mode::TwoCopy, 1024, 2.0),
            mk(Mode::TwoCopy, 4096, 2.0),
            mk(Mode::TwoCopy, 16384, 4.0),
            mk(Mode::OneCopy, 1024, 1.0),
            mk(Mode::OneCopy, 4096, 3.0),
            mk(Mode::OneCopy, 16384, 3.0),
        ];
        let xs = crossovers(&groups, CpuMetric::Total, 1);
        // Only the one-copy/two-copy pair has both modes, in two metrics.
        assert_eq!(xs.len(), 2);
        let tp = &xs[0];
        assert_eq!(tp.metric, CrossoverMetric::Throughput);
        assert_eq!(tp.point, CrossoverPoint::Never);
        assert_eq!(tp.earlier_leads, vec![4096]);
        assert_eq!(tp.compared.len(), 3);
        let cpu = &xs[1];
        assert_eq!(cpu.metric, CrossoverMetric::Cpu(CpuMetric::Total));
        assert_eq!(cpu.point, CrossoverPoint::Never);
    }

    #[test]
    fn median_and_cv() {
        let s = stat(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            (s.n, s.median, s.min, s.max, s.mean),
            (3, 2.0, 1.0, 3.0, 2.0)
        );
        // Sample sd of 1,2,3 is 1; CV = 1/2.
        assert!((s.cv.unwrap() - 0.5).abs() < 1e-12);
        let even = stat(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        let one = stat(&[7.0]).unwrap();
        assert_eq!((one.median, one.cv), (7.0, None));
        assert_eq!(stat(&[]), None);
        assert_eq!(stat(&[f64::NAN]), None);
        let zero = stat(&[0.0, 0.0]).unwrap();
        assert_eq!(zero.cv, None);
        let same = stat(&[5.0, 5.0]).unwrap();
        assert_eq!(same.cv, Some(0.0));
    }

    #[test]
    fn pearson_r() {
        let perfect: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        let p = pearson(&perfect);
        assert_eq!(p.n, 5);
        assert!((p.r.unwrap() - 1.0).abs() < 1e-12);
        let anti: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, -(i as f64))).collect();
        assert!((pearson(&anti).r.unwrap() + 1.0).abs() < 1e-12);
        // Known value: x = 1..5, y = 2,4,5,4,5 -> r = 0.7745966692414834.
        let known = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];
        assert!((pearson(&known).r.unwrap() - 0.774_596_669_241_483_4).abs() < 1e-12);
        // Too few points, or a constant variable: undefined.
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 2.0)]).r, None);
        assert_eq!(pearson(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).r, None);
        assert_eq!(pearson(&[(f64::NAN, 1.0), (1.0, 2.0)]).n, 1);
    }

    #[test]
    fn nearest_size_on_a_log_scale() {
        assert_eq!(
            nearest_size([1024, 65536, 1 << 20], 256 * 1024),
            Some(1 << 20)
        );
        assert_eq!(nearest_size([1024, 262144], 256 * 1024), Some(262144));
        // 128K and 512K are equally far: the larger wins.
        assert_eq!(nearest_size([131072, 524288], 262144), Some(524288));
        assert_eq!(nearest_size([], 262144), None);
    }

    #[test]
    fn num_formats_without_panicking() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(num(0.0001234), "1.23e-4");
    }
}
