//! How numbers read in findings, answers, the report and the plots.

use super::groups::Stat;

/// Formats a number with about three significant digits.
pub(crate) fn num(x: f64) -> String {
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

/// `8.69 [8.50, 8.90]`: a median with its interval; the median alone without one.
pub(crate) fn with_interval(s: &Stat) -> String {
    match s.interval {
        Some(i) => format!("{} [{}, {}]", num(s.median), num(i.low), num(i.high)),
        None => num(s.median),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::analysis::groups::stat;

    #[test]
    fn a_median_reads_with_its_interval() {
        assert_eq!(
            with_interval(&stat(&[2.0, 1.0, 3.0]).unwrap()),
            "2.00 [1.00, 3.00]"
        );
        assert_eq!(with_interval(&stat(&[7.0]).unwrap()), "7.00");
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
