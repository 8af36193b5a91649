//! Whether the modes that copy more also cost more CPU per byte: Pearson's r.

use std::collections::BTreeSet;

use super::groups::CpuMetric;
use crate::experiment::results::{Cell, Results};

/// Pearson's correlation coefficient of paired samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pearson {
    /// None when n < 3 or either variable is constant.
    pub(crate) r: Option<f64>,
    pub(crate) n: usize,
}

/// Pearson r over the pairs whose both values are finite.
fn pearson(pairs: &[(f64, f64)]) -> Pearson {
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

/// Correlation between bytes copied per byte delivered and CPU per byte.
#[derive(Clone, Debug)]
pub(crate) struct CopyCostCorrelation {
    pub(crate) cpu: CpuMetric,
    /// Over every cell with both figures.
    pub(crate) all: Pearson,
    /// Within each size (size is a confounder: per-byte CPU falls with size whatever the
    /// copies), for sizes with a defined r.
    pub(crate) per_size: Vec<(u64, Pearson)>,
}

pub(super) fn copy_cost_correlation(results: &Results, cpu: CpuMetric) -> CopyCostCorrelation {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
