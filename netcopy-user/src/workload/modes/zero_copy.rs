//! Zero-copy: `sendmsg(MSG_ZEROCOPY)` with 9 iovecs after `SO_ZEROCOPY`.
//!
//! The kernel pins the pages of every iovec and reads them later, possibly long after
//! sendmsg returned; it reports when it is done through the socket's error queue. Each
//! sendmsg call that queues at least one byte consumes one notification id (a per-socket
//! u32 counter starting at 0); a notification covers the ids `ee_info..=ee_data` (wrapping),
//! and carries `SO_EE_CODE_ZEROCOPY_COPIED` in `ee_code` when the kernel copied the data
//! after all (always on loopback: the receiving socket is local).
//!
//! So messages live in a pool of slots (`slots.rs`), each not restamped or freed until
//! every id of its sends has completed. When no slot is free, the sender blocks in poll()
//! for POLLERR and drains the error queue.
//!
//! Not every completion is of a send that left the socket: when a timed stream's client
//! stops reading and closes, the kernel frees the sends still queued, undelivered
//! (`unsent.rs`). So each send keeps its offset in the connection's stream, and the
//! completions read since the last send the socket accepted (only those can be of sends
//! freed at its end) are checked at finish against the socket's unsent tail.

use std::{
    collections::VecDeque,
    io,
    net::TcpStream,
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use super::{
    sender::{Sender, SenderStats, IOV_COUNT},
    slots::{SlotPool, ZeroCopyConfig},
    unsent::UnsentTally,
};
use crate::workload::sockets::{self, read_notification, Notification};

/// With no completion for this long while waiting for a slot, the receiver is considered
/// stuck and the send fails instead of hanging the connection forever.
pub(super) const COMPLETION_STALL_LIMIT: Duration = Duration::from_secs(30);
/// ENOBUFS for this long without one successful send is reported as an error.
pub(super) const ENOBUFS_LIMIT: Duration = Duration::from_secs(5);

/// One sendmsg call awaiting its notification.
#[derive(Debug, Clone, Copy)]
struct PendingSend {
    slot: usize,
    bytes: usize,
    /// The offset of its first byte in everything written to the connection.
    start: u64,
}

pub(super) struct ZeroCopySender {
    socket: TcpStream,
    pool: SlotPool,
    /// Sends by notification id, starting at `pending_base`; completed entries are `None`
    /// until the front catches up (notifications may arrive out of order).
    pending: VecDeque<Option<PendingSend>>,
    pending_base: u32,
    next_id: u32,
    outstanding_sends: u64,
    /// Where each send lies in the connection's stream, and the completions of sends that
    /// may never have left it: since the socket last accepted one.
    unsent: UnsentTally,
    stats: SenderStats,
}

impl ZeroCopySender {
    /// Enables SO_ZEROCOPY on `socket`; a clear error if the kernel refuses.
    pub(super) fn new(socket: TcpStream, config: ZeroCopyConfig) -> io::Result<Self> {
        sockets::enable_zerocopy(socket.as_raw_fd()).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "the kernel refused setsockopt(SO_ZEROCOPY) ({err}); MSG_ZEROCOPY on TCP \
                     needs Linux 4.14 or newer"
                ),
            )
        })?;
        Ok(ZeroCopySender {
            socket,
            pool: SlotPool::new(config),
            pending: VecDeque::new(),
            pending_base: 0,
            next_id: 0,
            outstanding_sends: 0,
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

    /// A free slot: a completed one, else a new one while the pool may grow, else wait.
    fn acquire_slot(&mut self) -> io::Result<usize> {
        let mut last_progress = Instant::now();
        loop {
            if let Some(index) = self.pool.take_free() {
                return Ok(index);
            }
            if self.pool.can_grow() {
                // Grow only when completions really lag: try one cheap drain first.
                if self.outstanding_sends > 0 && self.drain_completions()? > 0 {
                    continue;
                }
                if let Some(index) = self.pool.grow()? {
                    return Ok(index);
                }
            }
            if self.wait_for_completions(Duration::from_millis(100))? > 0 {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > COMPLETION_STALL_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no zero-copy completion for {} s while all {} message slots are in \
                         flight ({} sends outstanding): the receiver stopped reading",
                        COMPLETION_STALL_LIMIT.as_secs(),
                        self.pool.len(),
                        self.outstanding_sends
                    ),
                ));
            }
        }
    }

    /// Blocks up to `timeout` for POLLERR, then drains. Returns the sends completed.
    fn wait_for_completions(&mut self, timeout: Duration) -> io::Result<u64> {
        self.stats.completion_syscalls += 1;
        // POLLERR is always reported; asking for no events waits for exactly that.
        let revents = sockets::poll_one(self.fd(), 0, timeout)?;
        if revents == 0 {
            return Ok(0);
        }
        let completed = self.drain_completions()?;
        if completed == 0 {
            // A pending socket error (a reset peer) or POLLHUP keeps poll() returning at
            // once; clear the error and back off so that waiting does not spin.
            let _ = sockets::take_socket_error(self.fd());
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(completed)
    }

    /// Reads every notification queued now. Returns the sends completed.
    fn drain_completions(&mut self) -> io::Result<u64> {
        let mut completed = 0;
        loop {
            self.stats.completion_syscalls += 1;
            match read_notification(self.fd()) {
                Ok(Some(Notification::Zerocopy { lo, hi, copied })) => {
                    self.stats.completion_notifications += 1;
                    completed += self.complete_range(lo, hi, copied);
                }
                Ok(Some(Notification::Other)) => {}
                Ok(None) => return Ok(completed),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks the ids `lo..=hi` (wrapping) complete. Returns how many were ours.
    fn complete_range(&mut self, lo: u32, hi: u32, copied: bool) -> u64 {
        const ID_SPACE: u64 = 1 << 32;
        let count = u64::from(hi.wrapping_sub(lo)) + 1;
        let window = self.pending.len() as u64;
        let start = u64::from(lo.wrapping_sub(self.pending_base));
        // The covered offsets start..start+count, modulo 2^32, intersected with the window.
        let mut spans = vec![(start.min(window), (start + count).min(ID_SPACE).min(window))];
        if start + count > ID_SPACE {
            spans.push((0, (start + count - ID_SPACE).min(window)));
        }
        let mut matched = 0;
        for (from, to) in spans {
            for offset in from..to {
                if let Some(send) = self.pending[offset as usize].take() {
                    matched += 1;
                    self.complete_send(send, copied);
                }
            }
        }
        self.stats.unexpected_completions += count - matched;
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            self.pending_base = self.pending_base.wrapping_add(1);
        }
        matched
    }

    fn complete_send(&mut self, send: PendingSend, copied: bool) {
        self.outstanding_sends -= 1;
        self.stats.completed_sends += 1;
        self.stats.completed_bytes += send.bytes as u64;
        if copied {
            self.stats.copied_sends += 1;
            self.stats.copied_bytes += send.bytes as u64;
        }
        self.unsent.completed(send.start, send.bytes, copied);
        self.pool.complete_send(send.slot);
    }

    /// Issues the sendmsg calls for the slot's whole message.
    fn send_slot(&mut self, index: usize) -> io::Result<()> {
        let fd = self.fd();
        let total = self.pool.total_len(index);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_COUNT];
        let mut sent = 0;
        let mut enobufs_since: Option<Instant> = None;
        while sent < total {
            let used = sockets::remaining_iovecs(&self.pool.slices(index), sent, &mut iov);
            self.stats.syscalls += 1;
            match sockets::sendmsg_iov(fd, &mut iov[..used], libc::MSG_ZEROCOPY) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "sendmsg(MSG_ZEROCOPY) accepted 0 bytes",
                    ))
                }
                Ok(n) => {
                    enobufs_since = None;
                    // The socket still took data, so what completed before this call
                    // was acknowledged, not freed at the connection's end.
                    self.unsent.accepted_after_reading();
                    let start = self.unsent.sent(n);
                    self.pending.push_back(Some(PendingSend {
                        slot: index,
                        bytes: n,
                        start,
                    }));
                    self.next_id = self.next_id.wrapping_add(1);
                    self.outstanding_sends += 1;
                    self.pool.add_send(index);
                    self.stats.zerocopy_sends += 1;
                    self.stats.zerocopy_bytes += n as u64;
                    if n < total - sent {
                        self.stats.partial_sends += 1;
                    }
                    self.stats.count_sent(self.pool.header_len(index), sent, n);
                    sent += n;
                }
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS) => {
                        // The pinned-page bookkeeping is charged to optmem: completions
                        // release it.
                        self.stats.enobufs_retries += 1;
                        let since = *enobufs_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > ENOBUFS_LIMIT {
                            return Err(io::Error::new(
                                err.kind(),
                                format!(
                                    "sendmsg(MSG_ZEROCOPY) kept failing with ENOBUFS for {} s \
                                     ({} sends outstanding); net.core.optmem_max may be too \
                                     small",
                                    ENOBUFS_LIMIT.as_secs(),
                                    self.outstanding_sends
                                ),
                            ));
                        }
                        if self.outstanding_sends > 0 {
                            self.wait_for_completions(Duration::from_millis(10))?;
                        } else {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Some(libc::EAGAIN) => {
                        // Only with SO_SNDTIMEO: wait for room, collecting completions.
                        self.stats.completion_syscalls += 1;
                        let revents =
                            sockets::poll_one(fd, libc::POLLOUT, Duration::from_millis(100))?;
                        if revents & libc::POLLERR != 0 {
                            self.drain_completions()?;
                        }
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
                "{} zero-copy sends were still not completed after {:.1} s; their buffers are \
                 kept (leaked) rather than reused",
                self.outstanding_sends,
                timeout.as_secs_f64()
            ),
        )
    }
}

impl Sender for ZeroCopySender {
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
            result?;
        }
        self.stats.messages += 1;
        Ok(())
    }

    fn finish(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.outstanding_sends > 0 {
            let now = Instant::now();
            if now >= deadline {
                self.stats.unfinished_sends = self.outstanding_sends;
                self.unsent
                    .settle(self.socket.as_raw_fd(), &mut self.stats)?;
                return Err(self.outstanding_error(timeout));
            }
            self.wait_for_completions((deadline - now).min(Duration::from_millis(100)))?;
        }
        self.stats.unfinished_sends = 0;
        self.unsent.settle(self.socket.as_raw_fd(), &mut self.stats)
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }

    fn wrote_other(&mut self, bytes: u64) {
        self.unsent.wrote_other(bytes);
    }
}

impl Drop for ZeroCopySender {
    fn drop(&mut self) {
        if self.outstanding_sends > 0 {
            // The kernel may still read these pages: freeing them would let the allocator
            // hand them out again while they are being transmitted. Leak them instead.
            self.pool.leak();
        }
    }
}

/// Fails unless the kernel accepts SO_ZEROCOPY on a TCP socket.
pub(super) fn probe_support() -> io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    sockets::enable_zerocopy(listener.as_raw_fd()).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "the kernel refused setsockopt(SO_ZEROCOPY) ({err}); MSG_ZEROCOPY on TCP needs \
                 Linux 4.14 or newer"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::modes::unsent::settled_unsent_tail;
    use std::net::TcpListener;

    fn sender() -> (ZeroCopySender, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (
            ZeroCopySender::new(server, ZeroCopyConfig::default()).unwrap(),
            client,
        )
    }

    /// Fakes `n` issued sends of one slot without touching the socket.
    fn fake_sends(sender: &mut ZeroCopySender, n: u32) {
        sender.prepare(100).unwrap();
        let index = sender.acquire_slot().unwrap();
        sender.pool.begin(index, 0, 0);
        for _ in 0..n {
            let start = sender.unsent.sent(10);
            sender.pending.push_back(Some(PendingSend {
                slot: index,
                bytes: 10,
                start,
            }));
            sender.next_id = sender.next_id.wrapping_add(1);
            sender.outstanding_sends += 1;
            sender.pool.add_send(index);
        }
        sender.pool.end(index);
    }

    #[test]
    fn completion_ranges_out_of_order_and_duplicates() {
        let (mut sender, _client) = sender();
        fake_sends(&mut sender, 5);
        assert_eq!(sender.complete_range(2, 3, true), 2);
        assert_eq!(sender.pending_base, 0, "front not complete yet");
        assert_eq!(sender.complete_range(3, 3, false), 0);
        assert_eq!(sender.stats.unexpected_completions, 1);
        assert_eq!(sender.complete_range(0, 1, false), 2);
        assert_eq!(sender.pending_base, 4);
        assert!(
            sender.pool.free_slots().is_empty(),
            "slot still has one send outstanding"
        );
        assert_eq!(sender.complete_range(4, 4, true), 1);
        assert_eq!(sender.pool.free_slots(), &[0]);
        assert_eq!(sender.stats.completed_sends, 5);
        assert_eq!(sender.stats.copied_sends, 3);
        assert_eq!(sender.stats.copied_bytes, 30);
        assert_eq!(sender.outstanding_sends, 0);
        assert!(sender.pending.is_empty());
    }

    /// A stream whose client never reads, then closes with the data unread (a reset): the
    /// kernel frees the sends still queued. On loopback every send that left the socket is
    /// flagged copied (delivered locally), and exactly the sends past the unsent tail the
    /// kernel reports (SIOCOUTQNSD) are counted unsent.
    #[test]
    fn sends_freed_unsent_when_the_client_closes_are_counted_apart() {
        const MESSAGES: u64 = 32;
        const SIZE: u64 = 64 << 10;
        let (mut sender, client) = sender();
        let fd = sender.fd();
        // Room for every message in the send queue, far more than the unread receive
        // buffer holds: the sends never block, and the tail stays unsent.
        sockets::set_send_buffer(fd, 4 << 20).unwrap();
        for seq in 0..MESSAGES {
            sender.send_message(SIZE, seq).unwrap();
        }
        assert_eq!(
            (sender.stats.zerocopy_sends, sender.stats.partial_sends),
            (MESSAGES, 0)
        );
        let message_len = sender.unsent.written() / MESSAGES;
        assert_eq!(sender.unsent.written(), message_len * MESSAGES);
        let unsent = settled_unsent_tail(fd);
        let first_unsent = sender.unsent.written() - unsent;
        // The messages whose first byte is at or past the first unsent one.
        let expected_unsent = MESSAGES - first_unsent.div_ceil(message_len);
        assert!(
            expected_unsent > 0 && expected_unsent < MESSAGES,
            "{unsent} of {} bytes unsent",
            sender.unsent.written()
        );
        drop(client);
        sender.finish(Duration::from_secs(10)).unwrap();
        let s = &sender.stats;
        assert_eq!(s.completed_sends, MESSAGES);
        assert_eq!(s.unsent_sends, expected_unsent);
        assert_eq!(s.unsent_bytes, expected_unsent * message_len);
        // Every send that left the socket was delivered locally, hence copied.
        assert_eq!(
            s.copied_sends - s.unsent_copied_sends,
            MESSAGES - expected_unsent
        );
        assert_eq!(
            s.copied_sends + (s.unsent_sends - s.unsent_copied_sends),
            MESSAGES
        );
    }

    #[test]
    fn completion_ranges_wrap_around_u32() {
        let (mut sender, _client) = sender();
        sender.pending_base = u32::MAX - 1;
        sender.next_id = u32::MAX - 1;
        fake_sends(&mut sender, 4); // ids MAX-1, MAX, 0, 1
        assert_eq!(sender.complete_range(u32::MAX - 1, 1, true), 4);
        assert_eq!(sender.pending_base, 2);
        assert_eq!(sender.stats.unexpected_completions, 0);
        assert_eq!(sender.stats.completed_sends, 4);
    }
}
