//! Analysis of a `netcopy run`: pure functions from [`Results`] to the figures that the
//! plots and the report show. Nothing here reads a file or touches the kernel, and nothing
//! panics on odd input: a figure that cannot be computed is `None` (or "never", or a
//! finding), never a made-up number.
//!
//! Definitions used throughout (the report repeats them):
//! - A *group* is one (mode, message size, thread count); its repeats are aggregated into
//!   a [`Stat`](groups::Stat): median, min, max, mean, coefficient of variation (CV = sample standard
//!   deviation / mean, n - 1 in the denominator; undefined for fewer than 2 repeats) and a
//!   distribution-free interval for the median (95 % from 6 repeats on, the repeats' range
//!   below that, with its coverage: 75 % for 3).
//! - *Decided*: two figures' order is decided when both have at least
//!   [`MIN_REPEATS_TO_DECIDE`](groups::MIN_REPEATS_TO_DECIDE) repeats and their intervals
//!   do not overlap; crossovers, winners and findings that compare say decided or
//!   undecided by this rule.
//! - *High variance*: CV above [`HIGH_CV`](findings::HIGH_CV) (10 %) between the repeats
//!   of one group.
//! - *Non-monotonic throughput*: a mode's median throughput at one size is more than
//!   [`NON_MONOTONIC_DROP`](findings::NON_MONOTONIC_DROP) (10 %) below its median at the
//!   next smaller measured size, at the same thread count, and decidedly so.
//! - The modes' groups hold the cells received with recv() (`--recv copy`);
//!   [`receive`](mod@receive) sets each point's receive mechanisms side by side.
//! - *Crossover* of a challenger over a baseline: see [`crossovers`](mod@crossovers).
//! - *CPU per byte*: CPU time of server and client together per payload byte delivered
//!   ([`CpuMetric::Total`]), because on loopback the receive path and the deferred copy of
//!   "zero-copy" pages run in softirq context charged to whichever process is on the CPU;
//!   the server-only figure is used only when no cell has the total.
//!
//! One module per concern: [`groups`](mod@groups) aggregates the repeats,
//! [`crossovers`](mod@crossovers) compares modes size by size, [`hardware`] says where the
//! PMU figures are, [`findings`](mod@findings) flags what a
//! reader must know, [`correlation`] and [`copies`] feed their report sections, [`floor`]
//! reads the machine's round-trip floor against the latencies, [`study`] ties the study's
//! claims to the modes by their claims in the mode table, [`study_comparison`] sets the
//! study's published figures beside this run's, and [`answers`] turns all of it into the
//! study's questions answered in English.

pub(crate) mod answers;
pub(crate) mod copies;
pub(crate) mod correlation;
pub(crate) mod crossovers;
pub(crate) mod findings;
pub(crate) mod floor;
pub(crate) mod format;
pub(crate) mod groups;
pub(crate) mod hardware;
pub(crate) mod receive;
pub(crate) mod study;
pub(crate) mod study_comparison;

pub(crate) use format::num;

use crate::experiment::results::Results;

use answers::Answer;
use copies::{mode_copies, ModeCopies};
use correlation::{copy_cost_correlation, CopyCostCorrelation};
use crossovers::{crossovers, Crossover};
use findings::{findings, Finding};
use floor::{floor_reading, FloorReading};
use groups::{base_threads, groups, nearest_size, CpuMetric, Group};
use hardware::{hw_availability, HwAvailability};
use receive::{receive_comparisons, receive_groups, ReceiveComparison, ReceiveGroup};
use study_comparison::{study_comparison, ComparisonRow};

/// The size the study used for its latency figure; the nearest measured size stands in.
pub(crate) const REFERENCE_SIZE: u64 = 256 * 1024;

/// Everything the plots and the report need.
#[derive(Clone, Debug)]
pub(crate) struct Analysis {
    pub(crate) groups: Vec<Group>,
    pub(crate) cpu_metric: CpuMetric,
    /// The thread count of the size plots and crossovers.
    pub(crate) base_threads: Option<usize>,
    /// The measured size nearest to 256 KiB.
    pub(crate) reference_size: Option<u64>,
    pub(crate) crossovers: Vec<Crossover>,
    pub(crate) hw: HwAvailability,
    pub(crate) findings: Vec<Finding>,
    pub(crate) correlation: CopyCostCorrelation,
    pub(crate) copies: Vec<ModeCopies>,
    pub(crate) answers: Vec<Answer>,
    /// The machine's own round-trip floor read against the cells.
    pub(crate) floor: FloorReading,
    /// The study's published figures beside this run's.
    pub(crate) study_comparison: Vec<ComparisonRow>,
    /// Every (mode, receive mechanism, size, threads); the modes' `groups` above hold
    /// only the cells received with recv(), so that modes compare like for like.
    pub(crate) receive_groups: Vec<ReceiveGroup>,
    /// The points measured with both receive mechanisms.
    pub(crate) receive: Vec<ReceiveComparison>,
}

pub(crate) fn analyze(results: &Results) -> Analysis {
    let groups = groups(results);
    let cpu_metric = CpuMetric::choose(results);
    let base = base_threads(&groups);
    let reference_size = nearest_size(groups.iter().map(|g| g.size), REFERENCE_SIZE);
    let crossovers = base
        .map(|t| crossovers(&groups, cpu_metric, t))
        .unwrap_or_default();
    let hw = hw_availability(results);
    let receive_groups = receive_groups(&results.cells);
    let mut findings = findings(results, &groups, &hw);
    findings.extend(receive::findings(&receive_groups));
    let correlation = copy_cost_correlation(results, cpu_metric);
    let copies = match (reference_size, base) {
        (Some(s), Some(t)) => mode_copies(results, &groups, s, t),
        _ => mode_copies(results, &groups, 0, 0),
    };
    let answers = answers::answers(
        results,
        &answers::Inputs {
            groups: &groups,
            cpu_metric,
            base_threads: base,
            reference_size,
            crossovers: &crossovers,
            hw: &hw,
            copies: &copies,
        },
    );
    let floor = floor_reading(results, &groups);
    let study_comparison = study_comparison(&study_comparison::Inputs {
        groups: &groups,
        crossovers: &crossovers,
        hw: &hw,
        cpu_metric,
        base_threads: base,
        reference_size,
        cpus: results.machine.cpus,
        modes: &results.config.modes,
    });
    let receive = receive_comparisons(&receive_groups);
    Analysis {
        receive_groups,
        receive,
        floor,
        study_comparison,
        groups,
        cpu_metric,
        base_threads: base,
        reference_size,
        crossovers,
        hw,
        findings,
        correlation,
        copies,
        answers,
    }
}
