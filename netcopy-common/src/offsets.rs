//! Kernel offsets the copy programs need, found by the loader at run time, and the few
//! read at a constant offset (a tracepoint field, a user ABI struct), checked by the loader.

/// `len` in the `skb/skb_copy_datagram_iovec` record (after the 8-byte `trace_entry` and
/// `skbaddr`), for kernels without BTF. The programs that run on every copy read tracepoint fields at constant
/// offsets, a direct load from the context where a loader-found offset costs a
/// probe-read helper call per event; the loader checks each constant against the
/// kernel's tracefs format file and leaves the program unattached when it differs.
pub const TP_SKB_COPY_LEN_OFFSET: u32 = 16;

/// Field offsets the programs need, found at run time by the loader (tracefs `format`
/// files and kernel BTF): Rust eBPF has no CO-RE, so nothing here is hard-coded but the
/// few tracepoint fields above, which the loader checks.
/// A value of [`OFFSET_UNKNOWN`] means "not found"; programs that need it are not attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `parent_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_parent_pid: u32,
    /// `child_pid` in the `sched/sched_process_fork` tracepoint record.
    pub tp_fork_child_pid: u32,
    /// `struct msghdr.msg_flags`.
    pub msghdr_msg_flags: u32,
    /// `struct msghdr.msg_ubuf`: the zero-copy `ubuf_info` a caller brings along (io_uring
    /// SEND_ZC, Linux >= 6.0); [`OFFSET_UNKNOWN`] on kernels without it.
    pub msghdr_msg_ubuf: u32,
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
    /// `struct msghdr.msg_iter.iter_type` (u8), for the trace: see `msghdr_iter_count`.
    pub msghdr_iter_type: u32,
    /// `struct msghdr.msg_iter.count`: the bytes a send still has to take; at the first
    /// pass of `tcp_sendmsg_locked`, the whole request. The trace reads a sendmsg's
    /// request here instead of reading the caller's msghdr and iovecs (two user-memory
    /// reads that cost more than the rest of the entry program).
    pub msghdr_iter_count: u32,
    /// `struct msghdr.msg_iter.nr_segs`: the iovecs of an `ITER_IOVEC` iterator.
    pub msghdr_iter_nr_segs: u32,
    /// Values of `ITER_IOVEC` and `ITER_UBUF` in `enum iter_type` (`ITER_UBUF`: a
    /// single-iovec request, which newer kernels import as a plain user buffer;
    /// [`OFFSET_UNKNOWN`] on kernels without it).
    pub iter_iovec: u32,
    pub iter_ubuf: u32,
}

/// Marks an offset the loader could not find on this kernel.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl Default for KernelOffsets {
    fn default() -> Self {
        Self {
            tp_fork_parent_pid: OFFSET_UNKNOWN,
            tp_fork_child_pid: OFFSET_UNKNOWN,
            msghdr_msg_flags: OFFSET_UNKNOWN,
            msghdr_msg_ubuf: OFFSET_UNKNOWN,
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
            msghdr_iter_type: OFFSET_UNKNOWN,
            msghdr_iter_count: OFFSET_UNKNOWN,
            msghdr_iter_nr_segs: OFFSET_UNKNOWN,
            iter_iovec: OFFSET_UNKNOWN,
            iter_ubuf: OFFSET_UNKNOWN,
        }
    }
}

/// `length` in `struct tcp_zerocopy_receive` (stable user ABI, linux/tcp.h: after the u64
/// `address`): on a 0 return of `tcp_zerocopy_receive`, the bytes it mapped. The user
/// side checks its own definition of the struct agrees.
pub const TCP_ZC_LENGTH_OFFSET: u32 = 8;
