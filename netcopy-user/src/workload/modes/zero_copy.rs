//! Zero-copy: `sendmsg(MSG_ZEROCOPY)` with 9 iovecs after `SO_ZEROCOPY`.
//!
//! The kernel pins the pages of every iovec and reads them later, possibly long after
//! sendmsg returned; it reports when it is done through the socket's error queue. Each
//! sendmsg call that queues at least one byte consumes one notification id (a per-socket
//! u32 counter starting at 0); a notification covers the ids `ee_info..=ee_data` (wrapping),
//! and carries `SO_EE_CODE_ZEROCOPY_COPIED` in `ee_code` when the kernel copied the data
//! after all (always on loopback: the receiving socket is local).
//!
//! So messages live in a pool of slots (`slots.rs`, driven by `slot_sender.rs`, which this
//! file gives the mechanism), each not restamped or freed until every id of its sends has
//! completed. When no slot is free, the sender blocks in poll() for POLLERR and drains the
//! error queue.
//!
//! Not every completion is of a send that left the socket: when a timed stream's client
//! stops reading and closes, the kernel frees the sends still queued, undelivered
//! (`unsent.rs`). So each send keeps its offset in the connection's stream, and the
//! completions read since the last send the socket accepted (only those can be of sends
//! freed at its end) are checked at finish against the socket's unsent tail.

use std::{collections::VecDeque, io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use super::{
    slot_sender::{Connection, PendingSend, SlotSender, ZeroCopyMechanism},
    slots::ZeroCopyConfig,
};
use crate::workload::sockets::{self, read_notification, Notification};

/// The zero-copy sender: the slot pool driven through [`MsgZerocopy`].
pub(super) type ZeroCopySender = SlotSender<MsgZerocopy>;

/// sendmsg(MSG_ZEROCOPY) and the socket's error queue.
pub(super) struct MsgZerocopy {
    /// Sends by notification id, starting at `pending_base`; completed entries are `None`
    /// until the front catches up (notifications may arrive out of order).
    pending: VecDeque<Option<PendingSend>>,
    pending_base: u32,
    next_id: u32,
    outstanding_sends: u64,
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
        let mechanism = MsgZerocopy {
            pending: VecDeque::new(),
            pending_base: 0,
            next_id: 0,
            outstanding_sends: 0,
        };
        Ok(SlotSender::with(socket, mechanism, config))
    }
}

impl MsgZerocopy {
    /// Reads every notification queued now. Returns the sends completed.
    fn drain_completions(&mut self, conn: &mut Connection) -> io::Result<u64> {
        let mut completed = 0;
        loop {
            conn.stats.completion_syscalls += 1;
            match read_notification(conn.fd()) {
                Ok(Some(Notification::Zerocopy { lo, hi, copied })) => {
                    conn.stats.completion_notifications += 1;
                    completed += self.complete_range(conn, lo, hi, copied);
                }
                Ok(Some(Notification::Other)) => {}
                Ok(None) => return Ok(completed),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks the ids `lo..=hi` (wrapping) complete. Returns how many were ours.
    fn complete_range(&mut self, conn: &mut Connection, lo: u32, hi: u32, copied: bool) -> u64 {
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
                    self.outstanding_sends -= 1;
                    conn.completed(send, copied);
                }
            }
        }
        conn.stats.unexpected_completions += count - matched;
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            self.pending_base = self.pending_base.wrapping_add(1);
        }
        matched
    }

    /// Books a send the socket accepted; its notification id is the next one.
    fn push_send(&mut self, conn: &mut Connection, slot: usize, bytes: usize) {
        self.pending.push_back(Some(conn.accepted(slot, bytes)));
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding_sends += 1;
    }
}

impl ZeroCopyMechanism for MsgZerocopy {
    const COMPLETION: &'static str = "zero-copy completion";
    const SENDS: &'static str = "sends";
    const UNFINISHED: &'static str = "zero-copy sends were still not completed";
    const CALL: &'static str = "sendmsg(MSG_ZEROCOPY)";

    fn outstanding(&self) -> u64 {
        self.outstanding_sends
    }

    fn reap_posted(&mut self, conn: &mut Connection) -> io::Result<bool> {
        Ok(self.outstanding_sends > 0 && self.drain_completions(conn)? > 0)
    }

    /// Blocks up to `timeout` for POLLERR, then drains. With no send outstanding (an
    /// ENOBUFS retry) nothing can complete: backs off 1 ms instead.
    fn wait(&mut self, conn: &mut Connection, timeout: Duration) -> io::Result<u64> {
        if self.outstanding_sends == 0 {
            std::thread::sleep(Duration::from_millis(1));
            return Ok(0);
        }
        conn.stats.completion_syscalls += 1;
        // POLLERR is always reported; asking for no events waits for exactly that.
        let revents = sockets::poll_one(conn.fd(), 0, timeout)?;
        if revents == 0 {
            return Ok(0);
        }
        let completed = self.drain_completions(conn)?;
        if completed == 0 {
            // A pending socket error (a reset peer) or POLLHUP keeps poll() returning at
            // once; clear the error and back off so that waiting does not spin.
            let _ = sockets::take_socket_error(conn.fd());
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(completed)
    }

    fn send(
        &mut self,
        conn: &mut Connection,
        slot: usize,
        iov: &mut [libc::iovec],
    ) -> io::Result<io::Result<usize>> {
        let result = match sockets::sendmsg_iov(conn.fd(), iov, libc::MSG_ZEROCOPY) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "sendmsg(MSG_ZEROCOPY) accepted 0 bytes",
            )),
            Ok(n) => {
                // The socket still took data, so what completed before this call was
                // acknowledged, not freed at the connection's end.
                conn.unsent.accepted_after_reading();
                self.push_send(conn, slot, n);
                Ok(n)
            }
            Err(err) => Err(err),
        };
        Ok(result)
    }

    /// Only with SO_SNDTIMEO: waits for room, collecting completions.
    fn wait_for_room(&mut self, conn: &mut Connection) -> io::Result<()> {
        conn.stats.completion_syscalls += 1;
        let revents = sockets::poll_one(conn.fd(), libc::POLLOUT, Duration::from_millis(100))?;
        if revents & libc::POLLERR != 0 {
            self.drain_completions(conn)?;
        }
        Ok(())
    }

    fn enobufs_detail(&self) -> String {
        format!(
            "({} sends outstanding); net.core.optmem_max may be too small",
            self.outstanding_sends
        )
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
    use crate::workload::modes::slot_sender::testing::{
        loopback_sender, send_to_a_client_that_closes_unread, UNREAD_MESSAGES,
    };

    fn sender() -> (ZeroCopySender, TcpStream) {
        loopback_sender(ZeroCopySender::new)
    }

    /// Fakes `n` issued sends of one slot without touching the socket.
    fn fake_sends(sender: &mut ZeroCopySender, n: u32) {
        sender.prepare(100).unwrap();
        let index = sender.acquire_slot().unwrap();
        sender.conn.pool.begin(index, 0, 0);
        for _ in 0..n {
            sender.mechanism.push_send(&mut sender.conn, index, 10);
        }
        sender.conn.pool.end(index);
    }

    /// The completion of the ids `lo..=hi`, as the error queue would report it.
    fn complete(sender: &mut ZeroCopySender, lo: u32, hi: u32, copied: bool) -> u64 {
        sender
            .mechanism
            .complete_range(&mut sender.conn, lo, hi, copied)
    }

    #[test]
    fn completion_ranges_out_of_order_and_duplicates() {
        let (mut sender, _client) = sender();
        fake_sends(&mut sender, 5);
        assert_eq!(complete(&mut sender, 2, 3, true), 2);
        assert_eq!(sender.mechanism.pending_base, 0, "front not complete yet");
        assert_eq!(complete(&mut sender, 3, 3, false), 0);
        assert_eq!(sender.conn.stats.unexpected_completions, 1);
        assert_eq!(complete(&mut sender, 0, 1, false), 2);
        assert_eq!(sender.mechanism.pending_base, 4);
        assert!(
            sender.conn.pool.free_slots().is_empty(),
            "slot still has one send outstanding"
        );
        assert_eq!(complete(&mut sender, 4, 4, true), 1);
        assert_eq!(sender.conn.pool.free_slots(), &[0]);
        assert_eq!(sender.conn.stats.completed_sends, 5);
        assert_eq!(sender.conn.stats.copied_sends, 3);
        assert_eq!(sender.conn.stats.copied_bytes, 30);
        assert_eq!(sender.mechanism.outstanding_sends, 0);
        assert!(sender.mechanism.pending.is_empty());
    }

    /// The kernel frees the sends still queued when the client closes unread. On loopback
    /// every send that left the socket is flagged copied (delivered locally).
    #[test]
    fn sends_freed_unsent_when_the_client_closes_are_counted_apart() {
        let (s, unsent) = send_to_a_client_that_closes_unread(sender());
        assert_eq!(
            s.copied_sends - s.unsent_copied_sends,
            UNREAD_MESSAGES - unsent
        );
        assert_eq!(
            s.copied_sends + (s.unsent_sends - s.unsent_copied_sends),
            UNREAD_MESSAGES
        );
    }

    #[test]
    fn completion_ranges_wrap_around_u32() {
        let (mut sender, _client) = sender();
        sender.mechanism.pending_base = u32::MAX - 1;
        sender.mechanism.next_id = u32::MAX - 1;
        fake_sends(&mut sender, 4); // ids MAX-1, MAX, 0, 1
        assert_eq!(complete(&mut sender, u32::MAX - 1, 1, true), 4);
        assert_eq!(sender.mechanism.pending_base, 2);
        assert_eq!(sender.conn.stats.unexpected_completions, 0);
        assert_eq!(sender.conn.stats.completed_sends, 4);
    }
}
