//! Sendfile: the serialized message (header, then the 8 fields, as on the wire) in a
//! memfd, sent with `sendfile(2)`.
//!
//! sendfile hands the socket references to the memfd's page-cache pages: no user buffer,
//! no copy on the send path, no completion. Nothing says when the socket drops those
//! references (on loopback, not before the receiver has read the bytes), so a page of a
//! sent message must never be written again. Before each message the memfd is truncated
//! to nothing, which takes the old pages out of the file while the socket's references
//! keep them alive for as long as it needs them, and the message is generated into the
//! fresh pages through a shared mapping (`ComplexMessage::generate_into`): produced in
//! place, as a program writing new data into a file would, not copied from a buffer.
//! A message above `PIECE_BYTES` is sent piece by piece the same way, each piece in fresh
//! pages, so the file holds one piece at most.

use std::{
    io,
    net::TcpStream,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use super::sender::{template_for, Sender, SenderStats, Template};
use crate::workload::{message::FIELD_COUNT, protocol::MESSAGE_HEADER_LEN};

/// A memfd and a shared, writable mapping of it.
struct MessageFile {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
}

// SAFETY: the mapping is owned by this value alone and only touched through &mut self.
unsafe impl Send for MessageFile {}

impl MessageFile {
    fn new() -> io::Result<Self> {
        // SAFETY: a NUL-terminated name and valid flags.
        let fd = unsafe { libc::memfd_create(c"netcopy-sendfile".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("memfd_create failed ({err}): sendfile mode needs Linux 3.17 or newer"),
            ));
        }
        Ok(MessageFile {
            // SAFETY: fd was just created and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            map: std::ptr::null_mut(),
            map_len: 0,
        })
    }

    fn truncate(&self, len: usize) -> io::Result<()> {
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(self.fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The file's first `len` bytes in pages no send has referenced yet.
    fn fresh(&mut self, len: usize) -> io::Result<&mut [u8]> {
        // Truncating to nothing takes the previous message's pages out of the file; the
        // mapping then faults in new, zeroed pages.
        self.truncate(0)?;
        self.truncate(len)?;
        if len > self.map_len {
            self.unmap();
            // SAFETY: a new shared mapping of our memfd; checked below.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.fd.as_raw_fd(),
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            self.map = map.cast();
            self.map_len = len;
        }
        // SAFETY: the mapping covers len bytes of a file at least len long, and &mut self
        // makes this the only view of it.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.map, len) })
    }

    fn unmap(&mut self) {
        if !self.map.is_null() {
            // SAFETY: our own mapping of map_len bytes; no slice of it outlives &mut self.
            unsafe { libc::munmap(self.map.cast(), self.map_len) };
            self.map = std::ptr::null_mut();
            self.map_len = 0;
        }
    }
}

impl Drop for MessageFile {
    fn drop(&mut self) {
        // The socket's page references keep what it still needs alive.
        self.unmap();
    }
}

/// Writes piece `k` of the message stamped with `seq` into `file` as on the wire (the
/// message header first in piece 0): every byte is generated where it is sent from,
/// nothing is copied. Returns the header bytes written.
fn serialize_piece(file: &mut [u8], template: &Template, seq: u64, k: usize) -> usize {
    let header_len = if k == 0 { MESSAGE_HEADER_LEN } else { 0 };
    let (header, mut payload) = file.split_at_mut(header_len);
    let lens = template.piece_field_lens(k);
    let fields: [&mut [u8]; FIELD_COUNT] = std::array::from_fn(|i| {
        let (field, rest) = std::mem::take(&mut payload).split_at_mut(lens[i]);
        payload = rest;
        field
    });
    template.generate_piece(seq, k, fields);
    if k == 0 {
        template
            .header(seq)
            .encode_into(header.try_into().expect("a 16-byte header slice"));
    }
    header_len
}

/// One `sendfile` of `len` bytes of `file` from `offset` to `socket`.
fn sendfile_once(socket: RawFd, file: RawFd, offset: usize, len: usize) -> io::Result<usize> {
    let mut offset = offset as libc::off_t;
    // SAFETY: plain descriptors and a local offset.
    let rc = unsafe { libc::sendfile(socket, file, &mut offset, len) };
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "sendfile sent 0 bytes of a message still in the file",
        )),
        n => Ok(n as usize),
    }
}

pub(super) struct SendfileSender {
    socket: TcpStream,
    file: MessageFile,
    /// The message of the current size: its layout, content rule and CRC operators.
    template: Option<Template>,
    stats: SenderStats,
}

impl SendfileSender {
    pub(super) fn new(socket: TcpStream) -> io::Result<Self> {
        Ok(SendfileSender {
            socket,
            file: MessageFile::new()?,
            template: None,
            stats: SenderStats::default(),
        })
    }
}

impl Sender for SendfileSender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let template = template_for(&mut self.template, size)?;
        // A message above PIECE_BYTES goes out piece by piece, each in fresh pages of the
        // file, so the file never holds more than one piece.
        for k in 0..template.pieces() {
            let lens = template.piece_field_lens(k);
            let header_len = if k == 0 { MESSAGE_HEADER_LEN } else { 0 };
            let total = header_len + lens.iter().sum::<usize>();
            serialize_piece(self.file.fresh(total)?, template, seq, k);
            self.stats.generated_bytes += total as u64;
            let (socket, file) = (self.socket.as_raw_fd(), self.file.fd.as_raw_fd());
            self.stats.send_bytes(socket, header_len, total, |sent| {
                sendfile_once(socket, file, sent, total - sent)
            })?;
        }
        self.stats.messages += 1;
        Ok(())
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // Nothing to wait for, and nothing can be waited for: the socket's references to
        // sent pages are dropped without notice, which is why no page is written twice.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}

/// Fails unless this kernel has memfd_create (sendfile from a shmem file to a TCP socket
/// is older than that).
pub(super) fn probe_support() -> io::Result<()> {
    MessageFile::new().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{message::ComplexMessage, protocol::MessageHeader};
    use std::io::Read;

    #[test]
    fn the_file_holds_the_message_as_on_the_wire() {
        let mut message = ComplexMessage::new(4097).unwrap();
        let mut template = None;
        let template = template_for(&mut template, 4097).unwrap();
        let mut file = vec![0u8; MESSAGE_HEADER_LEN + 4097];
        assert_eq!(
            serialize_piece(&mut file, template, 9, 0),
            MESSAGE_HEADER_LEN
        );
        message.stamp(9);
        let header = MessageHeader::decode(file[..16].try_into().unwrap());
        assert_eq!(
            (header.payload_len, header.crc32c, header.seq),
            (4097, message.crc(), 9)
        );
        assert_eq!(&file[16..], &message.to_payload()[..]);
    }

    #[test]
    fn each_message_goes_out_of_fresh_pages_and_is_counted_exactly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut sender = SendfileSender::new(server).unwrap();
        // Sent without reading in between: the first message's pages are still queued
        // when the second is generated, and must reach the client unchanged.
        sender.send_message(10_000, 1).unwrap();
        sender.send_message(10_000, 2).unwrap();
        sender.send_message(20, 3).unwrap();
        let s = sender.stats().clone();
        assert_eq!(s.messages, 3);
        assert_eq!((s.payload_bytes, s.header_bytes), (20_020, 48));
        assert_eq!(s.generated_bytes, 20_068);
        assert!(s.syscalls >= 3);
        let mut received = vec![0u8; 20_068];
        client.read_exact(&mut received).unwrap();
        for (seq, range) in [(1, 0..10_016), (2, 10_016..20_032), (3, 20_032..20_068)] {
            let size = range.len() - 16;
            let mut expected = ComplexMessage::new(size as u64).unwrap();
            expected.stamp(seq);
            let part = &received[range];
            let header = MessageHeader::decode(part[..16].try_into().unwrap());
            assert_eq!((header.seq, header.crc32c), (seq, expected.crc()));
            assert_eq!(&part[16..], &expected.to_payload()[..], "message {seq}");
        }
    }
}
