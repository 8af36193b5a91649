//! Every map and global name of the eBPF object, in one place. The eBPF side declares
//! them by these names (netcopy-ebpf/src); the test in kernel/object.rs checks that the
//! embedded object has each (a map's constant ends in `_MAP`, a global's in `_GLOBAL`).

/// The filter of watched processes (tgid -> slot), shared by every program.
pub const FILTER_MAP: &str = "NETCOPY_FILTER";
/// The generation the user side bumps when the filter changes (per-CPU caches drop then).
pub const FILTER_GENERATION_MAP: &str = "NETCOPY_FILTER_GENERATION";
/// Per-slot, per-site copy counters.
pub const COUNTERS_MAP: &str = "NETCOPY_COUNTERS";
/// Kernel stacks of deferred copies (`CopyCallerKey` -> copies and bytes, per CPU).
pub const COPY_CALLERS_MAP: &str = "NETCOPY_COPY_CALLERS";
/// Per slot: deferred copies whose stack was not kept.
pub const COPY_CALLERS_UNRECORDED_MAP: &str = "NETCOPY_COPY_CALLERS_UNRECORDED";
/// Kernel struct and tracepoint field offsets the copy programs read.
pub const OFFSETS_MAP: &str = "NETCOPY_OFFSETS";

/// The trace's maps, shared with netcopy-ebpf/src/trace.rs.
pub const RING_MAP: &str = "NETCOPY_TRACE_EVENTS";
pub const LOG_MAP: &str = "NETCOPY_TRACE_LOG";
pub const LOG_POS_MAP: &str = "NETCOPY_TRACE_LOG_POS";
pub const INFLIGHT_MAP: &str = "NETCOPY_TRACE_INFLIGHT";
pub const TRACE_OFFSETS_MAP: &str = "NETCOPY_TRACE_OFFSETS";
pub const SLOTS_MAP: &str = "NETCOPY_TRACE_SLOTS";
pub const LOST_MAP: &str = "NETCOPY_TRACE_LOST";
/// Rings traced processes submitted io_uring requests to.
pub const URING_RINGS_MAP: &str = "NETCOPY_TRACE_URING_RINGS";
/// The eBPF globals that hold [`LogLayout`]'s figures.
pub const LOG_RECORDS_GLOBAL: &str = "NETCOPY_TRACE_LOG_RECORDS";
pub const WAKE_EVERY_GLOBAL: &str = "NETCOPY_TRACE_WAKE_EVERY";

/// Default room for calls between two drains: 16 MiB, about 100,000 calls over all CPUs.
/// 8 MiB held 61,680 calls of 136 bytes; with the 168-byte record it held 49,932, and a
/// 2-CPU guest's densest sweep cell (1.3 M calls/s) then lost 0.16% of its calls and two
/// unpaced generator threads 1.8%: the reader, woken in time, was not scheduled within
/// the ~16 ms a CPU's log lasted at that rate.
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;

/// How the room for a trace's calls (`--ring-size`) is shared out: one log per CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLayout {
    /// CPUs with a log (the kernel's possible CPUs).
    pub cpus: u32,
    /// Records each CPU's log holds.
    pub records_per_cpu: u32,
    /// Records a CPU logs between two rings of the reader's doorbell: a sixteenth of its
    /// log, so that a reader woken then has fifteen sixteenths left to catch up in (at
    /// the default size, the doorbell rings as often as an eighth of 8 MiB did).
    pub wake_every: u64,
}

impl LogLayout {
    /// The logs that `bytes` of records make on `cpus` CPUs (at least one record each).
    pub fn new(bytes: u32, cpus: u32) -> LogLayout {
        let cpus = cpus.max(1);
        let record = std::mem::size_of::<netcopy_common::SyscallEvent>() as u32;
        let records_per_cpu = (bytes / record / cpus).max(1);
        LogLayout {
            cpus,
            records_per_cpu,
            wake_every: u64::from(records_per_cpu / 16).max(1),
        }
    }

    /// Entries of the log array, all CPUs together.
    pub fn entries(&self) -> u32 {
        self.cpus.saturating_mul(self.records_per_cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_for_calls_is_shared_out_per_cpu() {
        // 168-byte records: 16 MiB holds 99864, 49932 per CPU on 2 CPUs.
        let two = LogLayout::new(16 << 20, 2);
        assert_eq!((two.records_per_cpu, two.wake_every), (49932, 3120));
        assert_eq!(two.entries(), 99864);
        let one = LogLayout::new(16 << 20, 1);
        assert_eq!((one.records_per_cpu, one.wake_every), (99864, 6241));
        // One page on 2 CPUs: 12 records each, the doorbell on every one.
        let page = LogLayout::new(4096, 2);
        assert_eq!((page.records_per_cpu, page.wake_every), (12, 1));
        // Never less than one record per CPU, and no CPU count of 0.
        let many = LogLayout::new(4096, 4096);
        assert_eq!((many.records_per_cpu, many.entries()), (1, 4096));
        assert_eq!(LogLayout::new(16 << 20, 0), one);
    }
}
