//! Crossovers: from which message size on a challenger mode beats its baseline for good,
//! and whether the repeats' intervals decide it.

use std::{cmp::Ordering, collections::BTreeSet};

use super::groups::{find_group, CpuMetric, Group, Stat};
use crate::workload::modes::{Mode, MODES};

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// Where a challenger overtakes a baseline for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrossoverPoint {
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
    pub(crate) fn bytes_text(self) -> String {
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
fn crossover_point(points: &[(u64, f64, f64)], better: Better) -> CrossoverPoint {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrossoverMetric {
    Throughput,
    Cpu(CpuMetric),
}

impl CrossoverMetric {
    /// `throughput` / `cpu_ns_per_byte` (the form the report's table uses).
    pub(crate) fn key(self) -> &'static str {
        match self {
            CrossoverMetric::Throughput => "throughput",
            CrossoverMetric::Cpu(_) => "cpu_ns_per_byte",
        }
    }
    pub(crate) fn better(self) -> Better {
        match self {
            CrossoverMetric::Throughput => Better::Higher,
            CrossoverMetric::Cpu(_) => Better::Lower,
        }
    }
    pub(super) fn of(self, g: &Group) -> Option<Stat> {
        match self {
            CrossoverMetric::Throughput => g.throughput_gbps,
            CrossoverMetric::Cpu(m) => m.of(g),
        }
    }
    pub(crate) fn unit(self) -> &'static str {
        match self {
            CrossoverMetric::Throughput => "Gbit/s",
            CrossoverMetric::Cpu(_) => "ns/B",
        }
    }
}

/// What the intervals of two modes at one size say about their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Separation {
    /// The challenger's interval is entirely on the better side of the baseline's.
    Ahead,
    /// The challenger's interval is entirely on the worse side.
    Behind,
    /// The intervals overlap, or a side has too few repeats: the data do not decide.
    Undecided,
}

impl Separation {
    pub(crate) fn of(challenger: &Stat, baseline: &Stat, better: Better) -> Separation {
        match (challenger.decided_order(baseline), better) {
            (Some(Ordering::Greater), Better::Higher) | (Some(Ordering::Less), Better::Lower) => {
                Separation::Ahead
            }
            (Some(_), _) => Separation::Behind,
            (None, _) => Separation::Undecided,
        }
    }
}

/// One size compared in a crossover.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compared {
    pub(crate) size: u64,
    pub(crate) challenger: Stat,
    pub(crate) baseline: Stat,
    /// The challenger's median is strictly better.
    pub(crate) ahead: bool,
    pub(crate) separation: Separation,
}

#[derive(Clone, Debug)]
pub(crate) struct Crossover {
    pub(crate) challenger: Mode,
    pub(crate) baseline: Mode,
    pub(crate) metric: CrossoverMetric,
    pub(crate) threads: usize,
    pub(crate) point: CrossoverPoint,
    pub(crate) compared: Vec<Compared>,
    /// Sizes below the crossover (or anywhere, for "never") where the challenger was ahead
    /// but fell behind again at a larger size.
    pub(crate) earlier_leads: Vec<u64>,
    /// Whether the intervals decide the point (see [`decided`]).
    pub(crate) decided: bool,
}

/// Whether the intervals decide a crossover found from the medians: for a crossover at
/// s, the challenger is decidedly ahead at s and at every larger size, and decidedly
/// behind at the size just below s (if any), so the crossover lies between those two
/// sizes; for "never", it is decidedly behind at the largest size. `compared` is sorted
/// by size.
fn decided(point: CrossoverPoint, compared: &[Compared]) -> bool {
    match point {
        CrossoverPoint::NoData => false,
        CrossoverPoint::Never => compared
            .last()
            .is_some_and(|c| c.separation == Separation::Behind),
        CrossoverPoint::At(s) => {
            let from = compared.partition_point(|c| c.size < s);
            compared[from..]
                .iter()
                .all(|c| c.separation == Separation::Ahead)
                && (from == 0 || compared[from - 1].separation == Separation::Behind)
        }
    }
}

/// The mode pairs compared, (challenger, baseline): each row of the mode table against the
/// modes it `challenges`, in table order.
pub(super) fn crossover_pairs() -> impl Iterator<Item = (Mode, Mode)> {
    MODES.iter().flat_map(|spec| {
        spec.challenges
            .iter()
            .map(move |&baseline| (spec.mode, baseline))
    })
}

/// Crossovers of every pair of [`crossover_pairs`] whose modes were both measured, in
/// throughput and in CPU per byte, at `threads`.
pub(super) fn crossovers(groups: &[Group], cpu: CpuMetric, threads: usize) -> Vec<Crossover> {
    let modes: BTreeSet<Mode> = groups.iter().map(|g| g.mode).collect();
    let mut out = Vec::new();
    for metric in [CrossoverMetric::Throughput, CrossoverMetric::Cpu(cpu)] {
        for (challenger, baseline) in crossover_pairs() {
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
                        challenger: a,
                        baseline: b,
                        ahead: ahead(a.median, b.median, metric.better()),
                        separation: Separation::of(&a, &b, metric.better()),
                    });
                }
            }
            compared.sort_by_key(|c| c.size);
            let points: Vec<_> = compared
                .iter()
                .map(|c| (c.size, c.challenger.median, c.baseline.median))
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
                decided: decided(point, &compared),
                compared,
                earlier_leads,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{experiment::analysis::groups::stat, experiment::results::ZeroCopyFigures};

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
        // One repeat each decides nothing.
        assert!(!tp.decided && !cpu.decided);
    }

    /// A comparison at `size` whose challenger has repeats `a` and baseline `b`.
    fn compared(size: u64, a: &[f64], b: &[f64]) -> Compared {
        let (a, b) = (stat(a).unwrap(), stat(b).unwrap());
        Compared {
            size,
            challenger: a,
            baseline: b,
            ahead: a.median > b.median,
            separation: Separation::of(&a, &b, Better::Higher),
        }
    }

    #[test]
    fn a_crossover_is_decided_only_where_the_intervals_separate() {
        let behind = |s| compared(s, &[1.0, 1.1, 1.2], &[2.0, 2.1, 2.2]);
        let ahead = |s| compared(s, &[3.0, 3.1, 3.2], &[2.0, 2.1, 2.2]);
        // Medians ahead, ranges overlapping.
        let close = |s| compared(s, &[2.0, 2.15, 2.3], &[1.9, 2.1, 2.2]);
        assert_eq!(close(1).separation, Separation::Undecided);
        assert!(close(1).ahead);
        let at = |cs: &[Compared]| {
            let pts: Vec<_> = cs
                .iter()
                .map(|c| (c.size, c.challenger.median, c.baseline.median))
                .collect();
            let p = crossover_point(&pts, Better::Higher);
            (p, decided(p, cs))
        };
        // Behind, then ahead for good: decided, between the two sizes.
        assert_eq!(
            at(&[behind(1), ahead(2), ahead(4)]),
            (CrossoverPoint::At(2), true)
        );
        // Overlap just below the lead: the crossover may be lower.
        assert_eq!(
            at(&[behind(1), close(2), ahead(4)]),
            (CrossoverPoint::At(2), false)
        );
        // Overlap inside the lead.
        assert_eq!(
            at(&[behind(1), ahead(2), close(4)]),
            (CrossoverPoint::At(2), false)
        );
        // Ahead everywhere and decidedly so.
        assert_eq!(at(&[ahead(1), ahead(2)]), (CrossoverPoint::At(1), true));
        // Never: decided only when behind at the largest size.
        assert_eq!(at(&[ahead(1), behind(2)]), (CrossoverPoint::Never, true));
        assert_eq!(
            at(&[ahead(1), compared(2, &[2.0, 2.1, 2.2], &[2.0, 2.15, 2.3])]),
            (CrossoverPoint::Never, false)
        );
        assert_eq!(at(&[]), (CrossoverPoint::NoData, false));
        // Two repeats a side never decide, however far apart.
        let two = compared(1, &[9.0, 9.1], &[1.0, 1.1]);
        assert_eq!(two.separation, Separation::Undecided);
    }

    #[test]
    fn pairs_come_from_the_mode_table_in_its_order() {
        let pairs: Vec<(Mode, Mode)> = crossover_pairs().collect();
        assert_eq!(
            pairs,
            vec![
                (Mode::OneCopy, Mode::TwoCopy),
                (Mode::ZeroCopy, Mode::TwoCopy),
                (Mode::ZeroCopy, Mode::OneCopy),
                (Mode::IoUring, Mode::OneCopy),
                (Mode::IoUringZc, Mode::IoUring),
                (Mode::IoUringZc, Mode::ZeroCopy),
                (Mode::Sendfile, Mode::OneCopy),
                (Mode::Splice, Mode::OneCopy),
            ]
        );
    }
}
