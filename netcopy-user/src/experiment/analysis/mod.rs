//! Analysis of a `netcopy run`: pure functions from [`Results`] to the figures that the
//! plots and the report show. Nothing here reads a file or touches the kernel, and nothing
//! panics on odd input: a figure that cannot be computed is `None` (or "never", or a
//! finding), never a made-up number.
//!
//! Definitions used throughout (the report repeats them):
//! - A *group* is one (mode, message size, thread count); its repeats are aggregated into
//!   a [`Stat`](groups::Stat): median, min, max, mean and coefficient of variation (CV = sample standard
//!   deviation / mean, n - 1 in the denominator; undefined for fewer than 2 repeats).
//! - *High variance*: CV above [`HIGH_CV`](findings::HIGH_CV) (10 %) between the repeats
//!   of one group.
//! - *Non-monotonic throughput*: a mode's median throughput at one size is more than
//!   [`NON_MONOTONIC_DROP`](findings::NON_MONOTONIC_DROP) (10 %) below its median at the
//!   next smaller measured size, at the same thread count.
//! - *Crossover* of a challenger over a baseline: see [`crossovers`](mod@crossovers).
//! - *CPU per byte*: CPU time of server and client together per payload byte delivered
//!   ([`CpuMetric::Total`]), because on loopback the receive path and the deferred copy of
//!   "zero-copy" pages run in softirq context charged to whichever process is on the CPU;
//!   the server-only figure is used only when no cell has the total.
//!
//! One module per concern: [`groups`](mod@groups) aggregates the repeats,
//! [`crossovers`](mod@crossovers) compares modes size by size, [`hardware`] says where the
//! PMU figures are, [`findings`](mod@findings) flags what a
//! reader must know, [`correlation`] and [`copies`] feed their report sections, [`study`]
//! ties the study's claims to the modes by their claims in the mode table, and [`answers`]
//! turns all of it into the study's questions answered in English.

pub(crate) mod answers;
pub(crate) mod copies;
pub(crate) mod correlation;
pub(crate) mod crossovers;
pub(crate) mod findings;
pub(crate) mod format;
pub(crate) mod groups;
pub(crate) mod hardware;
pub(crate) mod study;

pub(crate) use format::num;

use crate::experiment::results::Results;

use answers::Answer;
use copies::{mode_copies, ModeCopies};
use correlation::{copy_cost_correlation, CopyCostCorrelation};
use crossovers::{crossovers, Crossover};
use findings::{findings, Finding};
use groups::{base_threads, groups, nearest_size, CpuMetric, Group};
use hardware::{hw_availability, HwAvailability};

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
    let findings = findings(results, &groups, &hw);
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
    Analysis {
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
