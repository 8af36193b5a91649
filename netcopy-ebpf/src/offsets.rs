//! The kernel layout the copy programs read at: struct and tracepoint field offsets the
//! user-side loader found for this kernel (map names are the contract with it:
//! netcopy-user/src/kernel/maps.rs).

use aya_ebpf::{macros::map, maps::Array};
use netcopy_common::KernelOffsets;

/// One entry: the field offsets the loader found for this kernel.
#[map(name = "NETCOPY_OFFSETS")]
static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

/// The offsets, None before the loader wrote them.
#[inline(always)]
pub fn offsets() -> Option<&'static KernelOffsets> {
    OFFSETS.get(0)
}
