//! What became of zero-copy sends after their call returned: the kernel reports it later,
//! in completions the traced process reads, and the trace attributes each completion to
//! the sends it completes.
//!
//! - MSG_ZEROCOPY: the kernel numbers a socket's zero-copy sends from 0 (`sk_zckey`, one
//!   number per sendmsg that queued data on a SO_ZEROCOPY socket). The trace reads the
//!   number around each MSG_ZEROCOPY send (`numbering: "kernel"`), or, where the kernel's
//!   layout is unknown, counts the socket's successful sends from the start of the trace
//!   (`"counted"`: right only for sockets created while traced). Each recvmsg(MSG_ERRQUEUE)
//!   that returns a `sock_extended_err` of origin SO_EE_ORIGIN_ZEROCOPY completes the sends
//!   numbered `ee_info..=ee_data`; SO_EE_CODE_ZEROCOPY_COPIED says the kernel copied them.
//!   The kernel reports per range, not per send: a range merges sends, so one flagged copied
//!   may hold a send whose pages were not copied (never the other way round).
//! - io_uring SEND_ZC/SENDMSG_ZC: each request posts its result and later a notification
//!   CQE (IORING_CQE_F_NOTIF) with the same user_data; IORING_NOTIF_USAGE_ZC_COPIED in its
//!   `res` says the kernel copied, when the send asked with IORING_SEND_ZC_REPORT_USAGE.
//!
//! Source of every such figure: `reported` (by the kernel to the process). No hook on the
//! deferred copy itself (`skb_copy_ubufs`) exists on a kernel without kprobes and fentry.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Value};

use super::{
    event::SyscallRecord,
    uring::{self, UringKind, UringRecord},
};

/// The socket a send or a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SocketKey {
    /// The kernel's `struct sock *`.
    Sock(u64),
    /// (pid, fd), where the program could not follow the fd to its socket.
    Fd(u32, i32),
}

/// How a send's numbers were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbering {
    /// Read from the socket's `sk_zckey` around the call.
    Kernel,
    /// Counted by the trace from its start.
    Counted,
}

impl Numbering {
    fn name(self) -> &'static str {
        match self {
            Numbering::Kernel => "kernel",
            Numbering::Counted => "counted",
        }
    }
}

/// What became of one traced call's MSG_ZEROCOPY sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZeroCopySend {
    /// The first number and how many the call took (0: the kernel took no zero-copy
    /// reference: SO_ZEROCOPY unset, nothing queued, or the call failed).
    pub seq: u32,
    pub count: u32,
    pub numbering: Numbering,
    /// Of its numbers: how many a completion named, and how many of those were flagged
    /// copied.
    pub completed: u32,
    pub copied: u32,
}

impl ZeroCopySend {
    /// True/false once every number completed (copied when any was), None while pending.
    pub fn completed_copied(&self) -> Option<bool> {
        (self.count > 0 && self.completed == self.count).then_some(self.copied > 0)
    }

    fn to_json(&self) -> Value {
        if self.count == 0 {
            return json!({
                "seq": null,
                "numbers": 0,
                "numbering": self.numbering.name(),
                "completed_copied": null,
                "note": "the kernel took no zero-copy reference (SO_ZEROCOPY not set, nothing queued, or the call failed): no completion will come",
            });
        }
        json!({
            "seq": self.seq,
            "numbers": self.count,
            "numbering": self.numbering.name(),
            "completed": self.completed,
            "completed_copied": self.completed_copied(),
            "source": "reported",
        })
    }
}

/// A completion a recvmsg(MSG_ERRQUEUE) read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZeroCopyNotification {
    pub first: u32,
    pub last: u32,
    pub copied: bool,
    /// Traced sends it completed (fewer than the range when some were sent before the
    /// trace started).
    pub sends: u32,
}

impl ZeroCopyNotification {
    fn to_json(&self) -> Value {
        json!({
            "notification": { "first": self.first, "last": self.last },
            "copied": self.copied,
            "sends_completed": self.sends,
            "source": "reported",
        })
    }
}

/// What became of one io_uring zero-copy send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UringZeroCopy {
    /// The send asked for usage reports (None: its flags could not be read).
    pub report_usage: Option<bool>,
    /// Bytes its result CQE said it sent (None before that CQE).
    pub sent: Option<u64>,
    /// Its notification arrived.
    pub notified: bool,
    /// Flagged copied by the notification (None: not reported, or not yet notified).
    pub copied: Option<bool>,
    /// Its result said no notification would follow (it failed).
    pub no_notification: bool,
}

impl UringZeroCopy {
    fn to_json(&self) -> Value {
        json!({
            "report_usage": self.report_usage,
            "sent_bytes": self.sent,
            "notified": self.notified,
            "completed_copied": self.copied,
            "notification_expected": !self.no_notification,
            "source": "reported",
        })
    }
}

/// Everything attributed in one trace, by index into its records.
#[derive(Clone, Debug, Default)]
pub struct ZeroCopyAccount {
    /// By index into the syscall records.
    pub sends: HashMap<usize, ZeroCopySend>,
    pub notifications: HashMap<usize, ZeroCopyNotification>,
    /// By index into the io_uring records: the submit of each zero-copy send.
    pub uring_sends: HashMap<usize, UringZeroCopy>,
    /// By index into the io_uring records: the notification, with the submit it completed.
    pub uring_notifications: HashMap<usize, usize>,
    /// The opcode of each io_uring record's request (completions: from their submit).
    pub uring_opcodes: HashMap<usize, u32>,
    /// Notifications naming numbers no traced send had (sent before the trace began).
    pub unmatched_numbers: u64,
    pub unmatched_uring_notifications: u64,
}

impl ZeroCopyAccount {
    /// Attributes the completions in `calls` and `uring` (each in any order) to their sends.
    pub fn build(calls: &[SyscallRecord], uring: &[UringRecord]) -> Self {
        let mut account = ZeroCopyAccount::default();
        account.attribute_msg_zerocopy(calls);
        account.attribute_uring(uring);
        account
    }

    fn attribute_msg_zerocopy(&mut self, calls: &[SyscallRecord]) {
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&i| calls[i].start_ns);
        // Per socket: send number -> the call that took it, for numbers not completed.
        let mut pending: BTreeMap<SocketKey, BTreeMap<u32, usize>> = BTreeMap::new();
        let mut counted: HashMap<SocketKey, u32> = HashMap::new();
        for i in order {
            let r = &calls[i];
            let key = match r.sock {
                Some(sock) => SocketKey::Sock(sock),
                None => SocketKey::Fd(r.pid, r.fd),
            };
            if r.is_zerocopy_send() {
                let (seq, count, numbering) = match r.zckey {
                    Some((before, after)) => (
                        before,
                        after.wrapping_sub(before).min(numbers_a_call_can_take(r)),
                        Numbering::Kernel,
                    ),
                    None => {
                        let next = counted.entry(key).or_insert(0);
                        let count = if r.ret > 0 {
                            numbers_a_call_can_take(r)
                                .min(u32::try_from(r.ret).unwrap_or(u32::MAX))
                                .max(1)
                        } else {
                            0
                        };
                        let seq = *next;
                        *next = next.wrapping_add(count);
                        (seq, count, Numbering::Counted)
                    }
                };
                let waiting = pending.entry(key).or_default();
                for n in 0..count {
                    // A number taken again: the socket address or fd now belongs to a new
                    // socket; the old send never completed in the trace.
                    waiting.insert(seq.wrapping_add(n), i);
                }
                self.sends.insert(
                    i,
                    ZeroCopySend {
                        seq,
                        count,
                        numbering,
                        completed: 0,
                        copied: 0,
                    },
                );
            } else if let Some((first, last, copied)) = r.ext_err.and_then(|e| e.zerocopy_range()) {
                let span = last.wrapping_sub(first);
                let mut sends = 0;
                if let Some(waiting) = pending.get_mut(&key) {
                    let done: Vec<u32> = waiting
                        .keys()
                        .copied()
                        .filter(|n| n.wrapping_sub(first) <= span)
                        .collect();
                    for n in done {
                        let call = waiting.remove(&n).expect("listed above");
                        if let Some(send) = self.sends.get_mut(&call) {
                            send.completed += 1;
                            if copied {
                                send.copied += 1;
                            }
                        }
                        sends += 1;
                    }
                }
                self.unmatched_numbers += u64::from(span) + 1 - u64::from(sends);
                self.notifications.insert(
                    i,
                    ZeroCopyNotification {
                        first,
                        last,
                        copied,
                        sends,
                    },
                );
            }
        }
    }

    fn attribute_uring(&mut self, uring: &[UringRecord]) {
        let mut order: Vec<usize> = (0..uring.len()).collect();
        order.sort_by_key(|&i| uring[i].time_ns);
        // (ring, request) -> its submit; (ring, user_data) -> zero-copy sends awaiting
        // their notification, oldest first.
        let mut submitted: HashMap<(u64, u64), usize> = HashMap::new();
        let mut awaiting: HashMap<(u64, u64), VecDeque<usize>> = HashMap::new();
        for i in order {
            let r = &uring[i];
            match r.kind {
                UringKind::Submit => {
                    submitted.insert((r.ring, r.request), i);
                    self.uring_opcodes.insert(i, r.opcode);
                    if uring::is_zerocopy_send(r.opcode) {
                        awaiting
                            .entry((r.ring, r.user_data))
                            .or_default()
                            .push_back(i);
                        self.uring_sends.insert(
                            i,
                            UringZeroCopy {
                                report_usage: r
                                    .send_flags
                                    .map(|f| f & uring::SEND_ZC_REPORT_USAGE != 0),
                                sent: None,
                                notified: false,
                                copied: None,
                                no_notification: false,
                            },
                        );
                    }
                }
                UringKind::Complete if r.is_notification() => {
                    let send = awaiting
                        .get_mut(&(r.ring, r.user_data))
                        .and_then(VecDeque::pop_front);
                    let Some(send) = send else {
                        self.unmatched_uring_notifications += 1;
                        continue;
                    };
                    self.uring_notifications.insert(i, send);
                    if let Some(zc) = self.uring_sends.get_mut(&send) {
                        zc.notified = true;
                        let flagged = r.res as u32 & uring::NOTIF_USAGE_ZC_COPIED != 0;
                        // The bit is set only when usage was asked for; clear, it means
                        // "not copied" only then.
                        zc.copied = match zc.report_usage {
                            Some(true) => Some(flagged),
                            None if flagged => Some(true),
                            _ => None,
                        };
                    }
                }
                UringKind::Complete => {
                    let Some(submit) = submitted.remove(&(r.ring, r.request)) else {
                        continue;
                    };
                    let opcode = uring[submit].opcode;
                    self.uring_opcodes.insert(i, opcode);
                    if let Some(zc) = self.uring_sends.get_mut(&submit) {
                        zc.sent = Some(u64::try_from(r.res).unwrap_or(0));
                        if r.cflags & uring::CQE_F_MORE == 0 {
                            zc.no_notification = true;
                            if let Some(q) = awaiting.get_mut(&(r.ring, r.user_data)) {
                                q.retain(|&s| s != submit);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The per-record JSON of syscall record `index`, if it had zero-copy business.
    pub(super) fn call_json(&self, index: usize) -> Option<Value> {
        if let Some(send) = self.sends.get(&index) {
            return Some(send.to_json());
        }
        self.notifications
            .get(&index)
            .map(ZeroCopyNotification::to_json)
    }

    /// The per-record JSON of io_uring record `index`.
    pub(super) fn uring_json(&self, index: usize) -> Option<Value> {
        if let Some(send) = self.uring_sends.get(&index) {
            return Some(send.to_json());
        }
        self.uring_notifications
            .get(&index)
            .map(|send| json!({ "completes_submit_index": send, "source": "reported" }))
    }

    /// MSG_ZEROCOPY figures of the whole trace.
    pub fn totals(&self) -> ZeroCopyTotals {
        let mut t = ZeroCopyTotals::default();
        for s in self.sends.values() {
            if s.count == 0 {
                t.without_number += 1;
                continue;
            }
            t.sends += 1;
            match s.completed_copied() {
                Some(true) => t.completed_copied += 1,
                Some(false) => t.completed_not_copied += 1,
                None => t.pending += 1,
            }
            if s.numbering == Numbering::Counted {
                t.counted = true;
            }
        }
        t.notifications = self.notifications.len() as u64;
        t.notifications_copied = self.notifications.values().filter(|n| n.copied).count() as u64;
        t.unmatched_numbers = self.unmatched_numbers;
        t
    }

    /// io_uring zero-copy figures of the whole trace.
    pub fn uring_totals(&self) -> UringZeroCopyTotals {
        let mut t = UringZeroCopyTotals {
            unmatched_notifications: self.unmatched_uring_notifications,
            ..UringZeroCopyTotals::default()
        };
        for s in self.uring_sends.values() {
            t.sends += 1;
            if s.no_notification {
                t.failed += 1;
            } else if !s.notified {
                t.pending += 1;
            } else {
                match s.copied {
                    Some(true) => t.copied += 1,
                    Some(false) => t.not_copied += 1,
                    None => t.not_reported += 1,
                }
            }
        }
        t
    }
}

/// Most messages of one sendmmsg (the kernel's `UIO_MAXIOV`).
const MAX_MESSAGES_PER_CALL: u32 = 1024;

/// The most zero-copy numbers a send can take: one per message it sent (the kernel
/// numbers each sendmsg, and each message of a sendmmsg, once). A wider `sk_zckey` range
/// is not the call's own (a corrupted record, or an fd that named another socket at the
/// exit), nor is a message count over the kernel's limit: the first numbers are kept, and
/// the rest never become numbers to wait for (four billion of them would take the
/// account that long to build).
fn numbers_a_call_can_take(r: &SyscallRecord) -> u32 {
    r.messages.clamp(1, MAX_MESSAGES_PER_CALL)
}

/// MSG_ZEROCOPY sends of a trace and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeroCopyTotals {
    /// Calls that took a zero-copy number.
    pub sends: u64,
    pub completed_copied: u64,
    pub completed_not_copied: u64,
    /// Calls whose completion did not arrive in the trace window.
    pub pending: u64,
    /// MSG_ZEROCOPY calls that took no number (no completion will come).
    pub without_number: u64,
    pub notifications: u64,
    pub notifications_copied: u64,
    /// Numbers named by completions that no traced send took.
    pub unmatched_numbers: u64,
    /// Some numbers were counted by the trace, not read from the kernel.
    pub counted: bool,
}

impl ZeroCopyTotals {
    pub(super) fn to_json(self) -> Value {
        json!({
            "sends": self.sends,
            "completed_copied": self.completed_copied,
            "completed_not_copied": self.completed_not_copied,
            "never_completed_in_trace": self.pending,
            "sends_without_zerocopy_number": self.without_number,
            "notifications": self.notifications,
            "notifications_flagged_copied": self.notifications_copied,
            "numbers_completed_but_not_sent_in_trace": self.unmatched_numbers,
            "numbering": if self.counted { "counted" } else { "kernel" },
            "source": "reported",
        })
    }
}

/// io_uring zero-copy sends of a trace and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringZeroCopyTotals {
    pub sends: u64,
    pub copied: u64,
    pub not_copied: u64,
    /// Notified, but the send did not ask for usage reports.
    pub not_reported: u64,
    /// Notification not in the trace window.
    pub pending: u64,
    /// The send failed: no notification follows.
    pub failed: u64,
    pub unmatched_notifications: u64,
}

impl UringZeroCopyTotals {
    pub(super) fn to_json(self) -> Value {
        json!({
            "sends": self.sends,
            "completed_copied": self.copied,
            "completed_not_copied": self.not_copied,
            "completed_usage_not_reported": self.not_reported,
            "never_completed_in_trace": self.pending,
            "failed_no_notification": self.failed,
            "notifications_without_traced_send": self.unmatched_notifications,
            "source": "reported",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::event::ExtendedErr;
    use netcopy_common::{TracedSyscall, MSG_ZEROCOPY};

    fn call(syscall: TracedSyscall, start_ns: u64) -> SyscallRecord {
        let e = netcopy_common::SyscallEvent {
            start_ns,
            end_ns: start_ns + 1,
            syscall: syscall as u32,
            pid: 1,
            tid: 1,
            fd: 5,
            messages: 1,
            ..Default::default()
        };
        SyscallRecord::from_event(&e).unwrap()
    }

    /// A MSG_ZEROCOPY sendmsg of `bytes` on socket `sock` that took numbers
    /// `before..after` (None: the kernel's numbering could not be read).
    fn send(
        start_ns: u64,
        sock: Option<u64>,
        zckey: Option<(u32, u32)>,
        bytes: i64,
    ) -> SyscallRecord {
        let mut r = call(TracedSyscall::Sendmsg, start_ns);
        r.flags = MSG_ZEROCOPY;
        r.ret = bytes;
        r.returned = bytes.max(0) as u64;
        r.sock = sock;
        r.zckey = zckey;
        r
    }

    fn completion(
        start_ns: u64,
        sock: Option<u64>,
        first: u32,
        last: u32,
        copied: bool,
    ) -> SyscallRecord {
        let mut r = call(TracedSyscall::Recvmsg, start_ns);
        r.flags = libc::MSG_ERRQUEUE as u32;
        r.sock = sock;
        r.ext_err = Some(ExtendedErr {
            errno: 0,
            origin: 5,
            kind: 0,
            code: u8::from(copied),
            info: first,
            data: last,
        });
        r
    }

    #[test]
    fn a_range_completes_every_send_it_names_and_only_those() {
        let s = Some(0xa000);
        let calls = vec![
            send(10, s, Some((0, 1)), 100),
            send(20, s, Some((1, 2)), 100),
            send(30, s, Some((2, 3)), 100),
            // Another socket's number 0 is not completed by the first socket's range.
            send(35, Some(0xb000), Some((0, 1)), 100),
            completion(40, s, 0, 1, true),
            // A send that failed took no number and waits for nothing.
            send(45, s, Some((3, 3)), -11),
        ];
        let a = ZeroCopyAccount::build(&calls, &[]);
        assert_eq!(a.sends[&0].completed_copied(), Some(true));
        assert_eq!(a.sends[&1].completed_copied(), Some(true));
        assert_eq!(a.sends[&2].completed_copied(), None);
        assert_eq!(a.sends[&3].completed_copied(), None);
        assert_eq!(a.sends[&5].count, 0);
        assert_eq!(a.notifications[&4].sends, 2);
        let t = a.totals();
        assert_eq!(
            (t.sends, t.completed_copied, t.pending, t.without_number),
            (4, 2, 2, 1)
        );
        assert_eq!(t.unmatched_numbers, 0);
        assert_eq!(a.call_json(2).unwrap()["completed_copied"], Value::Null);
        assert_eq!(a.call_json(0).unwrap()["seq"], 0);
        assert_eq!(a.call_json(4).unwrap()["notification"]["last"], 1);
    }

    #[test]
    fn numbers_wrap_and_ranges_for_untraced_sends_are_counted_apart() {
        let s = Some(0xa000);
        let calls = vec![
            send(10, s, Some((u32::MAX, 0)), 100),
            send(20, s, Some((0, 1)), 100),
            // Numbers 0xfffffffd..=0xfffffffe were sent before the trace.
            completion(30, s, u32::MAX - 2, 0, false),
        ];
        let a = ZeroCopyAccount::build(&calls, &[]);
        assert_eq!(a.sends[&0].completed_copied(), Some(false));
        assert_eq!(a.sends[&1].completed_copied(), Some(false));
        assert_eq!(a.unmatched_numbers, 2);
        assert_eq!(a.totals().completed_not_copied, 2);
    }

    /// Found with the trace_records fuzz target: a send whose `sk_zckey` went backwards
    /// (a range of 2^32 - 1 numbers) made the account insert every one of them.
    #[test]
    fn a_send_takes_no_more_numbers_than_it_has_messages() {
        let s = Some(0xa000);
        let mut mmsg = send(20, s, Some((10, 13)), 3);
        mmsg.syscall = netcopy_common::TracedSyscall::Sendmmsg;
        mmsg.messages = 2;
        let calls = vec![
            send(10, s, Some((5, 4)), 100),
            mmsg,
            completion(30, s, 5, 12, true),
        ];
        let a = ZeroCopyAccount::build(&calls, &[]);
        assert_eq!((a.sends[&0].seq, a.sends[&0].count), (5, 1));
        assert_eq!((a.sends[&1].seq, a.sends[&1].count), (10, 2));
        assert_eq!(a.sends[&0].completed_copied(), Some(true));
        assert_eq!(a.sends[&1].completed_copied(), Some(true));
        // 5..=12 named 8 numbers; 5, 10 and 11 were traced.
        assert_eq!(a.unmatched_numbers, 5);

        // Counted numbering (no sk_zckey): a corrupted message count is bounded too.
        let mut corrupt = send(10, None, None, i64::MAX);
        corrupt.syscall = netcopy_common::TracedSyscall::Sendmmsg;
        corrupt.messages = u32::MAX;
        let a = ZeroCopyAccount::build(&[corrupt], &[]);
        assert_eq!(a.sends[&0].count, MAX_MESSAGES_PER_CALL);
    }

    #[test]
    fn without_the_kernel_numbering_sends_are_counted_per_fd_from_the_trace_start() {
        let calls = vec![
            send(10, None, None, 100),
            send(20, None, None, -11),
            send(30, None, None, 100),
            completion(40, None, 1, 1, true),
        ];
        let a = ZeroCopyAccount::build(&calls, &[]);
        assert_eq!(
            (a.sends[&0].seq, a.sends[&0].numbering),
            (0, Numbering::Counted)
        );
        assert_eq!(a.sends[&1].count, 0);
        assert_eq!(a.sends[&2].seq, 1);
        assert_eq!(a.sends[&2].completed_copied(), Some(true));
        assert_eq!(a.sends[&0].completed_copied(), None);
        assert!(a.totals().counted);
    }

    fn uring(kind: UringKind, time_ns: u64, request: u64, user_data: u64) -> UringRecord {
        UringRecord {
            kind,
            time_ns,
            pid: 1,
            tid: 1,
            ring: 0x10,
            request,
            user_data,
            opcode: 0,
            send_flags: None,
            res: 0,
            cflags: 0,
        }
    }

    fn zc_submit(time_ns: u64, request: u64, user_data: u64, flags: Option<u32>) -> UringRecord {
        UringRecord {
            opcode: netcopy_common::IORING_OP_SEND_ZC,
            send_flags: flags,
            ..uring(UringKind::Submit, time_ns, request, user_data)
        }
    }

    fn result(time_ns: u64, request: u64, user_data: u64, res: i32, more: bool) -> UringRecord {
        UringRecord {
            res,
            cflags: if more { uring::CQE_F_MORE } else { 0 },
            ..uring(UringKind::Complete, time_ns, request, user_data)
        }
    }

    fn notif(time_ns: u64, user_data: u64, copied: bool) -> UringRecord {
        UringRecord {
            res: if copied {
                uring::NOTIF_USAGE_ZC_COPIED as i32
            } else {
                0
            },
            cflags: uring::CQE_F_NOTIF,
            // A notification is a request of its own, never submitted.
            ..uring(UringKind::Complete, time_ns, 0x999, user_data)
        }
    }

    #[test]
    fn io_uring_notifications_go_to_the_oldest_send_of_their_user_data() {
        let report = Some(uring::SEND_ZC_REPORT_USAGE);
        let records = vec![
            zc_submit(1, 0x100, 7, report),
            zc_submit(2, 0x200, 7, report),
            // Request 0x100's notification before its result: still its own.
            notif(3, 7, true),
            result(4, 0x100, 7, 1000, true),
            result(5, 0x200, 7, 500, true),
            notif(6, 7, false),
            // Failed: no notification follows, and none is waited for.
            zc_submit(7, 0x300, 8, report),
            result(8, 0x300, 8, -32, false),
            // Without REPORT_USAGE a clear bit says nothing.
            zc_submit(9, 0x400, 9, Some(0)),
            result(10, 0x400, 9, 10, true),
            notif(11, 9, false),
            // Notification of a send made before the trace.
            notif(12, 42, true),
            zc_submit(13, 0x500, 10, report),
        ];
        let a = ZeroCopyAccount::build(&[], &records);
        assert_eq!(a.uring_sends[&0].copied, Some(true));
        assert_eq!(a.uring_sends[&0].sent, Some(1000));
        assert_eq!(a.uring_sends[&1].copied, Some(false));
        assert!(a.uring_sends[&6].no_notification);
        assert_eq!(a.uring_sends[&8].copied, None);
        assert!(a.uring_sends[&8].notified);
        assert_eq!(a.uring_notifications[&2], 0);
        assert_eq!(a.uring_opcodes[&4], netcopy_common::IORING_OP_SEND_ZC);
        let t = a.uring_totals();
        assert_eq!(
            (
                t.sends,
                t.copied,
                t.not_copied,
                t.not_reported,
                t.failed,
                t.pending
            ),
            (5, 1, 1, 1, 1, 1)
        );
        assert_eq!(t.unmatched_notifications, 1);
    }
}
