//! `cargo xtask soak --minutes N`: one `netcopy server` per mode (the modes come from
//! `netcopy modes --json`; none is named here), all at once on loopback, each under its own
//! churn (`churn.rs`) for N minutes, sampled once a second (`sample.rs`).
//!
//! A mode passes when, after the warm-up:
//! - RSS, open fds and threads are each flat: the largest sample of the last half is at
//!   most the largest of the first half plus a slack (RSS [`RSS_SLACK_KIB`]; fds and
//!   threads [`MAX_CHURN_CONNECTIONS`] times what one connection may hold, since the churn
//!   keeps up to that many connections open and a sample may catch any number of them);
//! - once the churn has stopped and its connections closed, the server is back to the
//!   threads and fds it had before the churn began (waited for up to
//!   [`SETTLE_TIMEOUT`]): no thread or descriptor outlives its connection;
//! - every well-formed client verified its data, every complete bad header was answered
//!   with an error status, and the server exits 0 on SIGINT (the stop it was asked
//!   for) with its totals parseable and no connection thread panicked.
//!
//! Why xtask and not a `netcopy` subcommand: the soak is a developer's check on the
//! product from the outside (processes, /proc, the wire), which is what a user's load looks
//! like; it links none of netcopy and needs only the release binary.

mod churn;
mod sample;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use churn::{ChurnCounts, FailureLog, Target, MAX_CHURN_CONNECTIONS};
use sample::{flatness, read_sample, Flatness, Sample, Slack};

/// The RSS the last half may add to the first half's maximum (KiB).
pub const RSS_SLACK_KIB: u64 = 8 << 10;
/// File descriptors one server connection may hold: the socket and its two duplicates,
/// plus a mode's own (a pipe, a memfd or a ring).
const FDS_PER_CONNECTION: u64 = 5;
/// How long the server gets to close the churn's connections after it stops.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to soak (all modes at once), in minutes; fractions allowed (0.5 = 30 s).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Samples before this many seconds are not judged (default: a fifth of the run,
    /// at least 10 s).
    #[arg(long)]
    warm_up_seconds: Option<u64>,
    /// The netcopy binary to soak (default: build it, as `cargo xtask build` does).
    #[arg(long)]
    netcopy: Option<PathBuf>,
    /// Write every sample here as JSON lines (mode, t, rss_kib, fds, threads).
    #[arg(long)]
    samples: Option<PathBuf>,
}

/// One mode's soak.
struct ModeSoak {
    name: String,
    /// The server's stderr (one line per connection event); kept only if the mode fails.
    log: PathBuf,
    server: Child,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    idle_before: Sample,
    samples: Vec<Sample>,
    counts: Arc<ChurnCounts>,
    failures: Arc<FailureLog>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

pub fn soak(args: &SoakArgs) -> Result<()> {
    if !(args.minutes > 0.0 && args.minutes <= 24.0 * 60.0) {
        bail!(
            "--minutes must be above 0 and at most a day, not {}",
            args.minutes
        );
    }
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let warm_up = args
        .warm_up_seconds
        .map(Duration::from_secs)
        .unwrap_or_else(|| (duration / 5).max(Duration::from_secs(10)));
    if warm_up + Duration::from_secs(4) > duration {
        bail!(
            "the warm-up ({} s) leaves fewer than 4 samples of a {} s soak to judge",
            warm_up.as_secs(),
            duration.as_secs()
        );
    }
    let netcopy = match &args.netcopy {
        Some(path) => path.clone(),
        None => crate::build::build_all()?,
    };
    let modes = available_modes(&netcopy)?;
    println!(
        "soak: {} modes for {:.1} min (warm-up {} s), binary {}",
        modes.len(),
        args.minutes,
        warm_up.as_secs(),
        netcopy.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut soaks = Vec::new();
    for (index, name) in modes.iter().enumerate() {
        match start_mode(&netcopy, name, index as u64, &stop) {
            Ok(soak) => soaks.push(soak),
            Err(err) => {
                stop.store(true, Ordering::SeqCst);
                for soak in soaks {
                    let _ = end_mode(soak);
                }
                return Err(err.context(format!("starting the {name} server")));
            }
        }
    }
    let mut sample_log = match &args.samples {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let mut next = started;
    let mut sampling_error = None;
    while started.elapsed() < duration && sampling_error.is_none() {
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let at = started.elapsed();
        for soak in &mut soaks {
            match read_sample(soak.pid, at) {
                Ok(sample) => {
                    if let Some(log) = sample_log.as_mut() {
                        use std::io::Write;
                        let line = serde_json::json!({"mode": soak.name, "t": at.as_secs_f64(),
                            "rss_kib": sample.rss_kib, "fds": sample.fds, "threads": sample.threads});
                        let _ = writeln!(log, "{line}");
                    }
                    soak.samples.push(sample);
                }
                Err(err) => sampling_error = Some(err.context(format!("{} server", soak.name))),
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let slack = Slack {
        rss_kib: RSS_SLACK_KIB,
        fds: MAX_CHURN_CONNECTIONS * FDS_PER_CONNECTION,
        threads: MAX_CHURN_CONNECTIONS,
    };
    let mut verdicts = Vec::new();
    for soak in soaks {
        verdicts.push(end_mode(soak).map(|mut v| {
            v.judge(warm_up, slack);
            v
        }));
    }
    if let Some(err) = sampling_error {
        return Err(err);
    }
    let verdicts: Vec<Verdict> = verdicts.into_iter().collect::<Result<_>>()?;
    print_table(&verdicts, warm_up, slack);
    let failed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.problems.is_empty()).collect();
    for verdict in &verdicts {
        if verdict.problems.is_empty() {
            let _ = std::fs::remove_file(&verdict.log);
        }
    }
    for verdict in &failed {
        for problem in &verdict.problems {
            eprintln!("soak: {}: {problem}", verdict.name);
        }
        eprintln!(
            "soak: {}: server log kept in {}",
            verdict.name,
            verdict.log.display()
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} modes failed the soak",
            failed.len(),
            verdicts.len()
        );
    }
    println!("soak: every mode flat, every client verified");
    Ok(())
}

/// Mode names from `netcopy modes --json`, without those this machine cannot run (said).
fn available_modes(netcopy: &Path) -> Result<Vec<String>> {
    let output = Command::new(netcopy)
        .args(["modes", "--json"])
        .output()
        .with_context(|| format!("running {} modes --json", netcopy.display()))?;
    if !output.status.success() {
        bail!(
            "netcopy modes --json failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let table: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing netcopy modes --json")?;
    let mut names = Vec::new();
    for mode in table["modes"].as_array().context("no modes array")? {
        let name = mode["name"].as_str().context("a mode without a name")?;
        if let Some(why) = mode["unsupported"].as_str() {
            println!("soak: {name} skipped: {why}");
            continue;
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn start_mode(netcopy: &Path, name: &str, index: u64, stop: &Arc<AtomicBool>) -> Result<ModeSoak> {
    let log = std::env::temp_dir().join(format!("netcopy-soak-{}-{name}.log", std::process::id()));
    let stderr =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut server = Command::new(netcopy)
        .args([
            "server",
            "--mode",
            name,
            "--listen",
            "127.0.0.1:0",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("starting netcopy server")?;
    let mut stdout = BufReader::new(server.stdout.take().context("server stdout")?);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .context("reading the listening line")?;
    let listening: serde_json::Value = match serde_json::from_str(&line) {
        Ok(value) => value,
        Err(err) => {
            let _ = server.kill();
            let _ = server.wait();
            bail!(
                "the server's first line {line:?} is not its listening event ({err}); see {}",
                log.display()
            );
        }
    };
    let addr = listening["addr"]
        .as_str()
        .context("no addr in the listening event")?
        .parse()
        .context("the listening address")?;
    let pid = server.id();
    // Let the server settle before the idle reading.
    std::thread::sleep(Duration::from_millis(200));
    let idle_before = read_sample(pid, Duration::ZERO)?;
    let counts = Arc::new(ChurnCounts::default());
    let failures = Arc::new(FailureLog::default());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let threads = churn::start(&Target {
        netcopy: netcopy.to_path_buf(),
        addr,
        counts: Arc::clone(&counts),
        failures: Arc::clone(&failures),
        stop: Arc::clone(stop),
        seed,
    });
    Ok(ModeSoak {
        name: name.to_string(),
        log,
        server,
        stdout,
        pid,
        idle_before,
        samples: Vec::new(),
        counts,
        failures,
        threads,
    })
}

/// What one mode's soak showed.
struct Verdict {
    name: String,
    log: PathBuf,
    idle_before: Sample,
    idle_after: Option<Sample>,
    samples: Vec<Sample>,
    counts: Arc<ChurnCounts>,
    server_connections: Option<u64>,
    flat: [Option<Flatness>; 3],
    problems: Vec<String>,
}

/// Waits for the churn to end, for the server to settle, then stops it.
fn end_mode(mut soak: ModeSoak) -> Result<Verdict> {
    for thread in soak.threads.drain(..) {
        let _ = thread.join();
    }
    let mut problems: Vec<String> = soak.failures.entries();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut idle_after = None;
    while Instant::now() < deadline {
        match read_sample(soak.pid, Duration::ZERO) {
            Ok(s) => {
                idle_after = Some(s);
                if s.fds == soak.idle_before.fds && s.threads == soak.idle_before.threads {
                    break;
                }
            }
            Err(err) => {
                problems.push(format!("{err:#}"));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(after) = idle_after {
        if after.fds != soak.idle_before.fds || after.threads != soak.idle_before.threads {
            problems.push(format!(
                "{} s after the churn stopped the server holds {} fds and {} threads, \
                 {} and {} before the churn began",
                SETTLE_TIMEOUT.as_secs(),
                after.fds,
                after.threads,
                soak.idle_before.fds,
                soak.idle_before.threads
            ));
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(soak.pid as libc::pid_t, libc::SIGINT) };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut soak.stdout, &mut rest);
    let status = soak.server.wait().context("waiting for the server")?;
    // SIGINT is how a server is asked to stop: it exits 0 after printing its totals.
    if !status.success() {
        problems.push(format!(
            "the server ended with {status} after SIGINT, not 0"
        ));
    }
    let mut server_connections = None;
    match rest
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        Some(totals) => {
            server_connections = totals["total"]["connections"].as_u64();
            let panicked = totals["connections"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter(|c| c["end"].as_str() == Some("connection thread panicked"))
                        .count()
                })
                .unwrap_or(0);
            if panicked > 0 {
                problems.push(format!("{panicked} connection threads panicked"));
            }
        }
        None => problems.push(format!("no totals line from the server: {rest:?}")),
    }
    let counts = &soak.counts;
    for (what, n) in [
        ("well-formed clients failed", &counts.clients_failed),
        (
            "bad headers got no error status",
            &counts.garbage_unanswered,
        ),
        ("connections could not connect", &counts.connect_failures),
    ] {
        let n = n.load(Ordering::SeqCst);
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if counts.clients_verified.load(Ordering::SeqCst) == 0 {
        problems.push("no well-formed client ran to its end".to_string());
    }
    Ok(Verdict {
        name: soak.name,
        log: soak.log,
        idle_before: soak.idle_before,
        idle_after,
        samples: soak.samples,
        counts: soak.counts,
        server_connections,
        flat: [None; 3],
        problems,
    })
}

impl Verdict {
    fn judge(&mut self, warm_up: Duration, slack: Slack) {
        self.flat = [
            flatness(&self.samples, warm_up, |s| s.rss_kib, slack.rss_kib),
            flatness(&self.samples, warm_up, |s| s.fds, slack.fds),
            flatness(&self.samples, warm_up, |s| s.threads, slack.threads),
        ];
        for (what, flat) in ["RSS (KiB)", "open fds", "threads"].iter().zip(&self.flat) {
            match flat {
                None => self
                    .problems
                    .push(format!("too few samples after warm-up to judge {what}")),
                Some(f) if !f.flat() => self.problems.push(format!(
                    "{what} not flat: last half max {} > first half max {} + slack {}",
                    f.last_half_max, f.first_half_max, f.slack
                )),
                Some(_) => {}
            }
        }
    }

    /// Start (idle, before churn), first sample after warm-up, last sample, max.
    fn figures(&self, warm_up: Duration, value: impl Fn(&Sample) -> u64) -> [String; 4] {
        let after = self.samples.iter().find(|s| s.at >= warm_up).map(&value);
        let end = self.samples.last().map(&value);
        let max = self.samples.iter().map(&value).max();
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        [
            show(Some(value(&self.idle_before))),
            show(after),
            show(end),
            show(max),
        ]
    }
}

fn print_table(verdicts: &[Verdict], warm_up: Duration, slack: Slack) {
    println!();
    println!(
        "| mode | RSS KiB start / warm / end / max | fds start / warm / end / max | threads start / warm / end / max | idle after (fds, threads) | clients verified | quitters | slow readers | garbage | server connections | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for v in verdicts {
        let join = |f: [String; 4]| f.join(" / ");
        let idle = v
            .idle_after
            .map_or("-".to_string(), |s| format!("{}, {}", s.fds, s.threads));
        let c = &v.counts;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.name,
            join(v.figures(warm_up, |s| s.rss_kib)),
            join(v.figures(warm_up, |s| s.fds)),
            join(v.figures(warm_up, |s| s.threads)),
            idle,
            c.clients_verified.load(Ordering::SeqCst),
            c.quitters.load(Ordering::SeqCst),
            c.slow_readers.load(Ordering::SeqCst),
            c.garbage.load(Ordering::SeqCst),
            v.server_connections
                .map_or("-".to_string(), |n| n.to_string()),
            if v.problems.is_empty() {
                "flat, pass"
            } else {
                "FAIL"
            },
        );
    }
    println!(
        "\nflat = after the {} s warm-up, last half's max <= first half's max + slack \
         (RSS {} KiB, fds {}, threads {})",
        warm_up.as_secs(),
        slack.rss_kib,
        slack.fds,
        slack.threads
    );
}
