//! Send side: how the payload of a TCP send enters the kernel -- copied into socket
//! buffers, pinned and attached (MSG_ZEROCOPY, io_uring SEND_ZC), or attached as
//! references to pages the kernel already held (splice, sendfile).
//!
//! Three strategies, chosen by the user side (only one is ever attached):
//! - fentry/fexit, or kprobe/kretprobe, on `tcp_sendmsg_locked` and
//!   `skb_zerocopy_iter_stream`: the bytes each send accepted (its return value) and the
//!   bytes it attached as pinned pages are observed; every accepted byte that was not
//!   attached was copied into socket buffers. The copy routine itself
//!   (`_copy_from_iter`) lives in lib/iov_iter.c, which distribution kernels build
//!   `notrace`, so neither kprobes nor fentry can see it;
//! - tp_btf `tcp_sendmsg_locked` + tp_btf `sock_send_length` (inferred): the
//!   kernel's own inputs to its copy-or-pin decision (msg_flags, SOCK_ZEROCOPY, a
//!   caller's ubuf_info, the route's scatter-gather feature), read from the tracepoint's
//!   typed arguments, and the bytes the send accepted.
//!
//! Splice and sendfile reach `tcp_sendmsg_locked` with MSG_SPLICE_PAGES on Linux >= 6.5;
//! before, they go through `do_tcp_sendpages` instead, whose return value is the bytes it
//! attached as page references (fexit or kretprobe, the send-page strategies).

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_map_lookup_percpu_elem,
        bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use core::ptr::{read_volatile, write_volatile};

use netcopy_common::{
    CopySite, KernelOffsets, SendInFlight, SocketSend, MSG_SPLICE_PAGES, MSG_ZEROCOPY,
    SEND_KIND_COPY, SEND_KIND_SPLICE, SEND_KIND_ZEROCOPY,
};

use crate::{
    counters,
    filter::{current_slot, slot_of},
    offsets::{field, offsets},
};

/// tid -> the TCP send it is inside (fentry and kprobe strategies; in the tp_btf strategy
/// only for a send on a socket another thread is already sending on).
#[map(name = "NETCOPY_SENDS")]
static SENDS: HashMap<u32, SendInFlight> = HashMap::with_max_entries(16384, 0);

/// `struct sock *` -> its slot and (tp_btf strategy) its send in progress, for sockets a
/// watched process sent on: deferred copies and completions run in other contexts
/// (softirq, the receiver) and are attributed by socket.
#[map(name = "NETCOPY_SOCKETS")]
pub static SOCKETS: LruHashMap<u64, SocketSend> = LruHashMap::with_max_entries(16384, 0);

/// `struct ubuf_info *` of a caller (io_uring SEND_ZC) -> the slot of the process whose
/// send brought it (fentry and kprobe strategies, where deferred copies are observed).
#[map(name = "NETCOPY_CALLER_UBUFS")]
pub static CALLER_UBUFS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// The CPU this program runs on (an inlined per-CPU load on Linux >= 6.10).
#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_smp_processor_id() }
}

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// What `tcp_sendmsg_locked` will do with the payload, from the same inputs it uses.
#[inline(always)]
fn send_kind(sk: u64, msg: u64, off: &KernelOffsets) -> u32 {
    // SAFETY: probe reads of kernel memory at offsets from this kernel's BTF.
    let flags: u32 = unsafe { field(msg, off.msghdr_msg_flags) }.unwrap_or(0);
    let route_can_sg = || {
        let caps: u64 = unsafe { field(sk, off.sock_sk_route_caps) }.unwrap_or(0);
        off.netif_f_sg_bit < 64 && caps & (1u64 << off.netif_f_sg_bit) != 0
    };
    if flags & MSG_ZEROCOPY != 0 {
        // A caller's ubuf_info (io_uring SEND_ZC) needs no SO_ZEROCOPY on the socket.
        let ubuf: u64 = unsafe { field(msg, off.msghdr_msg_ubuf) }.unwrap_or(0);
        let sk_flags: u64 = unsafe { field(sk, off.sock_sk_flags) }.unwrap_or(0);
        let so_zerocopy =
            off.sock_zerocopy_bit < 64 && sk_flags & (1u64 << off.sock_zerocopy_bit) != 0;
        if ubuf == 0 && !so_zerocopy {
            // MSG_ZEROCOPY without SO_ZEROCOPY is ignored by the kernel.
            return SEND_KIND_COPY;
        }
        // No scatter-gather on the route: the kernel copies and flags the completion.
        return if route_can_sg() {
            SEND_KIND_ZEROCOPY
        } else {
            SEND_KIND_COPY
        };
    }
    if flags & MSG_SPLICE_PAGES != 0 && route_can_sg() {
        return SEND_KIND_SPLICE;
    }
    SEND_KIND_COPY
}

/// Books the zero-copy `ubuf_info` a caller brought along (io_uring SEND_ZC) to `slot`:
/// unlike MSG_ZEROCOPY's, it does not live in an skb of the socket, so a deferred copy of
/// its pages finds its owner here.
#[inline(always)]
fn remember_caller_ubuf(msg: u64, slot: u32, off: &KernelOffsets) {
    // SAFETY: a probe read at a BTF offset.
    let ubuf: u64 = unsafe { field(msg, off.msghdr_msg_ubuf) }.unwrap_or(0);
    if ubuf != 0 {
        let _ = CALLER_UBUFS.insert(ubuf, slot, 0);
    }
}

/// Entry of `tcp_sendmsg_locked(sk, msg, size)` for a watched process, kept per thread.
#[inline(always)]
fn enter_send(sk: u64, msg: u64) {
    let Some(slot) = current_slot() else { return };
    let Some(off) = offsets() else { return };
    let state = SendInFlight {
        sk,
        kind: send_kind(sk, msg, off),
        slot,
        attached: 0,
    };
    let _ = SENDS.insert(tid(), state, 0);
    remember_socket(sk, slot);
    remember_caller_ubuf(msg, slot, off);
}

/// Books socket `sk` to `slot`. An LRU insert allocates a node even when the key is
/// there, and a connection sends many times: the entry is written in place when it exists.
#[inline(always)]
fn remember_socket(sk: u64, slot: u32) {
    match SOCKETS.get_ptr_mut(sk) {
        // SAFETY: a map value; the slot is a plain word that only this path writes.
        Some(entry) => unsafe {
            if (*entry).slot != slot {
                (*entry).slot = slot;
            }
        },
        None => {
            let _ = SOCKETS.insert(
                sk,
                SocketSend {
                    slot,
                    ..SocketSend::default()
                },
                0,
            );
        }
    }
}

/// Exit of `tcp_sendmsg_locked` with its return value: bytes accepted, or an error.
/// Accepted bytes of a MSG_SPLICE_PAGES send were attached as page references; of any
/// other, those `skb_zerocopy_iter_stream` did not attach were copied.
#[inline(always)]
fn exit_send(accepted: i64) {
    let tid = tid();
    // SAFETY: plain data owned by this thread's entry.
    if let Some(state) = unsafe { SENDS.get(tid) } {
        if accepted > 0 && state.kind == SEND_KIND_SPLICE {
            counters::count(state.slot, CopySite::PageReference, accepted as u64);
        } else if accepted > 0 {
            let copied = (accepted as u64).saturating_sub(state.attached);
            if copied > 0 {
                counters::count(state.slot, CopySite::KernelSendCopy, copied);
            }
        }
    }
    let _ = SENDS.remove(tid);
}

/// `do_tcp_sendpages` (Linux < 6.5: splice and sendfile) returned: `sent` bytes attached
/// as references to the caller's pages.
#[inline(always)]
fn sent_pages(sent: i64) {
    if sent <= 0 {
        return;
    }
    if let Some(slot) = current_slot() {
        counters::count(slot, CopySite::PageReference, sent as u64);
    }
}

/// `skb_zerocopy_iter_stream` attached `attached` bytes of user pages.
#[inline(always)]
fn attached_in_send(attached: i64) {
    if attached <= 0 {
        return;
    }
    if let Some(state) = SENDS.get_ptr_mut(tid()) {
        // SAFETY: the entry belongs to this thread, which is running this program.
        let slot = unsafe {
            (*state).attached += attached as u64;
            (*state).slot
        };
        counters::count(slot, CopySite::ZeroCopyAttach, attached as u64);
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

#[fexit(function = "do_tcp_sendpages")]
pub fn netcopy_send_pages_fexit(ctx: FExitContext) -> u32 {
    sent_pages(ctx.ret::<i64>().unwrap_or(0));
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

#[kretprobe]
pub fn netcopy_send_pages_kretprobe(ctx: RetProbeContext) -> u32 {
    sent_pages(ctx.ret::<i64>());
    0
}

// ---- tp_btf (inferred) ----
//
// The tracepoint in `tcp_sendmsg_locked` fires on every pass of its copy loop (one per
// page fragment filled: about four for a 64 KiB send), and `sock_send_length` once per
// send, for every socket of every process. Both run on the hot path of every send on the
// machine. The state of a send lives in its socket's entry in `SOCKETS` (a send costs no
// map insert or delete): its first pass claims the entry for its thread, and
// `sock_send_length` reads the decision and releases it. A send on a socket that another
// thread is already sending on (its `sock_send_length` not yet reached) is kept per
// thread in `SENDS` instead, so concurrent senders stay exact.
//
// The later passes of a send only have to recognise themselves. Each CPU remembers the
// (socket, thread) of the last send that claimed a socket there (`SEND_CACHE`): a later
// pass on the same CPU costs one per-CPU load and two compares instead of a hash lookup
// in `SOCKETS`. A send that slept in `sk_stream_wait_memory` may go on on another CPU, or
// find its CPU's entry taken by another send: it misses, finds its claim in `SOCKETS`,
// and moves its entry to this CPU. The socket's entry names the one CPU whose cache may
// hold the send (`cached_cpu`), and whoever moves or releases the claim clears that CPU's
// entry first, so that no entry outlives its send: a stale one would make the next send
// of the same thread on the same socket look like a later pass.

/// This CPU's last send that claimed its socket (see above). `tid` 0: none.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct CachedSend {
    sk: u64,
    tid: u32,
    _pad: u32,
}

/// Per CPU: the send whose later passes need no `SOCKETS` lookup. Written by programs on
/// its own CPU, except that the end of a send that moved clears its `tid` from another
/// CPU (`forget_cached`).
#[map(name = "NETCOPY_SEND_CACHE")]
static SEND_CACHE: PerCpuArray<CachedSend> = PerCpuArray::with_max_entries(1, 0);

/// Whether this CPU's cache entry is the send of `tid` on `sk`.
#[inline(always)]
fn is_cached(cache: *const CachedSend, sk: u64, tid: u32) -> bool {
    // SAFETY: a per-CPU map value; another CPU only ever zeroes `tid`, which makes the
    // entry miss.
    unsafe { read_volatile(&(*cache).sk) == sk && read_volatile(&(*cache).tid) == tid }
}

/// Makes this CPU's cache entry the send of `tid` on `sk`.
#[inline(always)]
fn cache_here(cache: Option<*mut CachedSend>, sk: u64, tid: u32) {
    if let Some(cache) = cache {
        // SAFETY: this CPU's entry, which programs on this CPU do not write concurrently.
        unsafe {
            write_volatile(&mut (*cache).sk, sk);
            write_volatile(&mut (*cache).tid, tid);
        }
    }
}

/// Clears the cache entry of `tid`'s send on `sk` on the CPU `cached_cpu` names (1 +
/// CPU; 0: none). Another CPU's entry may be changing under us, as a program there caches
/// another send: zeroing its `tid` at worst sends that send's next pass to `SOCKETS`,
/// where its claim is.
#[inline(always)]
fn forget_cached(cached_cpu: u32, sk: u64, tid: u32) {
    if cached_cpu == 0 {
        return;
    }
    let cpu = cached_cpu - 1;
    let cache = if cpu == this_cpu() {
        SEND_CACHE.get_ptr_mut(0)
    } else {
        let key = 0u32;
        // SAFETY: a lookup in our own per-CPU array; the value pointer is checked.
        let value = unsafe {
            bpf_map_lookup_percpu_elem(
                core::ptr::addr_of!(SEND_CACHE) as *mut c_void,
                core::ptr::addr_of!(key) as *const c_void,
                cpu,
            )
        };
        (!value.is_null()).then_some(value as *mut CachedSend)
    };
    if let Some(cache) = cache {
        if is_cached(cache, sk, tid) {
            // SAFETY: a map value (see above).
            unsafe { write_volatile(&mut (*cache).tid, 0) };
        }
    }
}

/// Both arguments as plain numbers, for the per-thread path whose maps keep them.
#[inline(always)]
fn sk_and_msg(ctx: &BtfTracePointContext) -> [u64; 2] {
    // SAFETY: the tracing context is an array of u64 arguments, sk and msg first.
    unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const [u64; 2]) }.unwrap_or([0, 0])
}

/// `tcp_sendmsg_locked(sk, msg, skb, size_goal)`: fires before the copy-or-pin branch;
/// the first pass of a send records the decision.
#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn netcopy_send_tp_btf(ctx: BtfTracePointContext) -> u32 {
    // A direct load from the context, used only as a map key.
    let sk: u64 = ctx.arg(0);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let cache = SEND_CACHE.get_ptr_mut(0);
    if let Some(cached) = cache {
        if is_cached(cached, sk, tid) {
            // A later pass of the send this thread recorded on this CPU.
            return 0;
        }
    }
    let cpu = this_cpu();
    let Some(entry) = SOCKETS.get_ptr_mut(sk) else {
        claim_new_socket(&ctx, sk, pid_tgid, cpu, cache);
        return 0;
    };
    // SAFETY: a map value; `sender_tid` is claimed under the socket lock, which the
    // caller of this tracepoint holds, and released by the sender itself, which also
    // owns `cached_cpu` while it holds the claim.
    let sender = unsafe { read_volatile(&(*entry).sender_tid) };
    if sender == tid {
        // A later pass of the send this thread recorded, on another CPU than its cache
        // entry, or after another send took that entry: the entry moves here.
        unsafe {
            let cached_cpu = read_volatile(&(*entry).cached_cpu);
            if cached_cpu != cpu + 1 {
                forget_cached(cached_cpu, sk, tid);
                write_volatile(&mut (*entry).cached_cpu, cpu + 1);
            }
        }
        cache_here(cache, sk, tid);
        return 0;
    }
    if sender == 0 {
        let Some((slot, kind)) = new_send(&ctx, pid_tgid) else {
            return 0;
        };
        // SAFETY: as above; the owner word is written last. The previous owner cleared
        // its cache entry when it released the claim.
        unsafe {
            write_volatile(&mut (*entry).slot, slot);
            write_volatile(&mut (*entry).kind, kind);
            write_volatile(&mut (*entry).cached_cpu, cpu + 1);
            write_volatile(&mut (*entry).sender_tid, tid);
        }
        cache_here(cache, sk, tid);
        return 0;
    }
    // Another thread's send on this socket is still in flight: keep this one per thread.
    let [sk, msg] = sk_and_msg(&ctx);
    // SAFETY: plain data owned by this thread's entry.
    match unsafe { SENDS.get(tid) } {
        Some(state) if state.sk == sk => {}
        _ => {
            enter_send(sk, msg);
            if let Some(off) = offsets() {
                crate::trace::on_send_start(msg, off);
            }
        }
    }
    0
}

/// The slot and kind of a send that starts now, or None when the caller is not watched.
#[inline(always)]
fn new_send(ctx: &BtfTracePointContext, pid_tgid: u64) -> Option<(u32, u32)> {
    let slot = slot_of(pid_tgid)?;
    let off = offsets()?;
    // Direct loads from the context: typed pointers, which the reads below take as
    // probe-read addresses at bounded offsets (no helper call to copy them out first).
    let sk: u64 = ctx.arg(0);
    let msg: u64 = ctx.arg(1);
    crate::trace::on_send_start(msg, off);
    Some((slot, send_kind(sk, msg, off)))
}

/// The first send of a watched process on a socket not yet in `SOCKETS`.
#[inline(always)]
fn claim_new_socket(
    ctx: &BtfTracePointContext,
    sk: u64,
    pid_tgid: u64,
    cpu: u32,
    cache: Option<*mut CachedSend>,
) {
    let Some((slot, kind)) = new_send(ctx, pid_tgid) else {
        return;
    };
    let tid = pid_tgid as u32;
    let entry = SocketSend {
        slot,
        sender_tid: tid,
        kind,
        cached_cpu: cpu + 1,
    };
    if SOCKETS.insert(sk, entry, 0).is_ok() {
        cache_here(cache, sk, tid);
    }
}

/// Books the bytes a send accepted to the site its kind says.
#[inline(always)]
fn count_accepted(slot: u32, kind: u32, accepted: i32) {
    if accepted <= 0 {
        return;
    }
    let site = match kind {
        SEND_KIND_COPY => CopySite::KernelSendCopy,
        SEND_KIND_ZEROCOPY => CopySite::ZeroCopyAttach,
        SEND_KIND_SPLICE => CopySite::PageReference,
        _ => return,
    };
    counters::count(slot, site, accepted as u64);
}

/// `sock_send_length(sk, ret, flags)` fires when `sock_sendmsg` returns, with the bytes
/// accepted; as tp_btf, so that no trace record is built for it.
#[btf_tracepoint(function = "sock_send_length")]
pub fn netcopy_send_length(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    // An int argument is stored zero-extended in its u64 slot.
    let ret = ctx.arg::<u64>(1) as u32 as i32;
    // Sockets no watched process sent on (the machine's other traffic) stop here.
    let Some(entry) = SOCKETS.get_ptr_mut(sk) else {
        return 0;
    };
    let tid = tid();
    // SAFETY: a map value, see netcopy_send_tp_btf. What the send recorded is read before
    // the owner word is released: the next send may claim the socket right after.
    unsafe {
        if read_volatile(&(*entry).sender_tid) == tid {
            let slot = read_volatile(&(*entry).slot);
            let kind = read_volatile(&(*entry).kind);
            let cached_cpu = read_volatile(&(*entry).cached_cpu);
            write_volatile(&mut (*entry).cached_cpu, 0);
            write_volatile(&mut (*entry).sender_tid, 0);
            forget_cached(cached_cpu, sk, tid);
            count_accepted(slot, kind, ret);
            return 0;
        }
    }
    // SAFETY: plain data owned by this thread's entry.
    let Some(state) = (unsafe { SENDS.get(tid) }).copied() else {
        return 0;
    };
    let _ = SENDS.remove(tid);
    if state.sk == sk {
        count_accepted(state.slot, state.kind, ret);
    }
    0
}
