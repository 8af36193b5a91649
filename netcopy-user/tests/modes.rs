//! Every mode's server and the client over loopback (127.0.0.1, port 0 only): integrity at
//! awkward sizes, partial writes, zero-copy completion accounting, bad requests, vanishing
//! clients and servers, and the command line. Runs are bounded by message counts, or cut by
//! a stop once N messages arrived; nothing here asserts speed or that anything fits in a time.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use netcopy::{
    workload::client::{run_client, ClientConfig, ClientReport, Pattern, RunLimit},
    workload::modes::{Mode, ZeroCopyConfig},
    workload::protocol::{
        ReplyHeader, Request, Status, MESSAGE_HEADER_LEN, REPLY_HEADER_LEN, REQUEST_LEN,
    },
    workload::server::{Server, ServerConfig, ServerTotals},
};

const MIB: u64 = 1 << 20;

struct RunningServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<ServerTotals>>,
}

impl RunningServer {
    fn start(config: ServerConfig) -> Self {
        let server = Server::bind(config).expect("bind the server");
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || server.run(flag));
        RunningServer { addr, stop, handle }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    fn stop(self) -> ServerTotals {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .expect("server thread")
            .expect("server run")
    }
}

fn config(mode: Mode) -> ServerConfig {
    ServerConfig::new(mode, "127.0.0.1:0")
}

fn messages(addr: &str, size: u64, threads: usize, count: u64) -> ClientConfig {
    ClientConfig::new(addr, size, threads, RunLimit::Messages(count))
}

/// The client's exact byte arithmetic for a successful run.
fn assert_client_bytes(report: &ClientReport, size: u64, expected_messages: u64) {
    assert_eq!(report.integrity_errors, 0, "{:?}", report.errors);
    assert_eq!(report.messages, expected_messages);
    assert_eq!(report.bytes, expected_messages * size);
    assert_eq!(
        report.message_header_bytes,
        expected_messages * MESSAGE_HEADER_LEN as u64
    );
    assert_eq!(
        report.request_bytes_sent,
        report.requests_sent * REQUEST_LEN as u64
    );
    assert_eq!(
        report.reply_header_bytes,
        report.requests_sent * REPLY_HEADER_LEN as u64
    );
    assert_eq!(
        report.received_bytes,
        report.reply_header_bytes + report.message_header_bytes + report.bytes
    );
    assert_eq!(report.discarded_bytes, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// The server's exact byte arithmetic and the per-mode promises.
fn assert_server_accounting(totals: &ServerTotals, mode: Mode, messages: u64, payload: u64) {
    let t = &totals.total;
    let s = &t.sender;
    assert_eq!(totals.mode, mode);
    assert_eq!(t.errors, 0, "{:#?}", totals.connections);
    assert_eq!(s.messages, messages);
    assert_eq!(s.payload_bytes, payload);
    assert_eq!(s.header_bytes, messages * MESSAGE_HEADER_LEN as u64);
    assert_eq!(t.reply_header_bytes, t.requests * REPLY_HEADER_LEN as u64);
    assert_eq!(t.request_bytes_received, t.requests * REQUEST_LEN as u64);
    assert!(s.syscalls >= messages);
    match mode {
        Mode::TwoCopy => {
            assert_eq!(s.user_copy_bytes, payload);
            assert_eq!(s.user_copy_header_bytes, s.header_bytes);
            assert_eq!(s.zerocopy_sends, 0);
        }
        Mode::OneCopy => {
            assert_eq!(s.user_copy_bytes, 0);
            assert_eq!(s.zerocopy_sends, 0);
        }
        Mode::ZeroCopy => {
            assert_eq!(s.user_copy_bytes, 0);
            assert!(s.zerocopy_sends >= messages);
            assert_eq!(s.zerocopy_bytes, s.payload_bytes + s.header_bytes);
            assert_eq!(s.zerocopy_sends, s.completed_sends, "every send completed");
            assert_eq!(s.completed_bytes, s.zerocopy_bytes);
            assert_eq!(s.unfinished_sends, 0);
            assert_eq!(s.unexpected_completions, 0);
            assert!(s.completion_notifications >= 1);
            assert!(s.completion_notifications <= s.completed_sends);
            // On loopback the kernel copies the pinned pages when the local receiver gets
            // them and flags the completion; all of these messages were delivered.
            assert!(
                s.copied_sends > 0,
                "loopback completions are flagged copied"
            );
            assert!(s.copied_sends <= s.completed_sends);
            assert!(s.copied_bytes <= s.completed_bytes);
        }
        Mode::IoUring => {
            assert_eq!(s.user_copy_bytes, 0);
            assert_eq!(s.zerocopy_sends, 0);
            assert!(s.ring_enters >= s.syscalls, "every operation was submitted");
        }
        Mode::IoUringZc => {
            assert_eq!(s.user_copy_bytes, 0);
            assert!(s.zerocopy_sends >= messages);
            assert_eq!(s.zerocopy_bytes, s.payload_bytes + s.header_bytes);
            // One notification per operation, each completing exactly its own bytes.
            assert_eq!(s.completion_notifications, s.zerocopy_sends);
            assert_eq!(s.completed_sends, s.zerocopy_sends);
            assert_eq!(s.completed_bytes, s.zerocopy_bytes);
            assert_eq!((s.unfinished_sends, s.unexpected_completions), (0, 0));
            // Loopback: the local receiver makes the kernel copy every operation's pages,
            // and REPORT_USAGE says so in every notification.
            assert_eq!(s.copied_sends, s.completed_sends);
            assert_eq!(s.copied_bytes, s.completed_bytes);
        }
        Mode::Sendfile | Mode::Splice => {
            assert_eq!(s.user_copy_bytes, 0);
            assert_eq!(s.zerocopy_sends, 0);
            // Every message was generated into pages no send had referenced.
            assert_eq!(s.generated_bytes, s.payload_bytes + s.header_bytes);
            if mode == Mode::Splice {
                assert!(s.vmsplice_calls >= messages);
            }
        }
    }
}

fn integrity_at_all_sizes(mode: Mode) {
    let server = RunningServer::start(config(mode));
    let mut total_messages = 0;
    let mut total_payload = 0;
    for (size, count) in [
        (1, 40),
        (4095, 40),
        (4096, 40),
        (65537, 20),
        (MIB, 6),
        (8 * MIB, 4),
    ] {
        let report = run_client(&messages(&server.addr(), size, 2, count))
            .unwrap_or_else(|f| panic!("{mode} size {size}: {f} {:?}", f.report));
        assert_eq!(report.mode, Some(mode));
        assert_eq!(report.requests_sent, 2);
        assert_client_bytes(&report, size, count);
        total_messages += count;
        total_payload += count * size;
    }
    // rr on the same server: one request per message on one connection.
    let mut rr = messages(&server.addr(), 4095, 1, 25);
    rr.pattern = Pattern::Rr;
    let report = run_client(&rr).expect("rr run");
    assert_eq!(report.requests_sent, 25);
    assert_client_bytes(&report, 4095, 25);
    assert_eq!(report.latency_us.samples, 25);
    assert!(report.latency_us.p50 > 0.0);
    assert!(report.latency_us.max >= report.latency_us.p50);
    total_messages += 25;
    total_payload += 25 * 4095;

    let totals = server.stop();
    assert_eq!(totals.total.connections, 13);
    assert_eq!(totals.total.requests, 12 + 25);
    assert_server_accounting(&totals, mode, total_messages, total_payload);
}

#[test]
fn two_copy_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::TwoCopy);
}

#[test]
fn one_copy_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::OneCopy);
}

#[test]
fn zero_copy_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::ZeroCopy);
}

#[test]
fn io_uring_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::IoUring);
}

#[test]
fn io_uring_zc_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::IoUringZc);
}

#[test]
fn sendfile_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::Sendfile);
}

#[test]
fn splice_integrity_at_all_sizes() {
    integrity_at_all_sizes(Mode::Splice);
}

#[test]
fn partial_writes_are_completed_in_every_mode() {
    for mode in Mode::ALL {
        // A tiny send buffer and a 1 ms send timeout make blocking sends return early with
        // a partial count (or EAGAIN), which the senders must continue correctly.
        let mut cfg = config(mode);
        cfg.send_buffer = Some(4096);
        cfg.send_timeout = Some(Duration::from_millis(1));
        let server = RunningServer::start(cfg);
        let report = run_client(&messages(&server.addr(), MIB + 3, 1, 4))
            .unwrap_or_else(|f| panic!("{mode}: {f}"));
        assert_client_bytes(&report, MIB + 3, 4);
        let totals = server.stop();
        assert!(
            totals.total.sender.partial_sends > 0,
            "{mode}: a 4 KiB send buffer with a 1 ms timeout must split 1 MiB messages"
        );
        assert!(totals.total.sender.syscalls > 4);
        assert_server_accounting(&totals, mode, 4, 4 * (MIB + 3));
    }
}

#[test]
fn zero_copy_reuses_slots_only_after_completion() {
    for mode in [Mode::ZeroCopy, Mode::IoUringZc] {
        let mut cfg = config(mode);
        cfg.zero_copy = ZeroCopyConfig {
            max_in_flight: 2,
            max_pool_bytes: 64 * MIB,
        };
        let server = RunningServer::start(cfg);
        // Hundreds of messages through two slots: each slot is restamped ~100 times. A
        // slot reused before its completion would reach the client with a wrong stamp or
        // CRC.
        let report = run_client(&messages(&server.addr(), 65537, 2, 400)).expect("run");
        assert_client_bytes(&report, 65537, 400);
        let totals = server.stop();
        assert_server_accounting(&totals, mode, 400, 400 * 65537);
        for connection in &totals.connections {
            assert!(connection.sender.max_in_flight <= 2, "{connection:?}");
            assert_eq!(
                connection.sender.zerocopy_sends,
                connection.sender.completed_sends
            );
        }
    }
}

/// Sends raw request bytes and reads the reply header, its error text and then EOF.
fn raw_request(addr: &str, bytes: &[u8]) -> (ReplyHeader, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("write request");
    let mut header = [0u8; REPLY_HEADER_LEN];
    stream.read_exact(&mut header).expect("reply header");
    let header = ReplyHeader::decode(&header).expect("valid reply header");
    let mut text = vec![0u8; header.error_len as usize];
    stream.read_exact(&mut text).expect("error text");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the server closes after an error reply");
    (header, String::from_utf8(text).expect("UTF-8 error text"))
}

#[test]
fn bad_requests_get_error_replies_and_good_clients_still_succeed() {
    let mut cfg = config(Mode::OneCopy);
    cfg.max_size = MIB;
    let server = RunningServer::start(cfg);
    let addr = server.addr();

    let good = Request {
        size: 100,
        count: 1,
    }
    .encode();
    let mut wrong_version = good;
    wrong_version[4..6].copy_from_slice(&7u16.to_be_bytes());
    let mut bad_flags = good;
    bad_flags[6..8].copy_from_slice(&1u16.to_be_bytes());
    let cases: Vec<(Vec<u8>, Status, &str)> = vec![
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Status::BadMagic,
            "magic",
        ),
        (
            wrong_version.to_vec(),
            Status::UnsupportedVersion,
            "version 7",
        ),
        (bad_flags.to_vec(), Status::BadFlags, "flags"),
        (
            Request { size: 0, count: 1 }.encode().to_vec(),
            Status::SizeZero,
            "size 0",
        ),
        (
            Request {
                size: u64::MAX,
                count: 1,
            }
            .encode()
            .to_vec(),
            Status::SizeOverLimit,
            "limit",
        ),
    ];
    for (bytes, status, needle) in &cases {
        let (header, text) = raw_request(&addr, bytes);
        assert_eq!(header.status, status.code(), "{text}");
        assert_eq!(header.mode, Mode::OneCopy.wire());
        assert!(text.contains(needle), "{text:?} should mention {needle:?}");
    }

    // A truncated header: 10 bytes, then the client closes its sending side.
    let mut truncated = TcpStream::connect(&addr).unwrap();
    truncated.write_all(&good[..10]).unwrap();
    truncated.shutdown(Shutdown::Write).unwrap();
    truncated
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = truncated.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no reply to a truncated header");

    // The client library reports an error reply as a failure with the server's text.
    let failure = run_client(&messages(&addr, 2 * MIB, 1, 1)).unwrap_err();
    assert!(failure.message.contains("size over limit"), "{failure}");
    assert_eq!(failure.report.mode, Some(Mode::OneCopy));
    assert_eq!(failure.report.reply_header_bytes, REPLY_HEADER_LEN as u64);
    assert!(failure.report.reply_error_text_bytes > 0);

    // Meanwhile the server serves good clients.
    let report = run_client(&messages(&addr, 4096, 2, 20)).expect("good client");
    assert_client_bytes(&report, 4096, 20);

    let totals = server.stop();
    assert_eq!(totals.total.errors, cases.len() as u64 + 2);
    assert_eq!(totals.total.sender.messages, 20);
    let truncated_report = totals
        .connections
        .iter()
        .find(|c| c.end.contains("truncated"))
        .expect("a connection ended by the truncated header");
    assert_eq!(truncated_report.request_bytes_received, 10);
    assert_eq!(truncated_report.requests, 0);
}

#[test]
fn a_client_vanishing_mid_message_leaves_the_server_serving() {
    for mode in Mode::ALL {
        let server = RunningServer::start(config(mode));
        let addr = server.addr();
        {
            let mut quitter = TcpStream::connect(&addr).unwrap();
            quitter
                .write_all(
                    &Request {
                        size: 8 * MIB,
                        count: 10,
                    }
                    .encode(),
                )
                .unwrap();
            let mut some = [0u8; 1000];
            quitter.read_exact(&mut some).unwrap();
            // Dropped with unread data: the server sees a reset mid-message.
        }
        let report = run_client(&messages(&addr, 65536, 2, 10)).expect("good client");
        assert_client_bytes(&report, 65536, 10);
        let totals = server.stop();
        assert_eq!(
            totals.total.errors, 0,
            "a vanished client is not a server error"
        );
        let quitter = &totals.connections[0];
        assert!(
            quitter.end.contains("client disconnected"),
            "{mode}: {}",
            quitter.end
        );
        assert!(quitter.sender.messages < 10);
        if mode.spec().claim.completions.is_some() {
            assert_eq!(
                quitter.sender.zerocopy_sends, quitter.sender.completed_sends,
                "{mode}"
            );
        }
    }
}

/// A run that must be cut mid-stream is ended by its observer's stop flag once `messages`
/// whole messages were verified: the cut falls on the same path as a deadline's (both are
/// `deadline_passed`), after a point the run is known to have reached, so no test depends
/// on the machine delivering N messages within some time. The duration is only a cap that
/// ends a run whose stop never comes.
fn stop_after(config: &mut ClientConfig, messages: u64) -> std::thread::JoinHandle<()> {
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    config.progress = Some(Arc::clone(&progress));
    config.stop = Some(Arc::clone(&stop));
    let payload = messages * config.size;
    std::thread::spawn(move || {
        while progress.load(Ordering::Relaxed) < payload {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
    })
}

/// A run longer than any test: a cap, never the expected end.
const CAP: Duration = Duration::from_secs(600);

#[test]
fn duration_runs_discard_the_partial_last_message() {
    // Ended mid-stream while the server keeps streaming (it used to be a 300 ms duration,
    // which under load could pass before the first 1 MiB message arrived).
    let server = RunningServer::start(config(Mode::ZeroCopy));
    let mut config = ClientConfig::new(&server.addr(), MIB, 2, RunLimit::Duration(CAP));
    let stopper = stop_after(&mut config, 2);
    let report = run_client(&config).expect("duration run");
    stopper.join().expect("stopper thread");
    assert!(report.messages >= 2, "{} messages", report.messages);
    assert_eq!(report.integrity_errors, 0);
    assert_eq!(report.bytes, report.messages * MIB);
    assert_eq!(
        report.received_bytes,
        report.reply_header_bytes
            + report.message_header_bytes
            + report.bytes
            + report.discarded_bytes
    );
    let totals = server.stop();
    assert_eq!(totals.total.errors, 0);
    assert_eq!(
        totals.total.sender.zerocopy_sends,
        totals.total.sender.completed_sends
    );
    for connection in &totals.connections {
        assert!(
            connection.end.contains("client closed the stream"),
            "{}",
            connection.end
        );
    }
}

#[test]
fn a_duration_run_lasts_at_least_its_duration() {
    // The deadline itself: it counts from each thread's first message (on a loaded
    // machine a 1 MiB message may take longer than the whole run), so every thread has
    // at least one, the run does not end before its duration, and the bytes it read are
    // all accounted for.
    let server = RunningServer::start(config(Mode::TwoCopy));
    let config = ClientConfig::new(
        &server.addr(),
        MIB,
        2,
        RunLimit::Duration(Duration::from_millis(300)),
    );
    let report = run_client(&config).expect("duration run");
    assert!(report.messages >= 2, "{} messages", report.messages);
    assert!(report.seconds >= 0.3, "{} s", report.seconds);
    assert_eq!(report.integrity_errors, 0);
    assert_eq!(report.bytes, report.messages * MIB);
    assert_eq!(
        report.received_bytes,
        report.reply_header_bytes
            + report.message_header_bytes
            + report.bytes
            + report.discarded_bytes
    );
    let totals = server.stop();
    assert_eq!(totals.total.errors, 0);
}

#[test]
fn request_response_runs_end_between_transactions() {
    // Large messages, so that a deadline often falls while one is on its way: the
    // transaction in flight is finished, the server never sees its client vanish
    // mid-message (it used to log "client disconnected while sending message 0 of 1"),
    // and every message sent was received and counted. Several rounds of 4 threads, so
    // that a cut-off message, were it possible, would show.
    let size = 4 * MIB;
    for round in 0..4 {
        let server = RunningServer::start(config(Mode::TwoCopy));
        let mut rr = ClientConfig::new(&server.addr(), size, 4, RunLimit::Duration(CAP));
        rr.pattern = Pattern::Rr;
        // Stopped when one transaction is done, while the other threads' are in flight
        // (a 100 ms duration used to assume that one 4 MiB transaction fits in it).
        let stopper = stop_after(&mut rr, 1);
        let report = run_client(&rr).expect("rr run");
        stopper.join().expect("stopper thread");
        let totals = server.stop();
        assert!(report.messages > 0);
        assert_eq!(
            report.discarded_bytes, 0,
            "round {round}: a message was cut off"
        );
        assert_eq!(report.requests_sent, report.messages);
        assert_eq!(totals.total.sender.messages, report.messages);
        assert_eq!(totals.total.errors, 0);
        for connection in &totals.connections {
            // Closed by the client between requests, or found idle by the stop that
            // followed before the close was seen: never ended in the middle of a send.
            assert!(
                ["client closed", "server stopping"].contains(&connection.end.as_str()),
                "round {round}, connection {}: {}",
                connection.id,
                connection.end
            );
        }
    }
}

#[test]
fn a_server_going_away_fails_the_client_with_partial_results() {
    let server = RunningServer::start(config(Mode::OneCopy));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut config = ClientConfig::new(&server.addr(), 65536, 1, RunLimit::Messages(100_000_000));
    config.progress = Some(Arc::clone(&progress));
    let client = std::thread::spawn(move || run_client(&config));
    // The server goes away once a message has arrived (a 300 ms sleep used to assume the
    // client had connected and received one by then).
    while progress.load(Ordering::Relaxed) == 0 && !client.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let totals = server.stop();
    let failure = client.join().unwrap().unwrap_err();
    assert!(
        failure.message.contains("closed") || failure.message.contains("went away"),
        "{failure}"
    );
    assert!(failure.report.messages > 0, "partial results are kept");
    assert_eq!(failure.report.integrity_errors, 0);
    assert!(totals.connections[0].end.contains("server stopping"));
}

#[test]
fn connection_refused_is_a_failure() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let failure = run_client(&messages(&format!("127.0.0.1:{port}"), 10, 1, 1)).unwrap_err();
    assert!(failure.message.contains("refused"), "{failure}");
    assert_eq!(failure.report.messages, 0);
}

// ---- the command line ----

const BIN: &str = env!("CARGO_BIN_EXE_netcopy");

#[test]
fn cli_json_output_and_sigterm_totals() {
    let mut server = Command::new(BIN)
        .args([
            "server",
            "--mode",
            "zero-copy",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let listening: serde_json::Value =
        serde_json::from_str(&lines.next().expect("listening line").unwrap()).unwrap();
    assert_eq!(listening["event"], "listening");
    assert_eq!(listening["mode"], "zero-copy");
    let addr = listening["addr"].as_str().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"));

    let output = Command::new(BIN)
        .args([
            "client",
            "--connect",
            &addr,
            "--size",
            "4K",
            "--threads",
            "2",
            "--messages",
            "50",
            "--json",
        ])
        .output()
        .expect("run client");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "mode",
        "size",
        "threads",
        "messages",
        "bytes",
        "seconds",
        "throughput_gbps",
        "latency_us",
        "integrity_errors",
        "latency_kind",
        "request_bytes_sent",
        "reply_header_bytes",
        "message_header_bytes",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(report["latency_us"][key].is_number(), "latency_us.{key}");
    }
    assert_eq!(report["mode"], "zero-copy");
    assert_eq!(report["size"], 4096);
    assert_eq!(report["messages"], 50);
    assert_eq!(report["bytes"], 50 * 4096);
    assert_eq!(report["integrity_errors"], 0);
    assert_eq!(report["latency_kind"], "arrival-interval");

    // SAFETY: kill with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(rest.len(), 1, "exactly two JSON lines in all: {rest:?}");
    let totals: serde_json::Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(totals["event"], "totals");
    assert_eq!(totals["total"]["messages"], 50);
    assert_eq!(totals["total"]["connections"], 2);
    assert_eq!(
        totals["total"]["zerocopy_sends"],
        totals["total"]["completed_sends"]
    );
    for key in [
        "requests",
        "request_bytes_received",
        "reply_header_bytes",
        "errors",
        "payload_bytes",
        "header_bytes",
        "copied_sends",
        "copied_bytes",
        "completion_notifications",
    ] {
        assert!(totals["total"].get(key).is_some(), "totals lack {key}");
        assert!(
            totals["connections"][0].get(key).is_some(),
            "connection lacks {key}"
        );
    }
}

#[test]
fn cli_modes_lists_the_table_and_what_this_kernel_supports() {
    let output = Command::new(BIN)
        .args(["modes", "--json"])
        .output()
        .expect("run modes");
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = json["modes"].as_array().expect("modes");
    assert_eq!(rows.len(), Mode::ALL.len());
    for (row, mode) in rows.iter().zip(Mode::ALL) {
        let claim = mode.spec().claim;
        assert_eq!(row["name"], mode.name());
        assert_eq!(row["zerocopy_attach"], claim.zerocopy_attach);
        assert_eq!(row["page_reference"], claim.page_reference);
        assert_eq!(row["completions"].is_null(), claim.completions.is_none());
        // Every mechanism exists on this kernel (shared/PLATFORM.md).
        assert!(row["unsupported"].is_null(), "{row}");
    }
    let text = Command::new(BIN).arg("modes").output().expect("run modes");
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(
        text.matches("supported here").count(),
        Mode::ALL.len(),
        "{text}"
    );
}

#[test]
fn cli_port_in_use_fails_clearly() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .args(["server", "--mode", "one-copy", "--listen", &addr])
        .output()
        .expect("run server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn cli_connection_refused_fails_clearly() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = Command::new(BIN)
        .args([
            "client",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--size",
            "1K",
            "--messages",
            "1",
            "--json",
        ])
        .output()
        .expect("run client");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    // The (empty) partial report is still printed.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["messages"], 0);
}

#[test]
fn cli_rejects_bad_arguments() {
    for args in [
        vec![
            "client",
            "--connect",
            "127.0.0.1:1",
            "--size",
            "0",
            "--messages",
            "1",
        ],
        vec!["client", "--connect", "127.0.0.1:1", "--size", "1K"],
        vec![
            "client",
            "--connect",
            "127.0.0.1:1",
            "--size",
            "1K",
            "--messages",
            "1",
            "--threads",
            "257",
        ],
        vec!["server", "--mode", "three-copy"],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(!output.stderr.is_empty());
    }
}
