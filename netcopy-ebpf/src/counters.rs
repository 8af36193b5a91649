//! The copy counters: calls and bytes per filter slot and copy site, per CPU, summed by
//! the user side (map names are the contract with it: netcopy-user/src/kernel/maps.rs).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use netcopy_common::{CopySite, SiteCounter, COUNTED_SITE_COUNT, SLOT_COUNT};

/// Per-CPU counters, `slot * COUNTED_SITE_COUNT + counter`; summed by the user side.
#[map(name = "NETCOPY_COUNTERS")]
static COUNTERS: PerCpuArray<SiteCounter> =
    PerCpuArray::with_max_entries((SLOT_COUNT * COUNTED_SITE_COUNT) as u32, 0);

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
