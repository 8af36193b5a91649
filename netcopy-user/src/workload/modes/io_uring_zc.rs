//! io-uring-zc: IORING_OP_SENDMSG_ZC with IORING_SEND_ZC_REPORT_USAGE, 9 iovecs from a
//! pool of message slots (`slots.rs`), through the ring helpers of `io_uring.rs`.
//!
//! Each operation posts two completions, with its user_data: first its result (bytes sent;
//! IORING_CQE_F_MORE when a notification will follow), later a notification
//! (IORING_CQE_F_NOTIF) once the kernel has let go of the pages. With REPORT_USAGE (bit 3
//! of the SQE's ioprio) the notification's result carries IORING_NOTIF_USAGE_ZC_COPIED
//! (bit 31) when the kernel copied the data after all (always on loopback: the receiving
//! socket is local). Unlike MSG_ZEROCOPY's id ranges, a notification belongs to exactly
//! one operation, whose bytes it completes.
//!
//! One operation is in flight at a time (a slot's remainder after a short send is a new
//! operation); many may await their notifications. A slot is released once every
//! operation of it has been notified. The pool, the retries and the waiting are
//! `slot_sender.rs`'s; this file gives it the mechanism.

use std::{
    collections::HashMap,
    io,
    net::TcpStream,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use io_uring::{cqueue, opcode, types};

use super::{
    io_uring::{msghdr_for, probe_opcode, send_result, Completion, Ring},
    sender::SenderStats,
    slot_sender::{Connection, PendingSend, SlotSender, ZeroCopyMechanism},
    slots::ZeroCopyConfig,
};
use crate::workload::sockets;

/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h, Linux 6.2): in the SQE's
/// ioprio, asks the notification to say whether the kernel copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: in a notification's result, the kernel copied the data.
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// The operation whose result has not arrived yet.
#[derive(Debug, Clone, Copy)]
struct Issued {
    op: u64,
    slot: usize,
}

/// The io-uring-zc sender: the slot pool driven through [`SendMsgZc`].
pub(super) type IoUringZcSender = SlotSender<SendMsgZc>;

/// IORING_OP_SENDMSG_ZC and the ring's notifications.
pub(super) struct SendMsgZc {
    ring: Ring,
    issued: Option<Issued>,
    /// Operations awaiting their notification, by user_data.
    pending: HashMap<u64, PendingSend>,
    next_op: u64,
}

impl IoUringZcSender {
    pub(super) fn new(socket: TcpStream, config: ZeroCopyConfig) -> io::Result<Self> {
        // Room in the completion queue for the notifications of a full pool.
        let in_flight = config.max_in_flight.clamp(1, 4096) as u32;
        let mechanism = SendMsgZc {
            ring: Ring::new(8, 2 * in_flight + 8)?,
            issued: None,
            pending: HashMap::new(),
            next_op: 1,
        };
        Ok(SlotSender::with(socket, mechanism, config))
    }
}

impl SendMsgZc {
    /// Books one completion. Returns the result of the operation in flight when this is
    /// it.
    fn handle(&mut self, conn: &mut Connection, c: Completion) -> Option<Completion> {
        if cqueue::notif(c.flags) {
            conn.stats.completion_notifications += 1;
            match self.pending.remove(&c.user_data) {
                Some(send) => {
                    let copied = c.result as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0;
                    conn.completed(send, copied);
                }
                None => conn.stats.unexpected_completions += 1,
            }
            return None;
        }
        match self.issued {
            Some(issued) if issued.op == c.user_data => {
                self.issued = None;
                if cqueue::more(c.flags) {
                    // A notification follows; until then the kernel may read the slot.
                    let bytes = c.result.max(0) as usize;
                    let send = conn.accepted(issued.slot, bytes);
                    self.pending.insert(issued.op, send);
                }
                Some(c)
            }
            _ => {
                conn.stats.unexpected_completions += 1;
                None
            }
        }
    }

    /// Books every completion of one wait; returns the in-flight operation's result if
    /// it came.
    fn wait_ring(
        &mut self,
        conn: &mut Connection,
        timeout: Option<Duration>,
    ) -> io::Result<Option<Completion>> {
        let mut result = None;
        for c in self.ring.wait(timeout)? {
            if let Some(done) = self.handle(conn, c) {
                result = Some(done);
            }
        }
        // A notification may be posted before the result of an operation the socket
        // took earlier, so no send proves the ones before it left: settle in batches,
        // with no operation in flight (its bytes may be in the socket, not yet counted).
        if self.issued.is_none() && conn.unsent.due() {
            let fd = conn.fd();
            conn.unsent.settle(fd, &mut conn.stats)?;
        }
        Ok(result)
    }
}

impl ZeroCopyMechanism for SendMsgZc {
    const COMPLETION: &'static str = "io_uring zero-copy notification";
    const SENDS: &'static str = "operations";
    const UNFINISHED: &'static str = "io_uring zero-copy operations were still not notified";
    const CALL: &'static str = "IORING_OP_SENDMSG_ZC";

    fn outstanding(&self) -> u64 {
        self.pending.len() as u64
    }

    fn holds_pages(&self) -> bool {
        !self.pending.is_empty() || self.issued.is_some()
    }

    fn reap_posted(&mut self, conn: &mut Connection) -> io::Result<bool> {
        let posted = self.ring.posted();
        let any = !posted.is_empty();
        for c in posted {
            self.handle(conn, c);
        }
        Ok(any)
    }

    /// Waits for notifications, at most `timeout`. Returns how many sends completed.
    fn wait(&mut self, conn: &mut Connection, timeout: Duration) -> io::Result<u64> {
        conn.stats.completion_syscalls += 1;
        let before = conn.stats.completed_sends;
        self.wait_ring(conn, Some(timeout))?;
        Ok(conn.stats.completed_sends - before)
    }

    /// Issues one IORING_OP_SENDMSG_ZC of `iov` for slot `index` and waits for its result
    /// (booking the notifications that arrive meanwhile).
    fn send(
        &mut self,
        conn: &mut Connection,
        slot: usize,
        iov: &mut [libc::iovec],
    ) -> io::Result<io::Result<usize>> {
        let msg = msghdr_for(iov);
        let op = self.next_op;
        self.next_op += 1;
        let entry = opcode::SendMsgZc::new(types::Fd(conn.fd()), &msg)
            .ioprio(IORING_SEND_ZC_REPORT_USAGE)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(op);
        self.issued = Some(Issued { op, slot });
        // SAFETY: msg and the iovecs live until this function returns, after the
        // operation's result; the data is the slot's, held until its notification.
        unsafe { self.ring.submit(&entry)? };
        loop {
            if let Some(done) = self.wait_ring(conn, None)? {
                return Ok(send_result(done.result, Self::CALL));
            }
        }
    }

    fn wait_for_room(&mut self, conn: &mut Connection) -> io::Result<()> {
        sockets::poll_one(conn.fd(), libc::POLLOUT, Duration::from_millis(100))?;
        Ok(())
    }

    fn enobufs_detail(&self) -> String {
        format!("({} operations awaiting notification)", self.pending.len())
    }

    fn sync_stats(&self, stats: &mut SenderStats) {
        stats.ring_enters = self.ring.enters();
    }
}

/// Fails unless this kernel's io_uring has IORING_OP_SENDMSG_ZC and accepts
/// IORING_SEND_ZC_REPORT_USAGE: one 1-byte send over a loopback connection, with its
/// notification.
pub(super) fn probe_support() -> io::Result<()> {
    probe_opcode(opcode::SendMsgZc::CODE, "IORING_OP_SENDMSG_ZC", "6.1")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let mut ring = Ring::new(2, 4)?;
    // Boxed: its address must stay valid for the kernel even if this function gives up.
    let byte = Box::new([b'?']);
    let mut iov = [libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    }];
    let msg = msghdr_for(&mut iov);
    let entry = opcode::SendMsgZc::new(types::Fd(server.as_raw_fd()), &msg)
        .ioprio(IORING_SEND_ZC_REPORT_USAGE)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build()
        .user_data(1);
    // SAFETY: msg, iov and byte outlive the operation: we wait for its notification below,
    // and leak them if it never comes.
    unsafe { ring.submit(&entry)? };
    // Done once the result came and, when it announced one, the notification too.
    let settled = |result: Option<Completion>, notified: bool| {
        result.is_some_and(|r| notified || !cqueue::more(r.flags))
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut result, mut notified) = (None, false);
    while !settled(result, notified) && Instant::now() < deadline {
        for c in ring.wait(Some(Duration::from_millis(100)))? {
            if cqueue::notif(c.flags) {
                notified = true;
            } else {
                result = Some(c);
            }
        }
    }
    drop(client);
    if !settled(result, notified) {
        // The kernel may still hold the byte: never free it.
        std::mem::forget((byte, iov, msg, ring));
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "a 1-byte IORING_OP_SENDMSG_ZC over loopback was not completed within 2 s",
        ));
    }
    match result.map(|r| r.result) {
        Some(1) => Ok(()),
        Some(errno) if errno == -libc::EINVAL => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's IORING_OP_SENDMSG_ZC refuses IORING_SEND_ZC_REPORT_USAGE (Linux 6.2 \
             or newer, or a kernel with it backported), so it cannot say whether it copied",
        )),
        other => Err(io::Error::other(format!(
            "a 1-byte IORING_OP_SENDMSG_ZC over loopback returned {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::modes::{
        sender::Sender,
        slot_sender::testing::{
            loopback_sender, send_to_a_client_that_closes_unread, UNREAD_MESSAGES,
        },
    };

    fn sender() -> (IoUringZcSender, TcpStream) {
        loopback_sender(IoUringZcSender::new)
    }

    const MORE: u32 = 1 << 1;
    const NOTIF: u32 = 1 << 3;

    /// Fakes an issued operation of `bytes` on a fresh slot and its result.
    fn fake_operation(sender: &mut IoUringZcSender, bytes: i32, flags: u32) -> (u64, usize) {
        if !sender.conn.pool.holds_size(100) {
            sender.prepare(100).unwrap();
        }
        let index = sender.acquire_slot().unwrap();
        sender.conn.pool.begin(index, 0, 0);
        let op = sender.mechanism.next_op;
        sender.mechanism.next_op += 1;
        sender.mechanism.issued = Some(Issued { op, slot: index });
        let result = sender.mechanism.handle(
            &mut sender.conn,
            Completion {
                user_data: op,
                result: bytes,
                flags,
            },
        );
        assert_eq!(result.map(|r| r.result), Some(bytes));
        assert!(sender.mechanism.issued.is_none());
        sender.conn.pool.end(index);
        (op, index)
    }

    #[test]
    fn notifications_complete_their_own_operation_and_say_copied() {
        let (mut sender, _client) = sender();
        let (a, slot_a) = fake_operation(&mut sender, 40, MORE);
        let (b, _) = fake_operation(&mut sender, 76, MORE);
        assert_eq!(sender.conn.stats.zerocopy_sends, 2);
        assert_eq!(sender.conn.stats.zerocopy_bytes, 116);
        assert!(
            sender.conn.pool.free_slots().is_empty(),
            "both await notification"
        );
        // Out of order: b first, not copied; then a, copied.
        let notify = |op, copied: bool| Completion {
            user_data: op,
            result: if copied {
                IORING_NOTIF_USAGE_ZC_COPIED as i32
            } else {
                0
            },
            flags: NOTIF,
        };
        assert!(sender
            .mechanism
            .handle(&mut sender.conn, notify(b, false))
            .is_none());
        assert!(sender
            .mechanism
            .handle(&mut sender.conn, notify(a, true))
            .is_none());
        assert!(
            sender
                .mechanism
                .handle(&mut sender.conn, notify(a, true))
                .is_none(),
            "a duplicate"
        );
        let s = &sender.conn.stats;
        assert_eq!(s.completion_notifications, 3);
        assert_eq!((s.completed_sends, s.completed_bytes), (2, 116));
        assert_eq!((s.copied_sends, s.copied_bytes), (1, 40));
        assert_eq!(s.unexpected_completions, 1);
        assert!(sender.mechanism.pending.is_empty());
        assert!(sender.conn.pool.free_slots().contains(&slot_a));
    }

    /// As for MSG_ZEROCOPY: the kernel frees the operations still queued when the client
    /// closes unread.
    #[test]
    fn operations_freed_unsent_when_the_client_closes_are_counted_apart() {
        probe_support().expect("io_uring zero-copy on this machine (shared/PLATFORM.md)");
        let (s, unsent) = send_to_a_client_that_closes_unread(sender());
        // io_uring reports per operation: an operation that never left is never flagged.
        assert_eq!(s.unsent_copied_sends, 0);
        assert_eq!(s.copied_sends, UNREAD_MESSAGES - unsent);
    }

    #[test]
    fn a_failed_operation_without_more_awaits_no_notification() {
        let (mut sender, _client) = sender();
        let (_, slot) = fake_operation(&mut sender, -libc::EPIPE, 0);
        assert_eq!(sender.conn.stats.zerocopy_sends, 0);
        assert!(sender.mechanism.pending.is_empty());
        assert_eq!(sender.conn.pool.free_slots(), &[slot]);
        assert!(sender.finish(Duration::from_millis(10)).is_ok());
    }

    #[test]
    fn messages_are_held_until_notified_and_counted_exactly() {
        probe_support().expect("io_uring zero-copy on this machine (shared/PLATFORM.md)");
        let (mut sender, mut client) = sender();
        for seq in 0..5 {
            sender.send_message(65537, seq).unwrap();
        }
        let mut received = vec![0u8; 5 * (65537 + 16)];
        std::io::Read::read_exact(&mut client, &mut received).unwrap();
        sender.finish(Duration::from_secs(10)).unwrap();
        let s = sender.stats();
        assert_eq!(s.messages, 5);
        assert_eq!((s.payload_bytes, s.header_bytes), (5 * 65537, 5 * 16));
        assert_eq!(s.zerocopy_bytes, 5 * (65537 + 16));
        assert_eq!(s.completed_sends, s.zerocopy_sends);
        assert_eq!(s.completion_notifications, s.zerocopy_sends);
        assert_eq!(s.completed_bytes, s.zerocopy_bytes);
        assert_eq!((s.unfinished_sends, s.unexpected_completions), (0, 0));
        // Loopback: the receiver is local, so the kernel copied every page and said so.
        assert_eq!(s.copied_sends, s.completed_sends);
        assert_eq!(s.copied_bytes, s.completed_bytes);
    }
}
