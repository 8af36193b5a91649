//! Thin libc socket helpers shared by the senders, the server and the client.

use std::{io, os::fd::RawFd, time::Duration};

/// `SO_ZEROCOPY` from <asm-generic/socket.h> (not in the libc crate).
pub(crate) const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` from <linux/errqueue.h>.
pub(crate) const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied the data after all.
pub(crate) const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Flags of every plain send: a vanished peer is an error value, never SIGPIPE.
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// True for the errors with which a peer that closed or reset its end shows up on a send.
pub(crate) fn is_peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// `poll` on one descriptor; returns the revents (0 on timeout). EINTR returns `Ok(0)` so
/// that callers re-check their stop conditions.
pub(crate) fn poll_one(
    fd: RawFd,
    events: libc::c_short,
    timeout: Duration,
) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: pfd is a valid pollfd for the duration of the call; nfds is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, millis) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(if rc == 0 { 0 } else { pfd.revents })
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives for the call, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn get_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Enables MSG_ZEROCOPY on a socket.
pub(crate) fn enable_zerocopy(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
}

/// Sets SO_SNDBUF (the kernel doubles the value and enforces a minimum).
pub(crate) fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    set_int_option(
        fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        bytes.min(i32::MAX as usize) as libc::c_int,
    )
}

/// Reads and clears a pending socket error (SO_ERROR). Needed because a pending error keeps
/// poll() reporting POLLERR even when the error queue is empty.
/// Bytes written to the TCP socket `fd` that have not left it yet (SIOCOUTQNSD:
/// `write_seq - snd_nxt`; still readable after a reset, when the send queue was freed).
pub(crate) fn unsent_bytes(fd: RawFd) -> io::Result<u64> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int through the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::SIOCOUTQNSD, &mut bytes) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(bytes).unwrap_or(0))
}

pub(crate) fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let code = get_int_option(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
}

/// One `send(MSG_NOSIGNAL)` call; EINTR is returned to the caller as an error.
pub(crate) fn send_once(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe a live slice.
    let rc = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), SEND_FLAGS) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// What one partial-send loop did, counted as it goes: a loop that fails part way still
/// says how far it got (the senders' byte accounting must be exact).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendTally {
    /// send()/sendmsg() calls, failed and retried ones included.
    pub(crate) syscalls: u64,
    /// Calls that took fewer bytes than offered.
    pub(crate) partial_sends: u64,
    /// Bytes queued in the kernel.
    pub(crate) sent: usize,
}

/// The partial-send loop: calls `send(sent)` -- one syscall that sends what is left after
/// `sent` bytes and returns how many it took -- until `total` bytes are queued, retrying
/// EINTR and waiting out EAGAIN (a socket with SO_SNDTIMEO). Adds what it did to `tally`.
pub(crate) fn send_all_with(
    fd: RawFd,
    total: usize,
    tally: &mut SendTally,
    mut send: impl FnMut(usize) -> io::Result<usize>,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < total {
        tally.syscalls += 1;
        match send(sent) {
            Ok(n) => {
                if n < total - sent {
                    tally.partial_sends += 1;
                }
                sent += n;
                tally.sent += n;
            }
            Err(err) => match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => wait_writable(fd)?,
                _ => return Err(err),
            },
        }
    }
    Ok(())
}

/// Sends all of `bytes` on a blocking socket with plain `send(MSG_NOSIGNAL)`, retrying on
/// EINTR, on partial sends and on EAGAIN (a socket with SO_SNDTIMEO).
pub(crate) fn send_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    send_all_with(fd, bytes.len(), &mut SendTally::default(), |sent| {
        send_once(fd, &bytes[sent..])
    })
}

/// Waits until a socket that returned EAGAIN can take more data.
fn wait_writable(fd: RawFd) -> io::Result<()> {
    poll_one(fd, libc::POLLOUT, Duration::from_millis(100)).map(|_| ())
}

/// Fills `iov` with the parts of `slices` that remain after the first `skip` bytes and
/// returns how many entries were used. Zero-length slices are skipped: they carry nothing.
pub(crate) fn remaining_iovecs<const N: usize>(
    slices: &[&[u8]; N],
    mut skip: usize,
    iov: &mut [libc::iovec; N],
) -> usize {
    let mut used = 0;
    for slice in slices {
        if skip >= slice.len() {
            skip -= slice.len();
            continue;
        }
        let rest = &slice[skip..];
        skip = 0;
        iov[used] = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        used += 1;
    }
    used
}

/// One `sendmsg` call with the given iovecs and flags (MSG_NOSIGNAL is always added).
pub(crate) fn sendmsg_iov(
    fd: RawFd,
    iov: &mut [libc::iovec],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: msg points at iovecs that describe live buffers for the duration of the call.
    let rc = unsafe { libc::sendmsg(fd, &msg, flags | SEND_FLAGS) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// One error-queue message.
pub(crate) enum Notification {
    Zerocopy {
        lo: u32,
        hi: u32,
        copied: bool,
    },
    /// Something else on the error queue (e.g. an ICMP error); not ours to count.
    Other,
}

/// Reads one error-queue message without blocking; `None` when the queue is empty.
pub(crate) fn read_notification(fd: RawFd) -> io::Result<Option<Notification>> {
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg describes a live control buffer and no data buffers.
    let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(err),
        };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "zero-copy notification truncated (control buffer too small)",
        ));
    }
    // SAFETY: msg was filled by recvmsg; the CMSG_* helpers stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg points at a complete cmsghdr inside the control buffer.
        let header = unsafe { &*cmsg };
        let is_recverr = (header.cmsg_level == libc::SOL_IP
            && header.cmsg_type == libc::IP_RECVERR)
            || (header.cmsg_level == libc::SOL_IPV6 && header.cmsg_type == libc::IPV6_RECVERR);
        let data_len = header.cmsg_len as usize
            // SAFETY: computing the header length has no preconditions.
            - unsafe { libc::CMSG_LEN(0) } as usize;
        if is_recverr && data_len >= std::mem::size_of::<libc::sock_extended_err>() {
            // SAFETY: the data holds at least a sock_extended_err; it may be unaligned.
            let err: libc::sock_extended_err = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>())
            };
            if err.ee_origin == SO_EE_ORIGIN_ZEROCOPY && err.ee_errno == 0 {
                return Ok(Some(Notification::Zerocopy {
                    lo: err.ee_info,
                    hi: err.ee_data,
                    copied: err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                }));
            }
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(Some(Notification::Other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_iovecs_skips_whole_and_partial_slices() {
        let a = b"abc".as_slice();
        let empty = b"".as_slice();
        let b = b"defgh".as_slice();
        let slices = [a, empty, b];
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 3];
        assert_eq!(remaining_iovecs(&slices, 0, &mut iov), 2);
        assert_eq!(iov[0].iov_len, 3);
        assert_eq!(iov[1].iov_len, 5);
        assert_eq!(remaining_iovecs(&slices, 4, &mut iov), 1);
        assert_eq!(iov[0].iov_len, 4);
        assert_eq!(iov[0].iov_base as *const u8, b[1..].as_ptr());
        assert_eq!(remaining_iovecs(&slices, 8, &mut iov), 0);
    }

    #[test]
    fn send_all_with_retries_eintr_and_counts_partial_sends() {
        let mut replies = vec![
            Ok(3),
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(5),
        ];
        replies.reverse();
        let mut offsets = Vec::new();
        let mut tally = SendTally::default();
        send_all_with(-1, 8, &mut tally, |sent| {
            offsets.push(sent);
            replies.pop().unwrap()
        })
        .unwrap();
        assert_eq!(offsets, vec![0, 3, 3]);
        assert_eq!(
            tally,
            SendTally {
                syscalls: 3,
                partial_sends: 1,
                sent: 8
            }
        );
    }

    #[test]
    fn send_all_with_says_how_far_a_failed_loop_got() {
        let mut replies = vec![Ok(4), Err(io::Error::from(io::ErrorKind::BrokenPipe))];
        replies.reverse();
        let mut tally = SendTally::default();
        let err = send_all_with(-1, 10, &mut tally, |_| replies.pop().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!((tally.syscalls, tally.partial_sends, tally.sent), (2, 1, 4));
    }
}
