//! One-copy: `sendmsg()` with 9 iovecs (header + 8 fields). The only copy of the payload is
//! the kernel's, from the fields straight into socket buffers.

use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use super::sender::{header_for, message_for, Sender, SenderStats};
use crate::{
    workload::message::{ComplexMessage, FIELD_COUNT},
    workload::protocol::MESSAGE_HEADER_LEN,
    workload::sockets,
};

/// Header plus the 8 fields.
pub(super) const IOV_COUNT: usize = FIELD_COUNT + 1;

pub(super) struct OneCopySender {
    socket: TcpStream,
    message: Option<ComplexMessage>,
    stats: SenderStats,
}

impl OneCopySender {
    pub(super) fn new(socket: TcpStream) -> Self {
        OneCopySender {
            socket,
            message: None,
            stats: SenderStats::default(),
        }
    }
}

impl Sender for OneCopySender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let message = message_for(&mut self.message, size)?;
        message.stamp(seq);
        let header = header_for(message, seq).encode();
        let fields = message.fields();
        let slices: [&[u8]; IOV_COUNT] =
            std::array::from_fn(|i| if i == 0 { &header[..] } else { fields[i - 1] });
        let total = MESSAGE_HEADER_LEN + message.size();
        let fd = self.socket.as_raw_fd();
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_COUNT];
        self.stats.send_all(fd, total, |sent| {
            let used = sockets::remaining_iovecs(&slices, sent, &mut iov);
            sockets::sendmsg_iov(fd, &mut iov[..used], 0)
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
