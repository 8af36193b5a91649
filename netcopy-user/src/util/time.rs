//! Dates and times, formatted one way each (humantime does the calendar).

use std::time::SystemTime;

/// RFC 3339 UTC to the second: `2026-11-25T06:15:00Z`.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `20261125T061500Z` (UTC): sortable, and free of characters shells and filesystems
/// dislike; the name of a run's or a trace's output directory.
pub fn compact_utc(at: SystemTime) -> String {
    rfc3339(at).replace(['-', ':'], "")
}

/// [`compact_utc`] of now.
pub fn utc_timestamp() -> String {
    compact_utc(SystemTime::now())
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, and so of trace events.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_timestamps() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(compact_utc(at(0)), "19700101T000000Z");
        assert_eq!(compact_utc(at(951_782_400)), "20000229T000000Z");
        assert_eq!(compact_utc(at(1_795_587_300)), "20261125T061500Z");
        assert_eq!(rfc3339(at(1_795_587_300)), "2026-11-25T06:15:00Z");
    }
}
