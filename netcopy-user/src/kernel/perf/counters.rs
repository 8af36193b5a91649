//! Counters on every thread of one process: opened per (event, thread), read, reset and
//! combined, with multiplexing corrected for.

use std::{collections::BTreeMap, collections::BTreeSet, fs, io, time::Duration};

use perf_event::Counter;

use super::{
    errors::{describe_io_error, describe_open_error, is_missing_event_errno},
    CounterKind, CounterReadings, CounterValue, PERF_SOURCE,
};

/// One counter on one thread, with the figures at the last `reset`.
struct ThreadCounter {
    tid: u32,
    counter: Counter,
    baseline: Sample,
}

/// One counter's figures as the kernel reports them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sample {
    pub count: u64,
    pub time_enabled_ns: u64,
    pub time_running_ns: u64,
}

impl Sample {
    /// The figures accumulated since `baseline`.
    fn since(self, baseline: Sample) -> Sample {
        Sample {
            count: self.count.saturating_sub(baseline.count),
            time_enabled_ns: self
                .time_enabled_ns
                .saturating_sub(baseline.time_enabled_ns),
            time_running_ns: self
                .time_running_ns
                .saturating_sub(baseline.time_running_ns),
        }
    }
}

enum CounterSlot {
    Open(Vec<ThreadCounter>),
    Unavailable(String),
}

/// Perf counters on every thread of one process.
pub struct ProcessCounters {
    pid: u32,
    inherit: bool,
    threads_opened: usize,
    coverage_note: Option<String>,
    slots: Vec<(CounterKind, CounterSlot)>,
}

/// How often the thread list is taken again when it changed while counters were opened.
const OPEN_ATTEMPTS: usize = 5;

impl ProcessCounters {
    /// Opens every [`CounterKind`] on every thread of process `pid`, disabled. With
    /// `inherit`, threads (and child processes) created later by a counted thread are
    /// counted too; without it, only the threads that exist now.
    ///
    /// Never fails as a whole: a counter that cannot be opened is recorded as unavailable
    /// with the reason. Call [`enable`](Self::enable) to start counting.
    ///
    /// To count the current process pass `std::process::id()`; to count a child, its
    /// `Child::id()`. A child should be opened before it starts the work to be measured
    /// (for example while it waits for a "go" line on stdin).
    pub fn open(pid: u32, inherit: bool) -> ProcessCounters {
        let mut last = None;
        for attempt in 1..=OPEN_ATTEMPTS {
            let before = match thread_ids(pid) {
                Ok(tids) => tids,
                Err(reason) => return Self::all_unavailable(pid, inherit, &reason),
            };
            let slots = open_slots(pid, &before, inherit);
            let after = thread_ids(pid).unwrap_or_default();
            let appeared: Vec<u32> = after.difference(&before).copied().collect();
            // A thread that appeared while we were opening was created either by a thread
            // already counted (inherited: counted) or by one not yet counted (missed).
            // /proc cannot tell which, so open everything again on the new list. Opening
            // the new thread directly as well would count inherited threads twice.
            if appeared.is_empty() {
                return ProcessCounters {
                    pid,
                    inherit,
                    threads_opened: before.len(),
                    coverage_note: None,
                    slots,
                };
            }
            last = Some(ProcessCounters {
                pid,
                inherit,
                threads_opened: before.len(),
                coverage_note: Some(format!(
                    "the thread list of process {pid} was still changing after {attempt} \
                     attempts to open counters on it; {} threads that appeared during the \
                     last attempt ({}) may be missing from the counts",
                    appeared.len(),
                    join_ids(&appeared)
                )),
                slots,
            });
        }
        last.unwrap_or_else(|| {
            Self::all_unavailable(pid, inherit, "no attempt to open counters was made")
        })
    }

    fn all_unavailable(pid: u32, inherit: bool, reason: &str) -> ProcessCounters {
        ProcessCounters {
            pid,
            inherit,
            threads_opened: 0,
            coverage_note: None,
            slots: CounterKind::ALL
                .iter()
                .map(|&kind| (kind, CounterSlot::Unavailable(reason.to_string())))
                .collect(),
        }
    }

    /// The process counted.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts (or resumes) counting.
    pub fn enable(&mut self) {
        self.for_each_counter("enable", |c| c.enable());
    }

    /// Stops counting; `read` keeps returning the counts reached.
    pub fn disable(&mut self) {
        self.for_each_counter("disable", |c| c.disable());
    }

    /// Makes the next `read` report only what happens from now on.
    ///
    /// Done by remembering the current figures rather than with PERF_EVENT_IOC_RESET: that
    /// ioctl zeroes neither time_enabled/time_running (so multiplexing correction would
    /// use the wrong times) nor the counts that exited inherited threads handed back to
    /// the parent counter (so a reset counter would not read zero).
    pub fn reset(&mut self) {
        for (kind, slot) in &mut self.slots {
            let CounterSlot::Open(counters) = slot else {
                continue;
            };
            let mut failure = None;
            for tc in counters.iter_mut() {
                match read_sample(&mut tc.counter) {
                    Ok(sample) => tc.baseline = sample,
                    Err(err) => {
                        failure = Some(format!(
                            "reading {} on thread {} at reset failed: {}",
                            kind.perf_name(),
                            tc.tid,
                            describe_io_error(&err, *kind)
                        ));
                        break;
                    }
                }
            }
            if let Some(reason) = failure {
                *slot = CounterSlot::Unavailable(reason);
            }
        }
    }

    /// The counts since `open` (or the last `reset`), summed over the process's threads.
    pub fn read(&mut self) -> CounterReadings {
        let mut counters = BTreeMap::new();
        for (kind, slot) in &mut self.slots {
            let value = match slot {
                CounterSlot::Unavailable(reason) => CounterValue::unavailable(reason.clone()),
                CounterSlot::Open(thread_counters) => read_kind(*kind, thread_counters),
            };
            counters.insert(*kind, value);
        }
        CounterReadings {
            source: PERF_SOURCE.to_string(),
            pid: self.pid,
            threads_opened: self.threads_opened,
            inherit: self.inherit,
            coverage_note: self.coverage_note.clone(),
            counters,
        }
    }

    /// Applies an ioctl-style operation to every open counter; a kind whose operation
    /// fails becomes unavailable, since its counts would no longer mean what they say.
    fn for_each_counter(&mut self, what: &str, op: impl Fn(&mut Counter) -> io::Result<()>) {
        for (kind, slot) in &mut self.slots {
            let CounterSlot::Open(counters) = slot else {
                continue;
            };
            let failure = counters.iter_mut().find_map(|tc| {
                op(&mut tc.counter).err().map(|err| {
                    format!(
                        "{what} of {} on thread {} failed: {}",
                        kind.perf_name(),
                        tc.tid,
                        describe_io_error(&err, *kind)
                    )
                })
            });
            if let Some(reason) = failure {
                *slot = CounterSlot::Unavailable(reason);
            }
        }
    }
}

/// Reads one kind on all its threads and combines the figures since the baselines.
fn read_kind(kind: CounterKind, thread_counters: &mut [ThreadCounter]) -> CounterValue {
    let mut deltas = Vec::with_capacity(thread_counters.len());
    for tc in thread_counters.iter_mut() {
        match read_sample(&mut tc.counter) {
            Ok(now) => deltas.push((tc.tid, now.since(tc.baseline))),
            Err(err) => {
                return CounterValue::unavailable(format!(
                    "reading {} on thread {} failed: {}",
                    kind.perf_name(),
                    tc.tid,
                    describe_io_error(&err, kind)
                ))
            }
        }
    }
    combine_thread_deltas(kind, &deltas)
}

/// Sums one kind over its threads `(tid, figures since baseline)`, correcting each
/// thread's count for multiplexing.
fn combine_thread_deltas(kind: CounterKind, deltas: &[(u32, Sample)]) -> CounterValue {
    let mut raw_total: u64 = 0;
    let mut value_total: u64 = 0;
    let mut running_total: u64 = 0;
    let mut scaled = false;
    for &(tid, delta) in deltas {
        let Sample {
            count,
            time_enabled_ns: enabled,
            time_running_ns: running,
        } = delta;
        raw_total = raw_total.saturating_add(count);
        running_total = running_total.saturating_add(running);
        if running >= enabled {
            value_total = value_total.saturating_add(count);
        } else if running == 0 {
            // Enabled but never on the PMU: the count is unknown, not zero.
            return CounterValue::unavailable(format!(
                "{} on thread {tid} was enabled for {enabled} ns but never scheduled on the \
                 PMU (more hardware events than PMU counters, or the PMU is taken by \
                 another user such as the NMI watchdog or another profiler)",
                kind.perf_name()
            ));
        } else {
            scaled = true;
            let estimate = u128::from(count) * u128::from(enabled) / u128::from(running);
            value_total = value_total.saturating_add(u64::try_from(estimate).unwrap_or(u64::MAX));
        }
    }
    // A task counter only runs while its thread is on a CPU, and a CPU that runs spends
    // cycles and retires instructions: a zero here means a PMU that does not count (some
    // hypervisors expose one), not a free run.
    if raw_total == 0
        && running_total > 0
        && matches!(kind, CounterKind::Cycles | CounterKind::Instructions)
    {
        return CounterValue::unavailable(format!(
            "{} counted 0 over {running_total} ns of running time: the PMU is present but \
             does not count (virtualised?)",
            kind.perf_name()
        ));
    }
    CounterValue::Available {
        value: value_total,
        raw: raw_total,
        scaled,
    }
}

pub(super) fn read_sample(counter: &mut Counter) -> io::Result<Sample> {
    let data = counter.read_full()?;
    Ok(Sample {
        count: data.count(),
        time_enabled_ns: duration_ns(data.time_enabled().unwrap_or_default()),
        time_running_ns: duration_ns(data.time_running().unwrap_or_default()),
    })
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Opens each kind on each thread. Hardware kinds are opened first so that `cycles`
/// failing can explain why the other hardware events fail too.
fn open_slots(pid: u32, tids: &BTreeSet<u32>, inherit: bool) -> Vec<(CounterKind, CounterSlot)> {
    let mut cycles_opened = false;
    let mut slots = Vec::with_capacity(CounterKind::ALL.len());
    for kind in CounterKind::ALL {
        let slot = open_kind(pid, kind, tids, inherit, cycles_opened);
        if kind == CounterKind::Cycles {
            cycles_opened = matches!(slot, CounterSlot::Open(_));
        }
        slots.push((kind, slot));
    }
    slots
}

fn open_kind(
    pid: u32,
    kind: CounterKind,
    tids: &BTreeSet<u32>,
    inherit: bool,
    cycles_opened: bool,
) -> CounterSlot {
    let mut builder = kind.builder();
    builder.inherit(inherit);
    let mut opened = Vec::with_capacity(tids.len());
    for &tid in tids {
        let Ok(tid_arg) = libc::pid_t::try_from(tid) else {
            return CounterSlot::Unavailable(format!("thread id {tid} is not a valid pid_t"));
        };
        builder.observe_pid(tid_arg);
        match builder.build() {
            Ok(counter) => opened.push(ThreadCounter {
                tid,
                counter,
                baseline: Sample::default(),
            }),
            // The thread exited after we listed it: it has nothing left to count.
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
            Err(err) => {
                let mut reason = format!(
                    "perf_event_open({}) on thread {tid} of process {pid} failed: {}",
                    kind.perf_name(),
                    describe_open_error(&err, kind)
                );
                if kind.is_hardware()
                    && kind != CounterKind::Cycles
                    && cycles_opened
                    && is_missing_event_errno(&err)
                {
                    reason.push_str(
                        " (cycles did open, so this PMU exists but has no generic mapping for \
                         this event)",
                    );
                }
                return CounterSlot::Unavailable(reason);
            }
        }
    }
    if opened.is_empty() {
        return CounterSlot::Unavailable(format!(
            "process {pid} has no live thread left to count (ESRCH for every thread)"
        ));
    }
    CounterSlot::Open(opened)
}

/// The thread ids of process `pid`, from /proc/PID/task.
fn thread_ids(pid: u32) -> Result<BTreeSet<u32>, String> {
    let dir = format!("/proc/{pid}/task");
    let entries = fs::read_dir(&dir).map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            format!("process {pid} does not exist ({dir} not found)")
        } else {
            format!("cannot list the threads of process {pid} in {dir}: {err}")
        }
    })?;
    let tids: BTreeSet<u32> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    if tids.is_empty() {
        return Err(format!(
            "process {pid} has no threads listed in {dir} (it exited)"
        ));
    }
    Ok(tids)
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::perf::process_cpu_time;
    fn delta(count: u64, enabled: u64, running: u64) -> Sample {
        Sample {
            count,
            time_enabled_ns: enabled,
            time_running_ns: running,
        }
    }

    #[test]
    fn multiplexed_counts_are_scaled_per_thread_and_flagged() {
        let value = combine_thread_deltas(
            CounterKind::CacheMisses,
            &[(1, delta(100, 1_000, 1_000)), (2, delta(50, 2_000, 500))],
        );
        assert_eq!(
            value,
            CounterValue::Available {
                value: 100 + 200,
                raw: 150,
                scaled: true
            }
        );
        let exact = combine_thread_deltas(
            CounterKind::TaskClock,
            &[(1, delta(7, 9, 9)), (2, delta(0, 0, 0))],
        );
        assert_eq!(
            exact,
            CounterValue::Available {
                value: 7,
                raw: 7,
                scaled: false
            }
        );
    }

    #[test]
    fn a_counter_never_on_the_pmu_is_unavailable_not_zero() {
        let value = combine_thread_deltas(
            CounterKind::Instructions,
            &[(1, delta(10, 100, 100)), (2, delta(0, 5_000, 0))],
        );
        let reason = value.reason().expect("unavailable");
        assert!(reason.contains("thread 2"), "{reason}");
        assert!(reason.contains("never scheduled"), "{reason}");
    }

    #[test]
    fn zero_cycles_over_running_time_means_a_pmu_that_does_not_count() {
        let cycles = combine_thread_deltas(CounterKind::Cycles, &[(1, delta(0, 500, 500))]);
        assert!(cycles.reason().unwrap().contains("does not count"));
        // Zero cache misses are plausible; zero cycles of a thread that never ran too.
        let misses = combine_thread_deltas(CounterKind::CacheMisses, &[(1, delta(0, 500, 500))]);
        assert_eq!(misses.value(), Some(0));
        let idle = combine_thread_deltas(CounterKind::Cycles, &[(1, delta(0, 0, 0))]);
        assert_eq!(idle.value(), Some(0));
    }

    #[test]
    fn counters_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ProcessCounters>();
    }

    #[test]
    fn a_process_that_does_not_exist_gives_unavailable_counters_with_a_reason() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let mut counters = ProcessCounters::open(u32::MAX - 1, true);
        counters.enable();
        let readings = counters.read();
        assert_eq!(readings.counters.len(), CounterKind::ALL.len());
        for value in readings.counters.values() {
            let reason = value.reason().expect("unavailable");
            assert!(reason.contains("does not exist"), "{reason}");
        }
        assert!(process_cpu_time(u32::MAX - 1).is_err());
    }
}
