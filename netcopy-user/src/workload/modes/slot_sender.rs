//! The sender both zero-copy modes share: messages (or their pieces, `message/large.rs`)
//! go out from the slots of a [`SlotPool`], each held until every send from it has
//! completed, with the pool bounded by [`ZeroCopyConfig`]; the completions of sends that
//! never left the socket are counted apart (`unsent.rs`). What differs is the mechanism,
//! a [`ZeroCopyMechanism`]: how one send of a slot is issued (sendmsg(MSG_ZEROCOPY),
//! IORING_OP_SENDMSG_ZC) and how its completions are reaped (the socket's error queue,
//! the ring's notifications).
//!
//! This file holds the rest, once: setting the pool up for a size, acquiring a slot
//! (waiting for completions when the pool is full, failing when none come), issuing a
//! slot's bytes across short sends with EINTR/EAGAIN/ENOBUFS retries, waiting for the last
//! completions at the end, and leaking the slots of a sender dropped while the kernel may
//! still read them.

use std::{
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
use crate::workload::sockets;

/// With no completion for this long while waiting for a slot, the receiver is considered
/// stuck and the send fails instead of hanging the connection forever.
pub(super) const COMPLETION_STALL_LIMIT: Duration = Duration::from_secs(30);
/// ENOBUFS for this long without one successful send is reported as an error.
pub(super) const ENOBUFS_LIMIT: Duration = Duration::from_secs(5);

/// One send the socket accepted, awaiting its completion.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingSend {
    pub(super) slot: usize,
    pub(super) bytes: usize,
    /// The offset of its first byte in everything written to the connection.
    pub(super) start: u64,
}

/// One connection's sending state, shared by the driver and its mechanism: the socket,
/// the slots, the counts and where each send lies in the stream.
pub(super) struct Connection {
    socket: TcpStream,
    pub(super) pool: SlotPool,
    pub(super) stats: SenderStats,
    /// Where each send lies in the connection's stream, and the completions of sends that
    /// may never have left it.
    pub(super) unsent: UnsentTally,
}

impl Connection {
    pub(super) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The socket accepted `bytes` of slot `slot`, to be completed later.
    pub(super) fn accepted(&mut self, slot: usize, bytes: usize) -> PendingSend {
        let start = self.unsent.sent(bytes);
        self.pool.add_send(slot);
        self.stats.zerocopy_sends += 1;
        self.stats.zerocopy_bytes += bytes as u64;
        PendingSend { slot, bytes, start }
    }

    /// The kernel is done with `send`; `copied` when it copied the data after all.
    pub(super) fn completed(&mut self, send: PendingSend, copied: bool) {
        self.stats.completed_sends += 1;
        self.stats.completed_bytes += send.bytes as u64;
        if copied {
            self.stats.copied_sends += 1;
            self.stats.copied_bytes += send.bytes as u64;
        }
        self.unsent.completed(send.start, send.bytes, copied);
        self.pool.complete_send(send.slot);
    }
}

/// How one zero-copy mode issues a send and learns of its completion.
pub(super) trait ZeroCopyMechanism: Send {
    /// What its completions are called, in errors ("zero-copy completion").
    const COMPLETION: &'static str;
    /// What its sends are called, in errors ("sends").
    const SENDS: &'static str;
    /// Said of the sends left at the end ("zero-copy sends were still not completed").
    const UNFINISHED: &'static str;
    /// The call, in errors ("sendmsg(MSG_ZEROCOPY)").
    const CALL: &'static str;

    /// Sends awaiting their completion.
    fn outstanding(&self) -> u64;
    /// Whether the kernel may still read some slot's pages (then they are never freed).
    fn holds_pages(&self) -> bool {
        self.outstanding() > 0
    }
    /// Books the completions posted now, without blocking; whether it booked any.
    fn reap_posted(&mut self, conn: &mut Connection) -> io::Result<bool>;
    /// Waits up to `timeout` for completions and books them. Returns the sends completed.
    fn wait(&mut self, conn: &mut Connection, timeout: Duration) -> io::Result<u64>;
    /// One send of `iov`, from slot `slot`. Inside: the send's result, the bytes the
    /// socket took (booked with [`Connection::accepted`] when a completion will follow) or
    /// its error, retried on EINTR, EAGAIN and ENOBUFS. Outside: the mechanism itself
    /// failed (the ring), never retried.
    fn send(
        &mut self,
        conn: &mut Connection,
        slot: usize,
        iov: &mut [libc::iovec],
    ) -> io::Result<io::Result<usize>>;
    /// After EAGAIN (a send timeout): waits for room in the socket.
    fn wait_for_room(&mut self, conn: &mut Connection) -> io::Result<()>;
    /// What follows "kept failing with ENOBUFS for N s" in the error.
    fn enobufs_detail(&self) -> String;
    /// Copies the mechanism's own counts into `stats`.
    fn sync_stats(&self, _stats: &mut SenderStats) {}
}

/// A sender over a slot pool, through mechanism `M`.
pub(super) struct SlotSender<M: ZeroCopyMechanism> {
    /// First: the socket closes before an io_uring mechanism's ring is torn down.
    pub(super) conn: Connection,
    pub(super) mechanism: M,
}

impl<M: ZeroCopyMechanism> SlotSender<M> {
    pub(super) fn with(socket: TcpStream, mechanism: M, config: ZeroCopyConfig) -> Self {
        SlotSender {
            mechanism,
            conn: Connection {
                socket,
                pool: SlotPool::new(config),
                stats: SenderStats::default(),
                unsent: UnsentTally::default(),
            },
        }
    }

    #[cfg(test)]
    pub(super) fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// Sets up the pool for `size`, first waiting until no slot of another size is in use.
    pub(super) fn prepare(&mut self, size: u64) -> io::Result<()> {
        if self.conn.pool.holds_size(size) {
            return Ok(());
        }
        self.finish(COMPLETION_STALL_LIMIT)?;
        self.conn.pool.reset(size)
    }

    /// A free slot: a completed one, else a new one while the pool may grow, else wait.
    pub(super) fn acquire_slot(&mut self) -> io::Result<usize> {
        let mut last_progress = Instant::now();
        loop {
            if let Some(index) = self.conn.pool.take_free() {
                return Ok(index);
            }
            if self.conn.pool.can_grow() {
                // Grow only when completions really lag: book what is posted first.
                if self.mechanism.reap_posted(&mut self.conn)? {
                    continue;
                }
                if let Some(index) = self.conn.pool.grow()? {
                    return Ok(index);
                }
            }
            if self
                .mechanism
                .wait(&mut self.conn, Duration::from_millis(100))?
                > 0
            {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > COMPLETION_STALL_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no {} for {} s while all {} message slots are in flight ({} {} \
                         outstanding): the receiver stopped reading",
                        M::COMPLETION,
                        COMPLETION_STALL_LIMIT.as_secs(),
                        self.conn.pool.len(),
                        self.mechanism.outstanding(),
                        M::SENDS
                    ),
                ));
            }
        }
    }

    /// Issues the sends for the slot's whole content.
    fn send_slot(&mut self, index: usize) -> io::Result<()> {
        let total = self.conn.pool.total_len(index);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_COUNT];
        let mut sent = 0;
        let mut enobufs_since: Option<Instant> = None;
        while sent < total {
            let used = sockets::remaining_iovecs(&self.conn.pool.slices(index), sent, &mut iov);
            self.conn.stats.syscalls += 1;
            match self
                .mechanism
                .send(&mut self.conn, index, &mut iov[..used])?
            {
                Ok(n) => {
                    enobufs_since = None;
                    if n < total - sent {
                        self.conn.stats.partial_sends += 1;
                    }
                    let header_len = self.conn.pool.header_len(index);
                    self.conn.stats.count_sent(header_len, sent, n);
                    sent += n;
                }
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) => self.mechanism.wait_for_room(&mut self.conn)?,
                    Some(libc::ENOBUFS) => {
                        // The pinned-page bookkeeping is charged to optmem: completions
                        // release it.
                        self.conn.stats.enobufs_retries += 1;
                        let since = *enobufs_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > ENOBUFS_LIMIT {
                            return Err(io::Error::new(
                                err.kind(),
                                format!(
                                    "{} kept failing with ENOBUFS for {} s {}",
                                    M::CALL,
                                    ENOBUFS_LIMIT.as_secs(),
                                    self.mechanism.enobufs_detail()
                                ),
                            ));
                        }
                        self.mechanism
                            .wait(&mut self.conn, Duration::from_millis(10))?;
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
                "{} {} after {:.1} s; their buffers are kept (leaked) rather than reused",
                self.mechanism.outstanding(),
                M::UNFINISHED,
                timeout.as_secs_f64()
            ),
        )
    }
}

impl<M: ZeroCopyMechanism> Sender for SlotSender<M> {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        self.prepare(size)?;
        // One slot per piece (a message up to PIECE_BYTES is one piece), each held until
        // the kernel completes its sends.
        for k in 0..self.conn.pool.pieces() {
            let index = self.acquire_slot()?;
            let (busy, generated) = self.conn.pool.begin(index, seq, k);
            let stats = &mut self.conn.stats;
            stats.max_in_flight = stats.max_in_flight.max(busy as u64);
            stats.generated_bytes += generated;
            let result = self.send_slot(index);
            self.conn.pool.end(index);
            self.mechanism.sync_stats(&mut self.conn.stats);
            result?;
        }
        self.conn.stats.messages += 1;
        Ok(())
    }

    /// Waits for every outstanding completion, then settles which sends never left.
    fn finish(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let result = loop {
            let outstanding = self.mechanism.outstanding();
            if outstanding == 0 {
                self.conn.stats.unfinished_sends = 0;
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                self.conn.stats.unfinished_sends = outstanding;
                break Err(self.outstanding_error(timeout));
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            if let Err(err) = self.mechanism.wait(&mut self.conn, wait) {
                break Err(err);
            }
        };
        self.mechanism.sync_stats(&mut self.conn.stats);
        let fd = self.conn.fd();
        let settled = self.conn.unsent.settle(fd, &mut self.conn.stats);
        result.and(settled)
    }

    fn stats(&self) -> &SenderStats {
        &self.conn.stats
    }

    fn wrote_other(&mut self, bytes: u64) {
        self.conn.unsent.wrote_other(bytes);
    }
}

impl<M: ZeroCopyMechanism> Drop for SlotSender<M> {
    fn drop(&mut self) {
        if self.mechanism.holds_pages() {
            // The kernel may still read these pages: freeing them would let the allocator
            // hand them out again while they are being transmitted. Leak them instead.
            self.conn.pool.leak();
        }
    }
}

/// Fixtures both zero-copy modes' tests share.
#[cfg(test)]
pub(super) mod testing {
    use std::{
        io,
        net::{TcpListener, TcpStream},
        time::Duration,
    };

    use super::{SlotSender, ZeroCopyMechanism};
    use crate::workload::{
        modes::{
            sender::{Sender, SenderStats},
            slots::ZeroCopyConfig,
            unsent::settled_unsent_tail,
        },
        sockets,
    };

    /// A sender made by `new` on the accepted end of a loopback connection, and the
    /// client's end.
    pub(crate) fn loopback_sender<M: ZeroCopyMechanism>(
        new: fn(TcpStream, ZeroCopyConfig) -> io::Result<SlotSender<M>>,
    ) -> (SlotSender<M>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (new(server, ZeroCopyConfig::default()).unwrap(), client)
    }

    /// Messages of [`send_to_a_client_that_closes_unread`].
    pub(crate) const UNREAD_MESSAGES: u64 = 32;

    /// A stream whose client never reads, then closes with the data unread (a reset): the
    /// kernel frees the sends still queued. Checks that exactly the sends past the unsent
    /// tail the kernel reports (SIOCOUTQNSD) are counted unsent, and returns the stats and
    /// how many that is, for the mode's own checks of what was flagged copied.
    pub(crate) fn send_to_a_client_that_closes_unread<M: ZeroCopyMechanism>(
        (mut sender, client): (SlotSender<M>, TcpStream),
    ) -> (SenderStats, u64) {
        const SIZE: u64 = 64 << 10;
        let fd = sender.fd();
        // Room for every message in the send queue, far more than the unread receive
        // buffer holds: the sends never block, and the tail stays unsent.
        sockets::set_send_buffer(fd, 4 << 20).unwrap();
        for seq in 0..UNREAD_MESSAGES {
            sender.send_message(SIZE, seq).unwrap();
        }
        let s = &sender.conn.stats;
        assert_eq!((s.zerocopy_sends, s.partial_sends), (UNREAD_MESSAGES, 0));
        let written = sender.conn.unsent.written();
        let message_len = written / UNREAD_MESSAGES;
        assert_eq!(written, message_len * UNREAD_MESSAGES);
        let unsent = settled_unsent_tail(fd);
        // The messages whose first byte is at or past the first unsent one.
        let expected_unsent = UNREAD_MESSAGES - (written - unsent).div_ceil(message_len);
        assert!(
            expected_unsent > 0 && expected_unsent < UNREAD_MESSAGES,
            "{unsent} of {written} bytes unsent"
        );
        drop(client);
        sender.finish(Duration::from_secs(10)).unwrap();
        let s = sender.conn.stats.clone();
        assert_eq!(s.completed_sends, UNREAD_MESSAGES);
        assert_eq!(s.unsent_sends, expected_unsent);
        assert_eq!(s.unsent_bytes, expected_unsent * message_len);
        (s, expected_unsent)
    }
}
