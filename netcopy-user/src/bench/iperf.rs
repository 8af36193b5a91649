//! iperf3, the tool users would pick instead: found on PATH, a server started by us on a
//! free loopback port and stopped afterwards, clients run with `--json` and their
//! receiver-side `bits_per_second` parsed.

use std::{
    env,
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::{sys::find_on_path, units::format_size};

/// How to get iperf3 when it is missing.
const INSTALL_HINT: &str =
    "install it with `apt-get install -y iperf3` (Debian/Ubuntu) or `cargo xtask setup`";

/// An iperf3 executable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Iperf3 {
    pub(super) path: PathBuf,
    /// First line of `iperf3 --version`, e.g. `iperf 3.12 (cJSON 1.7.15)`.
    pub(super) version: String,
}

impl Iperf3 {
    /// iperf3 on PATH, or why not (with how to install it).
    pub(super) fn find() -> std::result::Result<Iperf3, String> {
        let path = find_on_path("iperf3")
            .ok_or_else(|| format!("iperf3 is not installed (not on PATH); {INSTALL_HINT}"))?;
        let output = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.lines().next().unwrap_or("").trim().to_string();
        if !version.starts_with("iperf 3") {
            return Err(format!(
                "{} --version printed {version:?}, not an iperf 3 version line",
                path.display()
            ));
        }
        Ok(Iperf3 { path, version })
    }
}

/// An `iperf3 -s` we started; killed when dropped.
pub(super) struct Iperf3Server {
    child: Child,
    pub(super) port: u16,
    log: PathBuf,
}

impl Iperf3Server {
    /// Starts `iperf3 -s -B 127.0.0.1 -p PORT` on a free port and waits until it listens.
    pub(super) fn start(iperf: &Iperf3) -> Result<Iperf3Server> {
        let mut last_error = None;
        // A port found free can be taken by someone else before iperf3 binds it: retry.
        for attempt in 0..3 {
            let port = free_port()?;
            let log = env::temp_dir().join(format!(
                "netcopy-bench-iperf3-{}-{attempt}.log",
                std::process::id()
            ));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(&iperf.path)
                .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {} -s", iperf.path.display()))?;
            let mut server = Iperf3Server { child, port, log };
            match server.wait_listening(Duration::from_secs(5)) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("iperf3 server did not start")))
    }

    fn wait_listening(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "iperf3 -s on port {} exited ({status}): {}",
                    self.port,
                    self.log_text()
                );
            }
            if loopback_listening(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "iperf3 -s did not listen on 127.0.0.1:{} within {limit:?}: {}",
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            "(no output)".to_string()
        } else {
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        }
    }

    /// The server's process (iperf3 3.12 receives in its main thread).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it does not exit within 2 s.
    pub(super) fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// True when /proc/net/tcp has a socket in LISTEN on 127.0.0.1:`port` (or 0.0.0.0).
fn loopback_listening(port: u16) -> bool {
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|text| listening_in(&text, port))
}

fn listening_in(proc_net_tcp: &str, port: u16) -> bool {
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    proc_net_tcp.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        state == "0A" && wanted.iter().any(|w| w == local)
    })
}

/// What one iperf3 client run asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Iperf3Options {
    /// `-P`: parallel streams.
    pub(super) streams: u32,
    /// `-l`: bytes per write.
    pub(super) block: u64,
    /// `-t`: seconds (iperf3 takes whole seconds).
    pub(super) seconds: u32,
    /// `-Z`: sendfile() from a file instead of write() from a buffer.
    pub(super) zerocopy: bool,
    /// `-A n,n`: client and server (for this test) on CPU n.
    pub(super) cpu: Option<usize>,
}

impl Iperf3Options {
    /// The client's arguments after the executable.
    pub(super) fn args(&self, port: u16) -> Vec<String> {
        let mut args = vec![
            "-c".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
            "-t".to_string(),
            self.seconds.to_string(),
            "-l".to_string(),
            // iperf3's K/M suffixes are binary, like netcopy's.
            format_size(self.block),
            "--json".to_string(),
        ];
        if self.streams > 1 {
            args.extend(["-P".to_string(), self.streams.to_string()]);
        }
        if self.zerocopy {
            args.push("-Z".to_string());
        }
        if let Some(cpu) = self.cpu {
            args.extend(["-A".to_string(), format!("{cpu},{cpu}")]);
        }
        args
    }

    /// The command line as a user would type it (for reports).
    pub(super) fn command_line(&self) -> String {
        let mut line = format!(
            "iperf3 -c 127.0.0.1 -t {} -l {}",
            self.seconds,
            format_size(self.block)
        );
        if self.streams > 1 {
            line.push_str(&format!(" -P {}", self.streams));
        }
        if self.zerocopy {
            line.push_str(" -Z");
        }
        if let Some(cpu) = self.cpu {
            line.push_str(&format!(" -A {cpu},{cpu}"));
        }
        line.push_str(" --json");
        line
    }
}

/// The figures netcopy takes from one iperf3 `--json` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Iperf3Result {
    /// `end.sum_received.bits_per_second`: what the receiver got.
    receiver_bits_per_second: f64,
    receiver_bytes: u64,
    receiver_seconds: f64,
    /// `end.sum_sent.bits_per_second`.
    sender_bits_per_second: Option<f64>,
    /// `end.sum_sent.retransmits`.
    retransmits: Option<u64>,
    /// `start.test_start.num_streams`.
    streams: Option<u64>,
    /// `start.test_start.blksize`.
    block: Option<u64>,
}

impl Iperf3Result {
    pub(super) fn receiver_gbps(&self) -> f64 {
        self.receiver_bits_per_second / 1e9
    }
}

/// Parses iperf3's `--json` output. iperf3 reports its own failures in an `error` field
/// (and may still exit 0), so that field is an error here.
fn parse_result(json: &str) -> Result<Iperf3Result> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("iperf3's --json output is not JSON")?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    let received = value
        .pointer("/end/sum_received")
        .ok_or_else(|| anyhow!("iperf3's JSON has no end.sum_received"))?;
    let receiver_bits_per_second = received
        .get("bits_per_second")
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| anyhow!("iperf3's end.sum_received has no bits_per_second"))?;
    let receiver_bytes = received.get("bytes").and_then(|v| v.as_u64()).unwrap_or(0);
    let receiver_seconds = received
        .get("seconds")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    Ok(Iperf3Result {
        receiver_bits_per_second,
        receiver_bytes,
        receiver_seconds,
        sender_bits_per_second: value
            .pointer("/end/sum_sent/bits_per_second")
            .and_then(|v| v.as_f64()),
        retransmits: value
            .pointer("/end/sum_sent/retransmits")
            .and_then(|v| v.as_u64()),
        streams: value
            .pointer("/start/test_start/num_streams")
            .and_then(|v| v.as_u64()),
        block: value
            .pointer("/start/test_start/blksize")
            .and_then(|v| v.as_u64()),
    })
}

/// Runs one iperf3 client against `port`. A server still busy with the previous test
/// ("the server is busy running a test") is retried a few times.
/// `started` is called with the pid of each iperf3 client started.
pub(super) fn run_client(
    iperf: &Iperf3,
    port: u16,
    options: &Iperf3Options,
    started: &mut dyn FnMut(u32),
) -> Result<Iperf3Result> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let json = run_with_timeout(
            &iperf.path,
            &options.args(port),
            Duration::from_secs(u64::from(options.seconds) + 30),
            started,
        )?;
        match parse_result(&json) {
            Err(e) if attempt < 5 && format!("{e}").contains("busy") => {
                std::thread::sleep(Duration::from_millis(300));
            }
            other => {
                return other.with_context(|| {
                    format!(
                        "running {}",
                        options
                            .command_line()
                            .replace("iperf3", &iperf.path.display().to_string())
                    )
                })
            }
        }
    }
}

/// Runs `program args`, returns its standard output; kills it after `limit`.
fn run_with_timeout(
    program: &Path,
    args: &[String],
    limit: Duration,
    started: &mut dyn FnMut(u32),
) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    started(child.id());
    let mut stdout = child.stdout.take().context("child stdout")?;
    let mut stderr = child.stderr.take().context("child stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not finish within {limit:?}; killed it",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    let err_text = err_reader.join().unwrap_or_default();
    if text.trim().is_empty() {
        bail!(
            "{} exited ({status}) without output: {}",
            program.display(),
            err_text.trim()
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_P2: &str = include_str!("testdata/iperf3-3.12-P2.json");
    const SAMPLE_REFUSED: &str = include_str!("testdata/iperf3-3.12-refused.json");

    #[test]
    fn parses_the_receiver_rate_of_a_captured_run() {
        let r = parse_result(SAMPLE_P2).unwrap();
        // The sample's end.sum_received.bits_per_second is 19633150699.566982.
        assert!((r.receiver_bits_per_second - 19_633_150_699.566_982).abs() < 1e-3);
        assert!((r.receiver_gbps() - 19.633150699566986).abs() < 1e-9);
        assert_eq!(r.streams, Some(2));
        assert_eq!(r.block, Some(131072));
        assert_eq!(r.retransmits, Some(75));
        assert!(r.sender_bits_per_second.unwrap() > r.receiver_bits_per_second);
        assert!(r.receiver_bytes > 0);
    }

    #[test]
    fn an_error_field_is_an_error_even_with_exit_status_zero() {
        let err = parse_result(SAMPLE_REFUSED).unwrap_err().to_string();
        assert!(err.contains("Connection refused"), "{err}");
    }

    #[test]
    fn malformed_output_is_an_error() {
        assert!(parse_result("iperf3: parameter error").is_err());
        assert!(parse_result("{\"end\": {}}").is_err());
        assert!(
            parse_result("{\"end\": {\"sum_received\": {\"bits_per_second\": \"x\"}}}").is_err()
        );
    }

    #[test]
    fn client_arguments() {
        let o = Iperf3Options {
            streams: 4,
            block: 131072,
            seconds: 2,
            zerocopy: true,
            cpu: Some(1),
        };
        assert_eq!(
            o.args(5201).join(" "),
            "-c 127.0.0.1 -p 5201 -t 2 -l 128K --json -P 4 -Z -A 1,1"
        );
        let single = Iperf3Options {
            streams: 1,
            zerocopy: false,
            cpu: None,
            ..o
        };
        assert_eq!(
            single.command_line(),
            "iperf3 -c 127.0.0.1 -t 2 -l 128K --json"
        );
    }

    #[test]
    fn proc_net_tcp_listener() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
                    0: 0100007F:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n\
                    1: 0100007F:1452 0100007F:9C40 01 00000000:00000000 00:00000000 00000000\n";
        assert!(listening_in(text, 0x1451));
        // Established, not listening.
        assert!(!listening_in(text, 0x1452));
        assert!(!listening_in(text, 80));
    }
}
