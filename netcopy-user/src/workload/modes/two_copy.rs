//! Two-copy: serialize header and fields into one contiguous buffer (the user-space copy),
//! then `send()` it (the kernel's copy into socket buffers).

use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use super::sender::{header_for, message_for, Sender, SenderStats};
use crate::{
    workload::message::ComplexMessage, workload::protocol::MESSAGE_HEADER_LEN, workload::sockets,
};

pub(super) struct TwoCopySender {
    socket: TcpStream,
    message: Option<ComplexMessage>,
    /// Reused across messages so that the measured copy is the memcpy, not an allocation.
    buffer: Vec<u8>,
    stats: SenderStats,
}

impl TwoCopySender {
    pub(super) fn new(socket: TcpStream) -> Self {
        TwoCopySender {
            socket,
            message: None,
            buffer: Vec::new(),
            stats: SenderStats::default(),
        }
    }
}

impl Sender for TwoCopySender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let message = message_for(&mut self.message, size)?;
        message.stamp(seq);
        let header = header_for(message, seq).encode();
        self.buffer.clear();
        self.buffer.reserve(MESSAGE_HEADER_LEN + message.size());
        self.buffer.extend_from_slice(&header);
        for field in message.fields() {
            self.buffer.extend_from_slice(field);
        }
        self.stats.user_copy_header_bytes += MESSAGE_HEADER_LEN as u64;
        self.stats.user_copy_bytes += message.size() as u64;

        let fd = self.socket.as_raw_fd();
        let total = self.buffer.len();
        let buffer = &self.buffer;
        self.stats
            .send_all(fd, total, |sent| sockets::send_once(fd, &buffer[sent..]))
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // send() copied everything into the kernel: nothing of ours is referenced.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}
