//! `--recv zerocopy`: receiving with getsockopt(TCP_ZEROCOPY_RECEIVE) on a read-only
//! mapping of the socket, the way the kernel selftest `tools/testing/selftests/net/
//! tcp_mmap.c` does. The kernel maps the received pages into the mapping where it can (a
//! frag that is exactly one 4096-byte page at offset 0, not part of a compound page) and
//! copies the rest: the remainder below a page into our copy buffer within the same call
//! (`copybuf`), and what it could not map of a larger stretch is left for a plain recv()
//! (`recv_skip_hint`). Every byte handed over is counted by how: mapped, copied into the
//! copy buffer, or read after a skip hint.
//!
//! Facts this code relies on (Linux `net/ipv4/tcp.c`, `tcp_zerocopy_receive`, measured on
//! this machine's 6.18): the mapping must be PROT_READ and MAP_SHARED (write or exec:
//! EPERM); `address` must be page-aligned inside it (else EINVAL); `reserved` must be 0;
//! when the queued bytes are at most `copybuf_len` the kernel copies them all instead of
//! mapping; the call never blocks (nothing queued: length 0, hint 0); at the end of the
//! stream it fails with EIO; tracepoint skb_copy_datagram_iovec fires for exactly the
//! bytes copied, never for mapped ones.

use std::{
    io,
    net::TcpStream,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr::NonNull,
    sync::OnceLock,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::workload::sockets;

/// `struct tcp_zerocopy_receive` of the kernel's UAPI header `include/uapi/linux/tcp.h`
/// (the layout of Linux >= 5.11, 64 bytes; the libc crate has only the option number).
/// The kernel accepts shorter, older layouts by `optlen` and fills in what it knows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpZeroCopyReceive {
    /// in: address of the mapping (page-aligned).
    pub(crate) address: u64,
    /// in: bytes to map at most; out: bytes mapped.
    pub(crate) length: u32,
    /// out: bytes after the mapped ones that must be read with recv() (not mappable).
    pub(crate) recv_skip_hint: u32,
    /// out: bytes still queued.
    pub(crate) inq: u32,
    /// out: the socket's pending error, negative errno.
    pub(crate) err: i32,
    /// in: copy buffer for what cannot be mapped.
    pub(crate) copybuf_address: u64,
    /// in: copy buffer size; out: bytes copied into it, or a negative errno.
    pub(crate) copybuf_len: i32,
    /// in: TCP_RECEIVE_ZEROCOPY_FLAG_*.
    pub(crate) flags: u32,
    pub(crate) msg_control: u64,
    pub(crate) msg_controllen: u64,
    pub(crate) msg_flags: u32,
    /// Must be 0.
    pub(crate) reserved: u32,
}

// The probe on `tcp_zerocopy_receive` reads `length` where this struct has it.
const _: () = assert!(
    std::mem::offset_of!(TcpZeroCopyReceive, length)
        == netcopy_common::TCP_ZC_LENGTH_OFFSET as usize
        && std::mem::size_of::<TcpZeroCopyReceive>() == 64
);

/// What the kernel handed over for one connection, by how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroCopyReceiveFigures {
    /// Bytes the kernel mapped into the receiver's memory: not copied.
    pub mapped_bytes: u64,
    /// Bytes the kernel copied into the copy buffer within getsockopt (remainders it could
    /// not map, and everything when fewer bytes than the buffer were queued).
    pub copybuf_bytes: u64,
    /// Bytes read with recv() after the kernel's `recv_skip_hint` said they cannot be
    /// mapped: copied too.
    pub skip_hint_bytes: u64,
    pub getsockopt_calls: u64,
    pub recv_calls: u64,
}

impl ZeroCopyReceiveFigures {
    /// Bytes the kernel copied to user memory (what skb_copy_datagram_iovec sees).
    pub fn copied_bytes(&self) -> u64 {
        self.copybuf_bytes + self.skip_hint_bytes
    }

    /// Every byte handed over, mapped or copied.
    pub fn received_bytes(&self) -> u64 {
        self.mapped_bytes + self.copied_bytes()
    }

    pub fn add(&mut self, other: &ZeroCopyReceiveFigures) {
        self.mapped_bytes += other.mapped_bytes;
        self.copybuf_bytes += other.copybuf_bytes;
        self.skip_hint_bytes += other.skip_hint_bytes;
        self.getsockopt_calls += other.getsockopt_calls;
        self.recv_calls += other.recv_calls;
    }

    /// Mapped share of what was handed over, None before anything was.
    pub fn mapped_fraction(&self) -> Option<f64> {
        let total = self.received_bytes();
        (total > 0).then(|| self.mapped_bytes as f64 / total as f64)
    }
}

/// What one getsockopt(TCP_ZEROCOPY_RECEIVE) call gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes mapped, then bytes copied into the copy buffer, then bytes to recv().
    Data { mapped: u32, copied: u32, skip: u32 },
    /// Nothing queued yet.
    Nothing,
    /// The peer closed the stream and everything was read.
    End,
    /// The call or the socket failed, with this errno.
    Failed(i32),
}

/// Reads one call's result: `errno` is None when getsockopt returned 0.
pub(crate) fn classify(errno: Option<i32>, zc: &TcpZeroCopyReceive) -> Step {
    match errno {
        Some(libc::EIO) => return Step::End,
        Some(e) => return Step::Failed(e),
        None => {}
    }
    if zc.err != 0 {
        return Step::Failed(zc.err.saturating_neg());
    }
    if zc.copybuf_len < 0 {
        return Step::Failed(zc.copybuf_len.saturating_neg());
    }
    let copied = zc.copybuf_len as u32;
    if zc.length == 0 && copied == 0 && zc.recv_skip_hint == 0 {
        return Step::Nothing;
    }
    Step::Data {
        mapped: zc.length,
        copied,
        skip: zc.recv_skip_hint,
    }
}

/// Virtual size of each connection's mapping (the most one call maps): the selftest's
/// default chunk. Address space only; the pages are the socket's.
const MAP_BYTES: usize = 512 << 10;
/// Most bytes one recv() after a skip hint reads.
const RECV_BYTES: usize = 64 << 10;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

fn zerocopy_getsockopt(fd: RawFd, zc: &mut TcpZeroCopyReceive) -> Option<i32> {
    let mut len = std::mem::size_of::<TcpZeroCopyReceive>() as libc::socklen_t;
    // SAFETY: zc is a valid, writable TcpZeroCopyReceive of `len` bytes for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_ZEROCOPY_RECEIVE,
            (zc as *mut TcpZeroCopyReceive).cast(),
            &mut len,
        )
    };
    (rc != 0).then(|| {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    })
}

/// A read-only shared mapping of a TCP socket, unmapped on drop.
struct SocketMapping {
    base: NonNull<u8>,
    len: usize,
}

impl SocketMapping {
    fn new(fd: RawFd, len: usize) -> io::Result<SocketMapping> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(SocketMapping { base, len })
    }

    /// Releases the pages mapped in the first `len` bytes (they belong to data already
    /// consumed), as the selftest does: cheaper now than in the next call.
    fn release(&self, len: usize) {
        // SAFETY: within our own mapping; no slice into it outlives the consumption
        // (`ZeroCopyReceiver::take` borrows the receiver).
        unsafe {
            libc::madvise(
                self.base.as_ptr().cast(),
                len.min(self.len),
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl Drop for SocketMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Whether this kernel offers TCP_ZEROCOPY_RECEIVE and the mapping of a TCP socket
/// (Linux >= 4.18 with CONFIG_MMU): a fresh, unconnected socket is mapped and asked (it
/// answers with nothing queued where the option exists, ENOPROTOOPT where not).
///
/// Asked once per process, the answer kept: the probe's getsockopt is a
/// `tcp_zerocopy_receive` call the kernel sees, and `verify` asks before it watches its
/// own process, so that the client's ask (after the watch) adds no call that the
/// receiver's own count of its getsockopt calls would not have (it did: 143 against 142).
pub fn zerocopy_receive_available() -> io::Result<()> {
    static ANSWER: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();
    ANSWER
        .get_or_init(|| probe_zerocopy_receive().map_err(|e| (e.kind(), e.to_string())))
        .clone()
        .map_err(|(kind, why)| io::Error::new(kind, why))
}

fn probe_zerocopy_receive() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("a probe socket: {e}")));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = socket.as_raw_fd();
    SocketMapping::new(fd, page_size())
        .map_err(|e| io::Error::new(e.kind(), format!("mmap of a TCP socket: {e}")))?;
    let mut zc = TcpZeroCopyReceive::default();
    match zerocopy_getsockopt(fd, &mut zc) {
        None => Ok(()),
        Some(e) => Err(io::Error::new(
            io::Error::from_raw_os_error(e).kind(),
            format!(
                "getsockopt(TCP_ZEROCOPY_RECEIVE): {}",
                io::Error::from_raw_os_error(e)
            ),
        )),
    }
}

/// One connection's receiver: the mapping, the copy buffers, and what is handed over but
/// not consumed yet (in stream order: mapped bytes, then copy-buffer bytes, then bytes
/// read after a skip hint).
pub(super) struct ZeroCopyReceiver {
    fd: RawFd,
    map: SocketMapping,
    copybuf: Vec<u8>,
    recvbuf: Vec<u8>,
    /// (consumed, handed over) of the mapping, the copy buffer and the recv buffer.
    mapped: (usize, usize),
    copied: (usize, usize),
    read: (usize, usize),
    /// Bytes the kernel said to recv() that are not read yet.
    skip_left: usize,
    /// How long to wait for data before reporting `WouldBlock` (the caller's deadline
    /// checks run between waits).
    wait: Duration,
    pub(super) figures: ZeroCopyReceiveFigures,
}

impl ZeroCopyReceiver {
    pub(super) fn new(stream: &TcpStream) -> io::Result<ZeroCopyReceiver> {
        let fd = stream.as_raw_fd();
        let page = page_size();
        let map = SocketMapping::new(fd, MAP_BYTES.div_ceil(page) * page)
            .map_err(|e| io::Error::new(e.kind(), format!("mmap of the socket: {e}")))?;
        let wait = stream.read_timeout()?.unwrap_or(Duration::from_millis(500));
        Ok(ZeroCopyReceiver {
            fd,
            map,
            // One byte short of a page: a page or more queued is always offered for
            // mapping (the kernel copies everything when the queue fits the buffer), and
            // any remainder below a page is copied within the same call.
            copybuf: vec![0u8; page - 1],
            recvbuf: vec![0u8; RECV_BYTES],
            mapped: (0, 0),
            copied: (0, 0),
            read: (0, 0),
            skip_left: 0,
            wait,
            figures: ZeroCopyReceiveFigures::default(),
        })
    }

    /// Bytes handed over by the kernel and not consumed yet.
    pub(super) fn unconsumed(&self) -> u64 {
        [self.mapped, self.copied, self.read]
            .iter()
            .map(|(used, len)| (len - used) as u64)
            .sum()
    }

    /// Makes at least one byte available to [`take`](Self::take): returns how many are, 0
    /// at the end of the stream, `WouldBlock` when nothing arrived within the wait.
    pub(super) fn ready(&mut self) -> io::Result<usize> {
        loop {
            let available = self.unconsumed() as usize;
            if available > 0 {
                return Ok(available);
            }
            if self.skip_left > 0 {
                let want = self.skip_left.min(self.recvbuf.len());
                // SAFETY: recvbuf is valid for writes of `want` bytes.
                let n = unsafe { libc::recv(self.fd, self.recvbuf.as_mut_ptr().cast(), want, 0) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                self.figures.recv_calls += 1;
                if n == 0 {
                    return Ok(0);
                }
                let n = n as usize;
                self.skip_left -= n;
                self.figures.skip_hint_bytes += n as u64;
                self.read = (0, n);
                continue;
            }
            if !self.refill()? {
                return Ok(0);
            }
        }
    }

    /// Consumes up to `max` of the available bytes, in stream order, without copying them.
    pub(super) fn take(&mut self, max: usize) -> &[u8] {
        let slot = |(used, len): &mut (usize, usize)| {
            let n = (*len - *used).min(max);
            let from = *used;
            *used += n;
            (from, n)
        };
        if self.mapped.0 < self.mapped.1 {
            let (from, n) = slot(&mut self.mapped);
            // SAFETY: the kernel mapped `mapped.1` bytes at the start of our mapping in
            // the last call; they stay mapped, read-only and unchanged until the next
            // call or `release`, which need `&mut self` and so cannot overlap this borrow.
            return unsafe { std::slice::from_raw_parts(self.map.base.as_ptr().add(from), n) };
        }
        if self.copied.0 < self.copied.1 {
            let (from, n) = slot(&mut self.copied);
            return &self.copybuf[from..from + n];
        }
        let (from, n) = slot(&mut self.read);
        &self.recvbuf[from..from + n]
    }

    /// One getsockopt(TCP_ZEROCOPY_RECEIVE), waiting for data while none is queued.
    /// Ok(false): the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        if self.mapped.1 > 0 {
            self.map.release(self.mapped.1);
        }
        self.mapped = (0, 0);
        self.copied = (0, 0);
        self.read = (0, 0);
        loop {
            let mut zc = TcpZeroCopyReceive {
                address: self.map.base.as_ptr() as u64,
                length: self.map.len as u32,
                copybuf_address: self.copybuf.as_mut_ptr() as u64,
                copybuf_len: self.copybuf.len() as i32,
                ..TcpZeroCopyReceive::default()
            };
            let errno = zerocopy_getsockopt(self.fd, &mut zc);
            self.figures.getsockopt_calls += 1;
            match classify(errno, &zc) {
                Step::Data {
                    mapped,
                    copied,
                    skip,
                } => {
                    self.mapped = (0, mapped as usize);
                    self.copied = (0, copied as usize);
                    self.skip_left = skip as usize;
                    self.figures.mapped_bytes += u64::from(mapped);
                    self.figures.copybuf_bytes += u64::from(copied);
                    return Ok(true);
                }
                Step::End => {
                    // EIO also follows a reset: the socket's error says which.
                    return match socket_error(self.fd)? {
                        Some(err) => Err(err),
                        None => Ok(false),
                    };
                }
                Step::Nothing => {
                    if sockets::poll_one(self.fd, libc::POLLIN, self.wait)? == 0 {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                Step::Failed(libc::EINTR) => {}
                Step::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }
}

/// SO_ERROR of `fd`: the error that ended the stream, None for an orderly close.
fn socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value is a c_int of `len` bytes, writable for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn the_struct_has_the_kernels_layout() {
        // include/uapi/linux/tcp.h, Linux >= 5.11.
        assert_eq!(size_of::<TcpZeroCopyReceive>(), 64);
        assert_eq!(offset_of!(TcpZeroCopyReceive, address), 0);
        assert_eq!(offset_of!(TcpZeroCopyReceive, length), 8);
        assert_eq!(offset_of!(TcpZeroCopyReceive, recv_skip_hint), 12);
        assert_eq!(offset_of!(TcpZeroCopyReceive, inq), 16);
        assert_eq!(offset_of!(TcpZeroCopyReceive, err), 20);
        assert_eq!(offset_of!(TcpZeroCopyReceive, copybuf_address), 24);
        assert_eq!(offset_of!(TcpZeroCopyReceive, copybuf_len), 32);
        assert_eq!(offset_of!(TcpZeroCopyReceive, flags), 36);
        assert_eq!(offset_of!(TcpZeroCopyReceive, msg_control), 40);
        assert_eq!(offset_of!(TcpZeroCopyReceive, msg_controllen), 48);
        assert_eq!(offset_of!(TcpZeroCopyReceive, msg_flags), 56);
        assert_eq!(offset_of!(TcpZeroCopyReceive, reserved), 60);
        assert_eq!(libc::TCP_ZEROCOPY_RECEIVE, 35);
    }

    #[test]
    fn each_result_of_the_call_is_read_as_the_kernel_means_it() {
        let zc = |length, copybuf_len, recv_skip_hint, err| TcpZeroCopyReceive {
            length,
            copybuf_len,
            recv_skip_hint,
            err,
            ..Default::default()
        };
        assert_eq!(
            classify(None, &zc(8192, 100, 20000, 0)),
            Step::Data {
                mapped: 8192,
                copied: 100,
                skip: 20000
            }
        );
        assert_eq!(
            classify(None, &zc(0, 0, 5000, 0)),
            Step::Data {
                mapped: 0,
                copied: 0,
                skip: 5000
            }
        );
        assert_eq!(classify(None, &zc(0, 0, 0, 0)), Step::Nothing);
        assert_eq!(classify(Some(libc::EIO), &zc(0, 0, 0, 0)), Step::End);
        assert_eq!(
            classify(Some(libc::EINVAL), &zc(0, 0, 0, 0)),
            Step::Failed(libc::EINVAL)
        );
        assert_eq!(
            classify(None, &zc(4096, 0, 0, -libc::ECONNRESET)),
            Step::Failed(libc::ECONNRESET)
        );
        assert_eq!(
            classify(None, &zc(0, -libc::EFAULT, 0, 0)),
            Step::Failed(libc::EFAULT)
        );
    }

    #[test]
    fn this_kernel_offers_zerocopy_receive() {
        // Linux 6.18 here (and every kernel since 4.18): the probe must say yes.
        zerocopy_receive_available().unwrap();
    }

    #[test]
    fn figures_add_up_by_how_the_bytes_came() {
        let mut total = ZeroCopyReceiveFigures::default();
        assert_eq!(total.mapped_fraction(), None);
        total.add(&ZeroCopyReceiveFigures {
            mapped_bytes: 12288,
            copybuf_bytes: 100,
            skip_hint_bytes: 3708,
            getsockopt_calls: 2,
            recv_calls: 1,
        });
        assert_eq!(total.copied_bytes(), 3808);
        assert_eq!(total.received_bytes(), 16096);
        assert_eq!(total.mapped_fraction(), Some(12288.0 / 16096.0));
    }
}
