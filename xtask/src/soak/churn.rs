//! The load a soaked server gets, each kind from its own threads at a bounded rate, until
//! told to stop:
//! - well-formed clients: `netcopy client --json` processes, one at a time, that verify every
//!   message (CRC32C, sequence numbers, lengths, stamps) and must report no integrity error;
//! - quitters: a valid request, then a close after a random part of the reply (half of them
//!   with an RST: SO_LINGER 0);
//! - slow readers: a stream of large messages read a little at a time for seconds;
//! - garbage: random bytes, a bad version, size 0, a size over the limit, a truncated
//!   header, or nothing at all. Complete bad headers must be answered with an error status.
//!
//! The raw connections write the 24-byte request of netcopy's wire format (version 1, in
//! netcopy-user/src/workload/protocol.rs) themselves: xtask does not link netcopy, and a
//! soak that sends bytes of its own is also a check that the format is what the docs say.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// Connections the churn holds open at once, at most: one well-formed client (2 threads at
/// most), one quitter, one garbage sender and [`SLOW_READERS`].
pub const MAX_CHURN_CONNECTIONS: u64 = 2 + 1 + 1 + SLOW_READERS as u64;
const SLOW_READERS: usize = 3;

/// Payload sizes the well-formed clients ask for (bytes).
pub const CLIENT_SIZES: [u64; 6] = [1, 1000, 65_537, 1 << 20, 4 << 20, 16 << 20];
/// Each well-formed client moves about this many payload bytes.
const CLIENT_BYTES: u64 = 32 << 20;

/// What the churn did to one server; every field counts connections or clients.
#[derive(Debug, Default)]
pub struct ChurnCounts {
    pub clients_verified: AtomicU64,
    /// Well-formed clients that failed: a non-zero exit, an integrity error, fewer messages
    /// than asked, or output that is not netcopy's JSON.
    pub clients_failed: AtomicU64,
    pub quitters: AtomicU64,
    pub slow_readers: AtomicU64,
    pub garbage: AtomicU64,
    /// Complete bad request headers that got no error status back.
    pub garbage_unanswered: AtomicU64,
    /// Raw connections that could not even connect.
    pub connect_failures: AtomicU64,
}

/// The first failures, kept for the report.
#[derive(Debug, Default)]
pub struct FailureLog(Mutex<Vec<String>>);

impl FailureLog {
    fn push(&self, what: String) {
        if let Ok(mut log) = self.0.lock() {
            if log.len() < 10 {
                log.push(what);
            }
        }
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

/// Where and how to churn.
#[derive(Clone)]
pub struct Target {
    pub netcopy: PathBuf,
    pub addr: SocketAddr,
    pub counts: Arc<ChurnCounts>,
    pub failures: Arc<FailureLog>,
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
}

/// splitmix64: the churn's choices; seeded per thread so runs differ but stay cheap.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// netcopy's request: magic "NCPY", version, flags, size, count, all big-endian.
fn request(version: u16, size: u64, count: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[0..4].copy_from_slice(&0x4E43_5059u32.to_be_bytes());
    out[4..6].copy_from_slice(&version.to_be_bytes());
    out[8..16].copy_from_slice(&size.to_be_bytes());
    out[16..24].copy_from_slice(&count.to_be_bytes());
    out
}

/// Sleeps `total` in short steps; false when told to stop meanwhile.
fn pause(stop: &AtomicBool, total: Duration) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    !stop.load(Ordering::SeqCst)
}

/// Starts every churn thread; they end when `target.stop` is set.
pub fn start(target: &Target) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    let spawn = |name: &str, offset: u64, body: fn(&Target, Rng)| {
        let target = target.clone();
        let rng = Rng(target.seed ^ offset.wrapping_mul(0xD1B5_4A32_D192_ED03));
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(&target, rng))
            .expect("starting a churn thread")
    };
    threads.push(spawn("well-formed", 1, well_formed_clients));
    threads.push(spawn("quitters", 2, quitters));
    threads.push(spawn("garbage", 3, garbage));
    for i in 0..SLOW_READERS {
        threads.push(spawn("slow-reader", 10 + i as u64, slow_readers));
    }
    threads
}

fn well_formed_clients(target: &Target, mut rng: Rng) {
    let mut round = 0usize;
    while !target.stop.load(Ordering::SeqCst) {
        let size = CLIENT_SIZES[round % CLIENT_SIZES.len()];
        round += 1;
        let rr = rng.below(4) == 0;
        let messages = if rr {
            (CLIENT_BYTES / size).clamp(1, 200)
        } else {
            (CLIENT_BYTES / size).clamp(2, 5000)
        };
        let threads = 1 + rng.below(2);
        match run_client(target, size, messages, threads, rr) {
            Ok(()) => target
                .counts
                .clients_verified
                .fetch_add(1, Ordering::SeqCst),
            Err(what) => {
                target.failures.push(format!(
                    "client of {messages} x {size} B ({} pattern, {threads} threads): {what}",
                    if rr { "rr" } else { "stream" }
                ));
                target.counts.clients_failed.fetch_add(1, Ordering::SeqCst)
            }
        };
        pause(&target.stop, Duration::from_millis(500));
    }
}

/// Runs one `netcopy client` to its end and checks what it says it verified.
fn run_client(
    target: &Target,
    size: u64,
    messages: u64,
    threads: u64,
    rr: bool,
) -> Result<(), String> {
    let output = Command::new(&target.netcopy)
        .arg("client")
        .args(["--connect", &target.addr.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--pattern", if rr { "rr" } else { "stream" }])
        .args(["--verify", "full", "--io-timeout", "60s", "--json"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start netcopy client: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{}: {}", output.status, stderr.trim()));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("its JSON does not parse: {e}"))?;
    let integrity = report["integrity_errors"].as_u64();
    let got = report["messages"].as_u64();
    let errors = report["errors"].as_array().map(|e| e.len());
    if integrity != Some(0) || got != Some(messages) || errors != Some(0) {
        return Err(format!(
            "integrity_errors {integrity:?}, messages {got:?} of {messages}, errors {:?}",
            report["errors"]
        ));
    }
    Ok(())
}

fn connect(target: &Target) -> Option<TcpStream> {
    match TcpStream::connect_timeout(&target.addr, Duration::from_secs(5)) {
        Ok(stream) => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            Some(stream)
        }
        Err(err) => {
            target.failures.push(format!("connect failed: {err}"));
            target
                .counts
                .connect_failures
                .fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

/// Reads and discards up to `limit` bytes; returns how many came.
fn read_some(stream: &mut TcpStream, limit: u64) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < limit {
        let want = (limit - got).min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    got
}

/// Closes with an RST instead of a FIN (SO_LINGER with a zero timeout).
fn set_reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn quitters(target: &Target, mut rng: Rng) {
    while pause(&target.stop, Duration::from_millis(250)) {
        let Some(mut stream) = connect(target) else {
            continue;
        };
        let size = [65_537, 1 << 20, 8 << 20][rng.below(3) as usize];
        let count = if rng.below(2) == 0 { 0 } else { 50 };
        if stream.write_all(&request(1, size, count)).is_ok() {
            // Somewhere in the reply header, a message header or a payload.
            read_some(&mut stream, rng.below(2 * size + 32));
        }
        if rng.below(2) == 0 {
            set_reset_on_close(&stream);
        }
        drop(stream);
        target.counts.quitters.fetch_add(1, Ordering::SeqCst);
    }
}

fn slow_readers(target: &Target, mut rng: Rng) {
    while pause(&target.stop, Duration::from_millis(100)) {
        let Some(mut stream) = connect(target) else {
            continue;
        };
        let size = [256 << 10, 1 << 20, 64 << 20][rng.below(3) as usize];
        if stream.write_all(&request(1, size, 0)).is_ok() {
            let end = Instant::now() + Duration::from_secs(5 + rng.below(10));
            while Instant::now() < end && pause(&target.stop, Duration::from_millis(100)) {
                if read_some(&mut stream, 16 << 10) == 0 {
                    break;
                }
            }
        }
        drop(stream);
        target.counts.slow_readers.fetch_add(1, Ordering::SeqCst);
    }
}

fn garbage(target: &Target, mut rng: Rng) {
    while pause(&target.stop, Duration::from_millis(500)) {
        let Some(mut stream) = connect(target) else {
            continue;
        };
        let kind = rng.below(6);
        let bytes: Vec<u8> = match kind {
            0 => (0..24 + rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => request(2 + rng.below(100) as u16, 1024, 1).to_vec(),
            2 => request(1, 0, 1).to_vec(),
            3 => request(1, 1 << 40, 1).to_vec(),
            4 => request(1, 1024, 1)[..1 + rng.below(23) as usize].to_vec(),
            _ => Vec::new(),
        };
        // A complete header with bad content (random bytes almost never carry the magic).
        let complete_and_bad =
            kind <= 3 && !(kind == 0 && bytes[..4] == 0x4E43_5059u32.to_be_bytes());
        let sent = stream.write_all(&bytes).is_ok();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = stream.take(64 << 10).read_to_end(&mut reply);
        if sent && complete_and_bad {
            // Reply header: magic, version, status (bytes 6..8) != 0.
            let status = reply.get(6..8).map(|s| u16::from_be_bytes([s[0], s[1]]));
            if !matches!(status, Some(code) if code != 0) {
                target.failures.push(format!(
                    "garbage of kind {kind} ({} bytes) got no error status: {} reply bytes",
                    bytes.len(),
                    reply.len()
                ));
                target
                    .counts
                    .garbage_unanswered
                    .fetch_add(1, Ordering::SeqCst);
            }
        }
        target.counts.garbage.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes_follow_the_wire_format() {
        let bytes = request(1, 0x0102, 7);
        assert_eq!(&bytes[..4], b"NCPY");
        assert_eq!(&bytes[4..8], &[0, 1, 0, 0]);
        assert_eq!(&bytes[8..16], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&bytes[16..24], &[0, 0, 0, 0, 0, 0, 0, 7]);
    }
}
