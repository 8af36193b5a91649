//! io_uring requests of traced processes: they do not go through sendmsg(2) and friends,
//! so the trace records what they do go through, the `io_uring/io_uring_submit_req`
//! and `io_uring/io_uring_complete` tracepoints (see netcopy-ebpf/src/trace.rs), decoded
//! here.

use netcopy_common::{
    IoUringEvent, SyscallEvent, IO_URING_SEND_FLAGS_KNOWN, TRACE_KIND_IO_URING_COMPLETE,
    TRACE_KIND_IO_URING_SUBMIT,
};
use serde_json::{json, Value};

/// `IORING_CQE_F_MORE`: more CQEs of this request follow (SEND_ZC: its notification).
pub(super) const CQE_F_MORE: u32 = 1 << 1;
/// `IORING_CQE_F_NOTIF`: the CQE is a zero-copy notification, not a request's result.
pub(super) const CQE_F_NOTIF: u32 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: in a notification's `res`, the kernel copied the data
/// (reported only when the send asked with `IORING_SEND_ZC_REPORT_USAGE`).
pub(super) const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `IORING_SEND_ZC_REPORT_USAGE`, in the send's flags (sqe->ioprio).
pub(super) const SEND_ZC_REPORT_USAGE: u32 = 1 << 3;

/// The io_uring opcodes by value (`enum io_uring_op`, stable kernel ABI).
const OPCODES: &[&str] = &[
    "NOP",
    "READV",
    "WRITEV",
    "FSYNC",
    "READ_FIXED",
    "WRITE_FIXED",
    "POLL_ADD",
    "POLL_REMOVE",
    "SYNC_FILE_RANGE",
    "SENDMSG",
    "RECVMSG",
    "TIMEOUT",
    "TIMEOUT_REMOVE",
    "ACCEPT",
    "ASYNC_CANCEL",
    "LINK_TIMEOUT",
    "CONNECT",
    "FALLOCATE",
    "OPENAT",
    "CLOSE",
    "FILES_UPDATE",
    "STATX",
    "READ",
    "WRITE",
    "FADVISE",
    "MADVISE",
    "SEND",
    "RECV",
    "OPENAT2",
    "EPOLL_CTL",
    "SPLICE",
    "PROVIDE_BUFFERS",
    "REMOVE_BUFFERS",
    "TEE",
    "SHUTDOWN",
    "RENAMEAT",
    "UNLINKAT",
    "MKDIRAT",
    "SYMLINKAT",
    "LINKAT",
    "MSG_RING",
    "FSETXATTR",
    "SETXATTR",
    "FGETXATTR",
    "GETXATTR",
    "SOCKET",
    "URING_CMD",
    "SEND_ZC",
    "SENDMSG_ZC",
    "READ_MULTISHOT",
    "WAITID",
    "FUTEX_WAIT",
    "FUTEX_WAKE",
    "FUTEX_WAITV",
    "FIXED_FD_INSTALL",
    "FTRUNCATE",
    "BIND",
    "LISTEN",
    "RECV_ZC",
];

/// The opcode's name (`IORING_OP_` left off), or its number.
pub fn opcode_name(opcode: u32) -> String {
    OPCODES
        .get(opcode as usize)
        .map(|n| (*n).to_string())
        .unwrap_or_else(|| format!("opcode {opcode}"))
}

/// Opcodes whose result (`res` > 0) is a byte count of socket or file data.
pub(super) fn moves_bytes(opcode: u32) -> bool {
    matches!(
        opcode_name(opcode).as_str(),
        "READV"
            | "WRITEV"
            | "SENDMSG"
            | "RECVMSG"
            | "READ"
            | "WRITE"
            | "SEND"
            | "RECV"
            | "SEND_ZC"
            | "SENDMSG_ZC"
            | "READ_FIXED"
            | "WRITE_FIXED"
            | "SPLICE"
            | "TEE"
    )
}

/// True for the zero-copy sends, which post a notification after their result.
pub(super) fn is_zerocopy_send(opcode: u32) -> bool {
    opcode == netcopy_common::IORING_OP_SEND_ZC || opcode == netcopy_common::IORING_OP_SENDMSG_ZC
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UringKind {
    /// `io_uring_submit_req`: a request entered the kernel.
    Submit,
    /// `io_uring_complete`: a CQE was posted.
    Complete,
}

/// One io_uring event of a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UringRecord {
    pub kind: UringKind,
    /// CLOCK_MONOTONIC, ns.
    pub time_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The ring and the request, as identities (kernel addresses).
    pub ring: u64,
    pub request: u64,
    pub user_data: u64,
    /// Submit: the opcode.
    pub opcode: u32,
    /// Submit of a zero-copy send: its send flags, when the program could read them.
    pub send_flags: Option<u32>,
    /// Complete: the CQE's `res` and `flags`.
    pub res: i32,
    pub cflags: u32,
}

impl UringRecord {
    /// Decodes an io_uring record of the call logs; None for any other record.
    pub(super) fn from_event(e: &SyscallEvent) -> Option<UringRecord> {
        let kind = match e.syscall {
            TRACE_KIND_IO_URING_SUBMIT => UringKind::Submit,
            TRACE_KIND_IO_URING_COMPLETE => UringKind::Complete,
            _ => return None,
        };
        // SAFETY: both are repr(C) plain integers of the same size (checked in
        // netcopy-common); every bit pattern is a valid IoUringEvent.
        let u: IoUringEvent = unsafe { std::mem::transmute_copy(e) };
        Some(UringRecord {
            kind,
            time_ns: u.time_ns,
            pid: u.pid,
            tid: u.tid,
            ring: u.ring,
            request: u.request,
            user_data: u.user_data,
            opcode: u.opcode,
            send_flags: (u.send_flags & IO_URING_SEND_FLAGS_KNOWN != 0)
                .then_some(u.send_flags & !IO_URING_SEND_FLAGS_KNOWN),
            res: u.res as i32,
            cflags: u.cflags,
        })
    }

    /// A notification CQE of a zero-copy send.
    pub(super) fn is_notification(&self) -> bool {
        self.kind == UringKind::Complete && self.cflags & CQE_F_NOTIF != 0
    }

    /// The record as one line of syscalls.jsonl; `zerocopy` is what the trace learnt of
    /// the zero-copy send or notification it is (see `zerocopy.rs`).
    pub(super) fn to_json(
        &self,
        t0_ns: u64,
        opcode: Option<u32>,
        zerocopy: Option<Value>,
    ) -> Value {
        let mut j = json!({
            "type": match self.kind {
                UringKind::Submit => "io_uring_submit",
                UringKind::Complete => "io_uring_complete",
            },
            "pid": self.pid,
            "tid": self.tid,
            "start_ns": self.time_ns.saturating_sub(t0_ns),
            "monotonic_ns": self.time_ns,
            "ring": format!("{:#x}", self.ring),
            "request": format!("{:#x}", self.request),
            "user_data": self.user_data,
            "opcode": opcode,
            "opcode_name": opcode.map(opcode_name),
        });
        match self.kind {
            UringKind::Submit => {
                j["send_flags"] = json!(self.send_flags);
            }
            UringKind::Complete => {
                j["res"] = json!(self.res);
                j["cflags"] = json!(self.cflags);
                j["cflag_names"] = json!(cflag_names(self.cflags));
                j["notification"] = json!(self.is_notification());
                if self.is_notification() {
                    j["usage_zc_copied"] = json!(self.res as u32 & NOTIF_USAGE_ZC_COPIED != 0);
                } else if self.res < 0 {
                    j["error"] = json!(crate::util::errno::errno_name(self.res.saturating_neg()));
                }
            }
        }
        if let Some(z) = zerocopy {
            j["zerocopy"] = z;
        }
        j
    }
}

/// `IORING_CQE_F_*` names.
fn cflag_names(cflags: u32) -> Vec<&'static str> {
    [
        (1 << 0, "IORING_CQE_F_BUFFER"),
        (CQE_F_MORE, "IORING_CQE_F_MORE"),
        (1 << 2, "IORING_CQE_F_SOCK_NONEMPTY"),
        (CQE_F_NOTIF, "IORING_CQE_F_NOTIF"),
    ]
    .into_iter()
    .filter(|(bit, _)| cflags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_names_agree_with_the_io_uring_crate() {
        use io_uring::opcode;
        for (code, name) in [
            (opcode::Nop::CODE, "NOP"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::RecvMsg::CODE, "RECVMSG"),
            (opcode::Send::CODE, "SEND"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::Read::CODE, "READ"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::Splice::CODE, "SPLICE"),
            (opcode::Socket::CODE, "SOCKET"),
            (opcode::SendZc::CODE, "SEND_ZC"),
            (opcode::SendMsgZc::CODE, "SENDMSG_ZC"),
        ] {
            assert_eq!(opcode_name(u32::from(code)), name);
        }
        assert_eq!(
            u32::from(opcode::SendZc::CODE),
            netcopy_common::IORING_OP_SEND_ZC
        );
        assert_eq!(
            u32::from(opcode::SendMsgZc::CODE),
            netcopy_common::IORING_OP_SENDMSG_ZC
        );
        assert_eq!(opcode_name(200), "opcode 200");
    }

    #[test]
    fn decodes_both_kinds_and_nothing_else() {
        let u = IoUringEvent {
            time_ns: 5,
            ring: 0x1000,
            request: 0x2000,
            user_data: 7,
            res: i64::from(NOTIF_USAGE_ZC_COPIED as i32),
            kind: TRACE_KIND_IO_URING_COMPLETE,
            cflags: CQE_F_NOTIF,
            pid: 3,
            tid: 4,
            ..IoUringEvent::default()
        };
        // SAFETY: same size, plain integers.
        let e: SyscallEvent = unsafe { std::mem::transmute_copy(&u) };
        let r = UringRecord::from_event(&e).unwrap();
        assert!(r.is_notification());
        let j = r.to_json(0, None, None);
        assert_eq!(j["type"], "io_uring_complete");
        assert_eq!(j["usage_zc_copied"], true);
        assert_eq!(j["cflag_names"][0], "IORING_CQE_F_NOTIF");
        assert!(UringRecord::from_event(&SyscallEvent::default()).is_none());
    }

    #[test]
    fn a_completion_of_the_most_negative_result_names_no_errno_and_does_not_overflow() {
        // Found by the trace_records fuzz target: -res overflowed for i32::MIN.
        let u = IoUringEvent {
            res: i64::from(i32::MIN),
            kind: TRACE_KIND_IO_URING_COMPLETE,
            ..IoUringEvent::default()
        };
        // SAFETY: same size, plain integers.
        let e: SyscallEvent = unsafe { std::mem::transmute_copy(&u) };
        let j = UringRecord::from_event(&e).unwrap().to_json(0, None, None);
        assert_eq!(j["res"], i32::MIN);
        assert_eq!(j["error"], format!("errno {}", i32::MAX));
    }
}
