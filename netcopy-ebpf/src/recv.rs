//! Receive-side copy: socket buffers copied to the receiver's user memory.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use netcopy_common::CopySite;

use crate::{filter::current_slot, maps};

/// `skb/skb_copy_datagram_iovec` fires inside `skb_copy_datagram_iter`, right before the
/// copy of `len` bytes to the iov_iter; TCP, UDP and unix-stream receives all go through it.
/// A kprobe or fentry on `skb_copy_datagram_iter` would see the same arguments, so this
/// stable tracepoint is the first choice for this site on every kernel.
#[tracepoint]
pub fn netcopy_recv_copy(ctx: TracePointContext) -> u32 {
    let Some(slot) = current_slot() else {
        return 0;
    };
    let Some(offsets) = maps::offsets() else {
        return 0;
    };
    // SAFETY: the offset comes from this kernel's tracefs format file.
    let len: i32 = match unsafe { ctx.read_at(offsets.tp_skb_copy_len as usize) } {
        Ok(len) => len,
        Err(_) => return 0,
    };
    if len > 0 {
        maps::count(slot, CopySite::KernelRecvCopy, len as u64);
    }
    0
}
