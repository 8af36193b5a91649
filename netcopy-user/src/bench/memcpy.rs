//! The machine's limit: single-thread memcpy bandwidth over buffers larger than the
//! last-level cache, and the loopback TCP ceiling it implies.

use crate::util::machine::meminfo_field;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::util::stats::Summary;

/// The smallest buffer measured, whatever the cache.
const MIN_BUFFER: u64 = 256 << 20;
/// The largest buffer measured (each of the two).
const MAX_BUFFER: u64 = 4 << 30;

/// What the memcpy measurement found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct MemcpyFigures {
    /// Bytes of each of the two buffers.
    pub(super) buffer_bytes: u64,
    /// Last-level cache size as the kernel reports it (sysfs), if known.
    pub(super) llc_bytes: Option<u64>,
    /// Passes measured (after one warm-up pass).
    pub(super) passes: u32,
    /// Bytes copied per second / 1e9, one sample per pass (memory traffic is twice this:
    /// each byte is read once and written once).
    pub(super) gbytes_per_s: Summary,
    /// Notes about the choice of buffer size.
    pub(super) notes: Vec<String>,
}

/// Buffer size: at least [`MIN_BUFFER`], at least twice the LLC, at most a quarter of
/// the available memory (there are two buffers) and [`MAX_BUFFER`].
fn buffer_size(llc: Option<u64>, mem_available: Option<u64>) -> (u64, Vec<String>) {
    let mut notes = Vec::new();
    let mut size = MIN_BUFFER.max(llc.map_or(0, |l| 2 * l));
    if size > MAX_BUFFER {
        notes.push(format!(
            "buffers capped at {} MiB (twice the LLC would be {} MiB)",
            MAX_BUFFER >> 20,
            size >> 20
        ));
        size = MAX_BUFFER;
    }
    if let Some(avail) = mem_available {
        let cap = avail / 4;
        if size > cap {
            notes.push(format!(
                "buffers reduced to {} MiB, a quarter of the {} MiB of available memory",
                cap >> 20,
                avail >> 20
            ));
            size = cap;
        }
    }
    // Whole MiB.
    size = (size >> 20).max(1) << 20;
    if let Some(l) = llc {
        if size <= l {
            notes.push(format!(
                "the buffers ({} MiB) are not larger than the LLC ({} MiB): part of the \
                 copy may be served from cache and the figure is an over-estimate",
                size >> 20,
                l >> 20
            ));
        }
    }
    (size, notes)
}

/// Copies one buffer into another `passes` times (after one warm-up pass) with
/// `copy_nonoverlapping` and `black_box`, timing each pass.
pub(super) fn measure(passes: u32) -> Result<MemcpyFigures> {
    if passes == 0 {
        bail!("memcpy: at least one pass is needed");
    }
    let llc = last_level_cache_bytes();
    let (size, notes) = buffer_size(llc, mem_available_bytes());
    let len = usize::try_from(size)?;
    // Written in full before timing so that page faults are not measured.
    let mut src = Vec::<u8>::new();
    let mut dst = Vec::<u8>::new();
    if src.try_reserve_exact(len).is_err() || dst.try_reserve_exact(len).is_err() {
        bail!("memcpy: cannot allocate two buffers of {} MiB", size >> 20);
    }
    src.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)));
    dst.resize(len, 0);
    let mut samples = Vec::with_capacity(passes as usize);
    for pass in 0..=passes {
        let start = Instant::now();
        // SAFETY: both buffers are `len` bytes long and distinct allocations.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::hint::black_box(src.as_ptr()),
                std::hint::black_box(dst.as_mut_ptr()),
                len,
            );
        }
        std::hint::black_box(&mut dst);
        let seconds = start.elapsed().as_secs_f64();
        if pass > 0 && seconds > 0.0 {
            samples.push(size as f64 / seconds / 1e9);
        }
    }
    if dst[len - 1] != src[len - 1] || dst[len / 2] != src[len / 2] {
        bail!("memcpy: the copy did not happen (destination differs from the source)");
    }
    let Some(summary) = Summary::of(&samples) else {
        bail!("memcpy: no valid timing");
    };
    Ok(MemcpyFigures {
        buffer_bytes: size,
        llc_bytes: llc,
        passes,
        gbytes_per_s: summary,
        notes,
    })
}

/// The estimated loopback TCP ceiling per stream, Gbit/s: every payload byte is copied
/// twice by the kernel (into the socket buffer on send, out of it on receive), so one
/// core's worth of copying moves at most memcpy / 2 bytes per second.
pub(super) fn tcp_ceiling_gbps(memcpy_gbytes_per_s: f64) -> f64 {
    memcpy_gbytes_per_s / 2.0 * 8.0
}

/// The largest cache of CPU 0, from /sys/devices/system/cpu/cpu0/cache/index*/.
pub(super) fn last_level_cache_bytes() -> Option<u64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    let mut best: Option<(u32, u64)> = None;
    for entry in dir.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("index") {
            continue;
        }
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let (Some(level), Some(size)) = (read("level"), read("size")) else {
            continue;
        };
        let (Ok(level), Some(size)) = (level.trim().parse::<u32>(), parse_cache_size(&size)) else {
            continue;
        };
        if best.is_none_or(|(l, s)| level > l || (level == l && size > s)) {
            best = Some((level, size));
        }
    }
    best.map(|(_, size)| size)
}

/// `32768K` / `480M` / `1024` (sysfs cache `size`) in bytes.
fn parse_cache_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim() {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available_bytes() -> Option<u64> {
    meminfo_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_twice_the_llc_within_limits() {
        let mib = 1u64 << 20;
        assert_eq!(buffer_size(None, None).0, MIN_BUFFER);
        assert_eq!(buffer_size(Some(32 * mib), None).0, MIN_BUFFER);
        assert_eq!(buffer_size(Some(480 * mib), None).0, 960 * mib);
        let (size, notes) = buffer_size(Some(480 * mib), Some(2048 * mib));
        assert_eq!(size, 512 * mib);
        assert_eq!(notes.len(), 1);
        let (size, notes) = buffer_size(Some(5 << 30), None);
        assert_eq!(size, MAX_BUFFER);
        assert!(notes.iter().any(|n| n.contains("not larger than the LLC")));
    }

    #[test]
    fn cache_and_meminfo_parsing() {
        assert_eq!(parse_cache_size("491520K\n"), Some(480 << 20));
        assert_eq!(parse_cache_size("4M"), Some(4 << 20));
        assert_eq!(parse_cache_size("1024"), Some(1024));
        assert_eq!(parse_cache_size("x"), None);
        let meminfo = "MemTotal:       24596472 kB\nMemAvailable:   23000000 kB\n";
        assert_eq!(
            meminfo_field(meminfo, "MemAvailable"),
            Some(23000000 * 1024)
        );
        assert_eq!(meminfo_field(meminfo, "MemTotal"), Some(24596472 * 1024));
        assert_eq!(meminfo_field(meminfo, "SwapTotal"), None);
    }

    #[test]
    fn ceiling_is_half_the_copy_rate_in_bits() {
        // 10 GB/s of memcpy: 5 GB/s of payload = 40 Gbit/s.
        assert_eq!(tcp_ceiling_gbps(10.0), 40.0);
    }
}
