//! A counter's reading, available or not (never a zero standing for "unknown"), the
//! readings of one process, and the figures derived from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CounterKind;
#[cfg(test)]
use super::PERF_SOURCE;

/// One counter's reading: a count, or why there is none.
///
/// JSON: `{"available": true, "value": N, "raw": N, "scaled": false}` or
/// `{"available": false, "reason": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "CounterValueJson", try_from = "CounterValueJson")]
pub enum CounterValue {
    Available {
        /// The count, corrected for multiplexing when `scaled`.
        value: u64,
        /// The count as the kernel reported it (equals `value` unless `scaled`).
        raw: u64,
        /// True when the PMU was shared and `value` = raw * time_enabled / time_running
        /// for at least one thread: an estimate.
        scaled: bool,
    },
    Unavailable {
        reason: String,
    },
}

impl CounterValue {
    /// The (scaled) count, or None when unavailable.
    pub fn value(&self) -> Option<u64> {
        match self {
            CounterValue::Available { value, .. } => Some(*value),
            CounterValue::Unavailable { .. } => None,
        }
    }

    pub fn is_available(&self) -> bool {
        matches!(self, CounterValue::Available { .. })
    }

    /// Why the value is missing, or None when it is available.
    pub fn reason(&self) -> Option<&str> {
        match self {
            CounterValue::Available { .. } => None,
            CounterValue::Unavailable { reason } => Some(reason),
        }
    }

    pub(super) fn unavailable(reason: impl Into<String>) -> Self {
        CounterValue::Unavailable {
            reason: reason.into(),
        }
    }
}

/// The JSON shape of [`CounterValue`]: a boolean `available` tag, which serde's enum
/// representations cannot express (their tags are strings).
#[derive(Serialize, Deserialize)]
struct CounterValueJson {
    available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scaled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<CounterValue> for CounterValueJson {
    fn from(value: CounterValue) -> Self {
        match value {
            CounterValue::Available { value, raw, scaled } => CounterValueJson {
                available: true,
                value: Some(value),
                raw: Some(raw),
                scaled: Some(scaled),
                reason: None,
            },
            CounterValue::Unavailable { reason } => CounterValueJson {
                available: false,
                value: None,
                raw: None,
                scaled: None,
                reason: Some(reason),
            },
        }
    }
}

impl TryFrom<CounterValueJson> for CounterValue {
    type Error = String;

    fn try_from(json: CounterValueJson) -> Result<Self, Self::Error> {
        if json.available {
            let value = json
                .value
                .ok_or("a counter value with available=true needs \"value\"")?;
            Ok(CounterValue::Available {
                value,
                raw: json.raw.unwrap_or(value),
                scaled: json.scaled.unwrap_or(false),
            })
        } else {
            Ok(CounterValue::Unavailable {
                reason: json.reason.unwrap_or_default(),
            })
        }
    }
}

/// Everything [`ProcessCounters::read`](super::ProcessCounters::read) reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterReadings {
    /// Always `perf_event_open`.
    pub source: String,
    /// The process counted.
    pub pid: u32,
    /// Threads that had a counter opened on them directly (threads they create later are
    /// counted through perf's inherit when `inherit` is set).
    pub threads_opened: usize,
    pub inherit: bool,
    /// Set when the thread list kept changing while the counters were being opened: a
    /// thread created then by a thread not yet counted is missing from the counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_note: Option<String>,
    /// One value per [`CounterKind`], keyed by its name.
    pub counters: BTreeMap<CounterKind, CounterValue>,
}

impl CounterReadings {
    /// The value for `kind`; unavailable (with a reason) if it was never recorded.
    pub fn get(&self, kind: CounterKind) -> CounterValue {
        self.counters.get(&kind).cloned().unwrap_or_else(|| {
            CounterValue::unavailable(format!("{} was not part of this reading", kind.name()))
        })
    }
}

/// `counter` / `bytes`, or None when the counter is unavailable or `bytes` is 0.
pub fn per_byte(counter: &CounterValue, bytes: u64) -> Option<f64> {
    if bytes == 0 {
        return None;
    }
    Some(counter.value()? as f64 / bytes as f64)
}

/// CPU nanoseconds per byte from a `task_clock_ns` value.
pub fn cpu_ns_per_byte(task_clock_ns: &CounterValue, bytes: u64) -> Option<f64> {
    per_byte(task_clock_ns, bytes)
}

/// `counter` per MiB (2^20 bytes) moved, e.g. LLC load misses per MiB.
pub fn per_mib(counter: &CounterValue, bytes: u64) -> Option<f64> {
    per_byte(counter, bytes).map(|per| per * 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_serializes_without_value() {
        let json = serde_json::to_value(CounterValue::unavailable("no PMU")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"available": false, "reason": "no PMU"})
        );
    }

    #[test]
    fn available_serializes_value_raw_and_scaled_and_round_trips() {
        let value = CounterValue::Available {
            value: 200,
            raw: 100,
            scaled: true,
        };
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"available": true, "value": 200, "raw": 100, "scaled": true})
        );
        let back: CounterValue = serde_json::from_value(json).unwrap();
        assert_eq!(back, value);
        let missing_value = serde_json::json!({"available": true});
        assert!(serde_json::from_value::<CounterValue>(missing_value).is_err());
    }

    #[test]
    fn readings_use_the_column_names_as_keys() {
        let mut counters = BTreeMap::new();
        counters.insert(
            CounterKind::TaskClock,
            CounterValue::Available {
                value: 5,
                raw: 5,
                scaled: false,
            },
        );
        counters.insert(CounterKind::Cycles, CounterValue::unavailable("none"));
        let readings = CounterReadings {
            source: PERF_SOURCE.to_string(),
            pid: 1,
            threads_opened: 1,
            inherit: true,
            coverage_note: None,
            counters,
        };
        let json = serde_json::to_value(&readings).unwrap();
        assert_eq!(json["counters"]["task_clock_ns"]["value"], 5);
        assert_eq!(json["counters"]["cycles"]["available"], false);
        for kind in CounterKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.name().to_string())
            );
        }
        assert!(!readings.get(CounterKind::PageFaults).is_available());
    }

    #[test]
    fn derived_figures_are_none_when_unavailable_or_no_bytes() {
        let misses = CounterValue::Available {
            value: 2048,
            raw: 2048,
            scaled: false,
        };
        assert_eq!(per_byte(&misses, 1024), Some(2.0));
        assert_eq!(per_mib(&misses, 2 * 1_048_576), Some(1024.0));
        assert_eq!(cpu_ns_per_byte(&misses, 0), None);
        assert_eq!(per_mib(&CounterValue::unavailable("x"), 1), None);
    }
}
