//! The syscall trace (`netcopy trace`): the traced calls, the record the programs send to
//! user space and its fields, and the offsets the trace programs read.

use crate::{CopySite, SiteCounter, OFFSET_UNKNOWN};

/// The system calls `netcopy trace` records; the value is the `syscall` field of a
/// [`SyscallEvent`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracedSyscall {
    Sendto = 0,
    Sendmsg = 1,
    Sendmmsg = 2,
    Recvfrom = 3,
    Recvmsg = 4,
    Recvmmsg = 5,
    /// Only when the fd is a socket.
    Write = 6,
    /// Only when the fd is a socket.
    Read = 7,
    /// Only when the fd is a socket.
    Writev = 8,
    /// Only when the fd is a socket.
    Readv = 9,
}

/// Number of [`TracedSyscall`] values.
const TRACED_SYSCALL_COUNT: usize = 10;

impl TracedSyscall {
    pub const ALL: [TracedSyscall; TRACED_SYSCALL_COUNT] = [
        TracedSyscall::Sendto,
        TracedSyscall::Sendmsg,
        TracedSyscall::Sendmmsg,
        TracedSyscall::Recvfrom,
        TracedSyscall::Recvmsg,
        TracedSyscall::Recvmmsg,
        TracedSyscall::Write,
        TracedSyscall::Read,
        TracedSyscall::Writev,
        TracedSyscall::Readv,
    ];

    pub fn from_u32(value: u32) -> Option<TracedSyscall> {
        Self::ALL.get(value as usize).copied()
    }

    /// The system call's name, as in `syscalls/sys_enter_NAME`.
    pub const fn name(self) -> &'static str {
        match self {
            TracedSyscall::Sendto => "sendto",
            TracedSyscall::Sendmsg => "sendmsg",
            TracedSyscall::Sendmmsg => "sendmmsg",
            TracedSyscall::Recvfrom => "recvfrom",
            TracedSyscall::Recvmsg => "recvmsg",
            TracedSyscall::Recvmmsg => "recvmmsg",
            TracedSyscall::Write => "write",
            TracedSyscall::Read => "read",
            TracedSyscall::Writev => "writev",
            TracedSyscall::Readv => "readv",
        }
    }
}

/// Offsets of the arguments of one `syscalls/sys_enter_*` tracepoint record, from its
/// tracefs format file; [`OFFSET_UNKNOWN`] where the call has no such argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallArgOffsets {
    /// The file descriptor.
    pub fd: u32,
    /// The user pointer: buffer, `struct user_msghdr *`, `struct mmsghdr *` or iovec array.
    pub ptr: u32,
    /// Length, buffer size, iovec count or message count (`vlen`).
    pub len: u32,
    /// The `flags` argument.
    pub flags: u32,
}

impl TracedSyscall {
    /// Where its `sys_enter_*` record keeps each argument. The record is
    /// `struct syscall_trace_enter`: an 8-byte `trace_entry`, the int syscall number
    /// (padded to 8), then every argument as 8 bytes in the call's own order. The trace
    /// programs read these offsets as constants (a direct load from the context, where a
    /// loader-found offset costs a probe-read helper call per argument); the loader checks
    /// them against the kernel's tracefs format files and disables an event whose records
    /// differ.
    pub const fn arg_offsets(self) -> SyscallArgOffsets {
        const fn arg(index: u32) -> u32 {
            16 + 8 * index
        }
        match self {
            // (fd, buf, len, flags, ...) and (fd, mmsg, vlen, flags, ...)
            TracedSyscall::Sendto
            | TracedSyscall::Recvfrom
            | TracedSyscall::Sendmmsg
            | TracedSyscall::Recvmmsg => SyscallArgOffsets {
                fd: arg(0),
                ptr: arg(1),
                len: arg(2),
                flags: arg(3),
            },
            // (fd, msg, flags)
            TracedSyscall::Sendmsg | TracedSyscall::Recvmsg => SyscallArgOffsets {
                fd: arg(0),
                ptr: arg(1),
                len: OFFSET_UNKNOWN,
                flags: arg(2),
            },
            // (fd, buf, count) and (fd, vec, vlen)
            TracedSyscall::Write
            | TracedSyscall::Read
            | TracedSyscall::Writev
            | TracedSyscall::Readv => SyscallArgOffsets {
                fd: arg(0),
                ptr: arg(1),
                len: arg(2),
                flags: OFFSET_UNKNOWN,
            },
        }
    }
}

/// `ret` in every `sys_exit_*` record (`struct syscall_trace_exit`: `trace_entry`, the
/// syscall number, then `long ret`); a constant for the same reason as
/// [`TracedSyscall::arg_offsets`], checked the same way.
pub const SYSCALL_EXIT_RET_OFFSET: u32 = 16;

/// Everything the trace programs need to know about this kernel that is not a constant,
/// found by the loader at run time: kernel struct offsets for telling a socket fd from any
/// other (BTF), and the user ABI layouts of msghdr and mmsghdr.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceOffsets {
    /// `struct task_struct.files`.
    pub task_files: u32,
    /// `struct files_struct.fdt`.
    pub files_fdt: u32,
    /// `struct fdtable.fd`.
    pub fdtable_fd: u32,
    /// `struct fdtable.max_fds`.
    pub fdtable_max_fds: u32,
    /// `struct file.f_inode`.
    pub file_f_inode: u32,
    /// `struct inode.i_mode`.
    pub inode_i_mode: u32,
    /// `struct user_msghdr.msg_iov` (user ABI).
    pub msghdr_iov: u32,
    /// `struct user_msghdr.msg_iovlen` (user ABI).
    pub msghdr_iovlen: u32,
    /// `struct user_msghdr.msg_flags` (user ABI).
    pub msghdr_flags: u32,
    /// `struct mmsghdr.msg_len` (user ABI); `msg_hdr` is at offset 0.
    pub mmsghdr_len: u32,
    /// `sizeof(struct mmsghdr)` (user ABI).
    pub mmsghdr_size: u32,
    /// `struct user_msghdr.msg_control` (user ABI); `msg_controllen` follows it.
    pub msghdr_control: u32,
    /// `struct file.private_data` (a socket file's `struct socket *`).
    pub file_private_data: u32,
    /// `struct socket.sk`.
    pub socket_sk: u32,
    /// `struct sock.sk_zckey`: the number the socket's next MSG_ZEROCOPY send gets.
    pub sock_zckey: u32,
    /// Offset from an io_uring request (`struct io_kiocb *`) to the `u16 flags` of its
    /// send command (`struct io_sr_msg`), where IORING_SEND_ZC_REPORT_USAGE is kept.
    pub uring_req_send_flags: u32,
}

/// `sizeof(struct iovec)` in the 64-bit user ABI: `{ void *iov_base; size_t iov_len; }`.
/// A constant, not a loader-found offset, because the trace program reads iovec arrays
/// in chunks of [`TRACE_IOVEC_CHUNK`] as `u64` pairs (one probe read per chunk instead of
/// one per iovec); the user side checks libc agrees at compile time.
pub const IOVEC_SIZE: u32 = 16;
/// iovecs read from user memory by one probe read: 16 covers the 9 of a one-copy
/// sendmsg (a header and 8 fields) in one read; the 256-byte buffer fits the eBPF stack.
pub const TRACE_IOVEC_CHUNK: u32 = 16;

impl Default for TraceOffsets {
    fn default() -> Self {
        Self {
            task_files: OFFSET_UNKNOWN,
            files_fdt: OFFSET_UNKNOWN,
            fdtable_fd: OFFSET_UNKNOWN,
            fdtable_max_fds: OFFSET_UNKNOWN,
            file_f_inode: OFFSET_UNKNOWN,
            inode_i_mode: OFFSET_UNKNOWN,
            msghdr_iov: OFFSET_UNKNOWN,
            msghdr_iovlen: OFFSET_UNKNOWN,
            msghdr_flags: OFFSET_UNKNOWN,
            mmsghdr_len: OFFSET_UNKNOWN,
            mmsghdr_size: OFFSET_UNKNOWN,
            msghdr_control: OFFSET_UNKNOWN,
            file_private_data: OFFSET_UNKNOWN,
            socket_sk: OFFSET_UNKNOWN,
            sock_zckey: OFFSET_UNKNOWN,
            uring_req_send_flags: OFFSET_UNKNOWN,
        }
    }
}

/// iovecs summed per `struct user_msghdr` (sendmsg, recvmsg, writev, readv); beyond it
/// the requested size is a lower bound and [`TRACE_INFO_REQUESTED_PARTIAL`] is set.
pub const TRACE_MAX_IOVECS: u32 = 64;
/// Messages of a sendmmsg/recvmmsg whose iovecs are summed at entry (the verifier's
/// work grows fast with messages x iovecs: 16 x 16 takes it over 100 ms per program).
pub const TRACE_MAX_MMSG: u32 = 16;
/// iovecs summed per message of a sendmmsg/recvmmsg.
pub const TRACE_MAX_MMSG_IOVECS: u32 = 4;
/// Messages of a sendmmsg/recvmmsg whose `msg_len` is summed at exit.
pub const TRACE_MAX_MMSG_RETURNED: u32 = 64;

/// `requested` is a lower bound: more iovecs or messages than the program reads, or user
/// memory it could not read.
pub const TRACE_INFO_REQUESTED_PARTIAL: u32 = 1;
/// `returned` of a sendmmsg/recvmmsg is a lower bound (more messages than read).
pub const TRACE_INFO_RETURNED_PARTIAL: u32 = 2;
/// `msg_flags_out` holds the `msg_flags` the kernel wrote back (recvmsg).
pub const TRACE_INFO_MSG_FLAGS_OUT: u32 = 4;
/// `requested` and `iovecs` come from the kernel's iov_iter of the call (a TCP sendmsg
/// on the tp_btf strategy), not from the caller's msghdr in user memory.
pub const TRACE_INFO_REQUESTED_KERNEL: u32 = 8;
/// `zckey` holds the socket's `sk_zckey` before and after the call, and `sock` the
/// socket (a send with MSG_ZEROCOPY).
pub const TRACE_INFO_ZCKEY: u32 = 16;
/// `ext_err` holds the `struct sock_extended_err` of the call's IP_RECVERR/IPV6_RECVERR
/// control message, and `sock` the socket (a recvmsg with MSG_ERRQUEUE).
pub const TRACE_INFO_EXT_ERR: u32 = 32;
/// `sock` holds the socket (set with [`TRACE_INFO_ZCKEY`] or [`TRACE_INFO_EXT_ERR`]).
pub const TRACE_INFO_SOCK: u32 = 64;
/// Inside the kernel only, never in a record that reaches user space: a sendmsg whose
/// `requested` and `iovecs` are still to be found, from the kernel's own iov_iter when a
/// TCP send sees it, or else from user memory when the call exits.
pub const TRACE_INFO_REQUESTED_PENDING: u32 = 1 << 31;

/// Index of the per-CPU lost counter for events the ring buffer had no room for.
pub const TRACE_LOST_RING_FULL: u32 = 0;
/// Index of the per-CPU lost counter for calls not recorded because the in-flight map
/// was full (more live traced threads with calls than it holds).
pub const TRACE_LOST_INFLIGHT_FULL: u32 = 1;
/// Number of lost counters.
pub const TRACE_LOST_COUNTERS: usize = 2;

/// The copy sites a traced call carries: those that happen inside the call, on the
/// calling thread. Deferred copies and completions belong to earlier sends and are never
/// booked to a call, so a record has no room for them (it is copied twice per call and
/// read once by user space: every byte of it costs).
pub const TRACE_SITES: [CopySite; TRACE_SITE_COUNT] = [
    CopySite::KernelSendCopy,
    CopySite::ZeroCopyAttach,
    CopySite::KernelRecvCopy,
];
/// Number of [`TRACE_SITES`].
pub const TRACE_SITE_COUNT: usize = 3;

impl CopySite {
    /// Index of this site in [`SyscallEvent::copies`], None for a site a call never has.
    #[inline(always)]
    pub const fn trace_index(self) -> Option<usize> {
        match self {
            CopySite::KernelSendCopy => Some(0),
            CopySite::ZeroCopyAttach => Some(1),
            CopySite::KernelRecvCopy => Some(2),
            CopySite::UserCopy
            | CopySite::DeferredCopy
            | CopySite::ZeroCopyCompletion
            | CopySite::ZeroCopyCompletionCopied
            | CopySite::PageReference
            | CopySite::RecvMapped => None,
        }
    }
}

/// One traced system call: filled at `sys_enter`, completed at `sys_exit`, then sent to
/// user space through the ring buffer. Copies counted on the calling thread while the
/// call was in flight are added to `copies` (indexed by [`CopySite::trace_index`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallEvent {
    /// CLOCK_MONOTONIC at `sys_enter`, ns.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC at `sys_exit`, ns.
    pub end_ns: u64,
    /// Bytes asked for: the length argument, or the iovec total.
    pub requested: u64,
    /// The raw return value: bytes, messages (mmsg) or `-errno`.
    pub ret: i64,
    /// Bytes moved: `ret` when positive, for mmsg the sum of `msg_len`.
    pub returned: u64,
    /// The user pointer argument (kept for the exit: msghdr/mmsghdr).
    pub arg_ptr: u64,
    /// Copies the kernel made inside this call, per [`TRACE_SITES`] entry.
    pub copies: [SiteCounter; TRACE_SITE_COUNT],
    pub pid: u32,
    pub tid: u32,
    /// A [`TracedSyscall`] value.
    pub syscall: u32,
    pub fd: i32,
    /// The `flags` argument (0 for write/read/writev/readv).
    pub flags: u32,
    /// For recvmsg: `msg_flags` after the call (see [`TRACE_INFO_MSG_FLAGS_OUT`]).
    pub msg_flags_out: u32,
    /// iovecs in the request (summed over messages for mmsg).
    pub iovecs: u32,
    /// Messages in the request (`vlen` for mmsg, 1 otherwise).
    pub messages: u32,
    /// `TRACE_INFO_*` bits.
    pub info: u32,
    /// Filter slot of the calling process.
    pub slot: u32,
    /// The `struct sock *` of the fd, as an identity (see [`TRACE_INFO_SOCK`]).
    pub sock: u64,
    /// `sk_zckey` at entry and at exit (see [`TRACE_INFO_ZCKEY`]): the MSG_ZEROCOPY
    /// sends of this call got the numbers `zckey[0]..zckey[1]`.
    pub zckey: [u32; 2],
    /// `struct sock_extended_err` as four words: `ee_errno`; `ee_origin | ee_type << 8 |
    /// ee_code << 16 | ee_pad << 24`; `ee_info`; `ee_data` (see [`TRACE_INFO_EXT_ERR`]).
    pub ext_err: [u32; 4],
}

// The record crosses the ring buffer as raw bytes: no padding, a size both sides agree on.
const _: () = assert!(core::mem::size_of::<SyscallEvent>() == 168);

/// Value of [`SyscallEvent::syscall`] (at the same offset as [`IoUringEvent::kind`])
/// for an io_uring request submitted (`io_uring/io_uring_submit_req`, or
/// `io_uring_submit_sqe` before Linux 6.3).
pub const TRACE_KIND_IO_URING_SUBMIT: u32 = 64;
/// ... for a completion posted (`io_uring/io_uring_complete`).
pub const TRACE_KIND_IO_URING_COMPLETE: u32 = 65;

/// An io_uring event of a traced process, in the same per-CPU logs as the system calls:
/// the same size, with its kind where a [`SyscallEvent`] has its `syscall`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoUringEvent {
    /// CLOCK_MONOTONIC when the tracepoint fired, ns.
    pub time_ns: u64,
    /// The ring (`struct io_ring_ctx *`), as an identity.
    pub ring: u64,
    /// The request (`struct io_kiocb *`), as an identity.
    pub request: u64,
    pub user_data: u64,
    /// Completion: the CQE's `res`.
    pub res: i64,
    pub reserved: [u64; 7],
    pub pid: u32,
    pub tid: u32,
    /// [`TRACE_KIND_IO_URING_SUBMIT`] or [`TRACE_KIND_IO_URING_COMPLETE`].
    pub kind: u32,
    /// Submit: the opcode (`IORING_OP_*`).
    pub opcode: u32,
    /// Completion: the CQE's `flags`.
    pub cflags: u32,
    /// Submit of a SEND_ZC/SENDMSG_ZC: its send flags (`IORING_RECVSEND_*`,
    /// `IORING_SEND_ZC_REPORT_USAGE`) with [`IO_URING_SEND_FLAGS_KNOWN`] set.
    pub send_flags: u32,
    pub reserved2: u32,
    pub slot: u32,
    pub reserved3: [u64; 5],
}

/// Set in [`IoUringEvent::send_flags`] when the program read them.
pub const IO_URING_SEND_FLAGS_KNOWN: u32 = 1 << 31;

const _: () = assert!(
    core::mem::size_of::<IoUringEvent>() == core::mem::size_of::<SyscallEvent>()
        && core::mem::offset_of!(IoUringEvent, kind)
            == core::mem::offset_of!(SyscallEvent, syscall)
        && core::mem::offset_of!(IoUringEvent, pid) == core::mem::offset_of!(SyscallEvent, pid)
);

/// Fields of `io_uring/io_uring_submit_req` (`io_uring_submit_sqe` before Linux 6.3, with
/// these fields at the same offsets) and `io_uring/io_uring_complete` records the programs
/// read at constant offsets (the layout of 5.19 to 6.18 at least); the loader checks them
/// against the kernel's format files like the syscall offsets.
pub const TP_URING_CTX_OFFSET: u32 = 8;
pub const TP_URING_REQ_OFFSET: u32 = 16;
pub const TP_URING_USER_DATA_OFFSET: u32 = 24;
/// `ctx` of `io_uring/io_uring_create` (after an int `fd`).
pub const TP_URING_CREATE_CTX_OFFSET: u32 = 16;
/// `opcode` (u8) of `io_uring_submit_req` and `io_uring_submit_sqe`.
pub const TP_URING_SUBMIT_OPCODE_OFFSET: u32 = 32;
/// `res` (int) of `io_uring_complete`.
pub const TP_URING_COMPLETE_RES_OFFSET: u32 = 32;
/// `cflags` (unsigned) of `io_uring_complete`.
pub const TP_URING_COMPLETE_CFLAGS_OFFSET: u32 = 36;
/// `IORING_OP_SEND_ZC` and `IORING_OP_SENDMSG_ZC` (stable io_uring ABI).
pub const IORING_OP_SEND_ZC: u32 = 47;
pub const IORING_OP_SENDMSG_ZC: u32 = 48;

#[cfg(feature = "user")]
mod trace_pod {
    // SAFETY: repr(C) structs of u32/u64/i32/i64 fields with no padding: SyscallArgOffsets
    // and TraceOffsets are all u32, SyscallEvent is 6 u64 + 6 u64 (copies) + 10 u32.
    unsafe impl aya::Pod for super::SyscallArgOffsets {}
    unsafe impl aya::Pod for super::TraceOffsets {}
    unsafe impl aya::Pod for super::SyscallEvent {}
    unsafe impl aya::Pod for super::IoUringEvent {}
}
