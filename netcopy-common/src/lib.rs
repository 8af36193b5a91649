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
}

/// Number of [`CopySite`] values; the counter array is `SLOT_COUNT * SITE_COUNT` long.
pub const SITE_COUNT: usize = 5;

impl CopySite {
    pub const ALL: [CopySite; SITE_COUNT] = [
        CopySite::KernelSendCopy,
        CopySite::ZeroCopyAttach,
        CopySite::DeferredCopy,
        CopySite::ZeroCopyCompletion,
        CopySite::KernelRecvCopy,
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
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `len` in the `skb/skb_copy_datagram_iovec` tracepoint record.
    pub tp_skb_copy_len: u32,
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
    /// `struct sk_buff.data_len` (bytes held in page fragments).
    pub skb_data_len: u32,
    /// `parent_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_parent_pid: u32,
    /// `child_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_child_pid: u32,
    pub _pad: u32,
}

/// `MSG_ZEROCOPY` from the kernel's socket.h.
pub const MSG_ZEROCOPY: u32 = 0x0400_0000;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) structs of integers with no padding holes that
    // could be read uninitialised (every field is u32/u64 and sizes are multiples of 8).
    unsafe impl aya::Pod for super::SiteCounter {}
    unsafe impl aya::Pod for super::FilterEntry {}
    unsafe impl aya::Pod for super::KernelOffsets {}
}
