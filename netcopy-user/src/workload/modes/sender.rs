//! What every sender shares: the [`Sender`] trait, its exact byte counts
//! ([`SenderStats`]), and the message and header helpers of the copying senders.

use std::{io, time::Duration};

use serde::{Deserialize, Serialize};

use crate::workload::{
    message::{ComplexMessage, LargeMessage, PieceBuffers, FIELD_COUNT, PIECE_BYTES},
    protocol::{MessageHeader, MESSAGE_HEADER_LEN},
    sockets,
};

/// Header plus the 8 fields: the iovecs of one send.
pub(super) const IOV_COUNT: usize = FIELD_COUNT + 1;

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
    /// Zero-copy: most message slots (a message, or a 1 MiB piece of a larger one) awaiting
    /// completion at once.
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
    /// message, not copying it. Every mode: the payload of each 1 MiB piece of a message
    /// above 1 MiB, generated into the piece's buffers (producing, not copying, too).
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

    /// Splits `bytes` handed to the kernel for a piece that starts with `header_len` bytes
    /// of message header into header and payload bytes, given how much of the piece had
    /// been sent before.
    pub(super) fn count_sent(&mut self, header_len: usize, already_sent: usize, bytes: usize) {
        let header_part = header_len.saturating_sub(already_sent).min(bytes);
        self.header_bytes += header_part as u64;
        self.payload_bytes += (bytes - header_part) as u64;
    }

    /// Sends one piece of `total` bytes, the first `header_len` of them message header,
    /// with the partial-send loop ([`sockets::send_all_with`]) and counts every call and
    /// the bytes handed over (a piece that fails part way too). The caller counts the
    /// message once all its pieces are queued.
    pub(super) fn send_bytes(
        &mut self,
        fd: std::os::fd::RawFd,
        header_len: usize,
        total: usize,
        send: impl FnMut(usize) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut tally = sockets::SendTally::default();
        let result = sockets::send_all_with(fd, total, &mut tally, send);
        self.syscalls += tally.syscalls;
        self.partial_sends += tally.partial_sends;
        // Splitting the bytes queued so far at once equals splitting them call by call.
        self.count_sent(header_len, 0, tally.sent);
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

/// What a sender knows of the messages of the current size: the whole message up to
/// [`PIECE_BYTES`], else its layout and CRC only, sent in pieces (`message/large.rs`).
pub(super) enum Template {
    Whole(ComplexMessage),
    Large(LargeMessage),
}

impl Template {
    pub(super) fn new(size: u64) -> io::Result<Self> {
        let invalid = |e: crate::workload::message::MessageError| {
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
        };
        Ok(if size <= PIECE_BYTES as u64 {
            Template::Whole(ComplexMessage::new(size).map_err(invalid)?)
        } else {
            Template::Large(LargeMessage::new(size).map_err(invalid)?)
        })
    }

    pub(super) fn size(&self) -> usize {
        match self {
            Template::Whole(message) => message.size(),
            Template::Large(message) => message.size(),
        }
    }

    /// Pieces a message is sent in: 1 up to [`PIECE_BYTES`].
    pub(super) fn pieces(&self) -> usize {
        match self {
            Template::Whole(_) => 1,
            Template::Large(message) => message.pieces(),
        }
    }

    /// The 8 field lengths of piece `k`.
    pub(super) fn piece_field_lens(&self, k: usize) -> [usize; FIELD_COUNT] {
        match self {
            Template::Whole(message) => message.field_lens(),
            Template::Large(message) => message.piece_field_lens(k),
        }
    }

    /// The message header of the message stamped with `seq`.
    pub(super) fn header(&self, seq: u64) -> MessageHeader {
        let crc32c = match self {
            Template::Whole(message) => message.crc_of_stamp(seq),
            Template::Large(message) => message.crc(seq),
        };
        MessageHeader {
            // The size was validated against the u32 limit when the template was built.
            payload_len: self.size() as u32,
            crc32c,
            seq,
        }
    }

    /// Generates piece `k` stamped with `seq` into `out` (fresh pages: splice, sendfile),
    /// never copying from a buffer of this template.
    pub(super) fn generate_piece(&self, seq: u64, k: usize, out: [&mut [u8]; FIELD_COUNT]) {
        match self {
            Template::Whole(message) => {
                message.generate_into(seq, out);
            }
            Template::Large(message) => message.generate_piece(seq, k, out),
        }
    }
}

/// The template of the current size, rebuilt only when the requested size changes, so an
/// rr run of count-1 requests does not regenerate it.
pub(super) fn template_for(cached: &mut Option<Template>, size: u64) -> io::Result<&Template> {
    if cached.as_ref().map(|t| t.size() as u64) != Some(size) {
        *cached = Some(Template::new(size)?);
    }
    Ok(cached.as_ref().expect("set just above"))
}

/// The messages of the senders whose buffers the kernel is done with when a send call
/// returns (two-copy, one-copy, io-uring): up to [`PIECE_BYTES`] one cached message,
/// restamped per message as before pieces existed; above, one set of [`PieceBuffers`]
/// regenerated for every piece. So a connection holds at most one piece of payload here,
/// whatever size its client asks for.
#[derive(Default)]
pub(super) struct Outgoing {
    template: Option<Template>,
    pieces: Option<PieceBuffers>,
}

impl Outgoing {
    /// Stamps the message of `size` with `seq` and calls `send_piece(stats, slices,
    /// header_len)` for each piece in order: `slices` is the message header (empty after
    /// the first piece, `header_len` long) and the piece's 8 fields. Counts the message
    /// once every piece is sent, and the bytes generated for pieces.
    pub(super) fn send(
        &mut self,
        size: u64,
        seq: u64,
        stats: &mut SenderStats,
        mut send_piece: impl FnMut(&mut SenderStats, [&[u8]; IOV_COUNT], usize) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.template.as_ref().map(|t| t.size() as u64) != Some(size) {
            let template = Template::new(size)?;
            if matches!(template, Template::Whole(_)) {
                // A connection holds one message's buffers at a time.
                self.pieces = None;
            }
            self.template = Some(template);
        }
        match self.template.as_mut().expect("set just above") {
            Template::Whole(message) => {
                message.stamp(seq);
                let header = header_for(message, seq).encode();
                let fields = message.fields();
                let slices =
                    std::array::from_fn(|i| if i == 0 { &header[..] } else { fields[i - 1] });
                send_piece(stats, slices, MESSAGE_HEADER_LEN)?;
            }
            Template::Large(message) => {
                let header = MessageHeader {
                    // The size was validated against the u32 limit when it was built.
                    payload_len: message.size() as u32,
                    crc32c: message.crc(seq),
                    seq,
                }
                .encode();
                let buffers = self.pieces.get_or_insert_with(PieceBuffers::new);
                for k in 0..message.pieces() {
                    buffers.fill(message, seq, k);
                    stats.generated_bytes += buffers.len() as u64;
                    let header: &[u8] = if k == 0 { &header } else { &[] };
                    let fields = buffers.fields();
                    let slices =
                        std::array::from_fn(|i| if i == 0 { header } else { fields[i - 1] });
                    send_piece(stats, slices, header.len())?;
                }
            }
        }
        stats.messages += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_sent_splits_header_and_payload() {
        let mut stats = SenderStats::default();
        stats.count_sent(16, 0, 10);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (10, 0));
        stats.count_sent(16, 10, 100);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 94));
        stats.count_sent(16, 110, 50);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 144));
        // A later piece of a large message carries no header.
        stats.count_sent(0, 0, 30);
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 174));
    }

    #[test]
    fn send_bytes_counts_calls_and_bytes() {
        let mut stats = SenderStats::default();
        let mut chunks = vec![20, 10];
        stats
            .send_bytes(-1, MESSAGE_HEADER_LEN, 30, |_| Ok(chunks.pop().unwrap()))
            .unwrap();
        assert_eq!(
            (stats.syscalls, stats.partial_sends, stats.messages),
            (2, 1, 0)
        );
        assert_eq!((stats.header_bytes, stats.payload_bytes), (16, 14));
        let err = stats
            .send_bytes(-1, 0, 30, |_| {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(stats.syscalls, 3);
    }
}
