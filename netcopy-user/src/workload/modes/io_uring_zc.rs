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
//! operation of it has been notified.

use std::{
    collections::HashMap,
    io,
    net::TcpStream,
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use io_uring::{cqueue, opcode, types};

use super::{
    io_uring::{msghdr_for, probe_opcode, send_result, Completion, Ring},
    sender::{Sender, SenderStats, IOV_COUNT},
    slots::{SlotPool, ZeroCopyConfig},
    unsent::UnsentTally,
    zero_copy::{COMPLETION_STALL_LIMIT, ENOBUFS_LIMIT},
};
use crate::workload::sockets;

/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h, Linux 6.2): in the SQE's
/// ioprio, asks the notification to say whether the kernel copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: in a notification's result, the kernel copied the data.
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// One operation awaiting its notification.
#[derive(Debug, Clone, Copy)]
struct PendingSend {
    slot: usize,
    bytes: usize,
    /// The offset of its first byte in everything written to the connection.
    start: u64,
}

/// The operation whose result has not arrived yet.
#[derive(Debug, Clone, Copy)]
struct Issued {
    op: u64,
    slot: usize,
}

pub(super) struct IoUringZcSender {
    socket: TcpStream,
    ring: Ring,
    pool: SlotPool,
    issued: Option<Issued>,
    /// Operations awaiting their notification, by user_data.
    pending: HashMap<u64, PendingSend>,
    next_op: u64,
    /// Where each operation lies in the connection's stream, and the notifications of
    /// operations that may never have left it.
    unsent: UnsentTally,
    stats: SenderStats,
}

impl IoUringZcSender {
    pub(super) fn new(socket: TcpStream, config: ZeroCopyConfig) -> io::Result<Self> {
        // Room in the completion queue for the notifications of a full pool.
        let in_flight = config.max_in_flight.clamp(1, 4096) as u32;
        Ok(IoUringZcSender {
            socket,
            ring: Ring::new(8, 2 * in_flight + 8)?,
            pool: SlotPool::new(config),
            issued: None,
            pending: HashMap::new(),
            next_op: 1,
            unsent: UnsentTally::default(),
            stats: SenderStats::default(),
        })
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Sets up the pool for `size`, first waiting until no slot of another size is in use.
    fn prepare(&mut self, size: u64) -> io::Result<()> {
        if self.pool.holds_size(size) {
            return Ok(());
        }
        self.finish(COMPLETION_STALL_LIMIT)?;
        self.pool.reset(size)
    }

    /// Books one completion. Returns the result of the operation in flight when this is
    /// it.
    fn handle(&mut self, c: Completion) -> Option<Completion> {
        if cqueue::notif(c.flags) {
            self.stats.completion_notifications += 1;
            match self.pending.remove(&c.user_data) {
                Some(send) => {
                    self.stats.completed_sends += 1;
                    self.stats.completed_bytes += send.bytes as u64;
                    let copied = c.result as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0;
                    if copied {
                        self.stats.copied_sends += 1;
                        self.stats.copied_bytes += send.bytes as u64;
                    }
                    self.unsent.completed(send.start, send.bytes, copied);
                    self.pool.complete_send(send.slot);
                }
                None => self.stats.unexpected_completions += 1,
            }
            return None;
        }
        match self.issued {
            Some(issued) if issued.op == c.user_data => {
                self.issued = None;
                if cqueue::more(c.flags) {
                    // A notification follows; until then the kernel may read the slot.
                    let bytes = c.result.max(0) as usize;
                    let start = self.unsent.sent(bytes);
                    self.pending.insert(
                        issued.op,
                        PendingSend {
                            slot: issued.slot,
                            bytes,
                            start,
                        },
                    );
                    self.pool.add_send(issued.slot);
                    self.stats.zerocopy_sends += 1;
                    self.stats.zerocopy_bytes += bytes as u64;
                }
                Some(c)
            }
            _ => {
                self.stats.unexpected_completions += 1;
                None
            }
        }
    }

    /// Books every completion of one wait; returns the in-flight operation's result if
    /// it came.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Option<Completion>> {
        let mut result = None;
        for c in self.ring.wait(timeout)? {
            if let Some(done) = self.handle(c) {
                result = Some(done);
            }
        }
        // A notification may be posted before the result of an operation the socket
        // took earlier, so no send proves the ones before it left: settle in batches,
        // with no operation in flight (its bytes may be in the socket, not yet counted).
        if self.issued.is_none() && self.unsent.due() {
            self.unsent
                .settle(self.socket.as_raw_fd(), &mut self.stats)?;
        }
        Ok(result)
    }

    /// Waits for notifications, at most `timeout`. Returns how many sends completed.
    fn wait_for_notifications(&mut self, timeout: Duration) -> io::Result<u64> {
        self.stats.completion_syscalls += 1;
        let before = self.stats.completed_sends;
        self.wait(Some(timeout))?;
        Ok(self.stats.completed_sends - before)
    }

    /// A free slot: a completed one, else a new one while the pool may grow, else wait.
    fn acquire_slot(&mut self) -> io::Result<usize> {
        let mut last_progress = Instant::now();
        loop {
            if let Some(index) = self.pool.take_free() {
                return Ok(index);
            }
            if self.pool.can_grow() {
                // Grow only when notifications really lag: book what is posted first.
                let posted = self.ring.posted();
                if !posted.is_empty() {
                    for c in posted {
                        self.handle(c);
                    }
                    continue;
                }
                if let Some(index) = self.pool.grow()? {
                    return Ok(index);
                }
            }
            if self.wait_for_notifications(Duration::from_millis(100))? > 0 {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > COMPLETION_STALL_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no io_uring zero-copy notification for {} s while all {} message \
                         slots are in flight ({} operations outstanding): the receiver \
                         stopped reading",
                        COMPLETION_STALL_LIMIT.as_secs(),
                        self.pool.len(),
                        self.pending.len()
                    ),
                ));
            }
        }
    }

    /// Issues one IORING_OP_SENDMSG_ZC of `iov` for slot `index` and waits for its result
    /// (booking the notifications that arrive meanwhile).
    fn send_operation(&mut self, index: usize, iov: &mut [libc::iovec]) -> io::Result<i32> {
        let msg = msghdr_for(iov);
        let op = self.next_op;
        self.next_op += 1;
        let entry = opcode::SendMsgZc::new(types::Fd(self.fd()), &msg)
            .ioprio(IORING_SEND_ZC_REPORT_USAGE)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(op);
        self.issued = Some(Issued { op, slot: index });
        self.stats.syscalls += 1;
        // SAFETY: msg and the iovecs live until this function returns, after the
        // operation's result; the data is the slot's, held until its notification.
        unsafe { self.ring.submit(&entry)? };
        loop {
            if let Some(done) = self.wait(None)? {
                return Ok(done.result);
            }
        }
    }

    /// Issues the operations for the slot's whole message.
    fn send_slot(&mut self, index: usize) -> io::Result<()> {
        let total = self.pool.total_len(index);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_COUNT];
        let mut sent = 0;
        let mut enobufs_since: Option<Instant> = None;
        while sent < total {
            let used = sockets::remaining_iovecs(&self.pool.slices(index), sent, &mut iov);
            let result = self.send_operation(index, &mut iov[..used])?;
            match send_result(result, "IORING_OP_SENDMSG_ZC") {
                Ok(n) => {
                    enobufs_since = None;
                    if n < total - sent {
                        self.stats.partial_sends += 1;
                    }
                    self.stats.count_sent(self.pool.header_len(index), sent, n);
                    sent += n;
                }
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) => {
                        sockets::poll_one(self.fd(), libc::POLLOUT, Duration::from_millis(100))?;
                    }
                    Some(libc::ENOBUFS) => {
                        self.stats.enobufs_retries += 1;
                        let since = *enobufs_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > ENOBUFS_LIMIT {
                            return Err(io::Error::new(
                                err.kind(),
                                format!(
                                    "IORING_OP_SENDMSG_ZC kept failing with ENOBUFS for {} s \
                                     ({} operations awaiting notification)",
                                    ENOBUFS_LIMIT.as_secs(),
                                    self.pending.len()
                                ),
                            ));
                        }
                        self.wait_for_notifications(Duration::from_millis(10))?;
                    }
                    _ => return Err(err),
                },
            }
        }
        Ok(())
    }

    fn outstanding_error(&self, timeout: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} io_uring zero-copy operations were still not notified after {:.1} s; \
                 their buffers are kept (leaked) rather than reused",
                self.pending.len(),
                timeout.as_secs_f64()
            ),
        )
    }
}

impl Sender for IoUringZcSender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        self.prepare(size)?;
        // One slot per piece (a message up to PIECE_BYTES is one piece), each held until
        // the kernel completes its sends.
        for k in 0..self.pool.pieces() {
            let index = self.acquire_slot()?;
            let (busy, generated) = self.pool.begin(index, seq, k);
            self.stats.max_in_flight = self.stats.max_in_flight.max(busy as u64);
            self.stats.generated_bytes += generated;
            let result = self.send_slot(index);
            self.pool.end(index);
            self.stats.ring_enters = self.ring.enters();
            result?;
        }
        self.stats.messages += 1;
        Ok(())
    }

    fn finish(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let result = loop {
            if self.pending.is_empty() {
                self.stats.unfinished_sends = 0;
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                self.stats.unfinished_sends = self.pending.len() as u64;
                break Err(self.outstanding_error(timeout));
            }
            if let Err(err) =
                self.wait_for_notifications((deadline - now).min(Duration::from_millis(100)))
            {
                break Err(err);
            }
        };
        self.stats.ring_enters = self.ring.enters();
        let settled = self.unsent.settle(self.socket.as_raw_fd(), &mut self.stats);
        result.and(settled)
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }

    fn wrote_other(&mut self, bytes: u64) {
        self.unsent.wrote_other(bytes);
    }
}

impl Drop for IoUringZcSender {
    fn drop(&mut self) {
        if !self.pending.is_empty() || self.issued.is_some() {
            // The kernel may still read these pages: see ZeroCopySender's drop.
            self.pool.leak();
        }
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
    use crate::workload::modes::unsent::settled_unsent_tail;
    use std::net::TcpListener;

    fn sender() -> (IoUringZcSender, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (
            IoUringZcSender::new(server, ZeroCopyConfig::default()).unwrap(),
            client,
        )
    }

    const MORE: u32 = 1 << 1;
    const NOTIF: u32 = 1 << 3;

    /// Fakes an issued operation of `bytes` on a fresh slot and its result.
    fn fake_operation(sender: &mut IoUringZcSender, bytes: i32, flags: u32) -> (u64, usize) {
        if !sender.pool.holds_size(100) {
            sender.prepare(100).unwrap();
        }
        let index = sender.acquire_slot().unwrap();
        sender.pool.begin(index, 0, 0);
        let op = sender.next_op;
        sender.next_op += 1;
        sender.issued = Some(Issued { op, slot: index });
        let result = sender.handle(Completion {
            user_data: op,
            result: bytes,
            flags,
        });
        assert_eq!(result.map(|r| r.result), Some(bytes));
        assert!(sender.issued.is_none());
        sender.pool.end(index);
        (op, index)
    }

    #[test]
    fn notifications_complete_their_own_operation_and_say_copied() {
        let (mut sender, _client) = sender();
        let (a, slot_a) = fake_operation(&mut sender, 40, MORE);
        let (b, _) = fake_operation(&mut sender, 76, MORE);
        assert_eq!(sender.stats.zerocopy_sends, 2);
        assert_eq!(sender.stats.zerocopy_bytes, 116);
        assert!(
            sender.pool.free_slots().is_empty(),
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
        assert!(sender.handle(notify(b, false)).is_none());
        assert!(sender.handle(notify(a, true)).is_none());
        assert!(sender.handle(notify(a, true)).is_none(), "a duplicate");
        let s = &sender.stats;
        assert_eq!(s.completion_notifications, 3);
        assert_eq!((s.completed_sends, s.completed_bytes), (2, 116));
        assert_eq!((s.copied_sends, s.copied_bytes), (1, 40));
        assert_eq!(s.unexpected_completions, 1);
        assert!(sender.pending.is_empty());
        assert!(sender.pool.free_slots().contains(&slot_a));
    }

    /// As for MSG_ZEROCOPY: a client that never reads, then closes with the data unread;
    /// exactly the operations past the unsent tail the kernel reports never left.
    #[test]
    fn operations_freed_unsent_when_the_client_closes_are_counted_apart() {
        const MESSAGES: u64 = 32;
        const SIZE: u64 = 64 << 10;
        probe_support().expect("io_uring zero-copy on this machine (shared/PLATFORM.md)");
        let (mut sender, client) = sender();
        let fd = sender.fd();
        sockets::set_send_buffer(fd, 4 << 20).unwrap();
        for seq in 0..MESSAGES {
            sender.send_message(SIZE, seq).unwrap();
        }
        assert_eq!(
            (sender.stats.zerocopy_sends, sender.stats.partial_sends),
            (MESSAGES, 0)
        );
        let written = sender.unsent.written();
        let message_len = written / MESSAGES;
        assert_eq!(written, message_len * MESSAGES);
        let unsent = settled_unsent_tail(fd);
        let expected_unsent = MESSAGES - (written - unsent).div_ceil(message_len);
        assert!(
            expected_unsent > 0 && expected_unsent < MESSAGES,
            "{unsent} of {written} bytes unsent"
        );
        drop(client);
        sender.finish(Duration::from_secs(10)).unwrap();
        let s = &sender.stats;
        assert_eq!(s.completed_sends, MESSAGES);
        assert_eq!(s.unsent_sends, expected_unsent);
        assert_eq!(s.unsent_bytes, expected_unsent * message_len);
        // io_uring reports per operation: an operation that never left is never flagged.
        assert_eq!(s.unsent_copied_sends, 0);
        assert_eq!(s.copied_sends, MESSAGES - expected_unsent);
    }

    #[test]
    fn a_failed_operation_without_more_awaits_no_notification() {
        let (mut sender, _client) = sender();
        let (_, slot) = fake_operation(&mut sender, -libc::EPIPE, 0);
        assert_eq!(sender.stats.zerocopy_sends, 0);
        assert!(sender.pending.is_empty());
        assert_eq!(sender.pool.free_slots(), &[slot]);
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
