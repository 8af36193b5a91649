//! Send side: how the payload of a TCP send enters the kernel -- copied into socket
//! buffers, or pinned and attached (MSG_ZEROCOPY).
//!
//! Three strategies, chosen by the user side (only one is ever attached):
//! - fentry/fexit, or kprobe/kretprobe, on `tcp_sendmsg_locked` and
//!   `skb_zerocopy_iter_stream`: the bytes each send accepted (its return value) and the
//!   bytes it attached as pinned pages are observed; every accepted byte that was not
//!   attached was copied into socket buffers. The copy routine itself
//!   (`_copy_from_iter`) lives in lib/iov_iter.c, which distribution kernels build
//!   `notrace`, so neither kprobes nor fentry can see it;
//! - tp_btf `tcp_sendmsg_locked` + tp_btf `sock_send_length` (inferred): the
//!   kernel's own inputs to its copy-or-pin decision (msg_flags, SOCK_ZEROCOPY, the
//!   route's scatter-gather feature), read from the tracepoint's typed arguments, and the
//!   bytes the send accepted.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map},
    maps::{HashMap, LruHashMap},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use netcopy_common::{
    CopySite, KernelOffsets, SendInFlight, MSG_SPLICE_PAGES, MSG_ZEROCOPY, OFFSET_UNKNOWN,
    SEND_KIND_COPY, SEND_KIND_SPLICE, SEND_KIND_ZEROCOPY,
};

use crate::{filter::current_slot, maps};

/// tid -> the TCP send it is inside.
#[map(name = "NETCOPY_SENDS")]
static SENDS: HashMap<u32, SendInFlight> = HashMap::with_max_entries(16384, 0);

/// `struct sock *` -> slot, for sockets a watched process sent on: deferred copies and
/// completions run in other contexts (softirq, the receiver) and are attributed by socket.
#[map(name = "NETCOPY_SOCKETS")]
pub static SOCKETS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
unsafe fn read<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_UNKNOWN {
        return None;
    }
    bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok()
}

/// What `tcp_sendmsg_locked` will do with the payload, from the same inputs it uses.
#[inline(always)]
fn send_kind(sk: u64, msg: u64, off: &KernelOffsets) -> u32 {
    // SAFETY: probe reads of kernel memory at offsets from this kernel's BTF.
    let flags: u32 = unsafe { read(msg, off.msghdr_msg_flags) }.unwrap_or(0);
    if flags & MSG_SPLICE_PAGES != 0 {
        return SEND_KIND_SPLICE;
    }
    if flags & MSG_ZEROCOPY == 0 {
        return SEND_KIND_COPY;
    }
    let sk_flags: u64 = unsafe { read(sk, off.sock_sk_flags) }.unwrap_or(0);
    if off.sock_zerocopy_bit >= 64 || sk_flags & (1u64 << off.sock_zerocopy_bit) == 0 {
        // MSG_ZEROCOPY without SO_ZEROCOPY is ignored by the kernel.
        return SEND_KIND_COPY;
    }
    let caps: u64 = unsafe { read(sk, off.sock_sk_route_caps) }.unwrap_or(0);
    if off.netif_f_sg_bit >= 64 || caps & (1u64 << off.netif_f_sg_bit) == 0 {
        // No scatter-gather on the route: the kernel copies and flags the completion.
        return SEND_KIND_COPY;
    }
    SEND_KIND_ZEROCOPY
}

/// Entry of `tcp_sendmsg_locked(sk, msg, size)` for a watched process.
#[inline(always)]
fn enter_send(sk: u64, msg: u64) {
    let Some(slot) = current_slot() else { return };
    let Some(off) = maps::offsets() else { return };
    let state = SendInFlight {
        sk,
        kind: send_kind(sk, msg, off),
        slot,
        attached: 0,
    };
    let _ = SENDS.insert(&tid(), &state, 0);
    // An LRU insert allocates a node even when the key is there: look first, since a
    // connection sends many times.
    // SAFETY: plain data.
    if unsafe { SOCKETS.get(&sk) } != Some(&slot) {
        let _ = SOCKETS.insert(&sk, &slot, 0);
    }
}

/// Exit of `tcp_sendmsg_locked` with its return value: bytes accepted, or an error.
/// Accepted bytes that `skb_zerocopy_iter_stream` did not attach were copied.
#[inline(always)]
fn exit_send(accepted: i64) {
    let tid = tid();
    // SAFETY: plain data owned by this thread's entry.
    if let Some(state) = unsafe { SENDS.get(&tid) } {
        if accepted > 0 {
            let copied = (accepted as u64).saturating_sub(state.attached);
            if copied > 0 {
                maps::count(state.slot, CopySite::KernelSendCopy, copied);
            }
        }
    }
    let _ = SENDS.remove(&tid);
}

/// `skb_zerocopy_iter_stream` attached `attached` bytes of user pages.
#[inline(always)]
fn attached_in_send(attached: i64) {
    if attached <= 0 {
        return;
    }
    if let Some(state) = SENDS.get_ptr_mut(&tid()) {
        // SAFETY: the entry belongs to this thread, which is running this program.
        let slot = unsafe {
            (*state).attached += attached as u64;
            (*state).slot
        };
        maps::count(slot, CopySite::ZeroCopyAttach, attached as u64);
    }
}

/// Argument `n` of a fentry/fexit program as a plain number: the verifier forbids
/// arithmetic on the typed pointer itself, and we only use it as a probe-read address.
#[inline(always)]
pub fn raw_arg(ctx: &impl EbpfContext, n: usize) -> u64 {
    // SAFETY: the tracing context is an array of u64 arguments.
    unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).add(n)) }.unwrap_or(0)
}

// ---- fentry / fexit (observed) ----

#[fentry(function = "tcp_sendmsg_locked")]
pub fn netcopy_send_enter_fentry(ctx: FEntryContext) -> u32 {
    enter_send(raw_arg(&ctx, 0), raw_arg(&ctx, 1));
    0
}

#[fexit(function = "tcp_sendmsg_locked")]
pub fn netcopy_send_exit_fexit(ctx: FExitContext) -> u32 {
    let accepted = ctx.ret::<i32>().map(i64::from).unwrap_or(0);
    exit_send(accepted);
    0
}

#[fexit(function = "skb_zerocopy_iter_stream")]
pub fn netcopy_zerocopy_attach_fexit(ctx: FExitContext) -> u32 {
    if let Ok(attached) = ctx.ret::<i32>() {
        attached_in_send(i64::from(attached));
    }
    0
}

// ---- kprobe / kretprobe (observed) ----

#[kprobe]
pub fn netcopy_send_enter_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(msg)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        enter_send(sk, msg);
    }
    0
}

#[kretprobe]
pub fn netcopy_send_exit_kretprobe(ctx: RetProbeContext) -> u32 {
    exit_send(i64::from(ctx.ret::<i32>()));
    0
}

#[kretprobe]
pub fn netcopy_zerocopy_attach_kretprobe(ctx: RetProbeContext) -> u32 {
    attached_in_send(i64::from(ctx.ret::<i32>()));
    0
}

// ---- tp_btf (inferred) ----

/// `tcp_sendmsg_locked(sk, msg, skb, size_goal)`: fires on every pass of the copy loop,
/// before the copy-or-pin branch; the first pass of a send records the decision.
#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn netcopy_send_tp_btf(ctx: BtfTracePointContext) -> u32 {
    // Both arguments with one helper call (this program runs for every skb a send fills).
    // SAFETY: the tracing context is an array of u64 arguments, sk and msg first.
    let [sk, msg] =
        unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const [u64; 2]) }.unwrap_or([0, 0]);
    // SAFETY: plain data owned by this thread's entry.
    match unsafe { SENDS.get(&tid()) } {
        Some(state) if state.sk == sk => {}
        _ => enter_send(sk, msg),
    }
    0
}

/// `sock_send_length(sk, ret, flags)` fires when `sock_sendmsg` returns, with the bytes
/// accepted; as tp_btf, so that no trace record is built for it.
#[btf_tracepoint(function = "sock_send_length")]
pub fn netcopy_send_length(ctx: BtfTracePointContext) -> u32 {
    let tid = tid();
    // SAFETY: plain data owned by this thread's entry.
    let Some(state) = (unsafe { SENDS.get(&tid) }).copied() else {
        return 0;
    };
    let _ = SENDS.remove(&tid);
    // SAFETY: the tracing context is an array of u64 arguments, sk and ret first (an int
    // argument is stored zero-extended).
    let Ok([sk, ret]) = (unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const [u64; 2]) }) else {
        return 0;
    };
    let ret = ret as u32 as i32;
    if sk != state.sk || ret <= 0 {
        return 0;
    }
    let site = match state.kind {
        SEND_KIND_COPY => CopySite::KernelSendCopy,
        SEND_KIND_ZEROCOPY => CopySite::ZeroCopyAttach,
        _ => return 0,
    };
    maps::count(state.slot, site, ret as u64);
    0
}
