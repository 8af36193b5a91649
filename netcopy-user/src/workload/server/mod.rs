//! `netcopy server`: answers requests with messages sent by one
//! [`Mode`](crate::workload::modes::Mode), one thread per connection.
//!
//! Per request the server sends, in this order: a 16-byte reply header with a plain
//! `send()` (never zero-copy, so it consumes no notification id), then, for an ok status,
//! `count` messages through the connection's `Sender` (16-byte message header + payload
//! each). A rejected request gets the reply header plus its error text, and the connection
//! is closed after the client has had a chance to read it.
//!
//! Library use (tests and the experiment runner):
//! ```no_run
//! # use std::sync::{Arc, atomic::AtomicBool};
//! # use netcopy::{workload::modes::MODES, workload::server::{Server, ServerConfig}};
//! let mode = MODES[0].mode; // any row of the mode table
//! let server = Server::bind(ServerConfig::new(mode, "127.0.0.1:0"))?;
//! let addr = server.local_addr();
//! let stop = Arc::new(AtomicBool::new(false));
//! let totals = server.run(stop)?; // returns once `stop` is set and connections ended
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! This file binds and runs the accept loop; `connection` serves one connection's
//! requests, `report` holds what the connections did, `config` what the server is told,
//! `signals` the SIGINT/SIGTERM flag that stops it.

mod config;
mod connection;
mod report;
mod signals;

use std::{
    collections::HashMap,
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub use config::ServerConfig;
pub use report::{
    totals_text, ConnectionReport, ConnectionTotals, ServerTotals, LISTED_CONNECTIONS,
};
pub use signals::{stop_exit_code, stop_flag_on_signals, Interrupted};

use crate::{workload::message::MAX_PAYLOAD_SIZE, workload::sockets};
use connection::{refuse_connection, serve_connection};

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

    /// Accepts and serves until `stop` is set (or, with `exit_after`, until that many
    /// connections were accepted and have ended); then stops accepting, lets connections
    /// end (draining zero-copy completions), and returns what every connection did.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<ServerTotals> {
        let Server {
            listener,
            local_addr,
            config,
        } = self;
        let registry: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let mut running: Vec<JoinHandle<ConnectionReport>> = Vec::new();
        let mut reports = Reports::default();
        let mut next_id = 0u64;
        let accepted_all = |accepted: u64| config.exit_after.is_some_and(|n| accepted >= n);
        let mut listener = Some(listener);

        while !stop.load(Ordering::SeqCst) {
            let Some(open) = &listener else {
                // `exit_after` reached: end once the connections have.
                reap_finished(&mut running, &mut reports);
                if running.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            sockets::poll_one(open.as_raw_fd(), libc::POLLIN, Duration::from_millis(100))
                .context("waiting for connections")?;
            while !accepted_all(next_id) {
                match open.accept() {
                    Ok((stream, peer)) => {
                        let id = next_id;
                        next_id += 1;
                        reap_finished(&mut running, &mut reports);
                        // Refused connections hold a thread for a second at most.
                        let refuse = running.len() >= config.max_connections;
                        match spawn_connection(&config, id, stream, peer, &stop, &registry, refuse)
                        {
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
            if accepted_all(next_id) {
                // Stop listening at once: a later client is refused, not left waiting in
                // the backlog of a server about to exit.
                listener = None;
            }
            reap_finished(&mut running, &mut reports);
        }
        drop(listener);

        let deadline = Instant::now() + config.shutdown_grace;
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
        reports.listed.sort_by_key(|r| r.id);
        Ok(ServerTotals {
            mode: config.mode,
            addr: local_addr,
            connections: reports.listed,
            unlisted_connections: reports.unlisted,
            total: reports.total,
        })
    }
}

/// Starts the thread that serves (or refuses) one accepted connection.
fn spawn_connection(
    config: &Arc<ServerConfig>,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    stop: &Arc<AtomicBool>,
    registry: &Arc<Mutex<HashMap<u64, TcpStream>>>,
    refuse: bool,
) -> Result<JoinHandle<ConnectionReport>> {
    stream
        .set_nonblocking(false)
        .context("making the connection blocking")?;
    let registered = stream.try_clone().context("duplicating the socket")?;
    if let Ok(mut streams) = registry.lock() {
        streams.insert(id, registered);
    }
    let config = Arc::clone(config);
    let stop = Arc::clone(stop);
    let registry = Arc::clone(registry);
    std::thread::Builder::new()
        .name(format!("conn-{id}"))
        .spawn(move || {
            let report = if refuse {
                refuse_connection(id, stream, peer, &config)
            } else {
                serve_connection(id, stream, peer, &config, &stop)
            };
            if let Ok(mut streams) = registry.lock() {
                streams.remove(&id);
            }
            report
        })
        .context("starting the connection thread")
}

/// What the ended connections did: all added up, the first [`LISTED_CONNECTIONS`] kept.
#[derive(Default)]
struct Reports {
    listed: Vec<ConnectionReport>,
    unlisted: u64,
    total: ConnectionTotals,
}

impl Reports {
    fn push(&mut self, report: ConnectionReport) {
        self.total.add(&report);
        if self.listed.len() < LISTED_CONNECTIONS {
            self.listed.push(report);
        } else {
            self.unlisted += 1;
        }
    }
}

fn reap_finished(running: &mut Vec<JoinHandle<ConnectionReport>>, reports: &mut Reports) {
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::workload::{
        client::{run_client, ClientConfig, RunLimit},
        modes::MODES,
        protocol::{ReplyHeader, Request, Status, REPLY_HEADER_LEN},
    };

    #[test]
    fn connections_beyond_the_limit_are_refused_with_status_busy() {
        let mut config = ServerConfig::new(MODES[0].mode, "127.0.0.1:0");
        config.max_connections = 2;
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || server.run(stop))
        };
        // Two connections streaming without end, never read: the limit is reached.
        let held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                std::io::Write::write_all(
                    &mut s,
                    &Request {
                        size: 1024,
                        count: 0,
                    }
                    .encode(),
                )
                .unwrap();
                let mut header = [0u8; REPLY_HEADER_LEN];
                s.read_exact(&mut header).unwrap();
                assert_eq!(ReplyHeader::decode(&header).unwrap().status, 0);
                s
            })
            .collect();
        let config = ClientConfig::new(&addr.to_string(), 1024, 1, RunLimit::Messages(1));
        let failure = run_client(&config).unwrap_err();
        assert!(
            failure
                .message
                .contains(&format!("status {}", Status::Busy.code()))
                && failure.message.contains("--max-connections"),
            "{}",
            failure.message
        );
        drop(held);
        stop.store(true, Ordering::SeqCst);
        let totals = run.join().unwrap().unwrap();
        assert_eq!(totals.connections.len(), 3);
    }

    #[test]
    fn with_exit_after_the_server_returns_once_its_connections_have_ended() {
        let mut config = ServerConfig::new(MODES[0].mode, "127.0.0.1:0");
        config.exit_after = Some(2);
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr();
        // Never set: the server must end by itself.
        let stop = Arc::new(AtomicBool::new(false));
        let run = std::thread::spawn(move || server.run(stop));
        for messages in [3, 5] {
            let config =
                ClientConfig::new(&addr.to_string(), 1024, 1, RunLimit::Messages(messages));
            assert_eq!(run_client(&config).unwrap().messages, messages);
        }
        let totals = run.join().unwrap().unwrap();
        assert_eq!(totals.total.connections, 2);
        assert_eq!(totals.total.sender.messages, 8);
        // It stopped listening: a third client finds nobody.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_long_running_server_keeps_a_bounded_list_of_connection_reports() {
        let server = Server::bind(ServerConfig::new(MODES[0].mode, "127.0.0.1:0")).unwrap();
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || server.run(stop))
        };
        let extra = 7;
        for _ in 0..LISTED_CONNECTIONS + extra {
            let mut s = TcpStream::connect(addr).unwrap();
            // Wait for the server's close: the connection has ended before the next.
            let mut sink = [0u8; 1];
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(s.read(&mut sink).unwrap(), 0);
        }
        stop.store(true, Ordering::SeqCst);
        let totals = run.join().unwrap().unwrap();
        assert_eq!(
            totals.total.connections,
            (LISTED_CONNECTIONS + extra) as u64
        );
        assert_eq!(totals.connections.len(), LISTED_CONNECTIONS);
        assert_eq!(totals.unlisted_connections, extra as u64);
        assert!(totals_text(&totals).contains(&format!("({extra} not listed)")));
    }
}
