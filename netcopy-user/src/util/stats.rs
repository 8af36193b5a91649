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

/// A distribution-free confidence interval for the median of `samples` at `confidence`
/// (e.g. 0.95): the order statistics x(k) and x(n+1-k), with k the largest rank for which
/// P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2. It assumes only that the samples are
/// independent draws of one distribution, nothing about its shape. None when there are
/// too few samples for that confidence (fewer than 6 at 95%) or one is not finite.
pub fn median_interval(samples: &[f64], confidence: f64) -> Option<(f64, f64)> {
    let n = samples.len();
    if n == 0 || samples.iter().any(|s| !s.is_finite()) || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let k = interval_rank(n, (1.0 - confidence) / 2.0);
    if k == 0 || 2 * k > n {
        return None;
    }
    Some(order_statistics(samples, k))
}

/// A distribution-free interval for the median, with the probability that it holds it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedianInterval {
    pub low: f64,
    pub high: f64,
    /// The exact probability that [low, high] holds the median of the distribution the
    /// samples were drawn from: 1 - 2 P(Binomial(n, 1/2) < k) for the ranks k, n+1-k.
    pub coverage: f64,
}

/// The interval of [`median_interval`] at `confidence` when the samples allow it; with
/// fewer samples (fewer than 6 at 95%), the widest one they give, min..max, whose
/// coverage is lower and said so (75% for 3 samples, 87.5% for 4, 93.75% for 5). None for
/// fewer than 2 samples (one value bounds nothing) or a sample that is not finite.
pub fn median_interval_up_to(samples: &[f64], confidence: f64) -> Option<MedianInterval> {
    let n = samples.len();
    if n < 2 || samples.iter().any(|s| !s.is_finite()) || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let k = interval_rank(n, (1.0 - confidence) / 2.0).max(1);
    let (low, high) = order_statistics(samples, k);
    Some(MedianInterval {
        low,
        high,
        coverage: 1.0 - 2.0 * binomial_half_cdf(n, k - 1),
    })
}

/// The largest rank k (0 when none) with P(B <= k - 1) <= tail, B ~ Binomial(n, 1/2).
fn interval_rank(n: usize, tail: f64) -> usize {
    let mut k = 0;
    while k < n && binomial_half_cdf(n, k) <= tail {
        k += 1;
    }
    k
}

/// P(B <= i) for B ~ Binomial(n, 1/2), summed in log space so large n cannot underflow.
fn binomial_half_cdf(n: usize, i: usize) -> f64 {
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64;
    let mut cdf = 0.0f64;
    for j in 0..=i.min(n) {
        cdf += (ln_choose + ln_half_n).exp();
        ln_choose += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    cdf.min(1.0)
}

/// x(k) and x(n + 1 - k), 1-based ranks, of `samples` (1 <= k <= n / 2 or k = 1).
fn order_statistics(samples: &[f64], k: usize) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[k - 1], sorted[sorted.len() - k])
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
    fn median_interval_uses_the_binomial_ranks() {
        let ascending: Vec<f64> = (1..=6).map(f64::from).collect();
        // n = 6: P(B <= 0) = 1/64 <= 2.5%, P(B <= 1) = 7/64 > 2.5%: the extremes.
        assert_eq!(median_interval(&ascending, 0.95), Some((1.0, 6.0)));
        assert_eq!(median_interval(&ascending[..5], 0.95), None);
        // n = 20: P(B <= 5) = 2.07% <= 2.5% < P(B <= 6) = 5.77%: ranks 6 and 15.
        let twenty: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(median_interval(&twenty, 0.95), Some((6.0, 15.0)));
        // n = 100: the textbook ranks 40 and 61.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median_interval(&hundred, 0.95), Some((40.0, 61.0)));
        // Large n does not underflow.
        let many: Vec<f64> = (0..5000).map(f64::from).collect();
        let (lo, hi) = median_interval(&many, 0.95).unwrap();
        assert!(lo < 2499.5 && hi > 2499.5 && hi - lo < 200.0, "{lo} {hi}");
        assert_eq!(
            median_interval(&[1.0, f64::NAN, 2.0, 3.0, 4.0, 5.0], 0.95),
            None
        );
    }

    #[test]
    fn small_samples_get_their_range_with_its_coverage() {
        let three = median_interval_up_to(&[3.0, 1.0, 2.0], 0.95).unwrap();
        assert_eq!((three.low, three.high), (1.0, 3.0));
        // min..max of n samples misses the median when all fall on one side: 2 / 2^n.
        assert!((three.coverage - 0.75).abs() < 1e-12);
        let five = median_interval_up_to(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.95).unwrap();
        assert_eq!((five.low, five.high), (1.0, 5.0));
        assert!((five.coverage - 0.9375).abs() < 1e-12);
        assert!((median_interval_up_to(&[1.0, 2.0], 0.95).unwrap().coverage - 0.5).abs() < 1e-12);
        assert_eq!(median_interval_up_to(&[1.0], 0.95), None);
        assert_eq!(median_interval_up_to(&[1.0, f64::NAN, 3.0], 0.95), None);
        // From 6 samples on, the 95% ranks of median_interval, with their exact coverage.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        let i = median_interval_up_to(&twenty, 0.95).unwrap();
        assert_eq!((i.low, i.high), (6.0, 15.0));
        assert!(i.coverage >= 0.95 && i.coverage < 0.96, "{}", i.coverage);
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
