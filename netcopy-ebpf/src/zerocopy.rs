//! What happens to zero-copy pages after the send: the deferred copy (`skb_copy_ubufs`,
//! e.g. when the skb reaches a local socket) and the completion notification. Both run
//! outside the sender's context, so they are attributed through the socket that owns the
//! zero-copy `ubuf_info`, which lives in the `cb` of an skb charged to that socket
//! (MSG_ZEROCOPY), or through the send that brought it (io_uring SEND_ZC: see
//! `CALLER_UBUFS`).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use netcopy_common::{CopySite, KernelOffsets, OFFSET_UNKNOWN};

use crate::{
    counters,
    offsets::offsets,
    send::{raw_arg, CALLER_UBUFS, SOCKETS},
};

#[inline(always)]
unsafe fn read<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_UNKNOWN || base == 0 {
        return None;
    }
    bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok()
}

/// Slot of the socket that owns zero-copy `ubuf_info` `uarg`.
#[inline(always)]
fn slot_of_uarg(uarg: u64, off: &KernelOffsets) -> Option<u32> {
    if off.skb_cb == OFFSET_UNKNOWN || uarg < u64::from(off.skb_cb) {
        return None;
    }
    let owner_skb = uarg - u64::from(off.skb_cb);
    // SAFETY: probe reads at offsets from this kernel's BTF; a wrong guess reads garbage
    // that simply is not found in SOCKETS.
    let sk: u64 = unsafe { read(owner_skb, off.skb_sk) }?;
    unsafe { SOCKETS.get(sk) }.map(|entry| entry.slot)
}

/// `skb_copy_ubufs(skb, gfp)`: the kernel copies the user pages of a zero-copy skb into
/// kernel pages; the copied bytes are the skb's paged data.
#[inline(always)]
fn deferred_copy(skb: u64) {
    let Some(off) = offsets() else { return };
    // SAFETY: probe reads at BTF offsets.
    let Some(head) = (unsafe { read::<u64>(skb, off.skb_head) }) else {
        return;
    };
    let Some(end) = (unsafe { read::<u32>(skb, off.skb_end) }) else {
        return;
    };
    let shinfo = head + u64::from(end);
    let Some(uarg) = (unsafe { read::<u64>(shinfo, off.shinfo_destructor_arg) }) else {
        return;
    };
    // A caller's ubuf_info first: it lives in no skb, so reading it as MSG_ZEROCOPY's
    // would take whatever lies before it for an skb.
    // SAFETY: plain data in an LRU map.
    let caller = unsafe { CALLER_UBUFS.get(uarg) }.copied();
    let Some(slot) = caller.or_else(|| slot_of_uarg(uarg, off)) else {
        return;
    };
    let Some(bytes) = (unsafe { read::<u32>(skb, off.skb_data_len) }) else {
        return;
    };
    counters::count(slot, CopySite::DeferredCopy, u64::from(bytes));
}

/// `__msg_zerocopy_callback(uarg)`: one completion notification for the ids in `uarg`;
/// its `zerocopy` bit is clear when any of its pages had to be copied.
#[inline(always)]
fn completion(uarg: u64) {
    let Some(off) = offsets() else { return };
    let Some(slot) = slot_of_uarg(uarg, off) else {
        return;
    };
    // SAFETY: probe reads at BTF offsets.
    let bytes: u32 = unsafe { read(uarg, off.uarg_bytelen) }.unwrap_or(0);
    counters::count(slot, CopySite::ZeroCopyCompletion, u64::from(bytes));
    if off.uarg_zerocopy_bit == OFFSET_UNKNOWN {
        return;
    }
    let byte: Option<u8> = unsafe { read(uarg, off.uarg_zerocopy_bit / 8) };
    if let Some(byte) = byte {
        if byte & (1 << (off.uarg_zerocopy_bit % 8)) == 0 {
            counters::count(slot, CopySite::ZeroCopyCompletionCopied, u64::from(bytes));
        }
    }
}

#[fentry(function = "skb_copy_ubufs")]
pub fn netcopy_deferred_copy_fentry(ctx: FEntryContext) -> u32 {
    deferred_copy(raw_arg(&ctx, 0));
    0
}

#[kprobe]
pub fn netcopy_deferred_copy_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<u64>(0) {
        deferred_copy(skb);
    }
    0
}

#[fentry(function = "__msg_zerocopy_callback")]
pub fn netcopy_completion_fentry(ctx: FEntryContext) -> u32 {
    completion(raw_arg(&ctx, 0));
    0
}

#[kprobe]
pub fn netcopy_completion_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(uarg) = ctx.arg::<u64>(0) {
        completion(uarg);
    }
    0
}
