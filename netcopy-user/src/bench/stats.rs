//! The arithmetic of the benchmarks: medians, spreads, ratios and overheads. Pure functions,
//! unit-tested; every figure `netcopy bench` prints goes through here.

use serde::{Deserialize, Serialize};

/// Median, min and max of a set of samples (one per round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every sample, in the order measured.
    pub samples: Vec<f64>,
}

impl Summary {
    /// None for no samples or a sample that is not a finite number.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        Some(Summary {
            median: median(samples)?,
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            samples: samples.to_vec(),
        })
    }

    /// (max - min) / median: how far apart the rounds were, as a fraction.
    pub fn spread(&self) -> Option<f64> {
        (self.median > 0.0).then(|| (self.max - self.min) / self.median)
    }
}

/// The median; for an even count the mean of the two middle values. None when empty or
/// when a value is NaN.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// `a / b`, None when `b` is not a positive finite number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && b.is_finite() && a.is_finite()).then(|| a / b)
}

/// How much less throughput `with` gave than `base`, in percent of `base` (positive: slower).
pub fn throughput_loss_pct(base: f64, with: f64) -> Option<f64> {
    ratio(base - with, base).map(|r| r * 100.0)
}

/// How much more a cost (CPU per byte) `with` is than `base`, in percent of `base`
/// (positive: more expensive).
pub fn cost_increase_pct(base: f64, with: f64) -> Option<f64> {
    ratio(with - base, base).map(|r| r * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn summary_keeps_order_and_extremes() {
        let s = Summary::of(&[10.0, 12.0, 8.0, 11.0, 9.0]).unwrap();
        assert_eq!(s.median, 10.0);
        assert_eq!(s.min, 8.0);
        assert_eq!(s.max, 12.0);
        assert_eq!(s.samples, vec![10.0, 12.0, 8.0, 11.0, 9.0]);
        assert!((s.spread().unwrap() - 0.4).abs() < 1e-12);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::INFINITY]).is_none());
    }

    #[test]
    fn ratios_and_overheads() {
        assert_eq!(ratio(19.0, 20.0), Some(0.95));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -2.0), None);
        assert!((throughput_loss_pct(20.0, 19.4).unwrap() - 3.0).abs() < 1e-9);
        // Faster with the probes (noise): a negative loss, not clamped.
        assert!((throughput_loss_pct(20.0, 20.2).unwrap() + 1.0).abs() < 1e-9);
        assert!((cost_increase_pct(0.20, 0.22).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(cost_increase_pct(0.0, 1.0), None);
    }
}
