//! Perf counters for one process (all its threads), and coarser CPU-time sources.
//!
//! Hardware events (cycles, instructions, cache misses) need a PMU; a virtual machine
//! often has none (our development machines: a Firecracker guest, where opening `cycles`
//! fails with ENOENT). Software events (task-clock, context switches, ...) always work.
//! An event that cannot be counted is a value, [`CounterValue::Unavailable`] with the
//! kernel's reason, never a zero: a zero would read as "this mode costs no cycles".
//!
//! Three sources of CPU time, each named where it is reported:
//! - `perf_event_open` task-clock: nanoseconds on CPU, user and kernel mode, of the threads
//!   counted, between `enable`/`reset` and `read` ([`ProcessCounters`]).
//! - `/proc/PID/stat` utime + stime: the whole process since it started, in clock ticks
//!   (10 ms at USER_HZ=100) ([`process_cpu_time`]).
//! - `wait4` rusage of a finished child: the whole child, microsecond resolution
//!   ([`wait_child_cpu_time`]).
//!
//! Why one counter per (event, thread) and no perf groups:
//! - perf's `inherit` only follows threads created *after* the counter is opened, by the
//!   thread it is opened on; a process that already runs several threads needs a counter on
//!   each of them (this is what `perf stat -p` does).
//! - A group is scheduled on the PMU as a whole: with more hardware events than the PMU
//!   has counters a group may never run at all, while separate counters are multiplexed and
//!   scaled (`scaled: true`). Separate counters also make one missing event (for example
//!   LLC-load-misses, which AMD PMUs do not map) cost only that event.
//! - inherit together with `PERF_FORMAT_GROUP` does open and read on 6.18 here, but older
//!   kernels refused it or summed only the leader's inherited children, and the man page
//!   still warns that inherit "does not work for some combinations of read_format values,
//!   such as PERF_FORMAT_GROUP". Separate counters avoid the question.
//!
//! The price: cycles and instructions are not guaranteed to be measured over the same time
//! slices when the PMU is multiplexed; `scaled` says when that happened.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs, io,
    os::unix::process::ExitStatusExt,
    process::{Child, ExitStatus},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use perf_event::{
    events::{Cache, CacheId, CacheOp, CacheResult, Hardware, Software},
    Builder, Counter, ReadFormat,
};
use serde::{Deserialize, Serialize};

use crate::util::errno::errno_name;

/// Names where every figure in this module comes from.
pub const PERF_SOURCE: &str = "perf_event_open";

/// The events netcopy counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CounterKind {
    #[serde(rename = "cycles")]
    Cycles,
    #[serde(rename = "instructions")]
    Instructions,
    #[serde(rename = "cache_references")]
    CacheReferences,
    #[serde(rename = "cache_misses")]
    CacheMisses,
    #[serde(rename = "llc_load_misses")]
    LlcLoadMisses,
    #[serde(rename = "task_clock_ns")]
    TaskClock,
    #[serde(rename = "context_switches")]
    ContextSwitches,
    #[serde(rename = "cpu_migrations")]
    CpuMigrations,
    #[serde(rename = "page_faults")]
    PageFaults,
}

impl CounterKind {
    /// Every kind, hardware first, in the order reports list them.
    pub const ALL: [CounterKind; 9] = [
        CounterKind::Cycles,
        CounterKind::Instructions,
        CounterKind::CacheReferences,
        CounterKind::CacheMisses,
        CounterKind::LlcLoadMisses,
        CounterKind::TaskClock,
        CounterKind::ContextSwitches,
        CounterKind::CpuMigrations,
        CounterKind::PageFaults,
    ];

    /// The column / JSON key name (the same as the serde name).
    pub fn name(self) -> &'static str {
        match self {
            CounterKind::Cycles => "cycles",
            CounterKind::Instructions => "instructions",
            CounterKind::CacheReferences => "cache_references",
            CounterKind::CacheMisses => "cache_misses",
            CounterKind::LlcLoadMisses => "llc_load_misses",
            CounterKind::TaskClock => "task_clock_ns",
            CounterKind::ContextSwitches => "context_switches",
            CounterKind::CpuMigrations => "cpu_migrations",
            CounterKind::PageFaults => "page_faults",
        }
    }

    /// The event's name in `perf list` / `perf stat -e`, for messages.
    pub fn perf_name(self) -> &'static str {
        match self {
            CounterKind::Cycles => "cycles",
            CounterKind::Instructions => "instructions",
            CounterKind::CacheReferences => "cache-references",
            CounterKind::CacheMisses => "cache-misses",
            CounterKind::LlcLoadMisses => "LLC-load-misses",
            CounterKind::TaskClock => "task-clock",
            CounterKind::ContextSwitches => "context-switches",
            CounterKind::CpuMigrations => "cpu-migrations",
            CounterKind::PageFaults => "page-faults",
        }
    }

    /// True for events counted by the CPU's PMU (hardware and hardware-cache events).
    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            CounterKind::Cycles
                | CounterKind::Instructions
                | CounterKind::CacheReferences
                | CounterKind::CacheMisses
                | CounterKind::LlcLoadMisses
        )
    }

    /// A builder for this event, counting user and kernel mode, disabled, with the
    /// enabled/running times needed to correct for multiplexing.
    fn builder(self) -> Builder<'static> {
        let mut builder = match self {
            CounterKind::Cycles => Builder::new(Hardware::CPU_CYCLES),
            CounterKind::Instructions => Builder::new(Hardware::INSTRUCTIONS),
            CounterKind::CacheReferences => Builder::new(Hardware::CACHE_REFERENCES),
            CounterKind::CacheMisses => Builder::new(Hardware::CACHE_MISSES),
            CounterKind::LlcLoadMisses => Builder::new(Cache {
                which: CacheId::LL,
                operation: CacheOp::READ,
                result: CacheResult::MISS,
            }),
            CounterKind::TaskClock => Builder::new(Software::TASK_CLOCK),
            CounterKind::ContextSwitches => Builder::new(Software::CONTEXT_SWITCHES),
            CounterKind::CpuMigrations => Builder::new(Software::CPU_MIGRATIONS),
            CounterKind::PageFaults => Builder::new(Software::PAGE_FAULTS),
        };
        // perf-event2 excludes kernel mode by default. The copies netcopy measures happen in
        // the kernel, and a context switch is itself a kernel-mode event: with kernel mode
        // excluded, context-switches counts 0 (seen on 6.18).
        builder
            .include_kernel()
            .enabled(false)
            .read_format(ReadFormat::TOTAL_TIME_ENABLED | ReadFormat::TOTAL_TIME_RUNNING);
        builder
    }
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

    fn unavailable(reason: impl Into<String>) -> Self {
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

/// Everything [`ProcessCounters::read`] reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterReadings {
    /// Always [`PERF_SOURCE`].
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

/// Whether a class of events can be counted here, and why (or why not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub available: bool,
    pub reason: String,
    /// The errno of the failed trial open, when it failed in perf_event_open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

/// One counter on one thread, with the figures at the last `reset`.
struct ThreadCounter {
    tid: u32,
    counter: Counter,
    baseline: Sample,
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    count: u64,
    time_enabled_ns: u64,
    time_running_ns: u64,
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

fn read_sample(counter: &mut Counter) -> io::Result<Sample> {
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

fn is_missing_event_errno(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV)
    )
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

/// kernel.perf_event_paranoid, or None when it cannot be read.
pub fn perf_event_paranoid() -> Option<i32> {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What an errno from perf_event_open means for `kind`, in words a user can act on.
fn errno_meaning(errno: i32, kind: CounterKind) -> String {
    match errno {
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV if kind.is_hardware() => {
            "the kernel has no PMU (hardware performance counter) driver that provides this \
             event: no PMU in this machine (virtual machine?)"
                .to_string()
        }
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV => {
            "this kernel does not provide this software event".to_string()
        }
        libc::EACCES | libc::EPERM => {
            let paranoid = match perf_event_paranoid() {
                Some(level) => format!("kernel.perf_event_paranoid={level}"),
                None => "kernel.perf_event_paranoid (unreadable)".to_string(),
            };
            format!(
                "permission denied: {paranoid} forbids an unprivileged process to count \
                 kernel-mode events (level >= 2; level 3 or more forbids perf_event_open \
                 altogether on Debian/Ubuntu kernels), or the target belongs to another user; \
                 netcopy counts kernel mode because the copies happen there: run as root (or \
                 with CAP_PERFMON) or set `sysctl kernel.perf_event_paranoid=1`"
            )
        }
        libc::ESRCH => "the process or thread does not exist (any more)".to_string(),
        libc::EMFILE | libc::ENFILE => {
            "out of file descriptors (netcopy opens one per event per thread): raise \
             `ulimit -n`"
                .to_string()
        }
        libc::EBUSY => {
            "the PMU is in exclusive use by someone else (another profiler?)".to_string()
        }
        libc::ENOSPC => "no free PMU counter or breakpoint slot for this event".to_string(),
        libc::EINVAL => {
            "the kernel rejected the event attributes: this kernel or PMU does not support \
             this event as configured"
                .to_string()
        }
        libc::ENOSYS => {
            "perf_event_open is not available: kernel built without CONFIG_PERF_EVENTS, or \
             the syscall is blocked by a seccomp filter (container?)"
                .to_string()
        }
        _ => "unexpected error".to_string(),
    }
}

/// "ENOENT (errno 2): meaning" for a failed perf_event_open.
fn describe_open_error(err: &io::Error, kind: CounterKind) -> String {
    match err.raw_os_error() {
        Some(errno) => format!(
            "{} (errno {errno}): {}",
            errno_name(errno),
            errno_meaning(errno, kind)
        ),
        // perf-event2 turns E2BIG into an Unsupported error without an errno.
        None if err.kind() == io::ErrorKind::Unsupported => format!(
            "E2BIG (errno {}): this kernel is older than the perf_event_attr layout used \
             ({err})",
            libc::E2BIG
        ),
        None => err.to_string(),
    }
}

/// Like [`describe_open_error`], for reads and ioctls on an open counter.
fn describe_io_error(err: &io::Error, kind: CounterKind) -> String {
    match err.raw_os_error() {
        Some(errno) => format!("{} (errno {errno}): {err}", errno_name(errno)),
        None if err.kind() == io::ErrorKind::UnexpectedEof => format!(
            "end of file: the kernel put the {} counter in an error state (it could not be \
             scheduled)",
            kind.perf_name()
        ),
        None => err.to_string(),
    }
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

/// CPU nanoseconds per byte from a CPU time of another source (/proc, rusage).
pub fn duration_ns_per_byte(cpu: Duration, bytes: u64) -> Option<f64> {
    if bytes == 0 {
        return None;
    }
    Some(cpu.as_nanos() as f64 / bytes as f64)
}

/// Where a [`CpuTime`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuTimeSource {
    /// utime + stime in /proc/PID/stat: clock ticks (USER_HZ, usually 10 ms).
    #[serde(rename = "proc_pid_stat")]
    ProcPidStat,
    /// ru_utime + ru_stime from wait4 on a finished child: microseconds.
    #[serde(rename = "wait4_rusage")]
    Wait4Rusage,
}

/// User and system CPU time of a whole process (all threads, living and exited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTime {
    pub user_ns: u64,
    pub system_ns: u64,
    pub source: CpuTimeSource,
    /// The unit the source counts in: a figure is only good to about this much.
    pub resolution_ns: u64,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.user_ns.saturating_add(self.system_ns))
    }
}

/// Total CPU time (user + system) process `pid` has used since it started, from
/// /proc/PID/stat. Coarse: clock-tick resolution.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    Ok(proc_stat_cpu_time(pid)?.total())
}

/// User and system CPU time of process `pid` from /proc/PID/stat.
pub fn proc_stat_cpu_time(pid: u32) -> Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (utime_ticks, stime_ticks) =
        parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    let ns_per_tick = ns_per_clock_tick()?;
    Ok(CpuTime {
        user_ns: utime_ticks.saturating_mul(ns_per_tick),
        system_ns: stime_ticks.saturating_mul(ns_per_tick),
        source: CpuTimeSource::ProcPidStat,
        resolution_ns: ns_per_tick,
    })
}

/// utime and stime (fields 14 and 15, in clock ticks) of a /proc/PID/stat line. The
/// command name (field 2) is in parentheses and may itself contain spaces and ')', so the
/// fields are counted from the last ')'.
fn parse_stat_cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' closing the command name");
    };
    // Fields after the command name start at field 3 (state): utime is field 14.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |number: usize| -> Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("field {number} missing"))?;
        text.parse()
            .with_context(|| format!("field {number} is not a number: {text:?}"))
    };
    Ok((field(14)?, field(15)?))
}

fn ns_per_clock_tick() -> Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) returned {ticks_per_second}");
    }
    Ok(1_000_000_000 / ticks_per_second as u64)
}

/// Waits for `child` to exit and returns its exit status and the CPU time it and its own
/// waited-for children used, from wait4's rusage.
///
/// Takes the `Child` by value: once wait4 has reaped it, `Child::wait` would fail.
pub fn wait_child_cpu_time(child: Child) -> Result<(ExitStatus, CpuTime)> {
    let pid = libc::pid_t::try_from(child.id())
        .with_context(|| format!("child id {} is not a pid_t", child.id()))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, writable and live for the call.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(err).with_context(|| format!("wait4({pid})"));
    }
    Ok((
        ExitStatus::from_raw(status),
        CpuTime {
            user_ns: timeval_ns(usage.ru_utime),
            system_ns: timeval_ns(usage.ru_stime),
            source: CpuTimeSource::Wait4Rusage,
            resolution_ns: 1_000,
        },
    ))
}

fn timeval_ns(tv: libc::timeval) -> u64 {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000)
        .saturating_add(micros.saturating_mul(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_paren() {
        // A command name with spaces and a ')' in it; utime=1234, stime=56.
        let line = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 \
                    99 1000 10 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), (1234, 56));
    }

    #[test]
    fn truncated_stat_is_an_error_not_a_panic() {
        assert!(parse_stat_cpu_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no paren at all").is_err());
        assert!(parse_stat_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5").is_err());
    }

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
        assert_eq!(
            duration_ns_per_byte(Duration::from_micros(3), 1000),
            Some(3.0)
        );
        assert_eq!(duration_ns_per_byte(Duration::from_secs(1), 0), None);
    }

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
    fn permission_errors_name_the_paranoid_setting() {
        let text = errno_meaning(libc::EACCES, CounterKind::TaskClock);
        assert!(text.contains("kernel.perf_event_paranoid"), "{text}");
        let text = describe_open_error(
            &io::Error::from_raw_os_error(libc::ENOENT),
            CounterKind::Cycles,
        );
        assert!(text.starts_with("ENOENT (errno 2): "), "{text}");
        assert!(text.contains("no PMU"), "{text}");
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
