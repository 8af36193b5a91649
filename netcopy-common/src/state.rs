//! State the eBPF programs keep in maps and user space reads or seeds: the process
//! filter, the per-thread send in flight and the per-socket send, and the send kinds.

/// Value of the process filter map (key: tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterEntry {
    /// Counter slot the process's copies are booked to.
    pub slot: u32,
    /// Non-zero: children forked by this process are added with the same slot.
    pub follow_forks: u32,
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

/// Value of the per-socket map (key: `struct sock *`), for sockets a watched process sent
/// on: which slot the socket's copies go to, and (tp_btf strategy) the send in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketSend {
    /// Counter slot of the process that last sent on the socket.
    pub slot: u32,
    /// tp_btf strategy: the tid of the thread whose send is between its first pass
    /// through `tcp_sendmsg_locked` and its `sock_send_length`; 0 when none is.
    pub sender_tid: u32,
    /// `SEND_KIND_*` of that send.
    pub kind: u32,
    /// tp_btf strategy: 1 + the CPU whose per-CPU send cache may hold that send (the
    /// eBPF side's `NETCOPY_SEND_CACHE`), so that the send's end can clear it there; 0
    /// when none does.
    pub cached_cpu: u32,
}

/// The kernel copies the payload into socket buffers.
pub const SEND_KIND_COPY: u32 = 0;
/// MSG_ZEROCOPY on a SO_ZEROCOPY socket, or with a caller's `ubuf_info` (io_uring
/// SEND_ZC), whose route can scatter-gather: pages are pinned.
pub const SEND_KIND_ZEROCOPY: u32 = 1;
/// MSG_SPLICE_PAGES (sendfile, splice) on a route that can scatter-gather: the pages are
/// referenced, not copied.
pub const SEND_KIND_SPLICE: u32 = 2;

/// `MSG_SPLICE_PAGES` from the kernel's socket.h (internal flag, kernels >= 6.5).
pub const MSG_SPLICE_PAGES: u32 = 0x0800_0000;

/// `MSG_ZEROCOPY` from the kernel's socket.h.
pub const MSG_ZEROCOPY: u32 = 0x0400_0000;
