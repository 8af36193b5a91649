//! `netcopy server`: answers requests with messages sent by one [`Mode`], one thread per
//! connection.
//!
//! Per request the server sends, in this order: a 16-byte reply header with a plain
//! `send()` (never zero-copy, so it consumes no notification id), then, for an ok status,
//! `count` messages through the connection's [`Sender`] (16-byte message header + payload
//! each). A rejected request gets the reply header plus its error text, and the connection
//! is closed after the client has had a chance to read it.
//!
//! Library use (tests and the experiment runner):
//! ```no_run
//! # use std::sync::{Arc, atomic::AtomicBool};
//! # use netcopy::{workload::modes::Mode, workload::server::{Server, ServerConfig}};
//! let server = Server::bind(ServerConfig::new(Mode::ZeroCopy, "127.0.0.1:0"))?;
//! let addr = server.local_addr();
//! let stop = Arc::new(AtomicBool::new(false));
//! let totals = server.run(stop)?; // returns once `stop` is set and connections ended
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    util::units::{duration_arg, format_size, size_arg},
    workload::message::MAX_PAYLOAD_SIZE,
    workload::modes::{new_sender, Mode, Sender, SenderStats, ZeroCopyConfig},
    workload::protocol::{ReplyHeader, Request, Status, MAX_ERROR_TEXT_LEN, REQUEST_LEN},
    workload::sockets,
};

/// Everything the server needs; [`ServerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub mode: Mode,
    /// `ADDR:PORT`; port 0 picks a free port ([`Server::local_addr`] tells which).
    pub listen: String,
    /// Largest message size a request may ask for.
    pub max_size: u64,
    /// SO_SNDBUF for accepted sockets (tests use a small one to force partial sends).
    pub send_buffer: Option<usize>,
    /// SO_SNDTIMEO for accepted sockets: a blocking send then returns early with a partial
    /// count, which exercises the senders' partial-write paths.
    pub send_timeout: Option<Duration>,
    pub zero_copy: ZeroCopyConfig,
    /// How long a connection waits for outstanding zero-copy completions at its end.
    pub finish_timeout: Duration,
    /// After a stop, how long connections get to end on their own before their sockets are
    /// shut down under them.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    pub fn new(mode: Mode, listen: &str) -> Self {
        ServerConfig {
            mode,
            listen: listen.to_string(),
            max_size: 64 << 20,
            send_buffer: None,
            send_timeout: None,
            zero_copy: ZeroCopyConfig::default(),
            finish_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What one connection did. The sender's statistics are flattened into the same object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub id: u64,
    pub peer: String,
    /// Complete request headers received (valid or not).
    pub requests: u64,
    /// Every request byte read, including a truncated last header.
    pub request_bytes_received: u64,
    /// Reply header bytes sent (16 per answered request).
    pub reply_header_bytes: u64,
    /// Error text bytes sent after error reply headers.
    pub reply_error_text_bytes: u64,
    /// Rejected requests, truncated headers and failed sends other than a vanished client.
    pub errors: u64,
    /// Why the connection ended.
    pub end: String,
    /// Set when zero-copy completions did not all arrive in time.
    pub completion_warning: Option<String>,
    #[serde(flatten)]
    pub sender: SenderStats,
}

/// Sums over all connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionTotals {
    pub connections: u64,
    pub requests: u64,
    pub request_bytes_received: u64,
    pub reply_header_bytes: u64,
    pub reply_error_text_bytes: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub sender: SenderStats,
}

impl ConnectionTotals {
    fn add(&mut self, report: &ConnectionReport) {
        self.connections += 1;
        self.requests += report.requests;
        self.request_bytes_received += report.request_bytes_received;
        self.reply_header_bytes += report.reply_header_bytes;
        self.reply_error_text_bytes += report.reply_error_text_bytes;
        self.errors += report.errors;
        self.sender.add(&report.sender);
    }
}

/// What [`Server::run`] returns and `--json` prints as the `totals` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerTotals {
    pub mode: Mode,
    pub addr: SocketAddr,
    pub connections: Vec<ConnectionReport>,
    pub total: ConnectionTotals,
}

/// A bound, listening server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Arc<ServerConfig>,
}

impl Server {
    /// Binds and listens. Fails with a clear message when the address is in use, the size
    /// limit is impossible, or (zero-copy) the kernel refuses SO_ZEROCOPY.
    pub fn bind(config: ServerConfig) -> Result<Server> {
        if config.max_size == 0 || config.max_size > MAX_PAYLOAD_SIZE {
            bail!(
                "--max-size must be between 1 and {} bytes (the payload length is a u32 on \
                 the wire), not {}",
                MAX_PAYLOAD_SIZE,
                config.max_size
            );
        }
        if config.zero_copy.max_in_flight == 0 {
            bail!("the zero-copy pool needs room for at least one message in flight");
        }
        (config.mode.spec().available)()
            .with_context(|| format!("{} mode is unavailable", config.mode))?;
        let addrs: Vec<SocketAddr> = config
            .listen
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve listen address {:?}", config.listen))?
            .collect();
        let addr = *addrs
            .first()
            .with_context(|| format!("listen address {:?} resolves to nothing", config.listen))?;
        let listener = TcpListener::bind(addr).map_err(|err| {
            let hint = if err.kind() == io::ErrorKind::AddrInUse {
                " (address already in use: another server is listening there; pick another \
                 port or use port 0)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot listen on {addr}: {err}{hint}")
        })?;
        let local_addr = listener
            .local_addr()
            .context("reading the listening address")?;
        listener
            .set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        Ok(Server {
            listener,
            local_addr,
            config: Arc::new(config),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts and serves until `stop` is set; then stops accepting, lets connections end
    /// (draining zero-copy completions), and returns what every connection did.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<ServerTotals> {
        let registry: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let mut running: Vec<JoinHandle<ConnectionReport>> = Vec::new();
        let mut reports: Vec<ConnectionReport> = Vec::new();
        let mut next_id = 0u64;
        let listen_fd = self.listener.as_raw_fd();

        while !stop.load(Ordering::SeqCst) {
            sockets::poll_one(listen_fd, libc::POLLIN, Duration::from_millis(100))
                .context("waiting for connections")?;
            loop {
                match self.listener.accept() {
                    Ok((stream, peer)) => {
                        let id = next_id;
                        next_id += 1;
                        match self.spawn_connection(id, stream, peer, &stop, &registry) {
                            Ok(handle) => running.push(handle),
                            Err(err) => eprintln!(
                                "netcopy server: connection {id} from {peer} dropped: {err:#}"
                            ),
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                        ) => {}
                    Err(err) => {
                        // EMFILE and friends: log, back off, keep serving the others.
                        eprintln!("netcopy server: accept failed: {err}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
            reap_finished(&mut running, &mut reports);
        }
        drop(self.listener);

        let deadline = Instant::now() + self.config.shutdown_grace;
        while running.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(streams) = registry.lock() {
            for stream in streams.values() {
                // Wakes a thread blocked in send() to a client that stopped reading.
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        for handle in running {
            reports.push(join_connection(handle));
        }
        reports.sort_by_key(|r| r.id);
        let mut total = ConnectionTotals::default();
        for report in &reports {
            total.add(report);
        }
        Ok(ServerTotals {
            mode: self.config.mode,
            addr: self.local_addr,
            connections: reports,
            total,
        })
    }

    fn spawn_connection(
        &self,
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        stop: &Arc<AtomicBool>,
        registry: &Arc<Mutex<HashMap<u64, TcpStream>>>,
    ) -> Result<JoinHandle<ConnectionReport>> {
        stream
            .set_nonblocking(false)
            .context("making the connection blocking")?;
        let registered = stream.try_clone().context("duplicating the socket")?;
        if let Ok(mut streams) = registry.lock() {
            streams.insert(id, registered);
        }
        let config = Arc::clone(&self.config);
        let stop = Arc::clone(stop);
        let registry = Arc::clone(registry);
        std::thread::Builder::new()
            .name(format!("conn-{id}"))
            .spawn(move || {
                let report = serve_connection(id, stream, peer, &config, &stop);
                if let Ok(mut streams) = registry.lock() {
                    streams.remove(&id);
                }
                report
            })
            .context("starting the connection thread")
    }
}

fn reap_finished(
    running: &mut Vec<JoinHandle<ConnectionReport>>,
    reports: &mut Vec<ConnectionReport>,
) {
    let mut index = 0;
    while index < running.len() {
        if running[index].is_finished() {
            reports.push(join_connection(running.swap_remove(index)));
        } else {
            index += 1;
        }
    }
}

fn join_connection(handle: JoinHandle<ConnectionReport>) -> ConnectionReport {
    let name = handle.thread().name().unwrap_or("connection").to_string();
    handle.join().unwrap_or_else(|_| {
        eprintln!("netcopy server: {name}: the connection thread panicked");
        ConnectionReport {
            id: name.trim_start_matches("conn-").parse().unwrap_or(u64::MAX),
            end: "connection thread panicked".to_string(),
            errors: 1,
            ..ConnectionReport::default()
        }
    })
}

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
fn serve_connection(
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
                conn.reject(err.status(), &err.to_string());
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

        let mut seq = 0u64;
        while request.count == 0 || seq < request.count {
            if stop.load(Ordering::SeqCst) {
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

/// Installs SIGINT and SIGTERM handlers that set the returned process-wide flag.
pub fn stop_flag_on_signals() -> io::Result<Arc<AtomicBool>> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_stop_signal(_signal: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        if let Some(flag) = STOP.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    let flag = Arc::clone(STOP.get_or_init(|| Arc::new(AtomicBool::new(false))));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; the handler only performs an atomic store.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(flag)
}

/// `netcopy server`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Send mechanism.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Largest message size a client may request (K/M/G are binary units).
    #[arg(long, default_value = "64M", value_parser = size_arg, value_name = "SIZE")]
    pub max_size: u64,
    /// Print exactly two JSON lines on stdout: `listening` at start, `totals` at the end.
    #[arg(long)]
    pub json: bool,
    /// Zero-copy: most messages awaiting completion per connection.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub zc_max_in_flight: usize,
    /// Zero-copy: most bytes of message slots per connection.
    #[arg(long, default_value = "64M", value_parser = size_arg, value_name = "SIZE")]
    pub zc_pool_bytes: u64,
    /// SO_SNDBUF of accepted sockets (testing partial writes).
    #[arg(long, hide = true, value_parser = size_arg)]
    pub sndbuf: Option<u64>,
    /// SO_SNDTIMEO of accepted sockets (testing partial writes).
    #[arg(long, hide = true, value_parser = duration_arg)]
    pub send_timeout: Option<Duration>,
}

impl ServerArgs {
    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(self.mode, &self.listen);
        config.max_size = self.max_size;
        config.zero_copy = ZeroCopyConfig {
            max_in_flight: self.zc_max_in_flight,
            max_pool_bytes: self.zc_pool_bytes,
        };
        config.send_buffer = self.sndbuf.map(|b| b.min(i32::MAX as u64) as usize);
        config.send_timeout = self.send_timeout;
        config
    }
}

/// Runs `netcopy server` until SIGINT/SIGTERM; exit 0 after printing the totals.
pub fn run_server_command(args: ServerArgs) -> Result<ExitCode> {
    let stop = stop_flag_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    let server = Server::bind(args.config())?;
    let addr = server.local_addr();
    if args.json {
        let line =
            serde_json::json!({"event": "listening", "addr": addr.to_string(), "mode": args.mode});
        print_line(&line.to_string())?;
    } else {
        print_line(&format!(
            "netcopy server: listening on {addr}, mode {}, max size {}",
            args.mode,
            format_size(args.max_size)
        ))?;
    }
    let totals = server.run(stop)?;
    if args.json {
        let mut value = serde_json::to_value(&totals).context("encoding the totals")?;
        if let Some(object) = value.as_object_mut() {
            object.insert("event".to_string(), "totals".into());
        }
        print_line(&value.to_string())?;
    } else {
        print_line(&totals_text(&totals))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_line(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

/// The human-readable totals.
pub fn totals_text(totals: &ServerTotals) -> String {
    let mut text = format!(
        "netcopy server: stopped; mode {}, {} connections\n",
        totals.mode,
        totals.connections.len()
    );
    let line = |label: &str, requests: u64, errors: u64, s: &SenderStats| {
        let mut line = format!(
            "  {label}: requests {requests}, messages {}, payload bytes {}, header bytes {}, errors {errors}",
            s.messages, s.payload_bytes, s.header_bytes
        );
        if totals.mode.spec().claim.completions {
            line.push_str(&format!(
                ", zero-copy sends {}, completions {} ({} notifications), flagged copied {}, copied bytes {}",
                s.zerocopy_sends, s.completed_sends, s.completion_notifications, s.copied_sends, s.copied_bytes
            ));
        }
        line.push('\n');
        line
    };
    for c in &totals.connections {
        text.push_str(&line(
            &format!("connection {} ({}, {})", c.id, c.peer, c.end),
            c.requests,
            c.errors,
            &c.sender,
        ));
    }
    text.push_str(&line(
        "total",
        totals.total.requests,
        totals.total.errors,
        &totals.total.sender,
    ));
    text.trim_end().to_string()
}
