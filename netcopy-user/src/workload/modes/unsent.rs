//! Which zero-copy sends never left the socket. A timed stream's client stops reading and
//! closes with data unread: the connection is reset, and the kernel frees the sends still
//! queued unsent (`tcp_write_queue_purge`). Their completions come, not flagged copied
//! (nothing delivered them, so nothing copied them), or flagged when a notification range
//! shares them with sent ones. Measured on loopback, a MSG_ZEROCOPY stream whose reader
//! stopped and closed, 3 runs: every send that had left flagged copied, 33 to 48 that never
//! left not flagged, 4 to 6 that never left flagged.
//!
//! A sender places each send in the connection's stream and books its completion here;
//! [`UnsentTally::settle`] checks the booked completions against the socket's unsent
//! tail (SIOCOUTQNSD). That is exact whenever it runs after the completion: a send the
//! kernel acknowledged had left, and the tail only shrinks by sending.

use std::{io, os::fd::RawFd};

use super::sender::SenderStats;
use crate::workload::sockets;

/// Completions booked before a settle is worth its ioctl.
const SETTLE_EVERY: usize = 4096;

/// A completed send whose bytes may never have left the socket.
#[derive(Debug, Clone, Copy)]
struct CompletedSend {
    start: u64,
    bytes: usize,
    copied: bool,
}

#[derive(Debug, Default)]
pub(super) struct UnsentTally {
    /// Bytes written to the connection so far: the sender's and the others'.
    written: u64,
    /// Completions not checked against the unsent tail yet.
    completed: Vec<CompletedSend>,
}

impl UnsentTally {
    /// A send of `bytes` the socket accepted; returns the offset of its first byte.
    pub(super) fn sent(&mut self, bytes: usize) -> u64 {
        let start = self.written;
        self.written += bytes as u64;
        start
    }

    /// `bytes` written to the connection by others (the reply headers).
    pub(super) fn wrote_other(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// The socket accepted a send after every completion booked so far was read (a
    /// synchronous sendmsg): it had not been reset then, so none of them was freed at the
    /// connection's end, and they need no check.
    pub(super) fn accepted_after_reading(&mut self) {
        self.completed.clear();
    }

    /// Books the completion of the send at `start`.
    pub(super) fn completed(&mut self, start: u64, bytes: usize, copied: bool) {
        self.completed.push(CompletedSend {
            start,
            bytes,
            copied,
        });
    }

    /// Whether enough completions are booked to settle them now.
    pub(super) fn due(&self) -> bool {
        self.completed.len() >= SETTLE_EVERY
    }

    /// Checks the booked completions against the unsent tail of the socket `fd`.
    pub(super) fn settle(&mut self, fd: RawFd, stats: &mut SenderStats) -> io::Result<()> {
        if self.completed.is_empty() {
            return Ok(());
        }
        let unsent = sockets::unsent_bytes(fd)?;
        self.classify(unsent, stats);
        Ok(())
    }

    /// Counts the booked sends none of whose bytes left the socket, `unsent` bytes being
    /// its unsent tail (a send that left in part left).
    pub(super) fn classify(&mut self, unsent: u64, stats: &mut SenderStats) {
        let first_unsent = self.written.saturating_sub(unsent);
        for send in self.completed.drain(..) {
            if send.start >= first_unsent {
                stats.unsent_sends += 1;
                stats.unsent_bytes += send.bytes as u64;
                if send.copied {
                    stats.unsent_copied_sends += 1;
                    stats.unsent_copied_bytes += send.bytes as u64;
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    #[cfg(test)]
    pub(super) fn booked(&self) -> usize {
        self.completed.len()
    }
}

/// For tests: waits until what left the socket `fd` is all acknowledged and the rest stays
/// unsent (the peer's window closed), and returns the unsent bytes.
#[cfg(test)]
pub(super) fn settled_unsent_tail(fd: RawFd) -> u64 {
    fn ioctl_int(fd: RawFd, request: libc::c_ulong) -> u64 {
        let mut value: libc::c_int = 0;
        // SAFETY: the request writes one int through the pointer.
        assert_eq!(unsafe { libc::ioctl(fd, request, &mut value) }, 0);
        value as u64
    }
    let mut last = (u64::MAX, u64::MAX);
    let mut steady = 0;
    for _ in 0..500 {
        let now = (
            ioctl_int(fd, libc::TIOCOUTQ),
            ioctl_int(fd, libc::SIOCOUTQNSD),
        );
        steady = if now == last && now.0 == now.1 {
            steady + 1
        } else {
            0
        };
        last = now;
        if steady == 5 {
            return now.1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the send queue never settled: {last:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_at_or_past_the_unsent_tail_never_left() {
        let mut tally = UnsentTally::default();
        let starts: Vec<u64> = (0..5).map(|_| tally.sent(10)).collect();
        assert_eq!(starts, [0, 10, 20, 30, 40]);
        tally.wrote_other(7); // a reply header after them: the stream is 57 bytes
        for (i, &start) in starts.iter().enumerate() {
            tally.completed(start, 10, i == 4);
        }
        let mut stats = SenderStats::default();
        // 22 bytes unsent, from offset 35: the send at 30..40 left in part (it counts as
        // sent), the one at 40 never left, and the header is not a send.
        tally.classify(22, &mut stats);
        assert_eq!(
            (
                stats.unsent_sends,
                stats.unsent_bytes,
                stats.unsent_copied_sends,
                stats.unsent_copied_bytes
            ),
            (1, 10, 1, 10)
        );
        assert_eq!(tally.booked(), 0, "each send counted once");
        let (a, b) = (tally.sent(10), tally.sent(10)); // 57, 67
        tally.completed(a, 10, true);
        tally.accepted_after_reading();
        assert_eq!(
            tally.booked(),
            0,
            "acknowledged before a later send: it left"
        );
        tally.completed(b, 10, false);
        tally.classify(10, &mut stats);
        assert_eq!((stats.unsent_sends, stats.unsent_bytes), (2, 20));
        assert_eq!(tally.written(), 77);
    }
}
