//! Two-copy: serialize header and fields into one contiguous buffer (the user-space copy),
//! then `send()` it (the kernel's copy into socket buffers). A message above
//! `PIECE_BYTES` goes piece by piece through the same buffer (`sender::Outgoing`).

use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use super::sender::{Outgoing, Sender, SenderStats};
use crate::workload::sockets;

pub(super) struct TwoCopySender {
    socket: TcpStream,
    outgoing: Outgoing,
    /// Reused across messages so that the measured copy is the memcpy, not an allocation.
    buffer: Vec<u8>,
    stats: SenderStats,
}

impl TwoCopySender {
    pub(super) fn new(socket: TcpStream) -> Self {
        TwoCopySender {
            socket,
            outgoing: Outgoing::default(),
            buffer: Vec::new(),
            stats: SenderStats::default(),
        }
    }
}

impl Sender for TwoCopySender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let buffer = &mut self.buffer;
        self.outgoing
            .send(size, seq, &mut self.stats, |stats, slices, header_len| {
                // Header (first piece only) and fields into one buffer: the user copy.
                buffer.clear();
                buffer.reserve(slices.iter().map(|s| s.len()).sum());
                for slice in slices {
                    buffer.extend_from_slice(slice);
                }
                stats.user_copy_header_bytes += header_len as u64;
                stats.user_copy_bytes += (buffer.len() - header_len) as u64;
                let total = buffer.len();
                let buffer = &*buffer;
                stats.send_bytes(fd, header_len, total, |sent| {
                    sockets::send_once(fd, &buffer[sent..])
                })
            })
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // send() copied everything into the kernel: nothing of ours is referenced.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}
