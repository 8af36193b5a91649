//! What happens to zero-copy pages after the send: the deferred copy (`skb_copy_ubufs`,
//! e.g. when the skb reaches a local socket) and the completion notification. Both run
//! outside the sender's context, so they are attributed through the socket that owns the
//! zero-copy `ubuf_info`, which lives in the `cb` of an skb charged to that socket
//! (MSG_ZEROCOPY), or through the send that brought it (io_uring SEND_ZC: see
//! `CALLER_UBUFS`). Where fentry or kprobe can reach `skb_copy_ubufs`, a second program
//! there records the kernel stack of each deferred copy of a watched slot's pages (the
//! copy-caller maps), so that the user side can say which caller wanted the copy.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_stack,
    macros::{fentry, kprobe, map},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{FEntryContext, ProbeContext},
    EbpfContext,
};
use netcopy_common::{
    CopyCallerKey, CopySite, KernelOffsets, SiteCounter, COPY_CALLER_CHAINS, OFFSET_UNKNOWN,
    SLOT_COUNT,
};

use crate::{
    counters,
    offsets::{field, offsets},
    send::{raw_arg, CALLER_UBUFS, SOCKETS},
};

/// Slot of the socket that owns zero-copy `ubuf_info` `uarg`.
#[inline(always)]
fn slot_of_uarg(uarg: u64, off: &KernelOffsets) -> Option<u32> {
    if off.skb_cb == OFFSET_UNKNOWN || uarg < u64::from(off.skb_cb) {
        return None;
    }
    let owner_skb = uarg - u64::from(off.skb_cb);
    // SAFETY: probe reads at offsets from this kernel's BTF; a wrong guess reads garbage
    // that simply is not found in SOCKETS.
    let sk: u64 = unsafe { field(owner_skb, off.skb_sk) }?;
    unsafe { SOCKETS.get(sk) }.map(|entry| entry.slot)
}

/// Caller chains of deferred copies: one kernel stack per key, its copies and bytes per
/// CPU (map names are the contract with netcopy-user/src/kernel/maps.rs).
#[map(name = "NETCOPY_COPY_CALLERS")]
static COPY_CALLERS: PerCpuHashMap<CopyCallerKey, SiteCounter> =
    PerCpuHashMap::with_max_entries(COPY_CALLER_CHAINS, 0);

/// Per slot: deferred copies whose chain could not be kept (stack unreadable, or no room
/// for another chain), so that every copy is accounted for.
#[map(name = "NETCOPY_COPY_CALLERS_UNRECORDED")]
static UNRECORDED_CALLERS: PerCpuArray<SiteCounter> =
    PerCpuArray::with_max_entries(SLOT_COUNT as u32, 0);

/// `skb_copy_ubufs(skb, gfp)` of a watched slot's zero-copy skb: the slot, and the bytes
/// the kernel copies (the skb's paged data, the user pages it copies into kernel pages).
#[inline(always)]
fn watched_deferred_copy(skb: u64) -> Option<(u32, u64)> {
    let off = offsets()?;
    // SAFETY: probe reads at BTF offsets.
    let head = unsafe { field::<u64>(skb, off.skb_head) }?;
    let end = unsafe { field::<u32>(skb, off.skb_end) }?;
    let shinfo = head + u64::from(end);
    let uarg = unsafe { field::<u64>(shinfo, off.shinfo_destructor_arg) }?;
    // A caller's ubuf_info first: it lives in no skb, so reading it as MSG_ZEROCOPY's
    // would take whatever lies before it for an skb.
    // SAFETY: plain data in an LRU map.
    let caller = unsafe { CALLER_UBUFS.get(uarg) }.copied();
    let slot = caller.or_else(|| slot_of_uarg(uarg, off))?;
    let bytes = unsafe { field::<u32>(skb, off.skb_data_len) }?;
    Some((slot, u64::from(bytes)))
}

#[inline(always)]
fn deferred_copy(skb: u64) {
    if let Some((slot, bytes)) = watched_deferred_copy(skb) {
        counters::count(slot, CopySite::DeferredCopy, bytes);
    }
}

/// Adds one copy of `bytes` to `counter`.
#[inline(always)]
fn add(counter: *mut SiteCounter, bytes: u64) {
    // SAFETY: a per-CPU value is only touched by programs on this CPU, and eBPF programs
    // are not preempted by each other on one CPU for these program types.
    unsafe {
        (*counter).calls += 1;
        (*counter).bytes += bytes;
    }
}

/// Books one deferred copy of a watched slot to the kernel stack that reached it.
#[inline(always)]
fn copy_caller(ctx: &impl EbpfContext, skb: u64) {
    let Some((slot, bytes)) = watched_deferred_copy(skb) else {
        return;
    };
    let mut key = CopyCallerKey {
        slot,
        ..CopyCallerKey::default()
    };
    let room = core::mem::size_of_val(&key.ips) as u32;
    // SAFETY: the kernel writes at most `room` bytes of return addresses into `ips`.
    let written = unsafe { bpf_get_stack(ctx.as_ptr(), key.ips.as_mut_ptr().cast(), room, 0) };
    if written > 0 {
        key.frames = (written as u32) / 8;
        // By reference: a copy of the key per call would not fit the eBPF stack.
        let key = &key;
        if let Some(counter) = COPY_CALLERS.get_ptr_mut(key) {
            add(counter, bytes);
            return;
        }
        let first = SiteCounter { calls: 1, bytes };
        if COPY_CALLERS
            .insert(key, first, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            return;
        }
        // Another CPU may have made the entry between the two calls.
        if let Some(counter) = COPY_CALLERS.get_ptr_mut(key) {
            add(counter, bytes);
            return;
        }
    }
    if let Some(counter) = UNRECORDED_CALLERS.get_ptr_mut(slot) {
        add(counter, bytes);
    }
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
    let bytes: u32 = unsafe { field(uarg, off.uarg_bytelen) }.unwrap_or(0);
    counters::count(slot, CopySite::ZeroCopyCompletion, u64::from(bytes));
    if off.uarg_zerocopy_bit == OFFSET_UNKNOWN {
        return;
    }
    let byte: Option<u8> = unsafe { field(uarg, off.uarg_zerocopy_bit / 8) };
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

#[fentry(function = "skb_copy_ubufs")]
pub fn netcopy_copy_caller_fentry(ctx: FEntryContext) -> u32 {
    copy_caller(&ctx, raw_arg(&ctx, 0));
    0
}

#[kprobe]
pub fn netcopy_copy_caller_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<u64>(0) {
        copy_caller(&ctx, skb);
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
