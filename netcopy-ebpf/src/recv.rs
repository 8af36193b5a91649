//! Receive side: socket buffers copied to the receiver's user memory, and (getsockopt
//! TCP_ZEROCOPY_RECEIVE) bytes mapped into it instead.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, fexit, kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext,
    },
    EbpfContext,
};
use netcopy_common::{CopySite, TCP_ZC_LENGTH_OFFSET, TP_SKB_COPY_LEN_OFFSET};

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

// ---- Bytes mapped instead of copied (getsockopt(TCP_ZEROCOPY_RECEIVE)) ----
//
// `tcp_zerocopy_receive(sk, zc, tss)` maps what it can of the receive queue into the
// caller's mapping and sets `zc->length` to the bytes it mapped before it returns 0 (the
// fallback to a copy sets it to 0; an error return leaves the caller's request in it, and
// maps nothing). `zc` is the kernel's copy of the caller's struct, on
// `do_tcp_getsockopt`'s stack. No tracepoint sees the mapping; fexit or kprobes do.

/// tid -> the `struct tcp_zerocopy_receive *` of the getsockopt it is inside (kprobe
/// strategy: a kretprobe cannot read the function's arguments).
#[map(name = "NETCOPY_ZC_RECEIVES")]
static ZC_RECEIVES: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);

/// Counts one call of `tcp_zerocopy_receive` and the bytes it mapped, from its `zc` and
/// return (a failed call: none).
#[inline(always)]
fn mapped(slot: u32, zc: u64, ret: i64) {
    if ret != 0 || zc == 0 {
        counters::count(slot, CopySite::RecvMapped, 0);
        return;
    }
    // SAFETY: a probe read of the kernel's own struct; a failed read counts nothing.
    let length =
        unsafe { bpf_probe_read_kernel((zc + u64::from(TCP_ZC_LENGTH_OFFSET)) as *const u32) };
    if let Ok(length) = length {
        counters::count(slot, CopySite::RecvMapped, u64::from(length));
    }
}

#[fexit(function = "tcp_zerocopy_receive")]
pub fn netcopy_recv_mapped_fexit(ctx: FExitContext) -> u32 {
    let Some(slot) = current_slot() else {
        return 0;
    };
    let ret = ctx.ret::<i32>().map(i64::from).unwrap_or(-1);
    mapped(slot, crate::send::raw_arg(&ctx, 1), ret);
    0
}

#[kprobe]
pub fn netcopy_recv_mapped_kprobe(ctx: ProbeContext) -> u32 {
    if current_slot().is_none() {
        return 0;
    }
    if let Some(zc) = ctx.arg::<u64>(1) {
        let _ = ZC_RECEIVES.insert(bpf_get_current_pid_tgid() as u32, zc, 0);
    }
    0
}

#[kretprobe]
pub fn netcopy_recv_mapped_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain data in a hash map.
    let Some(zc) = (unsafe { ZC_RECEIVES.get(tid) }).copied() else {
        return 0;
    };
    let _ = ZC_RECEIVES.remove(tid);
    if let Some(slot) = current_slot() {
        mapped(slot, zc, i64::from(ctx.ret::<i32>()));
    }
    0
}
