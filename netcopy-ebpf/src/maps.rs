//! Maps shared by all programs. Names are the contract with the user-side loader.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use netcopy_common::{
    CopySite, FilterEntry, KernelOffsets, SiteCounter, COUNTED_SITE_COUNT, SLOT_COUNT,
};

/// tgid -> slot: the only processes whose copies are counted.
#[map(name = "NETCOPY_FILTER")]
pub static FILTER: HashMap<u32, FilterEntry> = HashMap::with_max_entries(1024, 0);

/// Per-CPU counters, `slot * COUNTED_SITE_COUNT + counter`; summed by the user side.
#[map(name = "NETCOPY_COUNTERS")]
pub static COUNTERS: PerCpuArray<SiteCounter> =
    PerCpuArray::with_max_entries((SLOT_COUNT * COUNTED_SITE_COUNT) as u32, 0);

/// One entry: the field offsets the loader found for this kernel.
#[map(name = "NETCOPY_OFFSETS")]
pub static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn offsets() -> Option<&'static KernelOffsets> {
    OFFSETS.get(0)
}

/// Adds one call of `bytes` to `site` for `slot`.
#[inline(always)]
pub fn count(slot: u32, site: CopySite, bytes: u64) {
    // Every site a program counts has a counter: the `else` is never taken.
    let Some(index) = netcopy_common::counter_index(slot, site) else {
        return;
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and eBPF
        // programs are not preempted by each other on one CPU for these program types.
        unsafe {
            (*counter).calls += 1;
            (*counter).bytes += bytes;
        }
    }
    // Also book it to the calling thread's traced system call, if one is in flight.
    crate::trace::on_copy(slot, site, bytes);
}
