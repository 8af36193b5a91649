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

mod capability;
mod counters;
mod cpu_time;
mod errors;
mod kind;
mod value;

pub use capability::{capability_hw, capability_sw, Capability};
pub use counters::ProcessCounters;
pub use cpu_time::{process_cpu_time, wait_child_cpu_time, CpuTime, CpuTimeSource};
pub use kind::CounterKind;
pub use value::{cpu_ns_per_byte, per_byte, per_mib, CounterReadings, CounterValue};

/// Names where every figure of [`ProcessCounters`] comes from.
const PERF_SOURCE: &str = "perf_event_open";
