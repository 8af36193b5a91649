//! Splice: `vmsplice(SPLICE_F_GIFT)` of the header and the 8 fields into a pipe, then
//! `splice()` from the pipe to the socket.
//!
//! vmsplice puts references to the user pages into the pipe, and splice moves them on to
//! the socket's buffers: no copy on the send path, and no completion. Nothing says when the
//! kernel drops those references (on loopback, not before the receiver has read the
//! bytes), so a page of a sent message must never be written again, which is what
//! SPLICE_F_GIFT promises the kernel. Each message therefore lives in pages of its own,
//! mapped fresh, generated in place (`ComplexMessage::generate_into`) and unmapped once
//! spliced: the kernel's references keep the pages alive while it needs them, and the
//! allocator can never hand their addresses out with the old pages behind them. The
//! header and every field start on a page of their own: 9 separate buffers, as in the
//! other modes.
//!
//! A message above `PIECE_BYTES` goes piece by piece, each piece in pages of its own.
//!
//! The pipe is filled only when empty, and emptied into the socket before the next fill,
//! so vmsplice never blocks and the pipe holds exactly the message bytes after those sent.

use std::{
    io,
    net::TcpStream,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use super::sender::{template_for, Sender, SenderStats, Template, IOV_COUNT};
use crate::workload::{message::FIELD_COUNT, protocol::MESSAGE_HEADER_LEN, sockets};

/// The pipe's capacity asked for: a 1 MiB message in one fill. The kernel may cap it
/// (fs.pipe-max-size); any capacity works, in more rounds.
const PIPE_CAPACITY: libc::c_int = 1 << 20;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// One piece's anonymous mapping: the header (piece 0 only; else an empty part) on the
/// first page, each field from a page of its own.
struct MessagePages {
    map: *mut u8,
    len: usize,
    /// (offset, length) of the header, then of each field.
    parts: [(usize, usize); IOV_COUNT],
}

impl MessagePages {
    fn map(header_len: usize, field_lens: [usize; FIELD_COUNT]) -> io::Result<Self> {
        let page = page_size();
        let mut parts = [(0, header_len); IOV_COUNT];
        let mut len = page;
        for (i, &field_len) in field_lens.iter().enumerate() {
            parts[i + 1] = (len, field_len);
            len += field_len.div_ceil(page) * page;
        }
        // SAFETY: a new private anonymous mapping; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MessagePages {
            map: map.cast(),
            len,
            parts,
        })
    }

    /// The header and fields, writable.
    fn parts_mut(&mut self) -> [&mut [u8]; IOV_COUNT] {
        let map = self.map;
        // SAFETY: the parts are disjoint ranges inside our mapping, and &mut self makes
        // these the only views of it.
        self.parts
            .map(|(offset, len)| unsafe { std::slice::from_raw_parts_mut(map.add(offset), len) })
    }

    fn parts(&self) -> [&[u8]; IOV_COUNT] {
        // SAFETY: as in parts_mut, shared.
        self.parts
            .map(|(offset, len)| unsafe { std::slice::from_raw_parts(self.map.add(offset), len) })
    }
}

impl Drop for MessagePages {
    fn drop(&mut self) {
        // The pipe's and the socket's page references keep what they still need alive.
        // SAFETY: our own mapping; no slice of it outlives self.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

/// Writes piece `k` of the message stamped with `seq` into `pages` (the header too, in
/// piece 0): nothing is copied.
fn generate_into(pages: &mut MessagePages, template: &Template, seq: u64, k: usize) {
    let [header, fields @ ..] = pages.parts_mut();
    template.generate_piece(seq, k, fields);
    if k == 0 {
        template
            .header(seq)
            .encode_into(header.try_into().expect("a 16-byte header part"));
    }
}

/// A pipe, its ends owned.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just created and are owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // SAFETY: fcntl on our own pipe. Refused above fs.pipe-max-size: keep the default.
        unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_CAPACITY) };
        Ok(pipe)
    }
}

/// One vmsplice of `iov` into the pipe, gifting the pages. Returns the bytes moved in.
fn vmsplice_once(pipe: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: iov describes live pages of a mapping that outlives the pipe's use of it.
    let rc = unsafe { libc::vmsplice(pipe, iov.as_ptr(), iov.len(), libc::SPLICE_F_GIFT) };
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "vmsplice moved 0 bytes into an empty pipe",
        )),
        n => Ok(n as usize),
    }
}

/// One splice of up to `len` bytes from the pipe to the socket.
fn splice_once(pipe: RawFd, socket: RawFd, len: usize, more: bool) -> io::Result<usize> {
    let flags = if more { libc::SPLICE_F_MORE } else { 0 };
    // SAFETY: plain descriptors, no offsets.
    let rc = unsafe {
        libc::splice(
            pipe,
            std::ptr::null_mut(),
            socket,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "splice moved 0 bytes out of a pipe holding message bytes",
        )),
        n => Ok(n as usize),
    }
}

pub(super) struct SpliceSender {
    socket: TcpStream,
    pipe: Pipe,
    /// The message of the current size: its layout, content rule and CRC operators.
    template: Option<Template>,
    stats: SenderStats,
}

impl SpliceSender {
    pub(super) fn new(socket: TcpStream) -> io::Result<Self> {
        Ok(SpliceSender {
            socket,
            pipe: Pipe::new()?,
            template: None,
            stats: SenderStats::default(),
        })
    }
}

impl SpliceSender {
    /// vmsplice the piece's pages into the pipe and splice them on to the socket, until
    /// all of it is queued.
    fn splice_piece(
        pipe: &mut Pipe,
        socket: &TcpStream,
        stats: &mut SenderStats,
        pages: &MessagePages,
        header_len: usize,
    ) -> io::Result<()> {
        let parts = pages.parts();
        let total = parts.iter().map(|p| p.len()).sum::<usize>();
        let (socket, pipe_read, pipe_write) = (
            socket.as_raw_fd(),
            pipe.read.as_raw_fd(),
            pipe.write.as_raw_fd(),
        );
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_COUNT];
        // The piece's bytes after `sent` that are in the pipe.
        let mut in_pipe = 0;
        let mut vmsplice_calls = 0;
        let result = stats.send_bytes(socket, header_len, total, |sent| {
            if in_pipe == 0 {
                let used = sockets::remaining_iovecs(&parts, sent, &mut iov);
                vmsplice_calls += 1;
                in_pipe = vmsplice_once(pipe_write, &iov[..used])?;
            }
            let n = splice_once(pipe_read, socket, in_pipe, sent + in_pipe < total)?;
            in_pipe -= n;
            Ok(n)
        });
        stats.vmsplice_calls += vmsplice_calls;
        if in_pipe > 0 {
            // A failed splice left bytes of this message in the pipe: a new pipe keeps
            // them out of whatever this connection sends next.
            *pipe = Pipe::new()?;
        }
        result
    }
}

impl Sender for SpliceSender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let template = template_for(&mut self.template, size)?;
        // A message above PIECE_BYTES goes out piece by piece, each in pages of its own
        // that are unmapped once spliced: the sender holds one piece at most.
        for k in 0..template.pieces() {
            let header_len = if k == 0 { MESSAGE_HEADER_LEN } else { 0 };
            let mut pages = MessagePages::map(header_len, template.piece_field_lens(k))?;
            generate_into(&mut pages, template, seq, k);
            let total = pages.parts().iter().map(|p| p.len()).sum::<usize>();
            self.stats.generated_bytes += total as u64;
            Self::splice_piece(
                &mut self.pipe,
                &self.socket,
                &mut self.stats,
                &pages,
                header_len,
            )?;
        }
        self.stats.messages += 1;
        Ok(())
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // Nothing to wait for, and nothing can be waited for: the kernel's references to
        // gifted pages are dropped without notice, which is why no page is written twice.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}

/// Fails unless this kernel has vmsplice and splice into a pipe: one gifted page through
/// a pipe.
pub(super) fn probe_support() -> io::Result<()> {
    let pipe = Pipe::new()?;
    let mut pages = MessagePages::map(MESSAGE_HEADER_LEN, [0; FIELD_COUNT])?;
    pages.parts_mut()[0].fill(b'?');
    let parts = pages.parts();
    let iov = [libc::iovec {
        iov_base: parts[0].as_ptr() as *mut libc::c_void,
        iov_len: parts[0].len(),
    }];
    vmsplice_once(pipe.write.as_raw_fd(), &iov)
        .map_err(|err| io::Error::new(err.kind(), format!("vmsplice into a pipe failed: {err}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{message::ComplexMessage, protocol::MessageHeader};
    use std::io::Read;

    #[test]
    fn fields_start_on_pages_of_their_own() {
        let page = page_size();
        let message = ComplexMessage::new(3 * page as u64 + 5).unwrap();
        let mut template = None;
        let template = template_for(&mut template, 3 * page as u64 + 5).unwrap();
        let mut pages = MessagePages::map(MESSAGE_HEADER_LEN, message.field_lens()).unwrap();
        generate_into(&mut pages, template, 1, 0);
        for (i, part) in pages.parts().iter().enumerate() {
            assert_eq!(part.as_ptr() as usize % page, 0, "part {i}");
        }
        let lens: Vec<usize> = pages.parts().iter().map(|p| p.len()).collect();
        assert_eq!(lens[0], MESSAGE_HEADER_LEN);
        assert_eq!(&lens[1..], &message.field_lens()[..]);
    }

    #[test]
    fn each_message_goes_out_of_fresh_pages_and_is_counted_exactly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut sender = SpliceSender::new(server).unwrap();
        // Unread between sends: the first message's pages are still referenced by the
        // receiving socket while the next ones are generated.
        for seq in 0..3 {
            sender.send_message(70_001, seq).unwrap();
        }
        let s = sender.stats().clone();
        assert_eq!(s.messages, 3);
        assert_eq!((s.payload_bytes, s.header_bytes), (210_003, 48));
        assert_eq!(s.generated_bytes, 210_051);
        assert!(s.vmsplice_calls >= 3 && s.syscalls >= 3);
        let mut received = vec![0u8; 210_051];
        client.read_exact(&mut received).unwrap();
        for (seq, part) in received.chunks(70_017).enumerate() {
            let mut expected = ComplexMessage::new(70_001).unwrap();
            expected.stamp(seq as u64);
            let header = MessageHeader::decode(part[..16].try_into().unwrap());
            assert_eq!((header.seq, header.crc32c), (seq as u64, expected.crc()));
            assert_eq!(&part[16..], &expected.to_payload()[..], "message {seq}");
        }
    }
}
