//! What every sender shares: the [`Sender`] trait, its exact byte counts
//! ([`SenderStats`]), and the message and header helpers of the copying senders.

use std::{io, time::Duration};

use serde::{Deserialize, Serialize};

use crate::workload::{
    message::ComplexMessage,
    protocol::{MessageHeader, MESSAGE_HEADER_LEN},
    sockets,
};

/// What one sender did. All byte counts are exact; the later copy accounting depends on it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderStats {
    /// Messages fully handed to the kernel.
    pub messages: u64,
    /// Payload bytes handed to the kernel (complete and partially sent messages alike).
    pub payload_bytes: u64,
    /// Message-header bytes handed to the kernel.
    pub header_bytes: u64,
    /// Payload bytes memcpy'd in user space (two-copy's serialization).
    pub user_copy_bytes: u64,
    /// Message-header bytes memcpy'd in user space (two-copy).
    pub user_copy_header_bytes: u64,
    /// Send operations, including failed and retried ones: send()/sendmsg()/sendfile()/
    /// splice() calls, or io_uring send operations submitted.
    pub syscalls: u64,
    /// Sends that took fewer bytes than offered.
    pub partial_sends: u64,
    /// Zero-copy (MSG_ZEROCOPY, io_uring SENDMSG_ZC): sends that will be notified when the
    /// kernel lets go of their pages (MSG_ZEROCOPY: calls that queued at least one byte,
    /// each consuming one notification id; io_uring: operations whose result carried
    /// IORING_CQE_F_MORE).
    pub zerocopy_sends: u64,
    /// Zero-copy: bytes queued by those calls (header and payload).
    pub zerocopy_bytes: u64,
    /// Zero-copy: notifications read (error-queue messages, or io_uring notification
    /// CQEs).
    pub completion_notifications: u64,
    /// Zero-copy: our sends the notifications completed (MSG_ZEROCOPY: ids in their
    /// ee_info..=ee_data ranges; io_uring: one operation each).
    pub completed_sends: u64,
    /// Zero-copy: bytes of the completed sends.
    pub completed_bytes: u64,
    /// Zero-copy: completed sends in notifications flagged SO_EE_CODE_ZEROCOPY_COPIED or
    /// IORING_NOTIF_USAGE_ZC_COPIED (the kernel copied the pages after all).
    pub copied_sends: u64,
    /// Zero-copy: bytes of those sends.
    pub copied_bytes: u64,
    /// Zero-copy: completed sends none of whose bytes had left the socket (their
    /// stream offsets at or past the socket's unsent tail, SIOCOUTQNSD, once completed):
    /// the kernel freed them from the send queue when the connection ended (the client
    /// stopped reading and closed), undelivered. Their completions say nothing about
    /// whether the path copies; a flag on one comes from the transmitted sends its
    /// notification range shares.
    #[serde(default)]
    pub unsent_sends: u64,
    /// Zero-copy: bytes of those sends.
    #[serde(default)]
    pub unsent_bytes: u64,
    /// Zero-copy: of those sends, the ones in notifications flagged copied. So the
    /// sends that left the socket are `completed_sends - unsent_sends`, of which
    /// `copied_sends - unsent_copied_sends` were flagged copied.
    #[serde(default)]
    pub unsent_copied_sends: u64,
    /// Zero-copy: bytes of those sends (flagged, yet never copied: never delivered).
    #[serde(default)]
    pub unsent_copied_bytes: u64,
    /// Zero-copy: ids in notifications that matched no outstanding send of ours.
    pub unexpected_completions: u64,
    /// Zero-copy: recvmsg(MSG_ERRQUEUE), poll or io_uring_enter calls made only to collect
    /// completions.
    pub completion_syscalls: u64,
    /// Zero-copy: sendmsg calls that failed with ENOBUFS (optmem limit) and were retried.
    pub enobufs_retries: u64,
    /// Zero-copy: most message slots awaiting completion at once.
    pub max_in_flight: u64,
    /// Zero-copy: sends still not completed when finish() gave up (0 after a clean finish).
    pub unfinished_sends: u64,
    /// io_uring: io_uring_enter calls (submitting, waiting, or both).
    pub ring_enters: u64,
    /// Splice: vmsplice calls that moved the message's pages into the pipe.
    pub vmsplice_calls: u64,
    /// Splice, sendfile: header and payload bytes generated into fresh pages for each
    /// message. Those mechanisms leave the kernel referencing the sent pages with no word
    /// of when it lets go, so no sent page is ever written again; this is producing the
    /// message, not copying it.
    pub generated_bytes: u64,
}

impl SenderStats {
    /// Adds another sender's counts; `max_in_flight` takes the maximum.
    pub(crate) fn add(&mut self, other: &SenderStats) {
        self.messages += other.messages;
        self.payload_bytes += other.payload_bytes;
        self.header_bytes += other.header_bytes;
        self.user_copy_bytes += other.user_copy_bytes;
        self.user_copy_header_bytes += other.user_copy_header_bytes;
        self.syscalls += other.syscalls;
        self.partial_sends += other.partial_sends;
        self.zerocopy_sends += other.zerocopy_sends;
        self.zerocopy_bytes += other.zerocopy_bytes;
        self.completion_notifications += other.completion_notifications;
        self.completed_sends += other.completed_sends;
        self.completed_bytes += other.completed_bytes;
        self.copied_sends += other.copied_sends;
        self.copied_bytes += other.copied_bytes;
        self.unsent_sends += other.unsent_sends;
        self.unsent_bytes += other.unsent_bytes;
        self.unsent_copied_sends += other.unsent_copied_sends;
        self.unsent_copied_bytes += other.unsent_copied_bytes;
        self.unexpected_completions += other.unexpected_completions;
        self.completion_syscalls += other.completion_syscalls;
        self.enobufs_retries += other.enobufs_retries;
        self.max_in_flight = self.max_in_flight.max(other.max_in_flight);
        self.unfinished_sends += other.unfinished_sends;
        self.ring_enters += other.ring_enters;
        self.vmsplice_calls += other.vmsplice_calls;
        self.generated_bytes += other.generated_bytes;
    }

    /// Splits `bytes` handed to the kernel for a message into header and payload bytes,
    /// given how much of the message (header first) had been sent before.
    pub(super) fn count_sent(&mut self, already_sent: usize, bytes: usize) {
        let header_part = MESSAGE_HEADER_LEN.saturating_sub(already_sent).min(bytes);
        self.header_bytes += header_part as u64;
        self.payload_bytes += (bytes - header_part) as u64;
    }

    /// Sends one message of `total` bytes (header first) with the partial-send loop
    /// ([`sockets::send_all_with`]) and counts it: every call, the bytes handed over (a
    /// message that fails part way too), and the message once all of it is queued.
    pub(super) fn send_all(
        &mut self,
        fd: std::os::fd::RawFd,
        total: usize,
        send: impl FnMut(usize) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut tally = sockets::SendTally::default();
        let result = sockets::send_all_with(fd, total, &mut tally, send);
        self.syscalls += tally.syscalls;
        self.partial_sends += tally.partial_sends;
        // Splitting the bytes queued so far at once equals splitting them call by call.
        self.count_sent(0, tally.sent);
        if result.is_ok() {
            self.messages += 1;
        }
        result
    }
}

/// Sends messages of one mode on one connection.
pub(crate) trait Sender: Send {
    /// Stamps a message of `size` payload bytes with `seq` and sends header + 8 fields.
    /// Blocks until every byte is queued in the kernel (zero-copy: until the sends are
    /// issued; the slot stays reserved until completion). Errors are the socket's
    /// (`is_peer_gone` tells a vanished client apart).
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()>;

    /// Waits, at most `timeout`, until the kernel holds no reference to this sender's
    /// buffers. Returns a `TimedOut` error naming the outstanding sends if it gives up.
    fn finish(&mut self, timeout: Duration) -> io::Result<()>;

    fn stats(&self) -> &SenderStats;

    /// `bytes` written to the connection by others (the reply headers): a zero-copy
    /// sender places its sends in the stream with them, to tell which never left it.
    fn wrote_other(&mut self, _bytes: u64) {}
}

/// A message slot's header bytes for `message` in its current stamp.
pub(super) fn header_for(message: &ComplexMessage, seq: u64) -> MessageHeader {
    MessageHeader {
        // The message size was validated against the u32 limit when the message was built.
        payload_len: message.size() as u32,
        crc32c: message.crc(),
        seq,
    }
}

/// The cached message of senders that need only one (two-copy, one-copy): rebuilt only when
/// the requested size changes, so an rr run of count-1 requests does not regenerate it.
pub(super) fn message_for(
    cached: &mut Option<ComplexMessage>,
    size: u64,
) -> io::Result<&mut ComplexMessage> {
    let stale = cached
        .as_ref()
        .map(|m| m.size() as u64 != size)
        .unwrap_or(true);
    if stale {
        let message = ComplexMessage::new(size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        *cached = Some(message);
    }
    Ok(cached.as_mut().expect("set just above"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_sent_splits_header_and_payload() {
        let mut stats = SenderStats::default();
        stats.count_sent(0, 10);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (10, 0));
        stats.count_sent(10, 100);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 94));
        stats.count_sent(110, 50);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 144));
    }

    #[test]
    fn send_all_counts_calls_bytes_and_the_message() {
        let mut stats = SenderStats::default();
        let mut chunks = vec![20, 10];
        stats
            .send_all(-1, 30, |_| Ok(chunks.pop().unwrap()))
            .unwrap();
        assert_eq!(
            (stats.syscalls, stats.partial_sends, stats.messages),
            (2, 1, 1)
        );
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 14));
        let err = stats
            .send_all(-1, 30, |_| Err(io::Error::from(io::ErrorKind::BrokenPipe)))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!((stats.syscalls, stats.messages), (3, 1));
    }
}
