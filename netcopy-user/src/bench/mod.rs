//! `netcopy bench`: where netcopy stands against what users would pick instead (iperf3),
//! against the machine's limits (memcpy bandwidth), and what its own instruments cost
//! (copy counting, syscall tracing).
//!
//! Every comparison runs both sides in one run, alternating them round by round
//! (ABAB...), and reports the median, min and max of the rounds and the ratio of the
//! medians. Targets are printed as met / NOT met; nothing here asserts a speed.

mod affinity;
mod iperf;
mod machine;
mod markdown;
mod memcpy;
mod program_cost;

pub mod tracing;
pub mod windows;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::util::stats;
pub use crate::util::stats::Summary;
pub use iperf::{Iperf3, Iperf3Options, Iperf3Result};
pub use machine::{CpuSnapshot, ForeignLoad, MachineInfo, SourceTree};
pub use memcpy::MemcpyFigures;
use program_cost::ProgramMeter;
pub use program_cost::{ProgramCost, ProgramFigure};

use crate::{
    kernel::CopyProbes,
    ledger::{CLIENT_SLOT, SERVER_SLOT},
    util::sys,
    util::units::format_size,
    workload::client::{run_client, ClientConfig, RunLimit, Verification},
    workload::harness::ServerProcess,
    workload::modes::Mode,
};

/// Message size of the comparisons with iperf3 (`iperf3 -l 128K`).
pub const PEER_SIZE: u64 = 128 << 10;
/// Streams of the multi-stream comparison (`-P 4` / `--threads 4`).
pub const PEER_STREAMS: u32 = 4;
/// Message size of the probe-overhead runs.
pub const OVERHEAD_SIZE: u64 = 64 << 10;
/// memcpy passes measured (after one warm-up).
pub const MEMCPY_PASSES: u32 = 5;

/// Target: one-copy throughput at least this fraction of iperf3's at the same settings.
pub const TARGET_PEER_RATIO: f64 = 0.95;
/// Target: copy counting costs at most this much throughput and CPU, percent.
pub const TARGET_COUNTING_PCT: f64 = 3.0;
/// Target: syscall tracing costs at most this much throughput and CPU, percent.
pub const TARGET_TRACING_PCT: f64 = 10.0;
/// Probe overhead: each instrument's window in a block, the settling time after every
/// switch, and blocks per round-second of `--rounds` x `--seconds` (the default 5 x 2
/// gives 60 blocks, about 100 s).
pub const WINDOW_MS: u64 = 200;
pub const SETTLE_MS: u64 = 50;
pub const BLOCKS_PER_ROUND_SECOND: u32 = 6;
/// Of the intervals around the overheads' medians.
pub const CONFIDENCE: f64 = 0.95;

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// One-copy and zero-copy against iperf3.
    Peers,
    /// memcpy bandwidth and the loopback TCP ceiling it implies.
    Ceiling,
    /// Throughput and CPU with no probes, with copy counting, with syscall tracing.
    Probes,
    /// Events per second the trace path carries without loss.
    Trace,
}

/// `netcopy bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Rounds of each comparison; the two sides alternate within every round. The probe
    /// overhead runs rounds x seconds x 6 blocks of 200 ms windows instead (60 by default).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Seconds of every single run (whole seconds: iperf3 -t takes no fractions).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub seconds: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the method and the figures as Markdown (BENCHMARKS.md) to PATH.
    #[arg(long, value_name = "PATH")]
    pub write_markdown: Option<PathBuf>,
    /// Run only these parts, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
}

impl BenchArgs {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// A figure that was measured, or why not.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome<T> {
    Measured(T),
    NotMeasured { reason: String },
    Failed { error: String },
}

impl<T> Outcome<T> {
    pub fn measured(&self) -> Option<&T> {
        match self {
            Outcome::Measured(t) => Some(t),
            _ => None,
        }
    }

    /// Why there is no figure, for a "not measured" line.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Outcome::Measured(_) => None,
            Outcome::NotMeasured { reason } => Some(format!("not measured: {reason}")),
            Outcome::Failed { error } => Some(format!("FAILED: {error}")),
        }
    }
}

/// Two sides of a comparison, measured alternately.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub name: String,
    /// Streams (connections) on each side.
    pub streams: u32,
    /// What our side ran.
    pub ours_label: String,
    /// What the other side ran (an iperf3 command line).
    pub theirs_label: String,
    /// Our throughput per round, Gbit/s of payload.
    pub ours_gbps: Summary,
    /// Theirs per round (iperf3: the receiver's bits_per_second), or why not measured.
    pub theirs_gbps: Outcome<Summary>,
    /// Median of ours / median of theirs.
    pub ratio: Option<f64>,
    /// Ours / theirs within each round.
    pub round_ratios: Vec<f64>,
    /// Facts about our side worth knowing (e.g. zero-copy completions flagged COPIED).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerSection {
    /// The iperf3 used, or why there is none.
    pub iperf3: Outcome<Iperf3>,
    pub size: u64,
    pub seconds: u32,
    pub comparisons: Vec<Outcome<Comparison>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CeilingSection {
    pub memcpy: MemcpyFigures,
    /// memcpy / 2 in Gbit/s: the estimated loopback TCP ceiling of one stream.
    pub per_stream_gbps: f64,
    /// The same times the CPUs: every CPU doing nothing but the kernel's copies.
    pub machine_gbps: f64,
    /// Our best single-stream figure of this run, and which mode gave it.
    pub best_single_stream: Option<BestFigure>,
    pub best_multi_stream: Option<BestFigure>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestFigure {
    pub what: String,
    pub gbps: f64,
    /// Fraction of the matching ceiling.
    pub fraction_of_ceiling: f64,
}

/// One way of running the probe-overhead workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instrument {
    None,
    CopyCounting,
    SyscallTracing,
    /// No probes either, in a window of its own: compared with the no-probe window as
    /// the instruments are, it shows the method's own error (an A/A comparison).
    Control,
    /// An empty program on each hook copy counting uses: what the kernel's dispatch to
    /// any program there costs, the floor under copy counting.
    #[serde(alias = "empty-programs")]
    EmptyCountingHooks,
    /// An empty program on each hook syscall tracing uses (copy counting's and the
    /// trace's): the floor under syscall tracing.
    EmptyTracingHooks,
}

impl Instrument {
    /// Every instrument, in the order of the report's rows.
    pub const ALL: [Instrument; 6] = [
        Instrument::None,
        Instrument::CopyCounting,
        Instrument::SyscallTracing,
        Instrument::Control,
        Instrument::EmptyCountingHooks,
        Instrument::EmptyTracingHooks,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Instrument::None => "no probes",
            Instrument::CopyCounting => "copy counting",
            Instrument::SyscallTracing => "syscall tracing",
            Instrument::Control => "no probes (control)",
            Instrument::EmptyCountingHooks => "empty programs on counting's hooks",
            Instrument::EmptyTracingHooks => "empty programs on tracing's hooks",
        }
    }

    /// The empty programs on this instrument's hooks: its floor.
    pub fn floor(self) -> Option<Instrument> {
        Instrument::ALL
            .into_iter()
            .find(|f| f.floor_of() == Some(self))
    }

    /// The instrument whose hooks these empty programs are on.
    pub fn floor_of(self) -> Option<Instrument> {
        match self {
            Instrument::EmptyCountingHooks => Some(Instrument::CopyCounting),
            Instrument::EmptyTracingHooks => Some(Instrument::SyscallTracing),
            _ => None,
        }
    }

    /// Attaches programs of some kind, netcopy's or empty ones (switch times are
    /// recorded for it).
    pub fn has_probes(self) -> bool {
        self.is_netcopy() || self.floor_of().is_some()
    }

    /// One of netcopy's instruments, whose programs the kernel's accounting measures.
    pub fn is_netcopy(self) -> bool {
        matches!(self, Instrument::CopyCounting | Instrument::SyscallTracing)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantFigures {
    pub instrument: Instrument,
    pub gbps: Summary,
    /// (server + client task-clock) / payload bytes.
    pub cpu_ns_per_byte: Option<Summary>,
    /// Why there is no CPU figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_unavailable: Option<String>,
    /// Versus no probes: the median of the blocks' overheads; positive = slower.
    pub throughput_loss_pct: Option<f64>,
    /// Versus no probes: the median of the blocks' overheads; positive = more CPU per byte.
    pub cpu_increase_pct: Option<f64>,
    /// The throughput overhead with its interval (None for no probes).
    #[serde(default)]
    pub throughput_loss: Option<PairedFigure>,
    /// The CPU overhead with its interval (None for no probes).
    #[serde(default)]
    pub cpu_increase: Option<PairedFigure>,
    /// Seconds to load the probes and attach them the first time (before the windows).
    pub setup_seconds: Option<Summary>,
    /// Seconds each switch to this instrument took (between windows, not in them).
    #[serde(default)]
    pub switch_seconds: Option<Summary>,
    /// Evidence that the instrument was active (bytes it counted, events it recorded).
    pub evidence: Vec<String>,
    /// One more run with the kernel's accounting of the programs' run time on (not among
    /// the rounds above: the accounting has a cost of its own). None for no probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cost: Option<Outcome<ProgramCost>>,
}

/// An overhead measured block by block against the no-probe window of the same block.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedFigure {
    /// Median of the blocks' overheads, percent.
    pub median_pct: f64,
    /// Distribution-free interval of that median at [`CONFIDENCE`]; None with too few
    /// blocks.
    pub interval_pct: Option<(f64, f64)>,
    pub blocks: usize,
}

impl PairedFigure {
    /// `+3.5% (95% interval +1.5% to +5.9%)`.
    pub fn text(&self) -> String {
        match self.interval_pct {
            Some((lo, hi)) => format!(
                "{:+.1}% ({:.0}% interval {lo:+.1}% to {hi:+.1}%)",
                self.median_pct,
                CONFIDENCE * 100.0
            ),
            None => format!("{:+.1}% (too few blocks for an interval)", self.median_pct),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverheadSection {
    pub mode: Mode,
    pub size: u64,
    pub threads: usize,
    /// Seconds of each run with the kernel's accounting on.
    pub seconds: u32,
    /// Each instrument's window per block, milliseconds.
    #[serde(default)]
    pub window_ms: u64,
    /// Milliseconds the workload runs after each switch before the window opens.
    #[serde(default)]
    pub settle_ms: u64,
    /// Blocks measured (each with one window per instrument).
    #[serde(default)]
    pub blocks: u32,
    /// The CPU server and client were both pinned to (the trace-draining thread is not
    /// pinned); None when pinning was not possible (`pin_note` says why).
    pub pinned_cpu: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_note: Option<String>,
    pub variants: Vec<Outcome<VariantFigures>>,
}

impl OverheadSection {
    /// How noisy the machine was, and how much of it the pairing left: the no-probe
    /// windows' spread, and the control window's figure against them.
    pub fn noise_sentence(&self) -> Option<String> {
        let measured = |i: Instrument| {
            self.variants
                .iter()
                .filter_map(Outcome::measured)
                .find(|v| v.instrument == i)
        };
        let spread = measured(Instrument::None)?.gbps.spread()?;
        let mut text = format!(
            "the no-probe windows spread over {:.1}% of their median throughput",
            spread * 100.0
        );
        if let Some(control) = measured(Instrument::Control) {
            text.push_str(&format!(
                "; paired block by block, a second no-probe window (the control) came out at \
                 {} in throughput and {} in CPU per byte against them: the method's own error, \
                 which the instruments' intervals should resemble in width",
                control.throughput_loss.map_or("n/a".into(), |p| p.text()),
                control.cpu_increase.map_or("n/a".into(), |p| p.text()),
            ));
        }
        Some(text)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartLoad {
    pub part: Part,
    pub load: ForeignLoad,
}

/// How a target came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    NotMet,
    /// Measured, but the figure's confidence interval straddles the limit.
    Undecided,
    NotMeasured,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT met",
            Verdict::Undecided => "undecided",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub verdict: Verdict,
}

/// Everything `netcopy bench` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// `netcopy X.Y.Z`.
    pub tool: String,
    pub machine: MachineInfo,
    pub rounds: u32,
    pub seconds: u32,
    pub peers: Outcome<PeerSection>,
    pub ceiling: Outcome<CeilingSection>,
    pub overhead: Outcome<OverheadSection>,
    pub trace_capacity: Outcome<tracing::CapacitySection>,
    pub targets: Vec<Target>,
    /// CPU other processes took while each part ran (noise).
    pub load: Vec<PartLoad>,
    /// Wall-clock seconds the whole benchmark took.
    pub elapsed_seconds: f64,
}

impl BenchReport {
    /// True when some part failed (as opposed to being skipped with a reason).
    pub fn failed(&self) -> bool {
        let failed = |o: Option<String>| o.is_some_and(|s| s.starts_with("FAILED"));
        failed(self.peers.why_not())
            || failed(self.ceiling.why_not())
            || failed(self.overhead.why_not())
            || failed(self.trace_capacity.why_not())
            || self.peers.measured().is_some_and(|p| {
                p.comparisons.iter().any(|c| match c {
                    Outcome::Failed { .. } => true,
                    Outcome::Measured(c) => matches!(c.theirs_gbps, Outcome::Failed { .. }),
                    Outcome::NotMeasured { .. } => false,
                })
            })
            || self.overhead.measured().is_some_and(|o| {
                o.variants
                    .iter()
                    .any(|v| matches!(v, Outcome::Failed { .. }))
            })
    }
}

/// Progress lines go to standard error, so that `--json` output stays clean.
fn progress(text: &str) {
    eprintln!("bench: {text}");
}

/// Runs `netcopy bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if let Some(path) = &args.write_markdown {
        check_writable(path)?;
    }
    let started = Instant::now();
    let machine = MachineInfo::collect();
    progress(&format!("machine: {}", machine.describe()));
    let seconds = args.seconds;

    let mut load = Vec::new();
    let mut measure_load = |part: Part, before: Option<CpuSnapshot>| {
        if let (Some(before), Some(after)) = (before, CpuSnapshot::take()) {
            let l = after.since(&before, machine.cpus);
            progress(&format!("{}: {}", part_name(part), l.describe()));
            load.push(PartLoad { part, load: l });
        }
    };

    let peers = if args.runs(Part::Peers) {
        let before = CpuSnapshot::take();
        let p = Outcome::Measured(peer_section(args.rounds, seconds));
        measure_load(Part::Peers, before);
        p
    } else {
        not_selected("peers")
    };
    let ceiling = if args.runs(Part::Ceiling) {
        progress("memcpy bandwidth (single thread)");
        let before = CpuSnapshot::take();
        let c = match memcpy::measure(MEMCPY_PASSES) {
            Ok(m) => Outcome::Measured(ceiling_section(m, &peers, machine.cpus)),
            Err(e) => Outcome::Failed {
                error: format!("{e:#}"),
            },
        };
        measure_load(Part::Ceiling, before);
        c
    } else {
        not_selected("ceiling")
    };
    let tracer = tracing::Tracer::find();
    let overhead = if args.runs(Part::Probes) {
        let before = CpuSnapshot::take();
        let o = overhead_section(args.rounds, seconds, &tracer);
        measure_load(Part::Probes, before);
        o
    } else {
        not_selected("probes")
    };
    let trace_capacity = if args.runs(Part::Trace) {
        let before = CpuSnapshot::take();
        let t = match &tracer {
            Err(reason) => Outcome::NotMeasured {
                reason: reason.clone(),
            },
            Ok(tracer) => match tracing::capacity(tracer, seconds) {
                Ok(section) => Outcome::Measured(section),
                Err(e) => Outcome::Failed {
                    error: format!("{e:#}"),
                },
            },
        };
        measure_load(Part::Trace, before);
        t
    } else {
        not_selected("trace")
    };
    let mut report = BenchReport {
        tool: format!("netcopy {}", env!("CARGO_PKG_VERSION")),
        machine,
        rounds: args.rounds,
        seconds,
        peers,
        ceiling,
        overhead,
        trace_capacity,
        targets: Vec::new(),
        load,
        elapsed_seconds: 0.0,
    };
    report.targets = targets(&report);
    report.elapsed_seconds = started.elapsed().as_secs_f64();

    if let Some(path) = &args.write_markdown {
        let text = markdown::render(&report);
        crate::util::fs::write_atomic(path, &text)?;
        progress(&format!("wrote {}", path.display()));
    }
    if args.json {
        crate::util::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        crate::util::emit(&render(&report))?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Peers => "peers",
        Part::Ceiling => "ceiling",
        Part::Probes => "probes",
        Part::Trace => "trace",
    }
}

/// The load line of one part, with a warning when the machine was busy.
fn load_line(r: &BenchReport, part: Part) -> String {
    match r.load.iter().find(|l| l.part == part) {
        Some(l) => format!(
            "   load: {}{}\n",
            l.load.describe(),
            if l.load.is_busy() {
                " -- WARNING: the machine was not quiet, figures are disturbed"
            } else {
                ""
            }
        ),
        None => String::new(),
    }
}

fn not_selected<T>(part: &str) -> Outcome<T> {
    Outcome::NotMeasured {
        reason: format!("{part} not selected (--only)"),
    }
}

fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--write-markdown {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("--write-markdown {}: is a directory", path.display());
    }
    Ok(())
}

// ---- Our side ----

/// One stream run of ours: a `netcopy server` child in `mode`, the client in this process.
struct OurRun {
    gbps: f64,
    /// Zero-copy: completed bytes and those flagged COPIED.
    completed_bytes: u64,
    copied_bytes: u64,
}

fn our_stream(
    mode: Mode,
    size: u64,
    threads: usize,
    seconds: u32,
    cpu: Option<usize>,
    verification: Verification,
) -> Result<OurRun> {
    let server = ServerProcess::spawn(mode, &[])?;
    let mut config = ClientConfig::new(
        &server.addr,
        size,
        threads,
        RunLimit::Duration(Duration::from_secs(u64::from(seconds))),
    );
    config.verification = verification;
    let pin = match cpu {
        Some(cpu) => {
            affinity::pin_process(server.pid(), &[cpu])?;
            Some(affinity::PinnedThread::pin(&[cpu])?)
        }
        None => None,
    };
    let client = run_client(&config);
    drop(pin);
    let totals = server.stop();
    let report = client.map_err(|f| anyhow!("netcopy client ({mode}): {f}"))?;
    let totals = totals?;
    if report.messages == 0 {
        bail!("netcopy client ({mode}) received no complete message");
    }
    Ok(OurRun {
        gbps: report.throughput_gbps,
        completed_bytes: totals.total.sender.completed_bytes,
        copied_bytes: totals.total.sender.copied_bytes,
    })
}

// ---- Peers ----

struct PeerPlan {
    name: &'static str,
    mode: Mode,
    threads: u32,
    verification: Verification,
    options: Iperf3Options,
}

/// Name of the single-stream comparison with both sides pinned to one CPU, netcopy's
/// client checking framing only: the same receive work as iperf3's.
pub const PINNED_NAME: &str = "single stream, one CPU";
/// The same with netcopy's full verification (CRC32C of every payload): what the
/// checksum costs when nothing runs in parallel.
pub const PINNED_CRC_NAME: &str = "single stream, one CPU, netcopy with CRC32C";

fn peer_section(rounds: u32, seconds: u32) -> PeerSection {
    let iperf3 = match Iperf3::find() {
        Ok(i) => {
            progress(&format!("iperf3: {} ({})", i.path.display(), i.version));
            Outcome::Measured(i)
        }
        Err(reason) => {
            progress(&format!("iperf3: {reason}; iperf3 comparisons skipped"));
            Outcome::NotMeasured { reason }
        }
    };
    let server = match &iperf3 {
        Outcome::Measured(i) => Some(iperf::Iperf3Server::start(i)),
        _ => None,
    };
    let last_cpu = affinity::allowed_cpus()
        .ok()
        .and_then(|c| c.last().copied());
    let mut plans = vec![PeerPlan {
        name: "single stream",
        mode: Mode::OneCopy,
        threads: 1,
        verification: Verification::Full,
        options: Iperf3Options {
            streams: 1,
            block: PEER_SIZE,
            seconds,
            zerocopy: false,
            cpu: None,
        },
    }];
    if let Some(cpu) = last_cpu {
        for (name, verification) in [
            (PINNED_NAME, Verification::Framing),
            (PINNED_CRC_NAME, Verification::Full),
        ] {
            plans.push(PeerPlan {
                name,
                mode: Mode::OneCopy,
                threads: 1,
                verification,
                options: Iperf3Options {
                    streams: 1,
                    block: PEER_SIZE,
                    seconds,
                    zerocopy: false,
                    cpu: Some(cpu),
                },
            });
        }
    }
    plans.extend([
        PeerPlan {
            name: "4 streams",
            mode: Mode::OneCopy,
            threads: PEER_STREAMS,
            verification: Verification::Full,
            options: Iperf3Options {
                streams: PEER_STREAMS,
                block: PEER_SIZE,
                seconds,
                zerocopy: false,
                cpu: None,
            },
        },
        PeerPlan {
            name: "zero-copy, single stream",
            mode: Mode::ZeroCopy,
            threads: 1,
            verification: Verification::Full,
            options: Iperf3Options {
                streams: 1,
                block: PEER_SIZE,
                seconds,
                zerocopy: true,
                cpu: None,
            },
        },
    ]);
    let mut comparisons = Vec::new();
    for plan in &plans {
        let theirs = match (&iperf3, &server) {
            (Outcome::Measured(i), Some(Ok(s))) => Ok((i, s.port)),
            (_, Some(Err(e))) => Err(Outcome::Failed {
                error: format!("the iperf3 server did not start: {e:#}"),
            }),
            (_, _) => Err(Outcome::NotMeasured {
                reason: "iperf3 is not installed (see the iperf3 line)".to_string(),
            }),
        };
        let outcome = match compare_with_iperf3(plan, theirs, rounds) {
            Ok(c) => Outcome::Measured(c),
            Err(e) => {
                progress(&format!("{}: FAILED: {e:#}", plan.name));
                Outcome::Failed {
                    error: format!("{}: {e:#}", plan.name),
                }
            }
        };
        comparisons.push(outcome);
    }
    if let Some(Ok(server)) = server {
        server.stop();
    }
    PeerSection {
        iperf3,
        size: PEER_SIZE,
        seconds,
        comparisons,
    }
}

fn compare_with_iperf3(
    plan: &PeerPlan,
    theirs: std::result::Result<(&Iperf3, u16), Outcome<Summary>>,
    rounds: u32,
) -> Result<Comparison> {
    let mut ours = Vec::new();
    let mut their_samples = Vec::new();
    let mut round_ratios = Vec::new();
    let (mut completed, mut copied) = (0u64, 0u64);
    for round in 1..=rounds {
        let run = our_stream(
            plan.mode,
            PEER_SIZE,
            plan.threads as usize,
            plan.options.seconds,
            plan.options.cpu,
            plan.verification,
        )?;
        completed += run.completed_bytes;
        copied += run.copied_bytes;
        ours.push(run.gbps);
        let mut line = format!(
            "{} round {round}/{rounds}: netcopy {} {:.2} Gbit/s",
            plan.name, plan.mode, run.gbps
        );
        if let Ok((iperf3, port)) = &theirs {
            let result = iperf::run_client(iperf3, *port, &plan.options)?;
            let gbps = result.receiver_gbps();
            their_samples.push(gbps);
            if let Some(r) = stats::ratio(run.gbps, gbps) {
                round_ratios.push(r);
            }
            line.push_str(&format!(", iperf3 {gbps:.2} Gbit/s"));
        }
        progress(&line);
    }
    let ours_gbps = Summary::of(&ours).ok_or_else(|| anyhow!("no valid figure of ours"))?;
    let theirs_gbps = match theirs {
        Ok(_) => Outcome::Measured(
            Summary::of(&their_samples).ok_or_else(|| anyhow!("no valid iperf3 figure"))?,
        ),
        Err(outcome) => outcome,
    };
    let ratio = theirs_gbps
        .measured()
        .and_then(|t| stats::ratio(ours_gbps.median, t.median));
    let mut notes = Vec::new();
    if plan.mode == Mode::ZeroCopy {
        if completed > 0 {
            notes.push(format!(
                "netcopy zero-copy: {:.1}% of the completed bytes were flagged \
                 SO_EE_CODE_ZEROCOPY_COPIED (the kernel copied the pages after all)",
                copied as f64 * 100.0 / completed as f64
            ));
        }
        notes.push(ZERO_COPY_MECHANISMS.to_string());
    }
    if let Some(cpu) = plan.options.cpu {
        notes.push(format!(
            "both sides on CPU {cpu} (netcopy: server and client threads pinned; iperf3: -A \
             {cpu},{cpu}): no parallelism between sender and receiver, so this compares the CPU \
             cost per byte; {}",
            match plan.verification {
                Verification::Framing => {
                    "netcopy's client checks sequence numbers, lengths and field stamps \
                     (--verify framing) and no payload checksum, as iperf3's receiver \
                     discards the data: the same receive work"
                }
                Verification::Full => {
                    "netcopy's client also computes the CRC32C of every payload, which \
                     iperf3's receiver does not: the difference to the framing-only row is \
                     the checksum's cost"
                }
            }
        ));
    }
    if plan.threads > 1 {
        notes.push(format!(
            "iperf3 {} runs all -P streams in one thread per side (iperf3 >= 3.16 uses a \
             thread per stream); netcopy uses a thread per connection on both sides",
            "3.12 and older"
        ));
    }
    Ok(Comparison {
        name: plan.name.to_string(),
        streams: plan.threads,
        ours_label: format!(
            "netcopy {} --threads {} --size {}{}{}",
            plan.mode,
            plan.threads,
            format_size(PEER_SIZE),
            match plan.verification {
                Verification::Full => "",
                Verification::Framing => " --verify framing",
            },
            plan.options
                .cpu
                .map_or(String::new(), |cpu| format!(" on CPU {cpu}"))
        ),
        theirs_label: plan.options.command_line(),
        ours_gbps,
        theirs_gbps,
        ratio,
        round_ratios,
        notes,
    })
}

/// Why `iperf3 -Z` and MSG_ZEROCOPY are not the same thing.
pub const ZERO_COPY_MECHANISMS: &str = "iperf3 -Z is a different mechanism: it sends with \
sendfile(2) from a file, so the socket takes page-cache pages by reference, with no user \
buffer and no completion notifications; netcopy's zero-copy is sendmsg(MSG_ZEROCOPY) on \
pinned user memory, completed through the socket error queue, and on loopback the kernel \
copies those pages before a local receiver may see them. The ratio compares what each \
delivers, not the same code path.";

// ---- Ceiling ----

fn ceiling_section(
    memcpy: MemcpyFigures,
    peers: &Outcome<PeerSection>,
    cpus: usize,
) -> CeilingSection {
    let per_stream = memcpy::tcp_ceiling_gbps(memcpy.gbytes_per_s.median);
    let machine_gbps = per_stream * cpus as f64;
    let mut single: Option<(String, f64)> = None;
    let mut multi: Option<(String, f64)> = None;
    if let Some(p) = peers.measured() {
        for c in p.comparisons.iter().filter_map(Outcome::measured) {
            let slot = if c.streams == 1 {
                &mut single
            } else {
                &mut multi
            };
            if slot.as_ref().is_none_or(|(_, g)| c.ours_gbps.median > *g) {
                *slot = Some((c.ours_label.clone(), c.ours_gbps.median));
            }
        }
    }
    let best = |b: Option<(String, f64)>, ceiling: f64| {
        b.map(|(what, gbps)| BestFigure {
            what,
            gbps,
            fraction_of_ceiling: gbps / ceiling,
        })
    };
    CeilingSection {
        per_stream_gbps: per_stream,
        machine_gbps,
        best_single_stream: best(single, per_stream),
        best_multi_stream: best(multi, machine_gbps),
        memcpy,
    }
}

// ---- Probe overhead ----

fn overhead_section(
    rounds: u32,
    seconds: u32,
    tracer: &std::result::Result<tracing::Tracer, String>,
) -> Outcome<OverheadSection> {
    if !sys::is_root() {
        return Outcome::NotMeasured {
            reason: "loading the copy probes needs root (or CAP_BPF + CAP_PERFMON + \
                     CAP_SYS_ADMIN); run `sudo netcopy bench` or `cargo xtask bench`"
                .into(),
        };
    }
    let (pinned_cpu, pin_note) = match affinity::allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => (cpus.last().copied(), None),
        Ok(_) => (
            None,
            Some("no CPU in this thread's affinity mask".to_string()),
        ),
        Err(e) => (None, Some(format!("cannot read the CPU affinity: {e}"))),
    };
    // Every row is reported; without a tracer its row says why.
    let all = Instrument::ALL;
    let instruments: Vec<Instrument> = all
        .into_iter()
        .filter(|i| *i != Instrument::SyscallTracing || tracer.is_ok())
        .collect();
    let plan = windows::WindowPlan {
        window_ms: WINDOW_MS,
        settle_ms: SETTLE_MS,
        blocks: rounds
            .saturating_mul(seconds)
            .saturating_mul(BLOCKS_PER_ROUND_SECOND),
    };
    progress(&format!(
        "probe overhead: {} blocks of {} windows of {} ms on one running workload",
        plan.blocks,
        instruments.len(),
        plan.window_ms
    ));
    // /proc/self/exe: this very binary, even if the file is replaced during the run.
    let run = match windows::run(
        Path::new("/proc/self/exe"),
        plan,
        &instruments,
        tracer.as_ref().ok(),
        pinned_cpu,
        &progress,
    ) {
        Ok(run) => run,
        Err(e) => {
            progress(&format!("probe overhead: FAILED: {e:#}"));
            return Outcome::Failed {
                error: format!("{e:#}"),
            };
        }
    };
    let mut failures: Vec<Option<String>> = all
        .iter()
        .map(|i| {
            run.failed
                .iter()
                .find(|(f, _)| f == i)
                .map(|(_, why)| why.clone())
        })
        .collect();
    let base_cpu = Summary::of(
        &run.samples
            .iter()
            .filter(|w| w.instrument == Instrument::None)
            .filter_map(windows::WindowSample::cpu_ns_per_byte)
            .collect::<Vec<_>>(),
    );
    let mut program_costs: Vec<Option<Outcome<ProgramCost>>> = Vec::new();
    for (i, &instrument) in all.iter().enumerate() {
        if !instruments.contains(&instrument) || !instrument.is_netcopy() || failures[i].is_some() {
            program_costs.push(None);
            continue;
        }
        let cost = accounted_run(instrument, seconds, tracer.as_ref().ok(), pinned_cpu);
        let outcome = match cost {
            Ok(cost) => {
                let cost = cost.relative_to(base_cpu.as_ref().map(|b| b.median));
                progress(&format!(
                    "probe overhead: {}: the programs ran {:.4} CPU ns per payload byte by \
                     the kernel's accounting",
                    instrument.label(),
                    cost.added_ns_per_byte()
                ));
                Outcome::Measured(cost)
            }
            Err(error) => {
                progress(&format!(
                    "probe overhead: {}: the kernel's accounting FAILED: {error}",
                    instrument.label()
                ));
                Outcome::Failed { error }
            }
        };
        program_costs.push(Some(outcome));
    }
    let mut variants = Vec::new();
    for (i, &instrument) in all.iter().enumerate() {
        if let Some(error) = failures[i].take() {
            variants.push(Outcome::Failed { error });
            continue;
        }
        if let (Instrument::SyscallTracing, Err(reason)) = (instrument, tracer) {
            variants.push(Outcome::NotMeasured {
                reason: format!("syscall tracing: {reason}"),
            });
            continue;
        }
        let windows: Vec<&windows::WindowSample> = run
            .samples
            .iter()
            .filter(|w| w.instrument == instrument)
            .collect();
        let Some(gbps) = Summary::of(&windows.iter().filter_map(|w| w.gbps()).collect::<Vec<_>>())
        else {
            variants.push(Outcome::Failed {
                error: "no window moved any data".into(),
            });
            continue;
        };
        let cpu_values: Vec<f64> = windows.iter().filter_map(|w| w.cpu_ns_per_byte()).collect();
        let cpu = (cpu_values.len() == windows.len())
            .then(|| Summary::of(&cpu_values))
            .flatten();
        let is_base = instrument == Instrument::None;
        let losses = windows::paired(
            &run.samples,
            instrument,
            windows::WindowSample::gbps,
            stats::throughput_loss_pct,
        );
        let increases = windows::paired(
            &run.samples,
            instrument,
            windows::WindowSample::cpu_ns_per_byte,
            stats::cost_increase_pct,
        );
        let paired = |values: &[f64]| {
            (!is_base)
                .then(|| {
                    Some(PairedFigure {
                        median_pct: stats::median(values)?,
                        interval_pct: stats::median_interval(values, CONFIDENCE),
                        blocks: values.len(),
                    })
                })
                .flatten()
        };
        let (throughput_loss, cpu_increase) = (paired(&losses), paired(&increases));
        let pick = |list: &[(Instrument, f64)]| {
            Summary::of(
                &list
                    .iter()
                    .filter(|(i, _)| *i == instrument)
                    .map(|(_, s)| *s)
                    .collect::<Vec<_>>(),
            )
        };
        let evidence = match instrument {
            Instrument::None | Instrument::Control => Vec::new(),
            Instrument::EmptyCountingHooks | Instrument::EmptyTracingHooks => run
                .empty_hooks
                .iter()
                .filter(|(i, _)| *i == instrument)
                .map(|(_, hooks)| {
                    format!(
                        "a program that does nothing on each of {} hooks ({}): its overhead \
                         is what the kernel's dispatch to a program on {}'s hooks costs, \
                         the floor under any program there",
                        hooks.len(),
                        hooks
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        instrument.floor_of().map_or("these", |i| i.label())
                    )
                })
                .collect(),
            Instrument::CopyCounting => run
                .counted
                .map(|(recv, send)| {
                    format!(
                        "the probes counted {recv:.3} bytes copied on receive and {send:.3} on \
                         send per payload byte while attached"
                    )
                })
                .into_iter()
                .collect(),
            Instrument::SyscallTracing => match &run.trace {
                Some(Ok(stats)) => vec![stats.describe_windows()],
                Some(Err(e)) => vec![format!("the trace failed: {e:#}")],
                None => Vec::new(),
            },
        };
        variants.push(Outcome::Measured(VariantFigures {
            instrument,
            throughput_loss_pct: throughput_loss.map(|p| p.median_pct),
            cpu_increase_pct: cpu_increase.map(|p| p.median_pct),
            throughput_loss,
            cpu_increase,
            gbps,
            cpu_ns_per_byte: cpu,
            cpu_unavailable: (cpu_values.len() != windows.len())
                .then(|| "the CPU clock of the server or of this process was unreadable".into()),
            setup_seconds: pick(&run.setup_seconds),
            switch_seconds: pick(&run.switch_seconds),
            evidence,
            program_cost: program_costs[i].take(),
        }));
    }
    Outcome::Measured(OverheadSection {
        mode: Mode::OneCopy,
        size: OVERHEAD_SIZE,
        threads: 1,
        seconds,
        window_ms: plan.window_ms,
        settle_ms: plan.settle_ms,
        blocks: run.samples.iter().map(|w| w.block + 1).max().unwrap_or(0),
        pinned_cpu,
        pin_note,
        variants,
    })
}

/// One run of the overhead workload (one-copy, 64K, 1 thread, server and client on
/// `pinned_cpu`) under `instrument`, with the kernel's accounting of the programs' run
/// time on: what the programs cost, by the kernel's own clock. A run of its own, since
/// the accounting has a cost of its own.
fn accounted_run(
    instrument: Instrument,
    seconds: u32,
    tracer: Option<&tracing::Tracer>,
    pinned_cpu: Option<usize>,
) -> std::result::Result<ProgramCost, String> {
    let server = ServerProcess::spawn(Mode::OneCopy, &[]).map_err(|e| format!("{e:#}"))?;
    let own = std::process::id();
    let mut probes = None;
    let mut trace = None;
    let loaded = (|| -> Result<Vec<crate::kernel::runstats::LoadedProgram>> {
        match instrument {
            Instrument::CopyCounting => {
                let mut p = CopyProbes::load()?;
                p.watch_process(server.pid(), SERVER_SLOT, false)?;
                p.watch_process(own, CLIENT_SLOT, false)?;
                let programs = p.loaded_programs();
                probes = Some(p);
                Ok(programs)
            }
            Instrument::SyscallTracing => {
                let tracer = tracer.ok_or_else(|| anyhow!("the tracer is not available"))?;
                let host = tracer.start(&[(server.pid(), SERVER_SLOT), (own, CLIENT_SLOT)])?;
                let programs = host.loaded_programs();
                trace = Some(host);
                programs
            }
            Instrument::None
            | Instrument::Control
            | Instrument::EmptyCountingHooks
            | Instrument::EmptyTracingHooks => {
                bail!("no netcopy probes to account")
            }
        }
    })();
    let outcome = (|| -> Result<ProgramCost> {
        let meter = ProgramMeter::start(loaded?)?;
        let config = ClientConfig::new(
            &server.addr,
            OVERHEAD_SIZE,
            1,
            RunLimit::Duration(Duration::from_secs(u64::from(seconds))),
        );
        let pin = match pinned_cpu {
            Some(cpu) => {
                affinity::pin_process(server.pid(), &[cpu])?;
                Some(affinity::PinnedThread::pin(&[cpu])?)
            }
            None => None,
        };
        let client = run_client(&config);
        drop(pin);
        let report = client.map_err(|f| anyhow!("netcopy client: {f}"))?;
        // Read while the programs are loaded: stopping a trace unloads them.
        let cost = meter.finish(report.messages, report.bytes)?;
        Ok(match trace.take().map(|t| t.stop()) {
            Some(stats) => cost.with_drain(stats?.drain_cpu_seconds),
            None => cost,
        })
    })();
    drop(trace);
    drop(probes);
    let totals = server.stop();
    let cost = outcome.map_err(|e| format!("{e:#}"))?;
    totals.map_err(|e| format!("{e:#}"))?;
    Ok(cost)
}

// ---- Targets ----

/// A target on a figure with no interval (the kernel's accounting: exact, not sampled).
fn pct_target(
    goal: String,
    variant: std::result::Result<&VariantFigures, String>,
    pick: impl Fn(&VariantFigures) -> Option<f64>,
    limit: f64,
    what: &str,
) -> Target {
    match variant {
        Ok(v) => match pick(v) {
            Some(p) => Target {
                goal,
                measured: format!("{p:+.1}% {what}"),
                verdict: if p <= limit {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            },
            None => Target {
                goal,
                measured: v
                    .cpu_unavailable
                    .clone()
                    .unwrap_or_else(|| "no figure".into()),
                verdict: Verdict::NotMeasured,
            },
        },
        Err(measured) => Target {
            goal,
            measured,
            verdict: Verdict::NotMeasured,
        },
    }
}

/// A target on an overhead measured block by block: met when the whole confidence
/// interval of the median is within the limit, not met when it is all beyond it,
/// undecided when it straddles the limit (the machine is too noisy to tell).
fn interval_target(
    goal: String,
    variant: std::result::Result<&VariantFigures, String>,
    pick: impl Fn(&VariantFigures) -> Option<PairedFigure>,
    limit: f64,
    what: &str,
) -> Target {
    let variant = match variant {
        Ok(v) => v,
        Err(measured) => {
            return Target {
                goal,
                measured,
                verdict: Verdict::NotMeasured,
            }
        }
    };
    let Some(figure) = pick(variant) else {
        return Target {
            goal,
            measured: variant
                .cpu_unavailable
                .clone()
                .unwrap_or_else(|| "no figure".into()),
            verdict: Verdict::NotMeasured,
        };
    };
    let median = figure.median_pct;
    let (measured, verdict) = match figure.interval_pct {
        Some((lo, hi)) => (
            format!(
                "{median:+.1}% {what} ({:.0}% interval {lo:+.1}% to {hi:+.1}%, {} blocks)",
                CONFIDENCE * 100.0,
                figure.blocks
            ),
            if hi <= limit {
                Verdict::Met
            } else if lo > limit {
                Verdict::NotMet
            } else {
                Verdict::Undecided
            },
        ),
        None => (
            format!(
                "{median:+.1}% {what} (only {} blocks: too few for a {:.0}% interval)",
                figure.blocks,
                CONFIDENCE * 100.0
            ),
            Verdict::Undecided,
        ),
    };
    Target {
        goal,
        measured,
        verdict,
    }
}

/// The figures of one instrument, or why there are none.
fn variant_for(
    report: &BenchReport,
    instrument: Instrument,
) -> std::result::Result<&VariantFigures, String> {
    let section = match &report.overhead {
        Outcome::Measured(s) => s,
        other => return Err(other.why_not().unwrap_or_default()),
    };
    let position = Instrument::ALL
        .iter()
        .position(|i| *i == instrument)
        .unwrap_or(0);
    match section.variants.get(position) {
        Some(Outcome::Measured(v)) if v.instrument == instrument => Ok(v),
        Some(Outcome::Measured(_)) | None => section
            .variants
            .iter()
            .find_map(|o| o.measured().filter(|v| v.instrument == instrument))
            .ok_or_else(|| "not measured".into()),
        Some(other) => Err(other.why_not().unwrap_or_default()),
    }
}

/// Which paired figure of an instrument a target is on.
type PickPaired = fn(&VariantFigures) -> Option<PairedFigure>;

fn targets(report: &BenchReport) -> Vec<Target> {
    let mut out = Vec::new();
    for name in ["single stream", PINNED_NAME, "4 streams"] {
        let goal = format!(
            "one-copy >= {TARGET_PEER_RATIO:.2} x iperf3, {name}, {}",
            format_size(PEER_SIZE)
        );
        let comparison = match &report.peers {
            Outcome::Measured(p) => p
                .comparisons
                .iter()
                .find(|c| match c {
                    Outcome::Measured(c) => c.name == name,
                    Outcome::Failed { error } => error.starts_with(&format!("{name}: ")),
                    Outcome::NotMeasured { .. } => false,
                })
                .ok_or_else(|| "not measured".to_string()),
            other => Err(other.why_not().unwrap_or_default()),
        };
        out.push(match comparison {
            Ok(Outcome::Measured(c)) => match c.ratio {
                Some(r) => Target {
                    goal,
                    measured: format!("{r:.3} x"),
                    verdict: if r >= TARGET_PEER_RATIO {
                        Verdict::Met
                    } else {
                        Verdict::NotMet
                    },
                },
                None => Target {
                    goal,
                    measured: c.theirs_gbps.why_not().unwrap_or_default(),
                    verdict: Verdict::NotMeasured,
                },
            },
            Ok(other) => Target {
                goal,
                measured: other.why_not().unwrap_or_default(),
                verdict: Verdict::NotMeasured,
            },
            Err(measured) => Target {
                goal,
                measured,
                verdict: Verdict::NotMeasured,
            },
        });
    }
    for (instrument, limit) in [
        (Instrument::CopyCounting, TARGET_COUNTING_PCT),
        (Instrument::SyscallTracing, TARGET_TRACING_PCT),
    ] {
        // The same figure for empty programs on the instrument's hooks: how much of the
        // limit the kernel's dispatch alone already takes.
        let floor = |pick: PickPaired| {
            let floor = variant_for(report, instrument.floor()?).ok()?;
            Some(format!(
                "; empty programs on its hooks alone: {}",
                pick(floor)?.text()
            ))
        };
        let pickers: [(&str, &str, PickPaired); 2] = [
            ("throughput", "throughput", |v| v.throughput_loss),
            ("CPU", "CPU per byte", |v| v.cpu_increase),
        ];
        for (name, what, pick) in pickers {
            let mut target = interval_target(
                format!("{} {name} overhead <= {limit:.0}%", instrument.label()),
                variant_for(report, instrument),
                pick,
                limit,
                what,
            );
            if target.verdict != Verdict::NotMeasured {
                target.measured.push_str(&floor(pick).unwrap_or_default());
            }
            out.push(target);
        }
        let accounted = variant_for(report, instrument).and_then(|v| match &v.program_cost {
            Some(Outcome::Measured(_)) => Ok(v),
            Some(other) => Err(other.why_not().unwrap_or_default()),
            None => Err("not measured".into()),
        });
        out.push(pct_target(
            format!(
                "{} CPU overhead <= {limit:.0}%, by the kernel's accounting",
                instrument.label()
            ),
            accounted,
            |v| v.program_cost.as_ref()?.measured()?.pct_of_base_cpu,
            limit,
            if instrument == Instrument::SyscallTracing {
                "CPU per byte (the programs' run time less the accounting's floor, and the \
                 draining thread while the workload ran; the kernel's dispatch to the \
                 programs is not in it)"
            } else {
                "CPU per byte (the programs' run time less the accounting's floor; the \
                 kernel's dispatch to the programs is not in it)"
            },
        ));
    }
    out.push(tracing::lossless_target(&report.trace_capacity));
    out
}

// ---- Text ----

fn summary_text(s: &Summary, unit: &str, digits: usize) -> String {
    format!(
        "{:.*} {unit} (min {:.*}, max {:.*})",
        digits, s.median, digits, s.min, digits, s.max
    )
}

/// The human-readable report.
pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "netcopy bench: {} rounds of {} s per side, alternating\nmachine: {}\nsource: {}\n",
        r.rounds,
        r.seconds,
        r.machine.describe(),
        r.machine.source.describe()
    ));

    out.push_str("\n1. against iperf3 (loopback 127.0.0.1, medians of the rounds)\n");
    match &r.peers {
        Outcome::Measured(p) => {
            if let Some(reason) = p.iperf3.why_not() {
                out.push_str(&format!("   iperf3: {reason}\n"));
            } else if let Outcome::Measured(i) = &p.iperf3 {
                out.push_str(&format!(
                    "   iperf3: {} ({})\n",
                    i.version,
                    i.path.display()
                ));
            }
            for c in &p.comparisons {
                match c {
                    Outcome::Measured(c) => {
                        out.push_str(&format!("   {}:\n", c.name));
                        out.push_str(&format!(
                            "     ours    {:<52} {}\n",
                            c.ours_label,
                            summary_text(&c.ours_gbps, "Gbit/s", 2)
                        ));
                        match &c.theirs_gbps {
                            Outcome::Measured(t) => out.push_str(&format!(
                                "     theirs  {:<52} {}\n",
                                c.theirs_label,
                                summary_text(t, "Gbit/s", 2)
                            )),
                            other => out.push_str(&format!(
                                "     theirs  {:<52} {}\n",
                                c.theirs_label,
                                other.why_not().unwrap_or_default()
                            )),
                        }
                        if let Some(ratio) = c.ratio {
                            out.push_str(&format!("     ratio ours/theirs: {ratio:.3}\n"));
                        }
                        for note in &c.notes {
                            out.push_str(&format!("     note: {note}\n"));
                        }
                    }
                    other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
                }
            }
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Peers));

    out.push_str("\n2. the ceiling\n");
    match &r.ceiling {
        Outcome::Measured(c) => {
            let m = &c.memcpy;
            out.push_str(&format!(
                "   memcpy, 1 thread, {} MiB buffers (LLC {}), {} passes: {}\n",
                m.buffer_bytes >> 20,
                m.llc_bytes
                    .map_or("unknown".to_string(), |l| format!("{} MiB", l >> 20)),
                m.passes,
                summary_text(&m.gbytes_per_s, "GB/s", 2)
            ));
            for note in &m.notes {
                out.push_str(&format!("   note: {note}\n"));
            }
            out.push_str(&format!(
                "   estimated loopback TCP ceiling (every byte copied twice by the kernel: \
                 memcpy / 2): {:.1} Gbit/s per stream, {:.1} Gbit/s for all {} CPUs\n",
                c.per_stream_gbps, c.machine_gbps, r.machine.cpus
            ));
            for (label, best) in [
                ("single stream", &c.best_single_stream),
                ("several streams", &c.best_multi_stream),
            ] {
                match best {
                    Some(b) => out.push_str(&format!(
                        "   our best, {label}: {} at {:.2} Gbit/s = {:.0}% of the ceiling\n",
                        b.what,
                        b.gbps,
                        b.fraction_of_ceiling * 100.0
                    )),
                    None => out.push_str(&format!(
                        "   our best, {label}: not measured (needs the peers part)\n"
                    )),
                }
            }
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Ceiling));

    out.push_str("\n3. probe overhead\n");
    match &r.overhead {
        Outcome::Measured(o) => {
            out.push_str(&format!(
                "   workload: {} {}, {} thread, {}; {} blocks of one {} ms window per \
                 instrument (after {} ms to settle), all on one running connection; overheads \
                 are medians of the blocks against the block's no-probe window; CPU = CPU \
                 time of the server and benchmark processes per payload byte\n",
                o.mode,
                format_size(o.size),
                o.threads,
                match (o.pinned_cpu, &o.pin_note) {
                    (Some(cpu), _) => format!("server and client pinned to CPU {cpu}"),
                    (None, note) => format!("not pinned ({})", note.as_deref().unwrap_or("?")),
                },
                o.blocks,
                o.window_ms,
                o.settle_ms,
            ));
            for v in &o.variants {
                match v {
                    Outcome::Measured(v) => {
                        out.push_str(&format!(
                            "   {:<19} {}",
                            v.instrument.label(),
                            summary_text(&v.gbps, "Gbit/s", 2)
                        ));
                        match &v.cpu_ns_per_byte {
                            Some(c) => {
                                out.push_str(&format!(", {}", summary_text(c, "CPU ns/byte", 4)))
                            }
                            None => out.push_str(&format!(
                                ", CPU unavailable ({})",
                                v.cpu_unavailable.as_deref().unwrap_or("?")
                            )),
                        }
                        out.push('\n');
                        if v.instrument != Instrument::None {
                            out.push_str(&format!(
                                "   {:<19} overhead: throughput {}, CPU per byte {}{}{}\n",
                                "",
                                v.throughput_loss.map_or("n/a".into(), |p| p.text()),
                                v.cpu_increase.map_or("n/a".into(), |p| p.text()),
                                v.setup_seconds.as_ref().map_or(String::new(), |s| format!(
                                    "; loading and attaching took {:.2} s",
                                    s.median
                                )),
                                v.switch_seconds.as_ref().map_or(String::new(), |s| format!(
                                    ", switching on {:.3} s (median; between windows)",
                                    s.median
                                ))
                            ));
                        }
                        for e in &v.evidence {
                            out.push_str(&format!("   {:<19} {e}\n", ""));
                        }
                        match &v.program_cost {
                            Some(Outcome::Measured(cost)) => {
                                out.push_str(&format!("   {:<19} {}\n", "", cost.summary()));
                                for p in &cost.programs {
                                    out.push_str(&format!(
                                        "   {:<19}   {:<34} {:<42} {:>5.2} runs/message {:>7.0} ns/run\n",
                                        "", p.program, p.hook, p.runs_per_message, p.ns_per_run
                                    ));
                                }
                                out.push_str(&format!("   {:<19}   {}\n", "", cost.floor_text()));
                            }
                            Some(other) => out.push_str(&format!(
                                "   {:<19} kernel's accounting: {}\n",
                                "",
                                other.why_not().unwrap_or_default()
                            )),
                            None => {}
                        }
                    }
                    other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
                }
            }
            if let Some(noise) = o.noise_sentence() {
                out.push_str(&format!("   noise: {noise}\n"));
            }
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Probes));

    out.push_str("\n4. trace capacity\n");
    out.push_str(&tracing::render_capacity(&r.trace_capacity));
    out.push_str(&load_line(r, Part::Trace));

    out.push_str("\ntargets\n");
    for t in &r.targets {
        out.push_str(&format!(
            "   [{:<12}] {:<56} {}\n",
            t.verdict.word(),
            t.goal,
            t.measured
        ));
    }
    out.push_str(&format!("\nbench took {:.0} s\n", r.elapsed_seconds));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(values: &[f64]) -> Summary {
        Summary::of(values).unwrap()
    }

    /// An overhead of `median`% with the interval `lo`..`hi` over 60 blocks.
    fn paired(median: f64, lo: f64, hi: f64) -> PairedFigure {
        PairedFigure {
            median_pct: median,
            interval_pct: Some((lo, hi)),
            blocks: 60,
        }
    }

    fn variant(
        instrument: Instrument,
        gbps: f64,
        loss: PairedFigure,
        cpu: PairedFigure,
    ) -> VariantFigures {
        let compared = instrument != Instrument::None;
        VariantFigures {
            instrument,
            gbps: summary(&[gbps]),
            cpu_ns_per_byte: Some(summary(&[0.5])),
            cpu_unavailable: None,
            throughput_loss_pct: compared.then_some(loss.median_pct),
            cpu_increase_pct: compared.then_some(cpu.median_pct),
            throughput_loss: compared.then_some(loss),
            cpu_increase: compared.then_some(cpu),
            setup_seconds: None,
            switch_seconds: None,
            evidence: Vec::new(),
            program_cost: instrument.is_netcopy().then(|| {
                Outcome::Measured(ProgramCost {
                    programs: vec![ProgramFigure {
                        program: "netcopy_recv_copy_tp_btf".into(),
                        hook: "tp_btf skb_copy_datagram_iovec".into(),
                        runs: 200,
                        ns_per_run: 150.0,
                        runs_per_message: 2.0,
                    }],
                    floor_hook: program_cost::FLOOR_HOOK.into(),
                    floor_ns_per_run: 70.0,
                    messages: 100,
                    payload_bytes: 1_600_000,
                    programs_ns_per_byte: 0.01,
                    drain_ns_per_byte: None,
                    pct_of_base_cpu: Some(2.0),
                })
            }),
        }
    }

    fn report(ratio_single: Option<f64>) -> BenchReport {
        let comparison = |name: &str, ratio: Option<f64>| Comparison {
            name: name.to_string(),
            streams: 1,
            ours_label: "netcopy one-copy --threads 1 --size 128K".into(),
            theirs_label: "iperf3".into(),
            ours_gbps: summary(&[20.0]),
            theirs_gbps: match ratio {
                Some(_) => Outcome::Measured(summary(&[21.0])),
                None => Outcome::NotMeasured {
                    reason: "iperf3 is not installed".into(),
                },
            },
            ratio,
            round_ratios: Vec::new(),
            notes: Vec::new(),
        };
        BenchReport {
            tool: "netcopy test".into(),
            machine: MachineInfo::collect(),
            rounds: 1,
            seconds: 1,
            peers: Outcome::Measured(PeerSection {
                iperf3: Outcome::NotMeasured {
                    reason: "test".into(),
                },
                size: PEER_SIZE,
                seconds: 1,
                comparisons: vec![
                    Outcome::Measured(comparison("single stream", ratio_single)),
                    Outcome::Failed {
                        error: "4 streams: the client failed".into(),
                    },
                ],
            }),
            ceiling: not_selected("ceiling"),
            overhead: Outcome::Measured(OverheadSection {
                mode: Mode::OneCopy,
                size: OVERHEAD_SIZE,
                threads: 1,
                seconds: 1,
                window_ms: WINDOW_MS,
                settle_ms: SETTLE_MS,
                blocks: 60,
                pinned_cpu: Some(1),
                pin_note: None,
                variants: vec![
                    Outcome::Measured(variant(
                        Instrument::None,
                        20.0,
                        paired(0.0, 0.0, 0.0),
                        paired(0.0, 0.0, 0.0),
                    )),
                    Outcome::Measured(variant(
                        Instrument::CopyCounting,
                        19.8,
                        paired(1.0, -0.5, 2.5),
                        paired(4.0, 3.2, 5.0),
                    )),
                    Outcome::NotMeasured {
                        reason: "syscall tracing: the tracer is not available in this build".into(),
                    },
                    Outcome::Measured(variant(
                        Instrument::Control,
                        20.1,
                        paired(0.2, -1.9, 1.7),
                        paired(-0.1, -2.0, 1.5),
                    )),
                    Outcome::Measured(variant(
                        Instrument::EmptyCountingHooks,
                        19.9,
                        paired(0.8, -0.6, 2.0),
                        paired(1.5, 0.5, 2.9),
                    )),
                ],
            }),
            trace_capacity: Outcome::NotMeasured {
                reason: "the tracer is not available in this build".into(),
            },
            targets: Vec::new(),
            load: Vec::new(),
            elapsed_seconds: 1.0,
        }
    }

    #[test]
    fn targets_are_met_missed_or_not_measured_never_faked() {
        let r = report(Some(0.96));
        let t = targets(&r);
        let verdicts: Vec<Verdict> = t.iter().map(|t| t.verdict).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Met,         // 0.96 >= 0.95
                Verdict::NotMeasured, // no pinned comparison in this report
                Verdict::NotMeasured, // the 4-stream comparison failed
                Verdict::Met,         // counting throughput: all of -0.5%..+2.5% <= 3%
                Verdict::NotMet,      // counting CPU: all of +3.2%..+5.0% > 3%
                Verdict::Met,         // counting by the kernel's accounting: +2% <= 3%
                Verdict::NotMeasured, // no tracer
                Verdict::NotMeasured,
                Verdict::NotMeasured,
                Verdict::NotMeasured, // no capacity figures
            ]
        );
        assert!(t[5].goal.contains("kernel's accounting"), "{}", t[5].goal);
        assert!(
            t[5].measured.starts_with("+2.0% CPU per byte"),
            "{}",
            t[5].measured
        );
        assert!(
            t[2].measured.contains("the client failed"),
            "{}",
            t[2].measured
        );
        assert!(t[6].measured.contains("tracer is not available"));
        assert!(t[8].measured.contains("tracer is not available"));
        assert!(r.failed(), "a failed comparison makes the run fail");

        assert!(
            t[3].measured
                .contains("95% interval -0.5% to +2.5%, 60 blocks"),
            "{}",
            t[3].measured
        );
        // Each interval target says what empty programs on the same hooks cost.
        assert!(
            t[3].measured.ends_with(
                "; empty programs on its hooks alone: +0.8% (95% interval -0.6% to +2.0%)"
            ),
            "{}",
            t[3].measured
        );
        assert!(
            t[4].measured.ends_with(
                "; empty programs on its hooks alone: +1.5% (95% interval +0.5% to +2.9%)"
            ),
            "{}",
            t[4].measured
        );
        // Not for the kernel's accounting (the empty programs have none), nor for an
        // instrument that was not measured.
        assert!(
            !t[5].measured.contains("empty programs"),
            "{}",
            t[5].measured
        );
        assert!(
            !t[6].measured.contains("empty programs"),
            "{}",
            t[6].measured
        );
        // An interval across the limit decides nothing; neither do too few blocks.
        let r = report(Some(1.0));
        let counting = variant_for(&r, Instrument::CopyCounting);
        let straddling = interval_target(
            "g".into(),
            counting.clone(),
            |_| Some(paired(2.5, 1.0, 4.0)),
            3.0,
            "throughput",
        );
        assert_eq!(straddling.verdict, Verdict::Undecided);
        let few = interval_target(
            "g".into(),
            counting,
            |_| {
                Some(PairedFigure {
                    median_pct: 0.5,
                    interval_pct: None,
                    blocks: 4,
                })
            },
            3.0,
            "throughput",
        );
        assert_eq!(few.verdict, Verdict::Undecided);
        assert!(few.measured.contains("only 4 blocks"), "{}", few.measured);
        // The control is found by instrument, not position.
        assert_eq!(
            variant_for(&r, Instrument::Control).map(|v| v.gbps.median),
            Ok(20.1)
        );

        let below = targets(&report(Some(0.90)));
        assert_eq!(below[0].verdict, Verdict::NotMet);
        let no_iperf = targets(&report(None));
        assert_eq!(no_iperf[0].verdict, Verdict::NotMeasured);
        assert!(no_iperf[0].measured.contains("iperf3 is not installed"));
    }

    #[test]
    fn text_and_markdown_name_every_part() {
        let mut r = report(Some(1.0));
        r.targets = targets(&r);
        let text = render(&r);
        for needle in [
            "1. against iperf3",
            "2. the ceiling",
            "3. probe overhead",
            "4. trace capacity",
            "tracing: not measured: the tracer is not available in this build",
            "[NOT met     ]",
            "by the kernel's accounting (one more run): the programs took 0.0100 CPU ns per \
             payload byte: +2.0% of the no-probe CPU per byte",
            "netcopy_recv_copy_tp_btf",
            "an empty program on tp_btf skb_copy_datagram_iovec ran 70 ns per call",
            "a second no-probe window (the control) came out at +0.2% (95% interval -1.9% \
             to +1.7%)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let md = markdown::render(&r);
        assert!(md.contains("## Method") && md.contains("## Targets"));
        assert!(md.contains(&r.machine.cpu_model));
    }
}
