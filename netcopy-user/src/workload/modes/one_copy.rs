//! One-copy: `sendmsg()` with 9 iovecs (header + 8 fields). The only copy of the payload is
//! the kernel's, from the fields straight into socket buffers. A message above
//! `PIECE_BYTES` goes piece by piece, 8 fields each (`sender::Outgoing`).

use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use super::sender::{Outgoing, Sender, SenderStats, IOV_COUNT};
use crate::workload::sockets;

pub(super) struct OneCopySender {
    socket: TcpStream,
    outgoing: Outgoing,
    stats: SenderStats,
}

impl OneCopySender {
    pub(super) fn new(socket: TcpStream) -> Self {
        OneCopySender {
            socket,
            outgoing: Outgoing::default(),
            stats: SenderStats::default(),
        }
    }
}

impl Sender for OneCopySender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        self.outgoing
            .send(size, seq, &mut self.stats, |stats, slices, header_len| {
                let total = slices.iter().map(|s| s.len()).sum();
                let mut iov = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; IOV_COUNT];
                stats.send_bytes(fd, header_len, total, |sent| {
                    let used = sockets::remaining_iovecs(&slices, sent, &mut iov);
                    sockets::sendmsg_iov(fd, &mut iov[..used], 0)
                })
            })
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // sendmsg() without MSG_ZEROCOPY copied everything: nothing of ours is referenced.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}
