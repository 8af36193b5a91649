//! Types shared by the netcopy eBPF programs and the user-space loader.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes it into maps and the
//! user side reads the same bytes back. Keep it `no_std` and free of pointers.
#![no_std]

/// A place in the kernel where payload bytes are copied (or deliberately not copied).
///
/// The user-space serialization copy of the two-copy mode is not here: the sender
/// counts it itself, no probe is needed to see a `memcpy` we wrote.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySite {
    /// User pages copied into socket buffers by `tcp_sendmsg_locked`.
    KernelSendCopy = 0,
    /// User pages pinned and attached to socket buffers (MSG_ZEROCOPY), no copy.
    ZeroCopyAttach = 1,
    /// Pages of a zero-copy send that the kernel copied later (`skb_copy_ubufs`).
    DeferredCopy = 2,
    /// Zero-copy completion notifications raised by the kernel.
    ZeroCopyCompletion = 3,
    /// Socket buffers copied to the receiver's user memory.
    KernelRecvCopy = 4,
    /// Zero-copy completions whose pages the kernel had to copy (`zerocopy` bit clear);
    /// user space sees these as SO_EE_CODE_ZEROCOPY_COPIED.
    ZeroCopyCompletionCopied = 5,
}

/// Number of [`CopySite`] values; the counter array is `SLOT_COUNT * SITE_COUNT` long.
pub const SITE_COUNT: usize = 6;

impl CopySite {
    pub const ALL: [CopySite; SITE_COUNT] = [
        CopySite::KernelSendCopy,
        CopySite::ZeroCopyAttach,
        CopySite::DeferredCopy,
        CopySite::ZeroCopyCompletion,
        CopySite::KernelRecvCopy,
        CopySite::ZeroCopyCompletionCopied,
    ];
}

/// Processes are put in a filter map with a slot number; counters are kept per slot so
/// that one probe set can tell the server's copies from the client's.
pub const SLOT_COUNT: usize = 4;

/// Index of the counter for `site` in the per-CPU counter array.
#[inline(always)]
pub const fn counter_index(slot: u32, site: CopySite) -> u32 {
    slot * SITE_COUNT as u32 + site as u32
}

/// Calls and bytes seen at one copy site on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounter {
    pub calls: u64,
    pub bytes: u64,
}

/// Value of the process filter map (key: tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterEntry {
    /// Counter slot the process's copies are booked to.
    pub slot: u32,
    /// Non-zero: children forked by this process are added with the same slot.
    pub follow_forks: u32,
}

/// Field offsets the programs need, found at run time by the loader (tracefs `format`
/// files and kernel BTF): Rust eBPF has no CO-RE, so nothing here is hard-coded.
/// A value of [`OFFSET_UNKNOWN`] means "not found"; programs that need it are not attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `len` in the `skb/skb_copy_datagram_iovec` tracepoint record.
    pub tp_skb_copy_len: u32,
    /// `parent_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_parent_pid: u32,
    /// `child_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_child_pid: u32,
    /// `sk` in the `sock/sock_send_length` tracepoint record.
    pub tp_send_length_sk: u32,
    /// `ret` in the `sock/sock_send_length` tracepoint record.
    pub tp_send_length_ret: u32,
    /// `struct msghdr.msg_flags`.
    pub msghdr_msg_flags: u32,
    /// `struct sock.sk_flags` (unsigned long bit set of `enum sock_flags`).
    pub sock_sk_flags: u32,
    /// `struct sock.sk_route_caps` (netdev_features_t).
    pub sock_sk_route_caps: u32,
    /// Bit number of `SOCK_ZEROCOPY` in `enum sock_flags`.
    pub sock_zerocopy_bit: u32,
    /// Bit number of `NETIF_F_SG_BIT` in `enum netdev_features`.
    pub netif_f_sg_bit: u32,
    /// `struct sk_buff.head`.
    pub skb_head: u32,
    /// `struct sk_buff.end` (an offset from head on 64-bit kernels).
    pub skb_end: u32,
    /// `struct sk_buff.data_len` (bytes held in page fragments).
    pub skb_data_len: u32,
    /// `struct sk_buff.cb` (a zero-copy `ubuf_info` lives in the cb of its own skb).
    pub skb_cb: u32,
    /// `struct sk_buff.sk`.
    pub skb_sk: u32,
    /// `struct skb_shared_info.destructor_arg` (the zero-copy `ubuf_info`).
    pub shinfo_destructor_arg: u32,
    /// `bytelen` of the zero-copy `ubuf_info` (`ubuf_info_msgzc` on newer kernels).
    pub uarg_bytelen: u32,
    /// Bit offset (from the start of the struct) of its `zerocopy:1` bit field.
    pub uarg_zerocopy_bit: u32,
}

/// Marks an offset the loader could not find on this kernel.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl Default for KernelOffsets {
    fn default() -> Self {
        Self {
            tp_skb_copy_len: OFFSET_UNKNOWN,
            tp_fork_parent_pid: OFFSET_UNKNOWN,
            tp_fork_child_pid: OFFSET_UNKNOWN,
            tp_send_length_sk: OFFSET_UNKNOWN,
            tp_send_length_ret: OFFSET_UNKNOWN,
            msghdr_msg_flags: OFFSET_UNKNOWN,
            sock_sk_flags: OFFSET_UNKNOWN,
            sock_sk_route_caps: OFFSET_UNKNOWN,
            sock_zerocopy_bit: OFFSET_UNKNOWN,
            netif_f_sg_bit: OFFSET_UNKNOWN,
            skb_head: OFFSET_UNKNOWN,
            skb_end: OFFSET_UNKNOWN,
            skb_data_len: OFFSET_UNKNOWN,
            skb_cb: OFFSET_UNKNOWN,
            skb_sk: OFFSET_UNKNOWN,
            shinfo_destructor_arg: OFFSET_UNKNOWN,
            uarg_bytelen: OFFSET_UNKNOWN,
            uarg_zerocopy_bit: OFFSET_UNKNOWN,
        }
    }
}

/// Per-thread state of a TCP send in flight, between its entry and its exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendInFlight {
    /// The `struct sock *` being sent on.
    pub sk: u64,
    /// One of the `SEND_KIND_*` values: what the kernel will do with the payload.
    pub kind: u32,
    /// Counter slot of the sending process.
    pub slot: u32,
    /// Bytes `skb_zerocopy_iter_stream` attached during this send so far.
    pub attached: u64,
}

/// The kernel copies the payload into socket buffers.
pub const SEND_KIND_COPY: u32 = 0;
/// MSG_ZEROCOPY on a SO_ZEROCOPY socket whose route can scatter-gather: pages are pinned.
pub const SEND_KIND_ZEROCOPY: u32 = 1;
/// MSG_SPLICE_PAGES (sendfile, splice): pages are referenced, not copied, not counted.
pub const SEND_KIND_SPLICE: u32 = 2;

/// `MSG_SPLICE_PAGES` from the kernel's socket.h (internal flag, kernels >= 6.5).
pub const MSG_SPLICE_PAGES: u32 = 0x0800_0000;

/// `MSG_ZEROCOPY` from the kernel's socket.h.
pub const MSG_ZEROCOPY: u32 = 0x0400_0000;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) structs of integers with no padding holes that
    // could be read uninitialised (every field is u32/u64 and sizes are multiples of 8).
    unsafe impl aya::Pod for super::SiteCounter {}
    unsafe impl aya::Pod for super::FilterEntry {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::SendInFlight {}
}
