//! Where the hardware-counter figures (cycles, cache misses) are, and why they are missing
//! elsewhere, one line per cause.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    experiment::results::Results,
    kernel::perf::{CounterKind, CounterValue},
};

/// Where the hardware-counter figures are, and why not.
#[derive(Clone, Debug, Default)]
pub(crate) struct HwAvailability {
    pub(crate) cells: usize,
    /// Cells with cycles per byte.
    pub(crate) cycles_cells: usize,
    /// Cells with LLC (or cache) misses per MiB.
    pub(crate) cache_cells: usize,
    /// Distinct reasons given for missing hardware figures.
    pub(crate) reasons: Vec<String>,
}

impl HwAvailability {
    pub(crate) fn none_available(&self) -> bool {
        self.cycles_cells == 0 && self.cache_cells == 0
    }
    /// The reasons joined for one line of text.
    pub(crate) fn reason_text(&self) -> String {
        if self.reasons.is_empty() {
            "no reason was recorded".to_string()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// Collects where cycles and cache-miss figures exist and the reasons where they do not.
pub(super) fn hw_availability(results: &Results) -> HwAvailability {
    // Reason -> the events it was given for (empty: given for hardware counters at large).
    let mut reasons: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    if !results.machine.perf_hw_available && !results.machine.perf_hw_reason.is_empty() {
        reasons
            .entry(results.machine.perf_hw_reason.clone())
            .or_default();
    }
    let mut hw = HwAvailability {
        cells: results.cells.len(),
        ..Default::default()
    };
    for c in &results.cells {
        if c.cpu.cycles_per_byte.is_some() {
            hw.cycles_cells += 1;
        }
        if c.cpu.llc_misses_per_mib.is_some() {
            hw.cache_cells += 1;
        }
        if c.cpu.cycles_per_byte.is_none() || c.cpu.llc_misses_per_mib.is_none() {
            if let Some(r) = &c.cpu.hw_unavailable_reason {
                reasons.entry(r.clone()).or_default();
            }
            for readings in [&c.server_counters, &c.client_counters]
                .into_iter()
                .flatten()
            {
                for kind in [
                    CounterKind::Cycles,
                    CounterKind::CacheMisses,
                    CounterKind::LlcLoadMisses,
                ] {
                    if let CounterValue::Unavailable { reason } = readings.get(kind) {
                        if !reason.is_empty() {
                            reasons.entry(reason).or_default().insert(kind.perf_name());
                        }
                    }
                }
            }
        }
    }
    // The same failure is reported once per thread and event; keep one line per cause.
    let mut merged: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for (reason, kinds) in reasons {
        let (general, event) = generalize_reason(&reason);
        let entry = merged.entry(general).or_default();
        entry.extend(kinds);
        if let Some(event) = event {
            if let Some(kind) = CounterKind::ALL.iter().find(|k| k.perf_name() == event) {
                entry.insert(kind.perf_name());
            }
        }
    }
    hw.reasons = merged
        .into_iter()
        .map(|(reason, kinds)| {
            if kinds.is_empty() {
                reason
            } else {
                format!(
                    "{} ({})",
                    reason,
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        })
        .collect();
    hw
}

/// `perf_event_open(cycles) on thread 12 of process 12 failed: E...` ->
/// (`perf_event_open failed: E...`, Some("cycles")): the cause without the thread, process
/// and event it was met on.
fn generalize_reason(reason: &str) -> (String, Option<String>) {
    let mut text = reason.to_string();
    let mut event = None;
    if let Some(rest) = text.strip_prefix("perf_event_open(") {
        if let Some(end) = rest.find(')') {
            event = Some(rest[..end].to_string());
            text = format!("perf_event_open{}", &rest[end + 1..]);
        }
    }
    for marker in [" on the current process", " on thread "] {
        if let Some(start) = text.find(marker) {
            let tail = &text[start + marker.len()..];
            let end = if marker == " on thread " {
                // "<tid> of process <pid>"
                tail.find(" failed").unwrap_or(0)
            } else {
                0
            };
            text = format!("{}{}", &text[..start], &tail[end..]);
        }
    }
    (text, event)
}

#[cfg(test)]
mod reason_tests {
    use super::generalize_reason;

    #[test]
    fn per_thread_reasons_collapse_to_one_cause() {
        let (a, ea) = generalize_reason(
            "perf_event_open(cycles) on thread 29894 of process 29894 failed: ENOENT (errno 2): no PMU",
        );
        let (b, eb) = generalize_reason(
            "perf_event_open(cache-misses) on thread 7 of process 3 failed: ENOENT (errno 2): no PMU",
        );
        let (c, _) = generalize_reason(
            "perf_event_open(cycles) on the current process failed: ENOENT (errno 2): no PMU",
        );
        assert_eq!(a, "perf_event_open failed: ENOENT (errno 2): no PMU");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(ea.as_deref(), Some("cycles"));
        assert_eq!(eb.as_deref(), Some("cache-misses"));
        assert_eq!(generalize_reason("something else").0, "something else");
    }
}
