//! Groups: the repeats of one (mode, message size, thread count) aggregated into a [`Stat`]
//! per figure, and the lookups every later step makes over them.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
};

use crate::{
    experiment::results::{
        Cell, FigureSummary, GroupSummary, Results, ZeroCopyFigures, INTERVAL_CONFIDENCE,
        INTERVAL_METHOD,
    },
    ledger::FigureSource,
    util::stats::{self, MedianInterval},
    workload::{client::ReceiveMechanism, modes::Mode},
};

/// Fewer repeats than this decide nothing: two groups whose intervals do not overlap are
/// *decided* only when each has at least this many. With 3 repeats a side the intervals
/// are the repeats' ranges, and two ranges of 3 fail to overlap by chance with
/// probability 2/20 when the two figures come from one distribution (the exact
/// Mann-Whitney test with no overlap); with 2 a side it would be 2/6.
pub(crate) const MIN_REPEATS_TO_DECIDE: usize = 3;

/// Median, range, spread and an interval for the median of one figure over the repeats
/// of a group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stat {
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    /// Sample standard deviation / mean; None for n < 2 or a zero mean.
    pub(crate) cv: Option<f64>,
    /// Distribution-free interval for the median (see [`INTERVAL_METHOD`]); None for n < 2.
    pub(crate) interval: Option<MedianInterval>,
}

impl Stat {
    /// How this figure's median compares with `other`'s when the data decide it: Some
    /// only when both have [`MIN_REPEATS_TO_DECIDE`] repeats and their intervals do not
    /// overlap.
    pub(crate) fn decided_order(&self, other: &Stat) -> Option<Ordering> {
        if self.n < MIN_REPEATS_TO_DECIDE || other.n < MIN_REPEATS_TO_DECIDE {
            return None;
        }
        let (a, b) = (self.interval?, other.interval?);
        if a.low > b.high {
            Some(Ordering::Greater)
        } else if a.high < b.low {
            Some(Ordering::Less)
        } else {
            None
        }
    }
}

/// The [`Stat`] of the finite values among `values`; None when there is none.
pub(crate) fn stat(values: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let median = stats::median(&v)?;
    let interval = stats::median_interval_up_to(&v, INTERVAL_CONFIDENCE);
    v.sort_by(f64::total_cmp);
    let n = v.len();
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
        interval,
    })
}

/// A per-cell figure a group aggregates.
type CellFigure = fn(&Cell) -> Option<f64>;

fn latency_ok(c: &Cell) -> bool {
    c.latency.transactions > 0 || c.latency.latency_us.samples > 0
}

fn throughput_gbps(c: &Cell) -> Option<f64> {
    Some(c.stream.throughput_gbps)
}
fn latency_p50_us(c: &Cell) -> Option<f64> {
    latency_ok(c).then_some(c.latency.latency_us.p50)
}
fn latency_p99_us(c: &Cell) -> Option<f64> {
    latency_ok(c).then_some(c.latency.latency_us.p99)
}
fn server_ns_per_byte(c: &Cell) -> Option<f64> {
    c.cpu.server_ns_per_byte
}
fn total_ns_per_byte(c: &Cell) -> Option<f64> {
    c.cpu.total_ns_per_byte
}
fn cycles_per_byte(c: &Cell) -> Option<f64> {
    c.cpu.cycles_per_byte
}
fn llc_misses_per_mib(c: &Cell) -> Option<f64> {
    c.cpu.llc_misses_per_mib
}
fn copies_per_byte(c: &Cell) -> Option<f64> {
    c.copies_per_byte
}

/// Every per-cell figure a group aggregates, by the name results.json gives it.
const FIGURES: [(&str, CellFigure); 8] = [
    ("throughput_gbps", throughput_gbps),
    ("latency_p50_us", latency_p50_us),
    ("latency_p99_us", latency_p99_us),
    ("server_ns_per_byte", server_ns_per_byte),
    ("total_ns_per_byte", total_ns_per_byte),
    ("cycles_per_byte", cycles_per_byte),
    ("llc_misses_per_mib", llc_misses_per_mib),
    ("copies_per_byte", copies_per_byte),
];

/// The cells of each (mode, threads, size), each group in repeat order. Only cells that
/// received with recv() (`--recv copy`): the modes are compared like for like, and the
/// receive mechanisms have an analysis of their own (`receive`).
fn cells_by_group(results: &Results) -> BTreeMap<(Mode, usize, u64), Vec<&Cell>> {
    let mut by_key: BTreeMap<(Mode, usize, u64), Vec<&Cell>> = BTreeMap::new();
    for c in results
        .cells
        .iter()
        .filter(|c| c.recv == ReceiveMechanism::Copy)
    {
        by_key
            .entry((c.mode, c.threads, c.size))
            .or_default()
            .push(c);
    }
    for cells in by_key.values_mut() {
        cells.sort_by_key(|c| c.repeat);
    }
    by_key
}

/// Every figure of every group over its repeats, as results.json records them.
pub(crate) fn group_summaries(results: &Results) -> Vec<GroupSummary> {
    cells_by_group(results)
        .into_iter()
        .map(|((mode, threads, size), cells)| GroupSummary {
            mode,
            size,
            threads,
            repeats: cells.len(),
            figures: FIGURES
                .iter()
                .filter_map(|(name, f)| {
                    let values: Vec<f64> = cells.iter().filter_map(|c| f(c)).collect();
                    Some((name.to_string(), FigureSummary::of(&values)?))
                })
                .collect(),
            interval_method: INTERVAL_METHOD.to_string(),
        })
        .collect()
}

/// One copy site of a group.
#[derive(Clone, Debug)]
pub(crate) struct SiteAggregate {
    pub(crate) site: String,
    /// Bytes per delivered message over the repeats where the site was observable.
    pub(crate) bytes_per_message: Option<Stat>,
    /// How the figure was obtained (the first repeat's source; Unavailable if never seen).
    pub(crate) source: FigureSource,
    pub(crate) how: String,
}

/// One (mode, size, threads) with its repeats aggregated.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) mode: Mode,
    pub(crate) size: u64,
    pub(crate) threads: usize,
    pub(crate) repeats: usize,
    pub(crate) throughput_gbps: Option<Stat>,
    /// Request/response latency percentiles (rr phase), microseconds.
    pub(crate) latency_p50_us: Option<Stat>,
    pub(crate) latency_p99_us: Option<Stat>,
    pub(crate) server_ns_per_byte: Option<Stat>,
    pub(crate) total_ns_per_byte: Option<Stat>,
    pub(crate) cycles_per_byte: Option<Stat>,
    pub(crate) llc_misses_per_mib: Option<Stat>,
    pub(crate) copies_per_byte: Option<Stat>,
    /// Keyed by ledger site name.
    pub(crate) sites: BTreeMap<String, SiteAggregate>,
    /// Stream and rr phases, all repeats.
    pub(crate) integrity_errors: u64,
    /// Summed over the repeats.
    pub(crate) zerocopy: ZeroCopyFigures,
}

/// The site names the cells carry, in ledger order, then any other name they carry (a
/// site newer than the run, such as page_reference in a run from before it, is left out).
pub(crate) fn site_names(results: &Results) -> Vec<String> {
    let carried = |name: &str| results.cells.iter().any(|c| c.copies.contains_key(name));
    let mut names: Vec<String> = crate::ledger::SITES
        .iter()
        .map(|s| s.name().to_string())
        .filter(|name| results.cells.is_empty() || carried(name))
        .collect();
    let extra: BTreeSet<&String> = results
        .cells
        .iter()
        .flat_map(|c| c.copies.keys())
        .filter(|k| !names.contains(k))
        .collect();
    names.extend(extra.into_iter().cloned());
    names
}

pub(super) fn collect<F: Fn(&Cell) -> Option<f64>>(cells: &[&Cell], f: F) -> Option<Stat> {
    let v: Vec<f64> = cells.iter().filter_map(|c| f(c)).collect();
    stat(&v)
}

/// Aggregates the cells per (mode, size, threads), sorted by mode, threads, size.
pub(super) fn groups(results: &Results) -> Vec<Group> {
    let names = site_names(results);
    cells_by_group(results)
        .into_iter()
        .map(|((mode, threads, size), cells)| {
            let of = |f: CellFigure| collect(&cells, f);
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
                zerocopy.unsent_sends += z.unsent_sends;
                zerocopy.unsent_copied_sends += z.unsent_copied_sends;
            }
            Group {
                mode,
                size,
                threads,
                repeats: cells.len(),
                throughput_gbps: of(throughput_gbps),
                latency_p50_us: of(latency_p50_us),
                latency_p99_us: of(latency_p99_us),
                server_ns_per_byte: of(server_ns_per_byte),
                total_ns_per_byte: of(total_ns_per_byte),
                cycles_per_byte: of(cycles_per_byte),
                llc_misses_per_mib: of(llc_misses_per_mib),
                copies_per_byte: of(copies_per_byte),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuMetric {
    /// Server + client CPU ns per payload byte.
    Total,
    /// Server CPU ns per payload byte (when no cell has the client's CPU time).
    Server,
}

impl CpuMetric {
    pub(crate) fn of(self, g: &Group) -> Option<Stat> {
        match self {
            CpuMetric::Total => g.total_ns_per_byte,
            CpuMetric::Server => g.server_ns_per_byte,
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            CpuMetric::Total => "CPU ns per byte (server + client)",
            CpuMetric::Server => "CPU ns per byte (server only)",
        }
    }
    /// Chooses [`CpuMetric::Total`] when any cell has it.
    pub(super) fn choose(results: &Results) -> CpuMetric {
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

/// The thread count crossovers and size plots use: 1 when measured, else the smallest.
pub(super) fn base_threads(groups: &[Group]) -> Option<usize> {
    let threads: BTreeSet<usize> = groups.iter().map(|g| g.threads).collect();
    if threads.contains(&1) {
        Some(1)
    } else {
        threads.first().copied()
    }
}

/// The measured size nearest to `target` on a log scale (ties go to the larger size).
pub(super) fn nearest_size(sizes: impl IntoIterator<Item = u64>, target: u64) -> Option<u64> {
    let t = (target.max(1) as f64).log2();
    sizes.into_iter().filter(|s| *s > 0).min_by(|a, b| {
        let da = ((*a as f64).log2() - t).abs();
        let db = ((*b as f64).log2() - t).abs();
        da.total_cmp(&db).then(b.cmp(a))
    })
}

/// The group of (mode, size, threads).
pub(crate) fn find_group(
    groups: &[Group],
    mode: Mode,
    size: u64,
    threads: usize,
) -> Option<&Group> {
    groups
        .iter()
        .find(|g| g.mode == mode && g.size == size && g.threads == threads)
}
/// The planned number of cells.
pub(crate) fn planned_cells(results: &Results) -> usize {
    let c = &results.config;
    c.modes.len() * c.recv.len().max(1) * c.sizes.len() * c.threads.len() * c.repeat as usize
}

pub(crate) fn modes_of(groups: &[Group]) -> Vec<Mode> {
    groups
        .iter()
        .map(|g| g.mode)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

pub(crate) fn sizes_of(groups: &[Group], threads: usize) -> Vec<u64> {
    groups
        .iter()
        .filter(|g| g.threads == threads)
        .map(|g| g.size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
