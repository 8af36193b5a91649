//! Receive-side copy: socket buffers copied to the receiver's user memory.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use netcopy_common::{CopySite, TP_SKB_COPY_LEN_OFFSET};

use crate::{counters, filter::current_slot};

/// `skb/skb_copy_datagram_iovec` fires inside `skb_copy_datagram_iter`, right before the
/// copy of `len` bytes to the iov_iter; TCP, UDP and unix-stream receives all go through it.
/// A kprobe or fentry on `skb_copy_datagram_iter` would see the same arguments, so this
/// stable tracepoint is the site's probe on every kernel: as tp_btf where the kernel has
/// BTF (the program reads the typed arguments; no trace record is built for it), as a
/// classic tracepoint otherwise.
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn netcopy_recv_copy_tp_btf(ctx: BtfTracePointContext) -> u32 {
    let Some(slot) = current_slot() else {
        return 0;
    };
    // skb_copy_datagram_iovec(const struct sk_buff *skb, int len): argument 1.
    let len: i32 = ctx.arg(1);
    if len > 0 {
        counters::count(slot, CopySite::KernelRecvCopy, len as u64);
    }
    0
}

/// The same from the classic tracepoint's record.
#[tracepoint]
pub fn netcopy_recv_copy(ctx: TracePointContext) -> u32 {
    let Some(slot) = current_slot() else {
        return 0;
    };
    // SAFETY: a constant offset inside the record, checked against this kernel's tracefs
    // format file by the loader.
    let len = unsafe { *(ctx.as_ptr().add(TP_SKB_COPY_LEN_OFFSET as usize) as *const i32) };
    if len > 0 {
        counters::count(slot, CopySite::KernelRecvCopy, len as u64);
    }
    0
}
