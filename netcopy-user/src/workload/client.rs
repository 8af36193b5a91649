//! `netcopy client`: T threads, one connection each, that request messages and verify every
//! one of them (length, CRC32C, sequence number, and the per-field stamps).
//!
//! Patterns:
//! - `stream`: one request per thread, for its share of `--messages` (split evenly, the
//!   remainder to the first threads) or with count 0 for `--duration`, after which the
//!   thread closes the connection and discards a partial last message. Latency samples are
//!   arrival intervals: time from the previous message's last byte (for the first message:
//!   from writing the request) to this message's last byte (`latency_kind`
//!   `"arrival-interval"`).
//! - `rr`: one request with count 1 per transaction on the same connection; each sample is
//!   the time from writing the request to reading the last payload byte
//!   (`latency_kind` `"round-trip"`). A `--duration` run starts no transaction after its
//!   deadline and finishes the one in flight, so no message is cut off.
//!
//! Byte accounting (exact, for the copy ledger): per request the client writes
//! [`REQUEST_LEN`] bytes and reads a [`REPLY_HEADER_LEN`] reply header; per message a
//! [`MESSAGE_HEADER_LEN`] header plus `size` payload bytes. `received_bytes` counts every
//! byte read from the sockets, including a partial message discarded at the end of a
//! `--duration` run (`discarded_bytes`).

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Barrier,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    util::units::{duration_arg, format_size, size_arg},
    workload::message::{stamp_bytes, FieldLayout, MAX_PAYLOAD_SIZE, STAMP_LEN},
    workload::modes::Mode,
    workload::protocol::{
        MessageHeader, ReplyHeader, Request, Status, MESSAGE_HEADER_LEN, REPLY_HEADER_LEN,
        REQUEST_LEN,
    },
    workload::sockets,
};

/// Most client threads.
pub const MAX_THREADS: usize = 256;
/// Bytes read per read() call at most; bounds memory at 256 threads.
const READ_CHUNK: usize = 256 << 10;
/// Error texts kept in the report.
const MAX_REPORTED_ERRORS: usize = 16;

/// Message traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// One request per thread, messages back to back.
    Stream,
    /// Request/response: one request of count 1 per transaction.
    Rr,
}

/// How much of every message the client checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// CRC32C of the payload, sequence number, length and field stamps.
    Full,
    /// Sequence number, length and field stamps, no payload checksum: the receive loop
    /// does what iperf3's does (read and discard) plus a few compares, so throughput
    /// comparisons with it are like for like.
    Framing,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLimit {
    /// This many messages in total across all threads.
    Messages(u64),
    /// Run for this long.
    Duration(Duration),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ADDR:PORT` of the server.
    pub connect: String,
    /// Payload bytes per message.
    pub size: u64,
    pub threads: usize,
    pub limit: RunLimit,
    pub pattern: Pattern,
    /// A server that sends nothing for this long is an error.
    pub io_timeout: Duration,
    pub verification: Verification,
    /// Payload bytes of verified messages so far, all threads, for an observer that
    /// samples the run while it goes (the benchmark's windows); None: not kept.
    pub progress: Option<Arc<AtomicU64>>,
    /// Set by an observer to end the run early, as its deadline would (a duration run
    /// then ends within one read slice); None: only the limit ends it.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ClientConfig {
    pub fn new(connect: &str, size: u64, threads: usize, limit: RunLimit) -> Self {
        ClientConfig {
            connect: connect.to_string(),
            size,
            threads,
            limit,
            pattern: Pattern::Stream,
            io_timeout: Duration::from_secs(30),
            verification: Verification::Full,
            progress: None,
            stop: None,
        }
    }
}

/// What the latency samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    RoundTrip,
    ArrivalInterval,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: u64,
}

/// The result of a client run (complete or partial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// The server's mode from its reply; `None` if no reply arrived.
    pub mode: Option<Mode>,
    pub size: u64,
    pub threads: usize,
    pub pattern: Pattern,
    /// What was checked of every message (older reports: full).
    #[serde(default = "full_verification")]
    pub verification: Verification,
    /// Complete, verified messages.
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    pub seconds: f64,
    /// Payload bits per second / 1e9.
    pub throughput_gbps: f64,
    pub latency_kind: LatencyKind,
    pub latency_us: LatencySummary,
    /// Messages with a wrong checksum, sequence number or stamp.
    pub integrity_errors: u64,
    pub requests_sent: u64,
    pub request_bytes_sent: u64,
    pub reply_header_bytes: u64,
    pub reply_error_text_bytes: u64,
    /// Header bytes of the complete messages (verified or not).
    pub message_header_bytes: u64,
    /// Every byte read from the server.
    pub received_bytes: u64,
    /// Bytes read but not counted above: a partial last message thrown away at the end of
    /// a duration run, and the payloads of messages that failed verification.
    pub discarded_bytes: u64,
    /// What went wrong, per thread (at most a few).
    pub errors: Vec<String>,
}

fn full_verification() -> Verification {
    Verification::Full
}

impl ClientReport {
    fn empty(config: &ClientConfig) -> Self {
        ClientReport {
            mode: None,
            size: config.size,
            threads: config.threads,
            pattern: config.pattern,
            verification: config.verification,
            messages: 0,
            bytes: 0,
            seconds: 0.0,
            throughput_gbps: 0.0,
            latency_kind: latency_kind(config.pattern),
            latency_us: LatencySummary::default(),
            integrity_errors: 0,
            requests_sent: 0,
            request_bytes_sent: 0,
            reply_header_bytes: 0,
            reply_error_text_bytes: 0,
            message_header_bytes: 0,
            received_bytes: 0,
            discarded_bytes: 0,
            errors: Vec::new(),
        }
    }
}

fn latency_kind(pattern: Pattern) -> LatencyKind {
    match pattern {
        Pattern::Stream => LatencyKind::ArrivalInterval,
        Pattern::Rr => LatencyKind::RoundTrip,
    }
}

/// A failed run: what went wrong, and what was measured before.
#[derive(Debug, Clone)]
pub struct ClientFailure {
    pub message: String,
    /// Boxed: a report is large and failures are rare.
    pub report: Box<ClientReport>,
}

impl std::fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientFailure {}

/// Runs the client. Any connection failure, protocol violation or integrity error is a
/// failure; the failure carries the partial report.
pub fn run_client(config: &ClientConfig) -> Result<ClientReport, ClientFailure> {
    let fail = |message: String| ClientFailure {
        message,
        report: Box::new(ClientReport::empty(config)),
    };
    validate(config).map_err(fail)?;
    let addr = resolve(&config.connect).map_err(fail)?;
    let mut streams = Vec::with_capacity(config.threads);
    for index in 0..config.threads {
        let stream = connect(addr, config).map_err(|err| {
            fail(format!(
                "thread {index}: cannot connect to {addr}: {err}{}",
                if err.kind() == io::ErrorKind::ConnectionRefused {
                    " (is the server running?)"
                } else {
                    ""
                }
            ))
        })?;
        streams.push(stream);
    }

    let barrier = Arc::new(Barrier::new(config.threads));
    let mut handles = Vec::with_capacity(config.threads);
    for (index, stream) in streams.into_iter().enumerate() {
        let plan = ThreadPlan {
            index,
            stream,
            config: config.clone(),
            share: thread_share(config, index),
            barrier: Arc::clone(&barrier),
        };
        let handle = std::thread::Builder::new()
            .name(format!("client-{index}"))
            .spawn(move || run_thread(plan));
        match handle {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                // The barrier would wait forever for this thread: nothing can run.
                return Err(fail(format!("cannot start client thread {index}: {err}")));
            }
        }
    }
    let outcomes: Vec<ThreadOutcome> = handles
        .into_iter()
        .enumerate()
        .map(|(index, handle)| {
            handle.join().unwrap_or_else(|_| ThreadOutcome {
                error: Some(format!("thread {index} panicked")),
                ..ThreadOutcome::new()
            })
        })
        .collect();
    let report = merge(config, &outcomes);
    let thread_errors: Vec<&String> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    if !thread_errors.is_empty() {
        let mut message = thread_errors[0].clone();
        if thread_errors.len() > 1 {
            message.push_str(&format!(
                " (and {} more thread errors)",
                thread_errors.len() - 1
            ));
        }
        return Err(ClientFailure {
            message,
            report: Box::new(report),
        });
    }
    if report.integrity_errors > 0 {
        return Err(ClientFailure {
            message: format!(
                "{} messages failed verification; first: {}",
                report.integrity_errors,
                report.errors.first().map(String::as_str).unwrap_or("?")
            ),
            report: Box::new(report),
        });
    }
    Ok(report)
}

fn validate(config: &ClientConfig) -> Result<(), String> {
    if config.threads == 0 || config.threads > MAX_THREADS {
        return Err(format!(
            "--threads must be between 1 and {MAX_THREADS}, not {}",
            config.threads
        ));
    }
    if config.size == 0 || config.size > MAX_PAYLOAD_SIZE {
        return Err(format!(
            "--size must be between 1 and {MAX_PAYLOAD_SIZE} bytes, not {}",
            config.size
        ));
    }
    match config.limit {
        RunLimit::Messages(n) if n < config.threads as u64 => Err(format!(
            "--messages {n} is fewer than --threads {}: every thread needs at least one \
             message (a request with count 0 would mean \"stream until closed\")",
            config.threads
        )),
        RunLimit::Duration(d) if d.is_zero() => Err("--duration must be longer than zero".into()),
        _ => Ok(()),
    }
}

fn resolve(connect: &str) -> Result<SocketAddr, String> {
    connect
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {connect:?}: {err}"))?
        .next()
        .ok_or_else(|| format!("{connect:?} resolves to no address"))
}

fn connect(addr: SocketAddr, config: &ClientConfig) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, config.io_timeout)?;
    stream.set_nodelay(true)?;
    // Reads wake up periodically so that deadlines and the idle limit are honoured.
    let slice = match config.limit {
        RunLimit::Duration(_) => Duration::from_millis(50),
        RunLimit::Messages(_) => Duration::from_millis(500),
    };
    stream.set_read_timeout(Some(slice))?;
    Ok(stream)
}

/// Messages for thread `index`: an even split, the remainder to the first threads.
fn thread_share(config: &ClientConfig, index: usize) -> Option<u64> {
    match config.limit {
        RunLimit::Messages(total) => {
            let threads = config.threads as u64;
            let base = total / threads;
            Some(base + u64::from((index as u64) < total % threads))
        }
        RunLimit::Duration(_) => None,
    }
}

struct ThreadPlan {
    index: usize,
    stream: TcpStream,
    config: ClientConfig,
    /// Messages for this thread; `None` runs until the deadline.
    share: Option<u64>,
    barrier: Arc<Barrier>,
}

struct ThreadOutcome {
    mode: Option<Mode>,
    messages: u64,
    bytes: u64,
    integrity_errors: u64,
    requests_sent: u64,
    request_bytes_sent: u64,
    reply_header_bytes: u64,
    reply_error_text_bytes: u64,
    message_header_bytes: u64,
    received_bytes: u64,
    discarded_bytes: u64,
    histogram: Option<Histogram<u64>>,
    started: Option<Instant>,
    ended: Option<Instant>,
    integrity_notes: Vec<String>,
    error: Option<String>,
    progress: Option<Arc<AtomicU64>>,
}

impl ThreadOutcome {
    fn new() -> Self {
        ThreadOutcome {
            mode: None,
            messages: 0,
            bytes: 0,
            integrity_errors: 0,
            requests_sent: 0,
            request_bytes_sent: 0,
            reply_header_bytes: 0,
            reply_error_text_bytes: 0,
            message_header_bytes: 0,
            received_bytes: 0,
            discarded_bytes: 0,
            // Nanoseconds, 3 significant digits, growing as needed.
            histogram: Histogram::new(3).ok(),
            started: None,
            ended: None,
            integrity_notes: Vec::new(),
            error: None,
            progress: None,
        }
    }

    fn record(&mut self, elapsed: Duration) {
        if let Some(histogram) = self.histogram.as_mut() {
            let nanos = elapsed.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
            // With auto-resize the only failure is a value beyond u64: clamped above.
            let _ = histogram.record(nanos);
        }
    }

    fn integrity_error(&mut self, note: String) {
        self.integrity_errors += 1;
        if self.integrity_notes.len() < MAX_REPORTED_ERRORS {
            self.integrity_notes.push(note);
        }
    }
}

/// How a read ended when it did not fill its buffer with data.
enum Cut {
    /// The run's deadline passed: stop quietly, discarding what was read.
    Deadline,
    /// A real failure.
    Failed(String),
}

struct Reader<'a> {
    stream: &'a TcpStream,
    deadline: Option<Instant>,
    stop: Option<&'a AtomicBool>,
    io_timeout: Duration,
    received: u64,
}

impl Reader<'_> {
    /// Fills `buf` completely, or reports why not (with the bytes that did arrive counted in
    /// `received`). `what` names the data for error messages.
    fn fill(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), Cut> {
        let mut got = 0;
        let mut last_data = Instant::now();
        while got < buf.len() {
            match (&*self.stream).read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Cut::Failed(format!(
                    "short read: the server closed the connection after {got} of {} bytes of {}",
                    buf.len(),
                    what()
                )))
                }
                Ok(n) => {
                    got += n;
                    self.received += n as u64;
                    last_data = Instant::now();
                    if got < buf.len() && self.deadline_passed() {
                        return Err(Cut::Deadline);
                    }
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        if self.deadline_passed() {
                            return Err(Cut::Deadline);
                        }
                        if last_data.elapsed() > self.io_timeout {
                            return Err(Cut::Failed(format!(
                                "the server sent nothing for {:.0} s while {got} of {} bytes of {} \
                                 were read",
                                self.io_timeout.as_secs_f64(),
                                buf.len(),
                                what()
                            )));
                        }
                    }
                    _ => {
                        return Err(Cut::Failed(format!(
                            "reading {} failed after {got} of {} bytes: {err}{}",
                            what(),
                            buf.len(),
                            if sockets::is_peer_gone(&err) {
                                " (the server went away)"
                            } else {
                                ""
                            }
                        )))
                    }
                },
            }
        }
        Ok(())
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What a thread knows about the messages it verifies.
struct Verifier {
    size: u64,
    /// Checksum the payload (Verification::Full).
    crc: bool,
    stamp_offsets: Vec<usize>,
    chunk: Vec<u8>,
}

fn run_thread(plan: ThreadPlan) -> ThreadOutcome {
    let mut outcome = ThreadOutcome::new();
    outcome.progress = plan.config.progress.clone();
    let layout = match FieldLayout::new(plan.config.size) {
        Ok(layout) => layout,
        Err(err) => {
            outcome.error = Some(err.to_string());
            plan.barrier.wait();
            return outcome;
        }
    };
    let mut verifier = Verifier {
        size: plan.config.size,
        crc: plan.config.verification == Verification::Full,
        stamp_offsets: layout.stamp_offsets().collect(),
        chunk: vec![0u8; (plan.config.size as usize).min(READ_CHUNK)],
    };
    plan.barrier.wait();
    let started = Instant::now();
    outcome.started = Some(started);
    let deadline = match plan.config.limit {
        RunLimit::Duration(d) => Some(started + d),
        RunLimit::Messages(_) => None,
    };
    let mut reader = Reader {
        stream: &plan.stream,
        deadline,
        stop: plan.config.stop.as_deref(),
        io_timeout: plan.config.io_timeout,
        received: 0,
    };
    let result = match plan.config.pattern {
        Pattern::Stream => stream_pattern(&plan, &mut reader, &mut verifier, &mut outcome),
        Pattern::Rr => rr_pattern(&plan, &mut reader, &mut verifier, &mut outcome),
    };
    outcome.ended = Some(Instant::now());
    outcome.received_bytes = reader.received;
    let accounted = outcome.reply_header_bytes
        + outcome.reply_error_text_bytes
        + outcome.message_header_bytes
        + outcome.bytes;
    outcome.discarded_bytes = outcome.received_bytes.saturating_sub(accounted);
    if let Err(message) = result {
        outcome.error = Some(format!("thread {}: {message}", plan.index));
    }
    outcome
}

fn send_request(plan: &ThreadPlan, outcome: &mut ThreadOutcome, count: u64) -> Result<(), String> {
    let request = Request {
        size: plan.config.size,
        count,
    }
    .encode();
    sockets::send_all(plan.stream.as_raw_fd(), &request).map_err(|err| {
        format!(
            "sending request {} failed: {err}{}",
            outcome.requests_sent + 1,
            if sockets::is_peer_gone(&err) {
                " (the server went away)"
            } else {
                ""
            }
        )
    })?;
    outcome.requests_sent += 1;
    outcome.request_bytes_sent += REQUEST_LEN as u64;
    Ok(())
}

/// Reads and checks the reply header; an error reply becomes an error with its text.
/// `Ok(false)`: the deadline passed first.
fn read_reply(reader: &mut Reader, outcome: &mut ThreadOutcome) -> Result<bool, String> {
    let mut bytes = [0u8; REPLY_HEADER_LEN];
    match reader.fill(&mut bytes, &|| "the reply header".to_string()) {
        Ok(()) => {}
        Err(Cut::Deadline) => return Ok(false),
        Err(Cut::Failed(message)) => return Err(message),
    }
    let header = ReplyHeader::decode(&bytes).map_err(|err| err.to_string())?;
    outcome.reply_header_bytes += REPLY_HEADER_LEN as u64;
    let mode = Mode::from_wire(header.mode);
    if header.status != Status::Ok.code() {
        // An error reply still names the server's mode: worth reporting.
        outcome.mode = outcome.mode.or(mode);
        let mut text = vec![0u8; header.error_len as usize];
        let text = match reader.fill(&mut text, &|| "the error text".to_string()) {
            Ok(()) => {
                outcome.reply_error_text_bytes += text.len() as u64;
                String::from_utf8_lossy(&text).into_owned()
            }
            Err(_) => "(the error text did not arrive)".to_string(),
        };
        let name = Status::from_code(header.status)
            .map(Status::name)
            .unwrap_or("unknown status");
        return Err(format!(
            "the server rejected the request: status {} ({name}): {text}",
            header.status
        ));
    }
    let mode =
        mode.ok_or_else(|| format!("the server replied with unknown mode byte {}", header.mode))?;
    if let Some(previous) = outcome.mode {
        if previous != mode {
            return Err(format!(
                "the server changed its mode from {previous} to {mode}"
            ));
        }
    }
    outcome.mode = Some(mode);
    Ok(true)
}

/// Reads and verifies message `expected_seq`. `Ok(false)`: the deadline passed mid-message.
fn read_message(
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
    expected_seq: u64,
) -> Result<bool, String> {
    let mut bytes = [0u8; MESSAGE_HEADER_LEN];
    match reader.fill(&mut bytes, &|| format!("message {expected_seq}'s header")) {
        Ok(()) => {}
        Err(Cut::Deadline) => return Ok(false),
        Err(Cut::Failed(message)) => return Err(message),
    }
    let header = MessageHeader::decode(&bytes);
    if u64::from(header.payload_len) != verifier.size {
        // The framing is lost: nothing after this can be trusted.
        return Err(format!(
            "message {expected_seq}: payload length {} but {} was requested",
            header.payload_len, verifier.size
        ));
    }
    let size = verifier.size as usize;
    let stamp = stamp_bytes(expected_seq);
    let mut crc = 0u32;
    let mut stamp_ok = true;
    let mut position = 0usize;
    while position < size {
        let want = (size - position).min(verifier.chunk.len());
        let chunk = &mut verifier.chunk[..want];
        match reader.fill(chunk, &|| format!("message {expected_seq}'s payload")) {
            Ok(()) => {}
            Err(Cut::Deadline) => return Ok(false),
            Err(Cut::Failed(message)) => return Err(message),
        }
        if verifier.crc {
            crc = crc32c::crc32c_append(crc, chunk);
        }
        for &offset in &verifier.stamp_offsets {
            // The part of this stamp that lies in [position, position + want).
            let from = offset.max(position);
            let to = (offset + STAMP_LEN).min(position + want);
            if from < to
                && chunk[from - position..to - position] != stamp[from - offset..to - offset]
            {
                stamp_ok = false;
            }
        }
        position += want;
    }
    outcome.message_header_bytes += MESSAGE_HEADER_LEN as u64;
    let mut problems = Vec::new();
    if header.seq != expected_seq {
        problems.push(format!(
            "sequence number {} (expected {expected_seq})",
            header.seq
        ));
    }
    if verifier.crc && crc != header.crc32c {
        problems.push(format!(
            "CRC32C {crc:08x} but the header says {:08x}",
            header.crc32c
        ));
    }
    if !stamp_ok {
        problems.push(
            "a field stamp does not match the sequence number (a buffer was reused too early)"
                .into(),
        );
    }
    if problems.is_empty() {
        outcome.messages += 1;
        outcome.bytes += verifier.size;
        if let Some(progress) = &outcome.progress {
            progress.fetch_add(verifier.size, Ordering::Relaxed);
        }
    } else {
        outcome.integrity_error(format!("message {expected_seq}: {}", problems.join("; ")));
    }
    Ok(true)
}

fn stream_pattern(
    plan: &ThreadPlan,
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
) -> Result<(), String> {
    send_request(plan, outcome, plan.share.unwrap_or(0))?;
    let mut previous = Instant::now();
    if !read_reply(reader, outcome)? {
        return Ok(());
    }
    let mut seq = 0u64;
    while plan.share.is_none_or(|n| seq < n) {
        if !read_message(reader, verifier, outcome, seq)? {
            return Ok(());
        }
        let now = Instant::now();
        outcome.record(now - previous);
        previous = now;
        seq += 1;
        if reader.deadline_passed() {
            break;
        }
    }
    Ok(())
}

fn rr_pattern(
    plan: &ThreadPlan,
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
) -> Result<(), String> {
    let mut transactions = 0u64;
    while plan.share.is_none_or(|n| transactions < n) && !reader.deadline_passed() {
        let start = Instant::now();
        send_request(plan, outcome, 1)?;
        // A transaction once started is finished (the idle limit still bounds it): cut
        // off, its message would be lost to the figures and the server would find its
        // client gone in the middle of a send.
        let (deadline, stop) = (reader.deadline.take(), reader.stop.take());
        let answered = read_reply(reader, outcome)
            .and_then(|ok| Ok(ok && read_message(reader, verifier, outcome, 0)?));
        (reader.deadline, reader.stop) = (deadline, stop);
        if !answered? {
            return Ok(());
        }
        outcome.record(start.elapsed());
        transactions += 1;
    }
    Ok(())
}

fn merge(config: &ClientConfig, outcomes: &[ThreadOutcome]) -> ClientReport {
    let mut report = ClientReport::empty(config);
    let mut histogram: Option<Histogram<u64>> = Histogram::new(3).ok();
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for outcome in outcomes {
        report.mode = report.mode.or(outcome.mode);
        report.messages += outcome.messages;
        report.bytes += outcome.bytes;
        report.integrity_errors += outcome.integrity_errors;
        report.requests_sent += outcome.requests_sent;
        report.request_bytes_sent += outcome.request_bytes_sent;
        report.reply_header_bytes += outcome.reply_header_bytes;
        report.reply_error_text_bytes += outcome.reply_error_text_bytes;
        report.message_header_bytes += outcome.message_header_bytes;
        report.received_bytes += outcome.received_bytes;
        report.discarded_bytes += outcome.discarded_bytes;
        for note in outcome.integrity_notes.iter().chain(outcome.error.iter()) {
            if report.errors.len() < MAX_REPORTED_ERRORS {
                report.errors.push(note.clone());
            }
        }
        if let (Some(total), Some(mine)) = (histogram.as_mut(), outcome.histogram.as_ref()) {
            let _ = total.add(mine);
        }
        first_start = match (first_start, outcome.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_end = match (last_end, outcome.ended) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let (Some(start), Some(end)) = (first_start, last_end) {
        report.seconds = end.saturating_duration_since(start).as_secs_f64();
    }
    if report.seconds > 0.0 {
        report.throughput_gbps = report.bytes as f64 * 8.0 / report.seconds / 1e9;
    }
    if let Some(histogram) = histogram.filter(|h| !h.is_empty()) {
        let us = |nanos: u64| nanos as f64 / 1000.0;
        report.latency_us = LatencySummary {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
            samples: histogram.len(),
        };
    }
    report
}

/// `netcopy client`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["duration", "messages"])))]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub connect: String,
    /// Payload bytes per message (K/M/G are binary units).
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub size: u64,
    /// Client threads, one connection each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    pub threads: u16,
    /// Run for this long (e.g. 10s, 500ms); a partial last message is discarded.
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Total messages across all threads.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// stream: one request per thread; rr: one request per message.
    #[arg(long, value_enum, default_value_t = Pattern::Stream)]
    pub pattern: Pattern,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// A server silent for this long is an error.
    #[arg(long, value_parser = duration_arg, default_value = "30s", value_name = "DURATION")]
    pub io_timeout: Duration,
    /// full: CRC32C of every payload too; framing: sequence numbers, lengths and field
    /// stamps only (the receive work of iperf3, for like-for-like throughput).
    #[arg(long, value_enum, default_value_t = Verification::Full)]
    pub verify: Verification,
}

impl ClientArgs {
    pub fn config(&self) -> ClientConfig {
        let limit = match (self.messages, self.duration) {
            (Some(n), _) => RunLimit::Messages(n),
            (None, Some(d)) => RunLimit::Duration(d),
            // clap's required group guarantees one of the two.
            (None, None) => RunLimit::Messages(0),
        };
        ClientConfig {
            connect: self.connect.clone(),
            size: self.size,
            threads: usize::from(self.threads),
            limit,
            pattern: self.pattern,
            io_timeout: self.io_timeout,
            verification: self.verify,
            progress: None,
            stop: None,
        }
    }
}

/// Runs `netcopy client`: prints the report (also the partial one of a failed run) and
/// exits non-zero on any failure.
pub fn run_client_command(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let (report, failure) = match run_client(&args.config()) {
        Ok(report) => (report, None),
        Err(failure) => (*failure.report, Some(failure.message)),
    };
    if let Some(message) = &failure {
        eprintln!("netcopy client: error: {message}");
        if report.messages > 0 || report.received_bytes > 0 {
            eprintln!("netcopy client: partial results of the failed run follow");
        }
    }
    let text = if args.json {
        serde_json::to_string(&report)?
    } else {
        report_text(&report)
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush())?;
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The human-readable report.
pub fn report_text(report: &ClientReport) -> String {
    let mode = report
        .mode
        .map(|m| m.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let kind = match report.latency_kind {
        LatencyKind::RoundTrip => "round trip",
        LatencyKind::ArrivalInterval => "arrival interval",
    };
    let l = &report.latency_us;
    format!(
        "mode {mode}, size {}, threads {}, pattern {}: {} messages, {} payload bytes in {:.3} s = {:.3} Gbit/s\n\
         latency ({kind}, us): p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}, mean {:.1} ({} samples)\n\
         integrity errors: {}{}\n\
         protocol bytes: requests {}, reply headers {}, error text {}, message headers {}; received {} (discarded {})",
        format_size(report.size),
        report.threads,
        match report.pattern {
            Pattern::Stream => "stream",
            Pattern::Rr => "rr",
        },
        report.messages,
        report.bytes,
        report.seconds,
        report.throughput_gbps,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        l.mean,
        l.samples,
        report.integrity_errors,
        match report.verification {
            Verification::Full => "",
            Verification::Framing => " (framing only: payload checksums not checked)",
        },
        report.request_bytes_sent,
        report.reply_header_bytes,
        report.reply_error_text_bytes,
        report.message_header_bytes,
        report.received_bytes,
        report.discarded_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::message::ComplexMessage;

    /// Message `seq` as the server frames it, with `crc_flip` XORed into its header's
    /// CRC32C and `seq_shift` added to its sequence number.
    fn framed(size: u64, seq: u64, crc_flip: u32, seq_shift: u64) -> Vec<u8> {
        let mut message = ComplexMessage::new(size).unwrap();
        message.stamp(seq);
        let header = MessageHeader {
            payload_len: size as u32,
            crc32c: message.crc() ^ crc_flip,
            seq: seq + seq_shift,
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend(message.to_payload());
        bytes
    }

    /// Reads `count` messages of `size` from `wire` with `verification`; returns the
    /// verified messages and the integrity errors.
    fn verify_wire(wire: Vec<u8>, size: u64, count: u64, verification: Verification) -> (u64, u64) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(&wire).unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut reader = Reader {
            stream: &stream,
            deadline: None,
            stop: None,
            io_timeout: Duration::from_secs(10),
            received: 0,
        };
        let layout = FieldLayout::new(size).unwrap();
        let mut verifier = Verifier {
            size,
            crc: verification == Verification::Full,
            stamp_offsets: layout.stamp_offsets().collect(),
            chunk: vec![0u8; size as usize],
        };
        let mut outcome = ThreadOutcome::new();
        for seq in 0..count {
            assert!(read_message(&mut reader, &mut verifier, &mut outcome, seq).unwrap());
        }
        writer.join().unwrap();
        (outcome.messages, outcome.integrity_errors)
    }

    #[test]
    fn framing_verification_skips_only_the_checksum() {
        let size = 4096;
        // Message 0 intact, 1 with a wrong checksum, 2 with a wrong sequence number.
        let mut wire = framed(size, 0, 0, 0);
        wire.extend(framed(size, 1, 0x40, 0));
        wire.extend(framed(size, 2, 0, 7));
        assert_eq!(
            verify_wire(wire.clone(), size, 3, Verification::Full),
            (1, 2)
        );
        assert_eq!(verify_wire(wire, size, 3, Verification::Framing), (2, 1));
    }

    #[test]
    fn messages_are_split_with_the_remainder_first() {
        let config = ClientConfig::new("127.0.0.1:1", 10, 3, RunLimit::Messages(10));
        let shares: Vec<u64> = (0..3).map(|i| thread_share(&config, i).unwrap()).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        let duration = ClientConfig::new("x:1", 10, 2, RunLimit::Duration(Duration::from_secs(1)));
        assert_eq!(thread_share(&duration, 0), None);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let ok = ClientConfig::new("127.0.0.1:1", 10, 2, RunLimit::Messages(2));
        assert!(validate(&ok).is_ok());
        for bad in [
            ClientConfig::new("127.0.0.1:1", 10, 0, RunLimit::Messages(2)),
            ClientConfig::new("127.0.0.1:1", 10, 257, RunLimit::Messages(1000)),
            ClientConfig::new("127.0.0.1:1", 0, 1, RunLimit::Messages(1)),
            ClientConfig::new(
                "127.0.0.1:1",
                MAX_PAYLOAD_SIZE + 1,
                1,
                RunLimit::Messages(1),
            ),
            ClientConfig::new("127.0.0.1:1", 10, 3, RunLimit::Messages(2)),
            ClientConfig::new("127.0.0.1:1", 10, 1, RunLimit::Duration(Duration::ZERO)),
        ] {
            let failure = run_client(&bad).unwrap_err();
            assert_eq!(failure.report.messages, 0);
            assert!(!failure.message.is_empty());
        }
    }
}
