//! One traced system call, decoded from the eBPF record, and the names users read:
//! flag bits and errno names.

use netcopy_common::{
    CopySite, SiteCounter, SyscallEvent, TracedSyscall, TRACE_INFO_EXT_ERR,
    TRACE_INFO_MSG_FLAGS_OUT, TRACE_INFO_REQUESTED_KERNEL, TRACE_INFO_REQUESTED_PARTIAL,
    TRACE_INFO_RETURNED_PARTIAL, TRACE_INFO_SOCK, TRACE_INFO_ZCKEY,
};
use serde_json::{json, Value};

use crate::util::errno::errno_name;

/// A traced call as user space sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallRecord {
    pub syscall: TracedSyscall,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    /// CLOCK_MONOTONIC at entry, ns.
    pub start_ns: u64,
    pub duration_ns: u64,
    /// The `flags` argument (MSG_*).
    pub flags: u32,
    /// Bytes asked for (length argument or iovec total).
    pub requested: u64,
    /// `requested` is a lower bound (too many iovecs/messages, or unreadable memory).
    pub requested_partial: bool,
    /// `requested` and `iovecs` were read from the kernel's iov_iter of the call (a TCP
    /// sendmsg under the tp_btf strategy), not from the caller's memory.
    pub requested_from_kernel: bool,
    pub iovecs: u32,
    pub messages: u32,
    /// Raw return value: bytes, messages (mmsg) or `-errno`.
    pub ret: i64,
    /// Bytes moved (for mmsg the sum of `msg_len`).
    pub returned: u64,
    pub returned_partial: bool,
    /// recvmsg: `msg_flags` the kernel wrote back.
    pub msg_flags_out: Option<u32>,
    /// Copies inside the call, per copy site.
    pub copies: [SiteCounter; netcopy_common::COUNTED_SITE_COUNT],
    /// The socket (`struct sock *`, an identity) of a MSG_ZEROCOPY send or a
    /// recvmsg(MSG_ERRQUEUE), when the program could follow the fd to it.
    pub sock: Option<u64>,
    /// A MSG_ZEROCOPY send: the socket's `sk_zckey` before and after the call, so the
    /// call's sends got the numbers `before..after`.
    pub zckey: Option<(u32, u32)>,
    /// A recvmsg(MSG_ERRQUEUE): the extended error it read.
    pub ext_err: Option<ExtendedErr>,
}

/// `struct sock_extended_err`, as a recvmsg(MSG_ERRQUEUE) returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedErr {
    pub errno: u32,
    pub origin: u8,
    pub kind: u8,
    pub code: u8,
    /// For a zero-copy completion: the first and last send number it completes.
    pub info: u32,
    pub data: u32,
}

/// `SO_EE_ORIGIN_ZEROCOPY`: the extended error is a zero-copy completion.
pub(super) const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied (some of) the completed sends.
pub(super) const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

impl ExtendedErr {
    fn from_words(w: [u32; 4]) -> Self {
        Self {
            errno: w[0],
            origin: w[1] as u8,
            kind: (w[1] >> 8) as u8,
            code: (w[1] >> 16) as u8,
            info: w[2],
            data: w[3],
        }
    }

    /// A zero-copy completion: the range of send numbers and whether it was flagged copied.
    pub(super) fn zerocopy_range(&self) -> Option<(u32, u32, bool)> {
        (self.origin == SO_EE_ORIGIN_ZEROCOPY).then_some((
            self.info,
            self.data,
            self.code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
        ))
    }

    fn to_json(self) -> Value {
        json!({
            "ee_errno": self.errno,
            "ee_origin": self.origin,
            "ee_origin_name": match self.origin {
                0 => "SO_EE_ORIGIN_NONE",
                1 => "SO_EE_ORIGIN_LOCAL",
                2 => "SO_EE_ORIGIN_ICMP",
                3 => "SO_EE_ORIGIN_ICMP6",
                4 => "SO_EE_ORIGIN_TXSTATUS",
                5 => "SO_EE_ORIGIN_ZEROCOPY",
                6 => "SO_EE_ORIGIN_TXTIME",
                _ => "unknown",
            },
            "ee_type": self.kind,
            "ee_code": self.code,
            "ee_info": self.info,
            "ee_data": self.data,
        })
    }
}

/// Bytes of one record as the call logs hold it.
pub(super) const RECORD_LEN: usize = std::mem::size_of::<SyscallEvent>();

/// A record from the bytes of a call log (the eBPF program's byte order).
pub(super) fn event_from_bytes(bytes: &[u8; RECORD_LEN]) -> SyscallEvent {
    // SAFETY: SyscallEvent is plain data (repr(C) integers without padding, aya::Pod), so
    // any RECORD_LEN bytes are one; read_unaligned copies them whatever their alignment.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SyscallEvent>()) }
}

impl SyscallRecord {
    /// Decodes an eBPF record; None for an unknown syscall number.
    pub(super) fn from_event(e: &SyscallEvent) -> Option<SyscallRecord> {
        Some(SyscallRecord {
            syscall: TracedSyscall::from_u32(e.syscall)?,
            pid: e.pid,
            tid: e.tid,
            fd: e.fd,
            start_ns: e.start_ns,
            duration_ns: e.end_ns.saturating_sub(e.start_ns),
            flags: e.flags,
            requested: e.requested,
            requested_partial: e.info & TRACE_INFO_REQUESTED_PARTIAL != 0,
            requested_from_kernel: e.info & TRACE_INFO_REQUESTED_KERNEL != 0,
            iovecs: e.iovecs,
            messages: e.messages,
            ret: e.ret,
            returned: e.returned,
            returned_partial: e.info & TRACE_INFO_RETURNED_PARTIAL != 0,
            msg_flags_out: (e.info & TRACE_INFO_MSG_FLAGS_OUT != 0).then_some(e.msg_flags_out),
            copies: {
                let mut all = [SiteCounter::default(); netcopy_common::COUNTED_SITE_COUNT];
                for (site, counter) in netcopy_common::TRACE_SITES.iter().zip(e.copies) {
                    all[*site as usize] = counter;
                }
                all
            },
            sock: (e.info & TRACE_INFO_SOCK != 0).then_some(e.sock),
            zckey: (e.info & TRACE_INFO_ZCKEY != 0).then_some((e.zckey[0], e.zckey[1])),
            ext_err: (e.info & TRACE_INFO_EXT_ERR != 0).then(|| ExtendedErr::from_words(e.ext_err)),
        })
    }

    /// A send with MSG_ZEROCOPY in its flags.
    pub(super) fn is_zerocopy_send(&self) -> bool {
        matches!(
            self.syscall,
            TracedSyscall::Sendto | TracedSyscall::Sendmsg | TracedSyscall::Sendmmsg
        ) && self.flags & netcopy_common::MSG_ZEROCOPY != 0
    }

    /// The errno of a failed call.
    pub(super) fn errno(&self) -> Option<i32> {
        (self.ret < 0).then(|| i32::try_from(self.ret.unsigned_abs()).unwrap_or(i32::MAX))
    }

    pub(super) fn copy(&self, site: CopySite) -> SiteCounter {
        self.copies[site as usize]
    }

    /// Bytes the kernel copied inside this call (send copies plus receive copies; a
    /// zero-copy attach is not a copy).
    pub(super) fn copied_bytes(&self) -> u64 {
        // Saturating: the figures come from the kernel's memory (a corrupted record must
        // not panic or wrap).
        (self.copy(CopySite::KernelSendCopy).bytes)
            .saturating_add(self.copy(CopySite::KernelRecvCopy).bytes)
    }

    /// Copies inside this call: send copies and receive copies (a zero-copy attach pins
    /// pages and is not a copy).
    pub(super) fn copy_events(&self) -> u64 {
        (self.copy(CopySite::KernelSendCopy).calls)
            .saturating_add(self.copy(CopySite::KernelRecvCopy).calls)
    }

    /// The record as one JSON object (a line of syscalls.jsonl). `t0_ns` is the trace's
    /// start on the same clock; `zerocopy` what the trace learnt of the zero-copy sends
    /// or completions of the call (see `zerocopy.rs`).
    pub fn to_json(&self, t0_ns: u64, zerocopy: Option<Value>) -> Value {
        let site = |s: CopySite| {
            let c = self.copy(s);
            json!({ "calls": c.calls, "bytes": c.bytes })
        };
        json!({
            "type": "syscall",
            "syscall": self.syscall.name(),
            "pid": self.pid,
            "tid": self.tid,
            "fd": self.fd,
            "start_ns": self.start_ns.saturating_sub(t0_ns),
            "monotonic_ns": self.start_ns,
            "duration_ns": self.duration_ns,
            "flags": self.flags,
            "flag_names": msg_flag_names(self.flags),
            "requested_bytes": self.requested,
            "requested_partial": self.requested_partial,
            "requested_source": if self.requested_from_kernel { "kernel_iov_iter" } else { "arguments" },
            "iovecs": self.iovecs,
            "messages": self.messages,
            "ret": self.ret,
            "returned_bytes": if self.ret < 0 { Value::Null } else { json!(self.returned) },
            "returned_partial": self.returned_partial,
            "error": self.errno().map(errno_name),
            "msg_flags_out": self.msg_flags_out,
            "msg_flags_out_names": self.msg_flags_out.map(msg_flag_names),
            "copies": {
                "kernel_send_copy": site(CopySite::KernelSendCopy),
                "zerocopy_attach": site(CopySite::ZeroCopyAttach),
                "kernel_recv_copy": site(CopySite::KernelRecvCopy),
            },
            "copied_bytes": self.copied_bytes(),
            "sock": self.sock.map(|s| format!("{s:#x}")),
            "extended_error": self.ext_err.map(ExtendedErr::to_json),
            "zerocopy": zerocopy,
        })
    }
}

/// MSG_* bits of Linux's socket.h, by name.
const MSG_FLAGS: &[(u32, &str)] = &[
    (0x1, "MSG_OOB"),
    (0x2, "MSG_PEEK"),
    (0x4, "MSG_DONTROUTE"),
    (0x8, "MSG_CTRUNC"),
    (0x10, "MSG_PROXY"),
    (0x20, "MSG_TRUNC"),
    (0x40, "MSG_DONTWAIT"),
    (0x80, "MSG_EOR"),
    (0x100, "MSG_WAITALL"),
    (0x200, "MSG_FIN"),
    (0x400, "MSG_SYN"),
    (0x800, "MSG_CONFIRM"),
    (0x1000, "MSG_RST"),
    (0x2000, "MSG_ERRQUEUE"),
    (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"),
    (0x10000, "MSG_WAITFORONE"),
    (0x40000, "MSG_BATCH"),
    (0x200_0000, "MSG_SOCK_DEVMEM"),
    (0x400_0000, "MSG_ZEROCOPY"),
    (0x2000_0000, "MSG_FASTOPEN"),
    (0x4000_0000, "MSG_CMSG_CLOEXEC"),
];

/// The names of the bits set in `flags`; unknown bits as one hex value.
fn msg_flag_names(flags: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = flags;
    for (bit, name) in MSG_FLAGS {
        if flags & bit != 0 {
            names.push((*name).to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names
}

/// `MSG_ZEROCOPY|MSG_DONTWAIT`, or `0`.
pub(super) fn msg_flags_text(flags: u32) -> String {
    let names = msg_flag_names(flags);
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_named_and_unknown_bits_kept() {
        assert_eq!(
            msg_flag_names(0x400_0000 | 0x40 | 0x4000),
            vec!["MSG_DONTWAIT", "MSG_NOSIGNAL", "MSG_ZEROCOPY"]
        );
        assert_eq!(msg_flags_text(0), "0");
        assert_eq!(msg_flags_text(0x2000 | 0x2), "MSG_PEEK|MSG_ERRQUEUE");
        assert_eq!(
            msg_flag_names(0x8000_0000 | 0x100),
            vec!["MSG_WAITALL", "0x80000000"]
        );
        assert_eq!(msg_flag_names(0x8000), vec!["MSG_MORE"]);
        // The table agrees with the libc crate where it defines the flag.
        for (bit, name) in [
            (libc::MSG_PEEK, "MSG_PEEK"),
            (libc::MSG_DONTWAIT, "MSG_DONTWAIT"),
            (libc::MSG_WAITALL, "MSG_WAITALL"),
            (libc::MSG_ERRQUEUE, "MSG_ERRQUEUE"),
            (libc::MSG_NOSIGNAL, "MSG_NOSIGNAL"),
            (libc::MSG_MORE, "MSG_MORE"),
            (libc::MSG_ZEROCOPY, "MSG_ZEROCOPY"),
            (libc::MSG_TRUNC, "MSG_TRUNC"),
        ] {
            assert_eq!(msg_flag_names(bit as u32), vec![name]);
        }
    }

    fn event() -> SyscallEvent {
        let mut e = SyscallEvent {
            start_ns: 1_000,
            end_ns: 3_500,
            requested: 1000,
            ret: 1000,
            returned: 1000,
            pid: 7,
            tid: 8,
            syscall: TracedSyscall::Sendmsg as u32,
            fd: 3,
            flags: libc::MSG_NOSIGNAL as u32,
            iovecs: 3,
            messages: 1,
            ..SyscallEvent::default()
        };
        e.copies[CopySite::KernelSendCopy.trace_index().unwrap()] = SiteCounter {
            calls: 1,
            bytes: 1000,
        };
        e
    }

    #[test]
    fn decodes_an_event_and_writes_json() {
        let r = SyscallRecord::from_event(&event()).unwrap();
        assert_eq!(r.duration_ns, 2_500);
        assert_eq!(r.errno(), None);
        assert_eq!(r.copied_bytes(), 1000);
        assert_eq!(r.copy_events(), 1);
        let j = r.to_json(500, None);
        assert_eq!(j["syscall"], "sendmsg");
        assert_eq!(j["start_ns"], 500);
        assert_eq!(j["flag_names"][0], "MSG_NOSIGNAL");
        assert_eq!(j["copies"]["kernel_send_copy"]["bytes"], 1000);
        assert_eq!(j["returned_bytes"], 1000);
        assert!(j["error"].is_null());
        assert!(j["msg_flags_out"].is_null());
    }

    #[test]
    fn failed_calls_carry_the_errno_name() {
        let mut e = event();
        e.syscall = TracedSyscall::Recvmsg as u32;
        e.ret = -i64::from(libc::EAGAIN);
        e.returned = 0;
        e.info = TRACE_INFO_MSG_FLAGS_OUT;
        e.msg_flags_out = libc::MSG_ERRQUEUE as u32;
        let r = SyscallRecord::from_event(&e).unwrap();
        assert_eq!(r.errno(), Some(libc::EAGAIN));
        let j = r.to_json(0, None);
        assert_eq!(j["error"], "EAGAIN");
        assert!(j["returned_bytes"].is_null());
        assert_eq!(j["msg_flags_out_names"][0], "MSG_ERRQUEUE");
    }

    /// Found with the trace_records fuzz target: a record whose return value is i64::MIN
    /// or whose counts are absurd (only a corrupted record) panicked on negation and
    /// addition overflow.
    #[test]
    fn corrupted_records_decode_without_overflow() {
        let mut e = event();
        e.ret = i64::MIN;
        for counter in &mut e.copies {
            *counter = SiteCounter {
                calls: u64::MAX,
                bytes: u64::MAX,
            };
        }
        let r = SyscallRecord::from_event(&e).unwrap();
        assert_eq!(r.errno(), Some(i32::MAX));
        assert_eq!(r.copied_bytes(), u64::MAX);
        assert_eq!(r.copy_events(), u64::MAX);
        assert_eq!(r.to_json(0, None)["copied_bytes"], u64::MAX);
    }

    #[test]
    fn unknown_syscall_numbers_are_refused() {
        let mut e = event();
        e.syscall = 99;
        assert!(SyscallRecord::from_event(&e).is_none());
    }
}
