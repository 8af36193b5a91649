//! The kernel layout the copy programs read at: struct and tracepoint field offsets the
//! user-side loader found for this kernel (map names are the contract with it:
//! netcopy-user/src/kernel/maps.rs).

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::map, maps::Array};
use netcopy_common::{KernelOffsets, OFFSET_UNKNOWN};

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
const FIELD_OFFSET_MASK: u32 = 0xffff;

/// Reads the field at `offset` (one of [`offsets`]) of the kernel struct at `base`; None
/// for an offset this kernel lacks, a null `base` or a failed read. `base` may be a typed
/// pointer loaded from a tp_btf context, hence the bounded offset.
///
/// # Safety
/// A probe read: `T` must be plain data the field can hold.
#[inline(always)]
pub unsafe fn field<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_UNKNOWN || base == 0 {
        return None;
    }
    bpf_probe_read_kernel((base + u64::from(offset & FIELD_OFFSET_MASK)) as *const T).ok()
}
