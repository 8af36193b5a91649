//! What the soak measures of a server process, once a second, from /proc: resident memory
//! (VmRSS), open file descriptors (entries of /proc/PID/fd) and threads; and the rule that
//! says whether a series of such samples is flat.

use std::time::Duration;

use anyhow::{Context, Result};

/// One reading of a server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the churn started.
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// Reads VmRSS and Threads from /proc/PID/status and counts /proc/PID/fd.
pub fn read_sample(pid: u32, at: Duration) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (did the server exit?)"))?;
    let rss_kib = status_field(&status, "VmRSS").context("no VmRSS in /proc/PID/status")?;
    let threads = status_field(&status, "Threads").context("no Threads in /proc/PID/status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64;
    Ok(Sample {
        at,
        rss_kib,
        fds,
        threads,
    })
}

/// The number of a `Name:   1234 kB` or `Name: 12` line.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// How much a quantity may rise from the first half after warm-up to the last half and
/// still count as flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slack {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// One quantity's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatness {
    /// Largest value in the first half of the samples after warm-up.
    pub first_half_max: u64,
    /// Largest value in the last half.
    pub last_half_max: u64,
    pub slack: u64,
}

impl Flatness {
    pub fn flat(&self) -> bool {
        self.last_half_max <= self.first_half_max + self.slack
    }
}

/// Flatness of one quantity over the samples taken at or after `warm_up`: the samples are
/// split in two halves by count (an odd middle one goes to the last half); flat when the
/// last half's max <= the first half's max + `slack`. `None` with fewer than 2 samples
/// after warm-up (nothing to compare).
pub fn flatness(
    samples: &[Sample],
    warm_up: Duration,
    value: impl Fn(&Sample) -> u64,
    slack: u64,
) -> Option<Flatness> {
    let after: Vec<u64> = samples
        .iter()
        .filter(|s| s.at >= warm_up)
        .map(value)
        .collect();
    if after.len() < 2 {
        return None;
    }
    let (first, last) = after.split_at(after.len() / 2);
    Some(Flatness {
        first_half_max: first.iter().copied().max()?,
        last_half_max: last.iter().copied().max()?,
        slack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: &[u64]) -> Vec<Sample> {
        rss.iter()
            .enumerate()
            .map(|(i, &rss_kib)| Sample {
                at: Duration::from_secs(i as u64),
                rss_kib,
                fds: 5,
                threads: 2,
            })
            .collect()
    }

    #[test]
    fn flat_compares_the_halves_after_warm_up() {
        // Warm-up (first 2 s) may grow freely; then first half max 110, last half max 112.
        let samples = series(&[10, 90, 100, 110, 105, 112, 108, 111]);
        let f = flatness(&samples, Duration::from_secs(2), |s| s.rss_kib, 2).unwrap();
        assert_eq!((f.first_half_max, f.last_half_max), (110, 112));
        assert!(f.flat());
        let f = flatness(&samples, Duration::from_secs(2), |s| s.rss_kib, 1).unwrap();
        assert!(!f.flat());
    }

    #[test]
    fn steady_growth_is_not_flat() {
        let samples = series(&(0..20).map(|i| 100 + 10 * i).collect::<Vec<_>>());
        let f = flatness(&samples, Duration::from_secs(4), |s| s.rss_kib, 50).unwrap();
        assert_eq!((f.first_half_max, f.last_half_max), (210, 290));
        assert!(!f.flat());
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        let samples = series(&[1, 2, 3]);
        assert_eq!(
            flatness(&samples, Duration::from_secs(2), |s| s.rss_kib, 0),
            None
        );
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tnetcopy\nVmRSS:\t   9876 kB\nThreads:\t3\n";
        assert_eq!(status_field(status, "VmRSS"), Some(9876));
        assert_eq!(status_field(status, "Threads"), Some(3));
        assert_eq!(status_field(status, "VmHWM"), None);
    }

    #[test]
    fn reads_this_process() {
        let sample = read_sample(std::process::id(), Duration::ZERO).unwrap();
        assert!(sample.rss_kib > 0 && sample.threads >= 1 && sample.fds >= 3);
    }
}
