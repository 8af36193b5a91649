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
//! A `--duration` run's time counts, per thread, from its first message (its first
//! transaction with `rr`): on a loaded machine the first large message may take longer
//! than a short run, which would then measure nothing. The wait for it is bounded by
//! `--io-timeout` from the request, after which the run fails saying no message arrived.
//!
//! Byte accounting (exact, for the copy ledger): per request the client writes
//! [`REQUEST_LEN`](crate::workload::protocol::REQUEST_LEN) bytes and reads a
//! [`REPLY_HEADER_LEN`](crate::workload::protocol::REPLY_HEADER_LEN) reply header; per
//! message a [`MESSAGE_HEADER_LEN`](crate::workload::protocol::MESSAGE_HEADER_LEN) header
//! plus `size` payload bytes. `received_bytes` counts every
//! byte read from the sockets, including a partial message discarded at the end of a
//! `--duration` run (`discarded_bytes`).
//!
//! One file per concern: `config` says what to run, `patterns` runs one thread's pattern
//! on its connection, `receive` reads and verifies what arrives, `report` merges the
//! threads' tallies into the report; this file starts the threads and collects them.

mod config;
mod patterns;
mod receive;
mod report;
mod zerocopy;

use std::{
    io,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::{Arc, Barrier},
    time::Duration,
};

pub use config::{ClientConfig, Pattern, ReceiveMechanism, RunLimit, Verification, MAX_THREADS};
pub use report::{
    report_text, ClientFailure, ClientReport, LatencyKind, LatencySummary, ZeroCopyReceiveReport,
};
pub use zerocopy::ZeroCopyReceiveFigures;

use crate::workload::message::MAX_PAYLOAD_SIZE;
#[cfg(test)]
use crate::workload::protocol::REPLY_HEADER_LEN;
use patterns::{run_thread, ThreadPlan};
use receive::ThreadOutcome;
use report::merge;

/// Runs the client. Any connection failure, protocol violation or integrity error is a
/// failure; the failure carries the partial report.
pub fn run_client(config: &ClientConfig) -> Result<ClientReport, ClientFailure> {
    let fail = |message: String| ClientFailure {
        message,
        report: Box::new(ClientReport::empty(config)),
    };
    validate(config).map_err(fail)?;
    if let Err(why) = config.recv.available() {
        let mut report = ClientReport::empty(config);
        report.zerocopy_receive = Some(ZeroCopyReceiveReport {
            supported: false,
            unsupported: Some(format!("not supported by this kernel: {why}")),
            ..Default::default()
        });
        return Err(ClientFailure {
            message: format!(
                "--recv {}: not supported by this kernel: {why}",
                config.recv
            ),
            report: Box::new(report),
        });
    }
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::workload::{
        modes::Mode,
        protocol::{ReplyHeader, Request, Status, REQUEST_LEN},
    };
    use receive::tests::framed;

    /// A server on loopback for one client: reads its stream request for messages of
    /// `size`, replies, waits `delay`, then streams messages until the client closes
    /// (`stream` false: sends none, and waits for the close). Returns the messages sent.
    fn delayed_server(
        size: u64,
        delay: Duration,
        stream: bool,
    ) -> (String, std::thread::JoinHandle<u64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut request = [0u8; REQUEST_LEN];
            peer.read_exact(&mut request).unwrap();
            let request = Request::decode(&request, size).unwrap();
            assert_eq!((request.size, request.count), (size, 0));
            let reply = ReplyHeader {
                status: Status::Ok.code(),
                mode: Mode::TwoCopy.wire(),
                error_len: 0,
            };
            peer.write_all(&reply.encode()).unwrap();
            std::thread::sleep(delay);
            let mut sent = 0;
            if stream {
                while peer.write_all(&framed(size, sent, 0, 0)).is_ok() {
                    sent += 1;
                }
            } else {
                let _ = peer.read(&mut [0u8; 1]);
            }
            sent
        });
        (addr, server)
    }

    #[test]
    fn a_duration_run_times_its_duration_from_the_first_message() {
        // The first message leaves the server twice the run's duration after the request,
        // so it arrives after a deadline counted from the start however loaded the
        // machine is: such a run used to end with "no message arrived".
        const DURATION: Duration = Duration::from_millis(50);
        let size = 4096;
        let (addr, server) = delayed_server(size, 2 * DURATION, true);
        let report = run_client(&ClientConfig::new(
            &addr,
            size,
            1,
            RunLimit::Duration(DURATION),
        ))
        .expect("the run waits for its first message");
        let sent = server.join().unwrap();
        assert!(report.messages >= 1);
        assert!(report.messages <= sent);
        assert_eq!(report.integrity_errors, 0);
        assert_eq!(report.bytes, report.messages * size);
        // The wait, then the whole duration after the first message.
        assert!(
            report.seconds >= 3.0 * DURATION.as_secs_f64(),
            "{}",
            report.seconds
        );
    }

    #[test]
    fn a_first_message_that_never_comes_fails_within_the_io_timeout() {
        let size = 4096;
        let (addr, server) = delayed_server(size, Duration::ZERO, false);
        let mut config =
            ClientConfig::new(&addr, size, 1, RunLimit::Duration(Duration::from_secs(600)));
        config.io_timeout = Duration::from_millis(200);
        let failure = run_client(&config).expect_err("no message came");
        assert_eq!(server.join().unwrap(), 0);
        assert!(
            failure
                .message
                .contains("no message arrived within 0.2 s of the request"),
            "{}",
            failure.message
        );
        assert_eq!(failure.report.messages, 0);
        assert_eq!(failure.report.reply_header_bytes, REPLY_HEADER_LEN as u64);
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
