//! The events netcopy counts, and how each is opened.

use std::fmt;

use perf_event::{
    events::{Cache, CacheId, CacheOp, CacheResult, Hardware, Software},
    Builder, ReadFormat,
};
use serde::{Deserialize, Serialize};

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
    pub(super) fn builder(self) -> Builder<'static> {
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
