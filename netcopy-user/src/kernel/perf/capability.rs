//! Whether hardware and software events can be counted here: a trial counter, with the
//! kernel's answer.

use serde::{Deserialize, Serialize};

use super::{
    counters::read_sample,
    errors::{describe_io_error, describe_open_error},
    CounterKind,
};

/// Whether a class of events can be counted here, and why (or why not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub available: bool,
    pub reason: String,
    /// The errno of the failed trial open, when it failed in perf_event_open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

/// Can hardware events be counted here? A trial `cycles` counter on the current thread,
/// enabled around a short loop, must open and count more than zero: some hypervisors
/// expose a PMU whose counters never move.
pub fn capability_hw() -> Capability {
    trial_open(CounterKind::Cycles)
}

/// Can software events be counted here? The same trial with `task-clock`.
pub fn capability_sw() -> Capability {
    trial_open(CounterKind::TaskClock)
}

fn trial_open(kind: CounterKind) -> Capability {
    // The current thread only: no inherit, so the trial sees exactly the loop below.
    let mut counter = match kind.builder().observe_self().build() {
        Ok(counter) => counter,
        Err(err) => {
            return Capability {
                available: false,
                reason: format!(
                    "perf_event_open({}) on the current process failed: {}",
                    kind.perf_name(),
                    describe_open_error(&err, kind)
                ),
                errno: err.raw_os_error(),
            }
        }
    };
    let outcome = counter
        .enable()
        .map(|()| busy_work(200_000))
        .and_then(|_| counter.disable())
        .and_then(|()| read_sample(&mut counter));
    match outcome {
        Ok(sample) if sample.count > 0 => Capability {
            available: true,
            reason: format!(
                "{} opened on the current process and counted {} in a trial loop",
                kind.perf_name(),
                sample.count
            ),
            errno: None,
        },
        Ok(sample) => Capability {
            available: false,
            reason: format!(
                "{} opened but counted 0 in a trial loop (time enabled {} ns, running {} \
                 ns): the PMU is present but does not count (virtualised?)",
                kind.perf_name(),
                sample.time_enabled_ns,
                sample.time_running_ns
            ),
            errno: None,
        },
        Err(err) => Capability {
            available: false,
            reason: format!(
                "{} opened but enabling or reading it failed: {}",
                kind.perf_name(),
                describe_io_error(&err, kind)
            ),
            errno: err.raw_os_error(),
        },
    }
}

/// Work the optimiser cannot remove, for trial counts.
fn busy_work(iterations: u64) -> u64 {
    let mut acc: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..iterations {
        acc = std::hint::black_box(acc.rotate_left(7) ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    acc
}
