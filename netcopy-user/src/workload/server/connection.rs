//! One connection: the request loop, the reply header, the messages through the mode's
//! sender, error replies, and how the connection ended.

use std::{
    io::{self, Read},
    net::{Shutdown, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{config::ServerConfig, report::ConnectionReport};
use crate::{
    workload::modes::{new_sender, Sender},
    workload::protocol::{ReplyHeader, Request, Status, MAX_ERROR_TEXT_LEN, REQUEST_LEN},
    workload::sockets,
};

/// How waiting for the next request ended.
enum NextRequest {
    Readable,
    Stop,
}

fn wait_for_request(stream: &TcpStream, stop: &AtomicBool) -> io::Result<NextRequest> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(NextRequest::Stop);
        }
        let revents =
            sockets::poll_one(stream.as_raw_fd(), libc::POLLIN, Duration::from_millis(100))?;
        if revents != 0 {
            return Ok(NextRequest::Readable);
        }
    }
}

/// Reads until `buf` is full or the peer closes; returns the bytes read.
fn read_up_to(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if sockets::is_peer_gone(&err) => break,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "only {got} of {} request bytes arrived within {} s",
                        buf.len(),
                        REQUEST_READ_TIMEOUT.as_secs()
                    ),
                ))
            }
            Err(err) => return Err(err),
        }
    }
    Ok(got)
}

struct Connection<'a> {
    report: ConnectionReport,
    stream: TcpStream,
    config: &'a ServerConfig,
}

impl Connection<'_> {
    fn log(&self, what: &str) {
        eprintln!(
            "netcopy server: connection {} from {}: {what}",
            self.report.id, self.report.peer
        );
    }

    /// Writes an error reply and closes gracefully: the client must be able to read the
    /// text, which an immediate close with unread request bytes (an RST) could destroy.
    fn reject(&mut self, status: Status, text: &str) {
        let mut text = text.as_bytes();
        text = &text[..text.len().min(MAX_ERROR_TEXT_LEN as usize)];
        let header = ReplyHeader {
            status: status.code(),
            mode: self.config.mode.wire(),
            error_len: text.len() as u32,
        }
        .encode();
        let mut reply = header.to_vec();
        reply.extend_from_slice(text);
        match sockets::send_all(self.stream.as_raw_fd(), &reply) {
            Ok(_) => {
                self.report.reply_header_bytes += header.len() as u64;
                self.report.reply_error_text_bytes += text.len() as u64;
            }
            Err(err) => self.log(&format!("could not send the error reply: {err}")),
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        // Discard whatever the client still sends until it closes, for at most a second.
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut sink = [0u8; 4096];
        while Instant::now() < deadline {
            match (&self.stream).read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

/// Serves one connection until the client closes, a request is rejected, or the server
/// stops. Never panics on peer behaviour: everything ends up in the report.
/// Answers a connection beyond `--max-connections` with status busy, and closes it.
pub(super) fn refuse_connection(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
) -> ConnectionReport {
    let mut conn = Connection {
        report: ConnectionReport {
            id,
            peer: peer.to_string(),
            ..ConnectionReport::default()
        },
        stream,
        config,
    };
    let text = format!(
        "the server already serves its limit of {} connections (--max-connections)",
        config.max_connections
    );
    conn.reject(Status::Busy, &text);
    conn.report.end = "refused: connection limit".into();
    conn.report
}

pub(super) fn serve_connection(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    stop: &AtomicBool,
) -> ConnectionReport {
    let mut conn = Connection {
        report: ConnectionReport {
            id,
            peer: peer.to_string(),
            ..ConnectionReport::default()
        },
        stream,
        config,
    };
    let mut sender = match prepare_sender(&conn.stream, config) {
        Ok(sender) => Some(sender),
        Err(err) => {
            conn.log(&format!("cannot set up the {} sender: {err}", config.mode));
            None
        }
    };
    conn.report.end = serve_requests(&mut conn, &mut sender, stop);
    if let Some(sender) = sender.as_mut() {
        if let Err(err) = sender.finish(config.finish_timeout) {
            let warning = format!("warning: {err}");
            conn.log(&warning);
            conn.report.completion_warning = Some(warning);
        }
        conn.report.sender = sender.stats().clone();
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
    conn.report
}

/// A client that starts a request header must finish it within this time.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn prepare_sender(stream: &TcpStream, config: &ServerConfig) -> io::Result<Box<dyn Sender>> {
    let fd = stream.as_raw_fd();
    stream.set_read_timeout(Some(REQUEST_READ_TIMEOUT))?;
    // The reply header and the first message go out as separate sends: without NODELAY,
    // Nagle would hold the message until the header is acknowledged.
    stream.set_nodelay(true)?;
    if let Some(bytes) = config.send_buffer {
        sockets::set_send_buffer(fd, bytes)?;
    }
    if let Some(timeout) = config.send_timeout {
        stream.set_write_timeout(Some(timeout))?;
    }
    new_sender(config.mode, stream.try_clone()?, &config.zero_copy)
}

/// The request loop; returns why the connection ended.
fn serve_requests(
    conn: &mut Connection,
    sender: &mut Option<Box<dyn Sender>>,
    stop: &AtomicBool,
) -> String {
    let fd = conn.stream.as_raw_fd();
    loop {
        match wait_for_request(&conn.stream, stop) {
            Ok(NextRequest::Stop) => return "server stopping".to_string(),
            Ok(NextRequest::Readable) => {}
            Err(err) => {
                conn.report.errors += 1;
                conn.log(&format!("waiting for a request failed: {err}"));
                return format!("error: {err}");
            }
        }
        let mut bytes = [0u8; REQUEST_LEN];
        let got = match read_up_to(&conn.stream, &mut bytes) {
            Ok(got) => got,
            Err(err) => {
                conn.report.errors += 1;
                conn.log(&format!("reading a request failed: {err}"));
                return format!("error: {err}");
            }
        };
        conn.report.request_bytes_received += got as u64;
        if got == 0 {
            return "client closed".to_string();
        }
        if got < REQUEST_LEN {
            conn.report.errors += 1;
            let what = format!(
                "truncated request header: {got} of {REQUEST_LEN} bytes, then the client closed"
            );
            conn.log(&what);
            return what;
        }
        conn.report.requests += 1;
        let request = match Request::decode(&bytes, conn.config.max_size) {
            Ok(request) => request,
            Err(err) => {
                conn.report.errors += 1;
                conn.log(&format!("rejected request: {err}"));
                let before = conn.report.reply_header_bytes + conn.report.reply_error_text_bytes;
                conn.reject(err.status(), &err.to_string());
                if let Some(sender) = sender.as_mut() {
                    sender.wrote_other(
                        conn.report.reply_header_bytes + conn.report.reply_error_text_bytes
                            - before,
                    );
                }
                return format!("rejected request: {}", err.status().name());
            }
        };
        let Some(sender) = sender.as_mut() else {
            conn.report.errors += 1;
            let text = format!(
                "the server cannot send in {} mode on this connection",
                conn.config.mode
            );
            conn.reject(Status::ServerError, &text);
            return text;
        };
        let reply = ReplyHeader::ok(conn.config.mode.wire()).encode();
        if let Err(err) = sockets::send_all(fd, &reply) {
            return peer_end(conn, &err, "sending the reply header");
        }
        conn.report.reply_header_bytes += reply.len() as u64;
        sender.wrote_other(reply.len() as u64);

        let mut seq = 0u64;
        while request.count == 0 || seq < request.count {
            if stop.load(Ordering::SeqCst) {
                // A client that closed its stream before the stop is why the stream ended,
                // even when this thread, descheduled between two sends, sees the stop
                // first (it used to say "server stopping" on a loaded machine).
                if request.count == 0 && peer_closed(fd) {
                    return format!("client closed the stream after {seq} messages");
                }
                return format!("server stopping after {seq} messages of the current request");
            }
            if let Err(err) = sender.send_message(request.size, seq) {
                if sockets::is_peer_gone(&err) && request.count == 0 {
                    // The expected end of a stream: the client closed after its duration.
                    return format!("client closed the stream after {seq} messages");
                }
                let context = if request.count == 0 {
                    format!("sending message {seq} of a stream")
                } else {
                    format!("sending message {seq} of {}", request.count)
                };
                return peer_end(conn, &err, &context);
            }
            seq += 1;
        }
    }
}

/// The client has closed or reset the connection (what a send to it would find out).
fn peer_closed(fd: std::os::fd::RawFd) -> bool {
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    sockets::poll_one(fd, gone, std::time::Duration::ZERO).is_ok_and(|revents| revents & gone != 0)
}

/// Logs a failed send; a vanished client ends only this connection and is not a server
/// error.
fn peer_end(conn: &mut Connection, err: &io::Error, context: &str) -> String {
    if sockets::is_peer_gone(err) {
        let what = format!("client disconnected while {context} ({err})");
        conn.log(&what);
        what
    } else {
        conn.report.errors += 1;
        let what = format!("error while {context}: {err}");
        conn.log(&what);
        what
    }
}
