//! One connection's receive side: reading exactly the bytes a message needs within the
//! run's deadline and idle limit, and verifying each message (length, sequence number,
//! field stamps, CRC32C) into the thread's tally.

use std::{
    io::{self, Read},
    net::TcpStream,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{
    util::text::printable,
    workload::message::{stamp_bytes, STAMP_LEN},
    workload::modes::Mode,
    workload::protocol::{
        MessageHeader, ReplyHeader, Status, MESSAGE_HEADER_LEN, REPLY_HEADER_LEN,
    },
    workload::sockets,
};

use super::{
    config::RunLimit,
    zerocopy::{ZeroCopyReceiveFigures, ZeroCopyReceiver},
};

/// Error texts kept in the report.
pub(super) const MAX_REPORTED_ERRORS: usize = 16;

/// What one thread received, verified and timed; the report merges every thread's.
pub(super) struct ThreadOutcome {
    pub(super) mode: Option<Mode>,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) integrity_errors: u64,
    pub(super) requests_sent: u64,
    pub(super) request_bytes_sent: u64,
    pub(super) reply_header_bytes: u64,
    pub(super) reply_error_text_bytes: u64,
    pub(super) message_header_bytes: u64,
    pub(super) received_bytes: u64,
    pub(super) discarded_bytes: u64,
    pub(super) histogram: Option<Histogram<u64>>,
    pub(super) started: Option<Instant>,
    pub(super) ended: Option<Instant>,
    pub(super) integrity_notes: Vec<String>,
    pub(super) error: Option<String>,
    pub(super) progress: Option<Arc<AtomicU64>>,
    /// `--recv zerocopy`: how the kernel handed the bytes over.
    pub(super) zerocopy: Option<ZeroCopyReceiveFigures>,
}

impl ThreadOutcome {
    pub(super) fn new() -> Self {
        ThreadOutcome {
            mode: None,
            messages: 0,
            bytes: 0,
            integrity_errors: 0,
            requests_sent: 0,
            request_bytes_sent: 0,
            reply_header_bytes: 0,
            reply_error_text_bytes: 0,
            message_header_bytes: 0,
            received_bytes: 0,
            discarded_bytes: 0,
            // Nanoseconds, 3 significant digits, growing as needed.
            histogram: Histogram::new(3).ok(),
            started: None,
            ended: None,
            integrity_notes: Vec::new(),
            error: None,
            progress: None,
            zerocopy: None,
        }
    }

    pub(super) fn record(&mut self, elapsed: Duration) {
        if let Some(histogram) = self.histogram.as_mut() {
            let nanos = elapsed.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
            // With auto-resize the only failure is a value beyond u64: clamped above.
            let _ = histogram.record(nanos);
        }
    }

    fn integrity_error(&mut self, note: String) {
        self.integrity_errors += 1;
        if self.integrity_notes.len() < MAX_REPORTED_ERRORS {
            self.integrity_notes.push(note);
        }
    }
}

/// How a read ended when it did not fill its buffer with data.
enum Cut {
    /// The run's deadline passed: stop quietly, discarding what was read.
    Deadline,
    /// A real failure.
    Failed(String),
}

pub(super) struct Reader<'a> {
    pub(super) stream: &'a TcpStream,
    /// When the run ends quietly (a partial message is discarded).
    pub(super) deadline: Option<Instant>,
    pub(super) stop: Option<&'a AtomicBool>,
    pub(super) io_timeout: Duration,
    /// Bytes consumed from the connection.
    pub(super) received: u64,
    /// `--recv zerocopy`: the connection's mapping; None reads with read().
    pub(super) zerocopy: Option<ZeroCopyReceiver>,
    /// A duration run's length, not started yet: its clock starts when the first message
    /// has arrived ([`Reader::first_message_arrived`]), so that a run on a loaded machine,
    /// whose first large message may take longer than the whole run, still measures some.
    pub(super) duration: Option<Duration>,
    /// Until the first message has arrived: the time by which it must have (the idle
    /// limit from the start), an error past it.
    pub(super) first_message_by: Option<Instant>,
}

impl<'a> Reader<'a> {
    /// A reader of `stream` for a run ending at `limit`; a duration run's clock starts at
    /// its first message, which must arrive within `io_timeout` of now.
    pub(super) fn new(
        stream: &'a TcpStream,
        limit: RunLimit,
        io_timeout: Duration,
        stop: Option<&'a AtomicBool>,
        zerocopy: Option<ZeroCopyReceiver>,
    ) -> Self {
        let duration = match limit {
            RunLimit::Duration(d) => Some(d),
            RunLimit::Messages(_) => None,
        };
        Reader {
            stream,
            deadline: None,
            stop,
            io_timeout,
            received: 0,
            zerocopy,
            duration,
            first_message_by: duration.map(|_| Instant::now() + io_timeout),
        }
    }

    /// The first message has arrived: a duration run's clock starts now.
    pub(super) fn first_message_arrived(&mut self) {
        self.first_message_by = None;
        if let Some(duration) = self.duration.take() {
            self.deadline = Some(Instant::now() + duration);
        }
    }

    /// The first message is overdue: what to tell the user.
    fn first_message_overdue(
        &self,
        got: usize,
        len: usize,
        what: &dyn Fn() -> String,
    ) -> Option<Cut> {
        let by = self.first_message_by?;
        (Instant::now() >= by).then(|| {
            Cut::Failed(format!(
                "no message arrived within {:.1} s of the request (--io-timeout), {got} of \
                 {len} bytes of {} read: is it a netcopy server that is serving? (a --duration \
                 run's time counts from its first message)",
                self.io_timeout.as_secs_f64(),
                what()
            ))
        })
    }
    /// Fills `buf` completely, or reports why not (with the bytes that did arrive counted in
    /// `received`). `what` names the data for error messages.
    fn fill(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), Cut> {
        let mut got = 0;
        let mut last_data = Instant::now();
        while got < buf.len() {
            let step = match self.zerocopy.as_mut() {
                None => (&*self.stream).read(&mut buf[got..]),
                // The protocol's headers are small: copied out of the mapping here.
                Some(zc) => zc.ready().map(|n| {
                    let piece = zc.take(n.min(buf.len() - got));
                    buf[got..got + piece.len()].copy_from_slice(piece);
                    piece.len()
                }),
            };
            match step {
                Ok(n) if n > 0 => {
                    got += n;
                    self.received += n as u64;
                    last_data = Instant::now();
                    if got < buf.len() {
                        if let Some(cut) = self.first_message_overdue(got, buf.len(), what) {
                            return Err(cut);
                        }
                        if self.deadline_passed() {
                            return Err(Cut::Deadline);
                        }
                    }
                }
                other => self.no_data(other.err(), got, buf.len(), last_data, what)?,
            }
        }
        Ok(())
    }

    /// The next bytes of the stream, at most `scratch.len()`: with `--recv copy` read into
    /// `scratch` (all of it), with `--recv zerocopy` where the kernel put them (mapped
    /// pages or its copy buffers), without a copy of ours.
    fn piece<'s>(
        &'s mut self,
        scratch: &'s mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<&'s [u8], Cut> {
        if let Some(cut) = self.first_message_overdue(0, scratch.len(), what) {
            return Err(cut);
        }
        if self.zerocopy.is_none() {
            self.fill(scratch, what)?;
            return Ok(scratch);
        }
        let last_data = Instant::now();
        loop {
            let Some(zc) = self.zerocopy.as_mut() else {
                unreachable!("checked above")
            };
            match zc.ready() {
                Ok(n) if n > 0 => break,
                other => self.no_data(other.err(), 0, scratch.len(), last_data, what)?,
            }
        }
        let Some(zc) = self.zerocopy.as_mut() else {
            unreachable!("checked above")
        };
        let piece = zc.take(scratch.len());
        self.received += piece.len() as u64;
        Ok(piece)
    }

    /// A read that brought no data: the end of the stream (`err` None) or an error.
    /// Ok(()): try again.
    fn no_data(
        &self,
        err: Option<io::Error>,
        got: usize,
        len: usize,
        last_data: Instant,
        what: &dyn Fn() -> String,
    ) -> Result<(), Cut> {
        let Some(err) = err else {
            return Err(Cut::Failed(format!(
                "short read: the server closed the connection after {got} of {len} bytes of {}",
                what()
            )));
        };
        match err.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                if let Some(cut) = self.first_message_overdue(got, len, what) {
                    return Err(cut);
                }
                if self.deadline_passed() {
                    return Err(Cut::Deadline);
                }
                if last_data.elapsed() > self.io_timeout {
                    return Err(Cut::Failed(format!(
                        "the server sent nothing for {:.0} s while {got} of {len} bytes of {} \
                         were read",
                        self.io_timeout.as_secs_f64(),
                        what()
                    )));
                }
                Ok(())
            }
            _ => Err(Cut::Failed(format!(
                "reading {} failed after {got} of {len} bytes: {err}{}",
                what(),
                if sockets::is_peer_gone(&err) {
                    " (the server went away)"
                } else {
                    ""
                }
            ))),
        }
    }

    pub(super) fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What a thread knows about the messages it verifies.
pub(super) struct Verifier {
    pub(super) size: u64,
    /// Checksum the payload (Verification::Full).
    pub(super) crc: bool,
    pub(super) stamp_offsets: Vec<usize>,
    pub(super) chunk: Vec<u8>,
}

/// Reads and checks the reply header; an error reply becomes an error with its text.
/// `Ok(false)`: the deadline passed first.
pub(super) fn read_reply(reader: &mut Reader, outcome: &mut ThreadOutcome) -> Result<bool, String> {
    let mut bytes = [0u8; REPLY_HEADER_LEN];
    match reader.fill(&mut bytes, &|| "the reply header".to_string()) {
        Ok(()) => {}
        Err(Cut::Deadline) => return Ok(false),
        Err(Cut::Failed(message)) => return Err(message),
    }
    let header = ReplyHeader::decode(&bytes).map_err(|err| err.to_string())?;
    outcome.reply_header_bytes += REPLY_HEADER_LEN as u64;
    let mode = Mode::from_wire(header.mode);
    if header.status != Status::Ok.code() {
        // An error reply still names the server's mode: worth reporting.
        outcome.mode = outcome.mode.or(mode);
        let mut text = vec![0u8; header.error_len as usize];
        let text = match reader.fill(&mut text, &|| "the error text".to_string()) {
            Ok(()) => {
                outcome.reply_error_text_bytes += text.len() as u64;
                // A hostile server's text must not reach the terminal as escapes.
                printable(&String::from_utf8_lossy(&text))
            }
            Err(_) => "(the error text did not arrive)".to_string(),
        };
        let name = Status::from_code(header.status)
            .map(Status::name)
            .unwrap_or("unknown status");
        return Err(format!(
            "the server rejected the request: status {} ({name}): {text}",
            header.status
        ));
    }
    let mode =
        mode.ok_or_else(|| format!("the server replied with unknown mode byte {}", header.mode))?;
    if let Some(previous) = outcome.mode {
        if previous != mode {
            return Err(format!(
                "the server changed its mode from {previous} to {mode}"
            ));
        }
    }
    outcome.mode = Some(mode);
    Ok(true)
}

/// Reads and verifies message `expected_seq`. `Ok(false)`: the deadline passed mid-message.
pub(super) fn read_message(
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
    expected_seq: u64,
) -> Result<bool, String> {
    let mut bytes = [0u8; MESSAGE_HEADER_LEN];
    match reader.fill(&mut bytes, &|| format!("message {expected_seq}'s header")) {
        Ok(()) => {}
        Err(Cut::Deadline) => return Ok(false),
        Err(Cut::Failed(message)) => return Err(message),
    }
    let header = MessageHeader::decode(&bytes);
    if u64::from(header.payload_len) != verifier.size {
        // The framing is lost: nothing after this can be trusted.
        return Err(format!(
            "message {expected_seq}: payload length {} but {} was requested",
            header.payload_len, verifier.size
        ));
    }
    let size = verifier.size as usize;
    let stamp = stamp_bytes(expected_seq);
    let mut crc = 0u32;
    let mut stamp_ok = true;
    let mut position = 0usize;
    while position < size {
        let want = (size - position).min(verifier.chunk.len());
        let chunk = match reader.piece(&mut verifier.chunk[..want], &|| {
            format!("message {expected_seq}'s payload")
        }) {
            Ok(chunk) => chunk,
            Err(Cut::Deadline) => return Ok(false),
            Err(Cut::Failed(message)) => return Err(message),
        };
        let got = chunk.len();
        if verifier.crc {
            crc = crc32c::crc32c_append(crc, chunk);
        }
        for &offset in &verifier.stamp_offsets {
            // The part of this stamp that lies in [position, position + want).
            let from = offset.max(position);
            let to = (offset + STAMP_LEN).min(position + got);
            if from < to
                && chunk[from - position..to - position] != stamp[from - offset..to - offset]
            {
                stamp_ok = false;
            }
        }
        position += got;
    }
    outcome.message_header_bytes += MESSAGE_HEADER_LEN as u64;
    let mut problems = Vec::new();
    if header.seq != expected_seq {
        problems.push(format!(
            "sequence number {} (expected {expected_seq})",
            header.seq
        ));
    }
    if verifier.crc && crc != header.crc32c {
        problems.push(format!(
            "CRC32C {crc:08x} but the header says {:08x}",
            header.crc32c
        ));
    }
    if !stamp_ok {
        problems.push(
            "a field stamp does not match the sequence number (a buffer was reused too early)"
                .into(),
        );
    }
    if problems.is_empty() {
        outcome.messages += 1;
        outcome.bytes += verifier.size;
        if let Some(progress) = &outcome.progress {
            progress.fetch_add(verifier.size, Ordering::Relaxed);
        }
    } else {
        outcome.integrity_error(format!("message {expected_seq}: {}", problems.join("; ")));
    }
    Ok(true)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;
    use crate::workload::{client::Verification, message::ComplexMessage, message::FieldLayout};

    /// Message `seq` as the server frames it, with `crc_flip` XORed into its header's
    /// CRC32C and `seq_shift` added to its sequence number.
    pub(in crate::workload::client) fn framed(
        size: u64,
        seq: u64,
        crc_flip: u32,
        seq_shift: u64,
    ) -> Vec<u8> {
        let mut message = ComplexMessage::new(size).unwrap();
        message.stamp(seq);
        let header = MessageHeader {
            payload_len: size as u32,
            crc32c: message.crc() ^ crc_flip,
            seq: seq + seq_shift,
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend(message.to_payload());
        bytes
    }

    /// `read` given a reader (of a run of messages, no deadline) of a loopback connection
    /// whose peer writes `wire`; the peer is joined before returning.
    fn read_from_peer<R>(wire: Vec<u8>, read: impl FnOnce(&mut Reader) -> R) -> R {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(&wire).unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut reader = Reader::new(
            &stream,
            RunLimit::Messages(1),
            Duration::from_secs(10),
            None,
            None,
        );
        let result = read(&mut reader);
        writer.join().unwrap();
        result
    }

    /// Reads `count` messages of `size` from `wire` with `verification`; returns the
    /// verified messages and the integrity errors.
    fn verify_wire(wire: Vec<u8>, size: u64, count: u64, verification: Verification) -> (u64, u64) {
        let layout = FieldLayout::new(size).unwrap();
        let mut verifier = Verifier {
            size,
            crc: verification == Verification::Full,
            stamp_offsets: layout.stamp_offsets().collect(),
            chunk: vec![0u8; size as usize],
        };
        let mut outcome = ThreadOutcome::new();
        read_from_peer(wire, |reader| {
            for seq in 0..count {
                assert!(read_message(reader, &mut verifier, &mut outcome, seq).unwrap());
            }
        });
        (outcome.messages, outcome.integrity_errors)
    }

    #[test]
    fn a_servers_error_text_is_reported_without_its_control_characters() {
        let text = b"no\x1b[2J\x1b]0;owned\x07 way\r";
        let mut wire = ReplyHeader {
            status: Status::ServerError.code(),
            mode: 1,
            error_len: text.len() as u32,
        }
        .encode()
        .to_vec();
        wire.extend(text);
        let error = read_from_peer(wire, |reader| {
            read_reply(reader, &mut ThreadOutcome::new()).unwrap_err()
        });
        assert!(error.contains("no\\u{1b}[2J"), "{error}");
        assert!(
            !error.chars().any(|c| c.is_control()),
            "control characters reached the message: {error:?}"
        );
    }

    #[test]
    fn framing_verification_skips_only_the_checksum() {
        let size = 4096;
        // Message 0 intact, 1 with a wrong checksum, 2 with a wrong sequence number.
        let mut wire = framed(size, 0, 0, 0);
        wire.extend(framed(size, 1, 0x40, 0));
        wire.extend(framed(size, 2, 0, 7));
        assert_eq!(
            verify_wire(wire.clone(), size, 3, Verification::Full),
            (1, 2)
        );
        assert_eq!(verify_wire(wire, size, 3, Verification::Framing), (2, 1));
    }
}
