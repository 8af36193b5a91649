//! A server's memory per connection does not grow with the message size a client asks for
//! (issue 18): messages above 1 MiB go out in 1 MiB pieces from reused buffers, with the
//! same bytes on the wire. Every mode comes from the mode table; loopback, port 0 only.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use netcopy::{
    workload::client::{run_client, ClientConfig, RunLimit},
    workload::modes::{ModeSpec, MODES},
    workload::protocol::{ReplyHeader, Request, MESSAGE_HEADER_LEN, REPLY_HEADER_LEN},
    workload::server::{Server, ServerConfig},
};

const MIB: u64 = 1 << 20;

fn available(spec: &ModeSpec) -> bool {
    match (spec.available)() {
        Ok(()) => true,
        Err(err) => {
            eprintln!("{}: not available here ({err}); skipped", spec.name);
            false
        }
    }
}

/// Sizes around the 1 MiB piece: just above it, a few pieces with a ragged end, and the
/// default --max-size. Each verified by the client: CRC32C of every payload byte against
/// the header, lengths, sequence numbers and the stamps at the field starts.
#[test]
fn large_messages_verify_byte_exactly_in_every_mode() {
    for spec in MODES.iter().filter(|s| available(s)) {
        let server = Server::bind(ServerConfig::new(spec.mode, "127.0.0.1:0")).unwrap();
        let addr = server.local_addr().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || server.run(stop))
        };
        let mut payload = 0;
        let mut messages = 0;
        for (size, count) in [(MIB + 1, 3), (3 * MIB + 12_345, 3), (64 * MIB, 1)] {
            let config = ClientConfig::new(&addr, size, 1, RunLimit::Messages(count));
            let report =
                run_client(&config).unwrap_or_else(|f| panic!("{} size {size}: {f}", spec.name));
            assert_eq!(report.integrity_errors, 0, "{} size {size}", spec.name);
            assert_eq!((report.messages, report.bytes), (count, count * size));
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            payload += count * size;
            messages += count;
        }
        stop.store(true, Ordering::SeqCst);
        let totals = run.join().unwrap().unwrap();
        let s = &totals.total.sender;
        assert_eq!(totals.total.errors, 0, "{}", spec.name);
        assert_eq!(s.messages, messages, "{}", spec.name);
        assert_eq!(s.payload_bytes, payload, "{}", spec.name);
        assert_eq!(s.header_bytes, messages * MESSAGE_HEADER_LEN as u64);
        if spec.claim.user_copy {
            assert_eq!(s.user_copy_bytes, payload, "{}", spec.name);
            assert_eq!(s.user_copy_header_bytes, s.header_bytes, "{}", spec.name);
        }
        // Every piece's payload was generated afresh (sendfile and splice count their
        // headers too, as they generate those into fresh pages as well).
        assert!(s.generated_bytes >= payload, "{}", spec.name);
        if spec.claim.zerocopy_attach {
            assert_eq!(s.completed_sends, s.zerocopy_sends, "{}", spec.name);
            assert_eq!(s.zerocopy_bytes, payload + s.header_bytes, "{}", spec.name);
            assert!(s.max_in_flight >= 1, "{}", spec.name);
        }
    }
}

/// A `netcopy server` process and its listening address.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn start(spec: &ModeSpec, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_netcopy"))
            .args(["server", "--mode", spec.name, "--json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start netcopy server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening: serde_json::Value = serde_json::from_str(&line).expect(&line);
        ServerProcess {
            child,
            addr: listening["addr"].as_str().unwrap().to_string(),
        }
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/PID/status"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connections each asking for an endless stream of 64 MiB messages, half never reading
/// past the first message header, half reading 64 KiB at a time: the server's resident
/// memory stays within its stated bound per connection times the connections (plus a
/// fixed slack for what is not a message buffer: thread stacks, allocator arenas, the
/// 64 KiB scratch of a large message's CRC). Before pieces, each connection held its
/// whole 64 MiB message (zero-copy: at least one such slot), 1 GiB for these 16.
#[test]
fn memory_per_connection_does_not_grow_with_the_message_size() {
    const CONNECTIONS: usize = 16;
    /// Thread stacks, malloc's per-thread arenas and the like, for the whole server.
    const SLACK_KIB: u64 = 24 << 10;
    let size = 64 * MIB;
    for spec in MODES.iter().filter(|s| available(s)) {
        // A small zero-copy pool, so that its bound (3 pieces) is as tight as the others'.
        let server = ServerProcess::start(spec, &["--zc-pool-bytes", "4M"]);
        let mut config = ServerConfig::new(spec.mode, "127.0.0.1:0");
        config.zero_copy.max_pool_bytes = 4 * MIB;
        let bound_kib = config.connection_buffer_bound() * CONNECTIONS as u64 / 1024;
        let idle_kib = server.status_field("VmRSS");
        let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|_| {
                let mut s = TcpStream::connect(&server.addr).unwrap();
                s.write_all(&Request { size, count: 0 }.encode()).unwrap();
                // The reply header and the first message header: the server has built
                // this connection's sender and is sending the first message.
                let mut head = [0u8; REPLY_HEADER_LEN + MESSAGE_HEADER_LEN];
                s.read_exact(&mut head).unwrap();
                let reply = ReplyHeader::decode(head[..REPLY_HEADER_LEN].try_into().unwrap());
                assert_eq!(reply.unwrap().status, 0, "{}", spec.name);
                s
            })
            .collect();
        // Every connection is being served: one thread each besides the accept loop.
        assert!(
            server.status_field("Threads") > CONNECTIONS as u64,
            "{}",
            spec.name
        );
        let mut max_kib = 0;
        let mut buf = vec![0u8; 64 << 10];
        // Readers move 8 MiB each through the server's pieces, so their piece buffers
        // are filled and refilled while the others sit on full socket buffers.
        let mut moved = [0u64; CONNECTIONS];
        while moved.iter().step_by(2).any(|&m| m < 8 * MIB) {
            for (i, stream) in streams.iter_mut().enumerate().step_by(2) {
                if moved[i] < 8 * MIB {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(
                        n > 0,
                        "{}: the server closed a reading connection",
                        spec.name
                    );
                    moved[i] += n as u64;
                }
            }
            max_kib = max_kib.max(server.status_field("VmRSS"));
        }
        max_kib = max_kib.max(server.status_field("VmRSS"));
        let grown = max_kib.saturating_sub(idle_kib);
        eprintln!(
            "{}: idle {idle_kib} KiB, max {max_kib} KiB, grew {grown} KiB; bound {bound_kib} KiB \
             + slack {SLACK_KIB} KiB",
            spec.name
        );
        assert!(
            grown <= bound_kib + SLACK_KIB,
            "{}: RSS grew by {grown} KiB with {CONNECTIONS} connections of {size}-byte \
             messages, above {CONNECTIONS} x the stated bound ({bound_kib} KiB) + {SLACK_KIB} KiB",
            spec.name
        );
        drop(streams);
        drop(server);
    }
}
