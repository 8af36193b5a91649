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

/// Bounds a field offset read from the map before it is added to a typed pointer of a
/// tp_btf context: the verifier allows that only with a bounded offset (and every field
/// offset is far below this).
pub const FIELD_OFFSET_MASK: u32 = 0xffff;
