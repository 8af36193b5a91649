//! io-uring: IORING_OP_SENDMSG with 9 iovecs (header + 8 fields) through an io_uring, one
//! operation in flight at a time: one-copy's sendmsg, issued through a ring instead of a
//! system call. The baseline of io-uring-zc (`io_uring_zc.rs`), which shares the ring
//! helpers of this file.
//!
//! The message is restamped only after the operation's completion arrived: without
//! zero-copy the kernel has copied the data into socket buffers by then. A short send (a
//! full send buffer) is continued by a new operation for the rest, as a blocking sendmsg
//! loop would. The operation does not go through the sendmsg system call: io_uring calls
//! the socket's sendmsg (`tcp_sendmsg_locked`) from io_uring_enter, or from the task's
//! task work or an io-wq worker thread of the same process when it has to wait.

use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::sender::{Outgoing, Sender, SenderStats, IOV_COUNT};
use crate::workload::sockets;

/// One completion queue entry, copied out of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Completion {
    pub(super) user_data: u64,
    pub(super) result: i32,
    pub(super) flags: u32,
}

/// A sender's io_uring, and how often it entered the kernel.
pub(super) struct Ring {
    ring: IoUring,
    enters: u64,
}

impl Ring {
    /// A ring of `entries` submission slots whose completion queue holds `cq_entries`
    /// (notifications of zero-copy sends wait there until read).
    pub(super) fn new(entries: u32, cq_entries: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries.max(entries))
            .build(entries)
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "io_uring_setup failed ({err}): io_uring is absent or disabled here \
                         (Linux before 5.1, kernel.io_uring_disabled, or a seccomp filter)"
                    ),
                )
            })?;
        Ok(Ring { ring, enters: 0 })
    }

    /// Queues `entry` and submits it.
    ///
    /// # Safety
    /// Every buffer the entry points at (msghdr, iovecs, data) must stay valid until the
    /// kernel is done with it: the msghdr and iovecs until the operation's result arrives,
    /// the data until then too, and for a zero-copy send until its notification.
    pub(super) unsafe fn submit(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: the caller keeps the entry's buffers alive (above).
        while unsafe { self.ring.submission().push(entry) }.is_err() {
            // Full: hand the queued entries to the kernel first.
            self.enter(0, None)?;
        }
        self.enter(0, None)
    }

    /// Waits until at least one completion is posted or `timeout` passes (None: no
    /// limit), then returns every completion posted (possibly none).
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Completion>> {
        let posted = self.posted();
        if !posted.is_empty() {
            return Ok(posted);
        }
        self.enter(1, timeout)?;
        Ok(self.posted())
    }

    /// The completions posted now, without entering the kernel.
    pub(super) fn posted(&mut self) -> Vec<Completion> {
        self.ring
            .completion()
            .map(|cqe| Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            })
            .collect()
    }

    pub(super) fn enters(&self) -> u64 {
        self.enters
    }

    /// One io_uring_enter: submits what is queued and waits for `want` completions, at
    /// most `timeout`. A timeout or a signal is no error: the caller looks at what came.
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.enters += 1;
        let result = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(timeout) => {
                let timespec = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The result of a send operation as the partial-send loop wants it: bytes, or the error.
pub(super) fn send_result(result: i32, what: &str) -> io::Result<usize> {
    match result {
        0 => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("{what} sent 0 bytes"),
        )),
        n if n > 0 => Ok(n as usize),
        errno => Err(io::Error::from_raw_os_error(-errno)),
    }
}

/// A msghdr for `iov`, as one send operation takes it.
pub(super) fn msghdr_for(iov: &mut [libc::iovec]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    msg
}

/// Fails unless this kernel lets us set up an io_uring that knows `opcode` (`name`, in
/// Linux since `since`).
pub(super) fn probe_opcode(opcode: u8, name: &str, since: &str) -> io::Result<()> {
    let ring = Ring::new(2, 2)?;
    let mut probe = Probe::new();
    ring.ring
        .submitter()
        .register_probe(&mut probe)
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("IORING_REGISTER_PROBE failed ({err}): io_uring before Linux 5.6"),
            )
        })?;
    if !probe.is_supported(opcode) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel's io_uring has no {name} (Linux {since} or newer)"),
        ));
    }
    Ok(())
}

/// Fails unless this kernel's io_uring has IORING_OP_SENDMSG.
pub(super) fn probe_support() -> io::Result<()> {
    probe_opcode(opcode::SendMsg::CODE, "IORING_OP_SENDMSG", "5.3")
}

/// The user_data of the sender's one operation in flight.
const SEND_OPERATION: u64 = 1;

pub(super) struct IoUringSender {
    socket: TcpStream,
    ring: Ring,
    outgoing: Outgoing,
    stats: SenderStats,
}

impl IoUringSender {
    pub(super) fn new(socket: TcpStream) -> io::Result<Self> {
        Ok(IoUringSender {
            socket,
            ring: Ring::new(4, 8)?,
            outgoing: Outgoing::default(),
            stats: SenderStats::default(),
        })
    }
}

/// Issues one IORING_OP_SENDMSG of `iov` on `fd` and waits for its result.
fn send_operation(ring: &mut Ring, fd: i32, iov: &mut [libc::iovec]) -> io::Result<usize> {
    let msg = msghdr_for(iov);
    let entry = opcode::SendMsg::new(types::Fd(fd), &msg)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build()
        .user_data(SEND_OPERATION);
    // SAFETY: msg, the iovecs and the data they point at outlive the operation: this
    // function returns only once its result has arrived (or the ring failed, and with it
    // the connection).
    unsafe { ring.submit(&entry)? };
    loop {
        if let Some(done) = ring
            .wait(None)?
            .into_iter()
            .find(|c| c.user_data == SEND_OPERATION)
        {
            return send_result(done.result, "IORING_OP_SENDMSG");
        }
    }
}

impl Sender for IoUringSender {
    fn send_message(&mut self, size: u64, seq: u64) -> io::Result<()> {
        let IoUringSender {
            socket,
            ring,
            outgoing,
            stats,
        } = self;
        let fd = socket.as_raw_fd();
        let result = outgoing.send(size, seq, stats, |stats, slices, header_len| {
            let total = slices.iter().map(|s| s.len()).sum();
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOV_COUNT];
            stats.send_bytes(fd, header_len, total, |sent| {
                let used = sockets::remaining_iovecs(&slices, sent, &mut iov);
                send_operation(ring, fd, &mut iov[..used])
            })
        });
        stats.ring_enters = ring.enters();
        result
    }

    fn finish(&mut self, _timeout: Duration) -> io::Result<()> {
        // Every operation was waited for, and without zero-copy the kernel copied the
        // data before completing it: nothing of ours is referenced.
        Ok(())
    }

    fn stats(&self) -> &SenderStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{message::ComplexMessage, protocol::MESSAGE_HEADER_LEN};

    #[test]
    fn send_results_map_to_bytes_or_errors() {
        assert_eq!(send_result(5, "op").unwrap(), 5);
        assert_eq!(
            send_result(0, "op").unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
        let err = send_result(-libc::EPIPE, "op").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(
            send_result(-libc::EAGAIN, "op").unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn a_message_sent_through_the_ring_is_counted_exactly() {
        probe_support().expect("io_uring on this machine (shared/PLATFORM.md)");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut sender = IoUringSender::new(server).unwrap();
        sender.send_message(4095, 3).unwrap();
        sender.send_message(4095, 4).unwrap();
        let stats = sender.stats().clone();
        assert_eq!(stats.messages, 2);
        assert_eq!(stats.payload_bytes, 2 * 4095);
        assert_eq!(stats.header_bytes, 2 * MESSAGE_HEADER_LEN as u64);
        assert_eq!(stats.syscalls, 2, "one operation per message");
        assert!(stats.ring_enters >= 2);
        let mut received = vec![0u8; 2 * (4095 + MESSAGE_HEADER_LEN)];
        std::io::Read::read_exact(&mut client, &mut received).unwrap();
        let mut expected = ComplexMessage::new(4095).unwrap();
        expected.stamp(4);
        assert_eq!(
            &received[received.len() - 4095..],
            &expected.to_payload()[..]
        );
    }
}
