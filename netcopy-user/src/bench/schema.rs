//! The report of `netcopy bench`: every type its JSON output (`--json`) and its renderers
//! read, with the derived facts both renderers print (the noise sentence, a figure's
//! interval). The figures of one self-contained measurement (`MachineInfo`, `Iperf3`,
//! `MemcpyFigures`, `ProgramCost`, `TraceStats`) live beside the code that takes them;
//! this module puts them together. Field names are the JSON schema: renaming one breaks
//! every results file written before.
//!
//! The parts import this module and the orchestrator imports the parts, never the
//! reverse.

use serde::{Deserialize, Serialize};

use super::{
    iperf::Iperf3,
    machine::{ForeignLoad, MachineInfo},
    memcpy::MemcpyFigures,
    peer_tools::{PeerCheck, PeerCounts, PeerTool},
    placement::Placement,
    program_cost::ProgramCost,
    tracing::TraceStats,
};
use crate::{
    util::{stats, stats::Summary},
    workload::modes::Mode,
};

/// Of the intervals around the overheads' medians.
pub(super) const CONFIDENCE: f64 = 0.95;

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Part {
    /// One-copy and zero-copy against iperf3.
    Peers,
    /// The servers against bare send loops of their mechanism.
    Bare,
    /// memcpy bandwidth and the loopback TCP ceiling it implies.
    Ceiling,
    /// Throughput and CPU with no probes, with copy counting, with syscall tracing.
    Probes,
    /// Events per second the trace path carries without loss.
    Trace,
}

impl Part {
    /// Its name on the command line (`--only`) and in load lines.
    pub(super) fn name(self) -> &'static str {
        match self {
            Part::Peers => "peers",
            Part::Bare => "bare",
            Part::Ceiling => "ceiling",
            Part::Probes => "probes",
            Part::Trace => "trace",
        }
    }
}

/// A figure that was measured, or why not.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub(super) enum Outcome<T> {
    Measured(T),
    NotMeasured { reason: String },
    Failed { error: String },
}

impl<T> Outcome<T> {
    pub(super) fn measured(&self) -> Option<&T> {
        match self {
            Outcome::Measured(t) => Some(t),
            _ => None,
        }
    }

    /// Why there is no figure, for a "not measured" line.
    pub(super) fn why_not(&self) -> Option<String> {
        match self {
            Outcome::Measured(_) => None,
            Outcome::NotMeasured { reason } => Some(format!("not measured: {reason}")),
            Outcome::Failed { error } => Some(format!("FAILED: {error}")),
        }
    }
}

/// Two sides of a comparison, measured alternately.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Comparison {
    pub(super) name: String,
    /// Streams (connections) on each side.
    pub(super) streams: u32,
    /// What our side ran.
    pub(super) ours_label: String,
    /// What the other side ran (an iperf3 command line).
    pub(super) theirs_label: String,
    /// Our throughput per round, Gbit/s of payload.
    pub(super) ours_gbps: Summary,
    /// Theirs per round (iperf3: the receiver's bits_per_second), or why not measured.
    pub(super) theirs_gbps: Outcome<Summary>,
    /// Median of ours / median of theirs.
    pub(super) ratio: Option<f64>,
    /// Ours / theirs within each round.
    pub(super) round_ratios: Vec<f64>,
    /// Facts about our side worth knowing (e.g. zero-copy completions flagged COPIED).
    pub(super) notes: Vec<String>,
    /// Unpinned single stream: the rounds of each side by where the scheduler put the
    /// sender and the receiver, one entry per placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) by_placement: Vec<PlacementFigures>,
}

/// The rounds of a comparison in which both threads were placed alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PlacementFigures {
    pub(super) placement: Placement,
    /// Gbit/s of the rounds of each side in this placement.
    pub(super) ours_gbps: Vec<f64>,
    pub(super) theirs_gbps: Vec<f64>,
}

impl PlacementFigures {
    /// Median of ours / median of theirs, when both sides had rounds here.
    pub(super) fn ratio(&self) -> Option<f64> {
        stats::ratio(
            stats::median(&self.ours_gbps)?,
            stats::median(&self.theirs_gbps)?,
        )
    }

    /// `sender and receiver on one CPU: netcopy 19.20 Gbit/s (3 rounds), iperf3 21.00 (2
    /// rounds), ratio 0.914`.
    pub(super) fn describe(&self, theirs: &str) -> String {
        let side = |v: &[f64]| match stats::median(v) {
            Some(m) => format!(
                "{m:.2} Gbit/s ({} round{})",
                v.len(),
                if v.len() == 1 { "" } else { "s" }
            ),
            None => "no round".into(),
        };
        format!(
            "{}: netcopy {}, {theirs} {}{}",
            self.placement.describe(),
            side(&self.ours_gbps),
            side(&self.theirs_gbps),
            self.ratio()
                .map_or(String::new(), |r| format!(", ratio {r:.3}"))
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PeerSection {
    /// The iperf3 used, or why there is none.
    pub(super) iperf3: Outcome<Iperf3>,
    pub(super) size: u64,
    pub(super) seconds: u32,
    pub(super) comparisons: Vec<Outcome<Comparison>>,
}

/// The servers against bare loops of the same mechanism (part 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct BareSection {
    pub(super) size: u64,
    pub(super) seconds: u32,
    /// The CPU both sides were pinned to; None when pinning was not possible.
    pub(super) pinned_cpu: Option<usize>,
    /// Ours: `netcopy server`; theirs: the bare loop.
    pub(super) comparisons: Vec<Outcome<Comparison>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CeilingSection {
    pub(super) memcpy: MemcpyFigures,
    /// memcpy / 2 in Gbit/s: the estimated loopback TCP ceiling of one stream.
    pub(super) per_stream_gbps: f64,
    /// The same times the CPUs: every CPU doing nothing but the kernel's copies.
    pub(super) machine_gbps: f64,
    /// Our best single-stream figure of this run, and which mode gave it.
    pub(super) best_single_stream: Option<BestFigure>,
    pub(super) best_multi_stream: Option<BestFigure>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct BestFigure {
    pub(super) what: String,
    pub(super) gbps: f64,
    /// Fraction of the matching ceiling.
    pub(super) fraction_of_ceiling: f64,
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
    /// bpftrace counting the same bytes as copy counting (`peer_tools/copy_bytes.bt`).
    Bpftrace,
    /// `perf trace` recording the same calls as syscall tracing.
    PerfTrace,
    /// `strace -f` recording the same calls as syscall tracing.
    Strace,
}

impl Instrument {
    /// Every instrument, in the order of the report's rows.
    pub const ALL: [Instrument; 9] = [
        Instrument::None,
        Instrument::CopyCounting,
        Instrument::SyscallTracing,
        Instrument::Control,
        Instrument::EmptyCountingHooks,
        Instrument::EmptyTracingHooks,
        Instrument::Bpftrace,
        Instrument::PerfTrace,
        Instrument::Strace,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Instrument::None => "no probes",
            Instrument::CopyCounting => "copy counting",
            Instrument::SyscallTracing => "syscall tracing",
            Instrument::Control => "no probes (control)",
            Instrument::EmptyCountingHooks => "empty programs on counting's hooks",
            Instrument::EmptyTracingHooks => "empty programs on tracing's hooks",
            Instrument::Bpftrace | Instrument::PerfTrace | Instrument::Strace => {
                self.peer_tool().map_or("", PeerTool::label)
            }
        }
    }

    /// The tool a user would run instead of this one of netcopy's instruments.
    pub(super) fn peers(self) -> &'static [Instrument] {
        match self {
            Instrument::CopyCounting => &[Instrument::Bpftrace],
            Instrument::SyscallTracing => &[Instrument::PerfTrace, Instrument::Strace],
            _ => &[],
        }
    }

    /// The instrument of netcopy this peer tool stands against.
    pub(super) fn peer_of(self) -> Option<Instrument> {
        Instrument::ALL
            .into_iter()
            .find(|i| i.peers().contains(&self))
    }

    /// A tool other than netcopy, started before its window and stopped after it.
    pub(super) fn is_peer(self) -> bool {
        self.peer_tool().is_some()
    }

    /// The tool this peer window runs.
    pub(super) fn peer_tool(self) -> Option<PeerTool> {
        match self {
            Instrument::Bpftrace => Some(PeerTool::Bpftrace),
            Instrument::PerfTrace => Some(PeerTool::PerfTrace),
            Instrument::Strace => Some(PeerTool::Strace),
            _ => None,
        }
    }

    /// The empty programs on this instrument's hooks: its floor.
    pub(super) fn floor(self) -> Option<Instrument> {
        Instrument::ALL
            .into_iter()
            .find(|f| f.floor_of() == Some(self))
    }

    /// The instrument whose hooks these empty programs are on.
    pub(super) fn floor_of(self) -> Option<Instrument> {
        match self {
            Instrument::EmptyCountingHooks => Some(Instrument::CopyCounting),
            Instrument::EmptyTracingHooks => Some(Instrument::SyscallTracing),
            _ => None,
        }
    }

    /// Attaches programs of some kind, netcopy's, empty ones or a peer tool's (switch
    /// times are recorded for it).
    pub(super) fn has_probes(self) -> bool {
        self.is_netcopy() || self.floor_of().is_some() || self.is_peer()
    }

    /// One of netcopy's instruments, whose programs the kernel's accounting measures.
    pub(super) fn is_netcopy(self) -> bool {
        matches!(self, Instrument::CopyCounting | Instrument::SyscallTracing)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct VariantFigures {
    pub(super) instrument: Instrument,
    pub(super) gbps: Summary,
    /// (server + client task-clock) / payload bytes.
    pub(super) cpu_ns_per_byte: Option<Summary>,
    /// Why there is no CPU figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cpu_unavailable: Option<String>,
    /// Versus no probes: the median of the blocks' overheads; positive = slower.
    pub(super) throughput_loss_pct: Option<f64>,
    /// Versus no probes: the median of the blocks' overheads; positive = more CPU per byte.
    pub(super) cpu_increase_pct: Option<f64>,
    /// The throughput overhead with its interval (None for no probes).
    #[serde(default)]
    pub(super) throughput_loss: Option<PairedFigure>,
    /// The CPU overhead with its interval (None for no probes).
    #[serde(default)]
    pub(super) cpu_increase: Option<PairedFigure>,
    /// Seconds to load the probes and attach them the first time (before the windows).
    pub(super) setup_seconds: Option<Summary>,
    /// Seconds each switch to this instrument took (between windows, not in them).
    #[serde(default)]
    pub(super) switch_seconds: Option<Summary>,
    /// Evidence that the instrument was active (bytes it counted, events it recorded).
    pub(super) evidence: Vec<String>,
    /// One more run with the kernel's accounting of the programs' run time on (not among
    /// the rounds above: the accounting has a cost of its own). None for no probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) program_cost: Option<Outcome<ProgramCost>>,
    /// Block by block against the block's no-probe window: the targets that compare two
    /// rows pair their blocks. Empty for no probes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) blocks: Vec<BlockOverhead>,
    /// A peer tool: what it counted, and whether that agrees with netcopy's instrument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) peer: Option<PeerFigures>,
}

/// One block's overheads of one row, percent (positive: costlier).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct BlockOverhead {
    pub(super) block: u32,
    /// More wall-clock time per payload byte (the throughput overhead, unbounded).
    pub(super) time_pct: Option<f64>,
    /// More CPU time per payload byte.
    pub(super) cpu_pct: Option<f64>,
}

/// A peer tool's counts and their check against netcopy's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PeerFigures {
    pub(super) counts: PeerCounts,
    pub(super) check: PeerCheck,
    /// How the tool was switched: started before its window, stopped after.
    pub(super) switching: String,
}

/// An overhead measured block by block against the no-probe window of the same block.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PairedFigure {
    /// Median of the blocks' overheads, percent.
    pub(super) median_pct: f64,
    /// Distribution-free interval of that median at [`CONFIDENCE`]; None with too few
    /// blocks.
    pub(super) interval_pct: Option<(f64, f64)>,
    pub(super) blocks: usize,
}

impl PairedFigure {
    /// `+3.5% (95% interval +1.5% to +5.9%)`.
    pub(super) fn text(&self) -> String {
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
pub(super) struct OverheadSection {
    pub(super) mode: Mode,
    pub(super) size: u64,
    pub(super) threads: usize,
    /// Seconds of each run with the kernel's accounting on.
    pub(super) seconds: u32,
    /// Each instrument's window per block, milliseconds.
    #[serde(default)]
    pub(super) window_ms: u64,
    /// Milliseconds the workload runs after each switch before the window opens.
    #[serde(default)]
    pub(super) settle_ms: u64,
    /// Blocks measured (each with one window per instrument).
    #[serde(default)]
    pub(super) blocks: u32,
    /// The CPU server and client were both pinned to (the trace-draining thread is not
    /// pinned); None when pinning was not possible (`pin_note` says why).
    pub(super) pinned_cpu: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pin_note: Option<String>,
    pub(super) variants: Vec<Outcome<VariantFigures>>,
}

impl OverheadSection {
    /// How noisy the machine was, and how much of it the pairing left: the no-probe
    /// windows' spread, and the control window's figure against them.
    pub(super) fn noise_sentence(&self) -> Option<String> {
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
pub(super) struct PartLoad {
    pub(super) part: Part,
    pub(super) load: ForeignLoad,
}

/// How a target came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Verdict {
    Met,
    NotMet,
    /// Measured, but the figure's confidence interval straddles the limit.
    Undecided,
    NotMeasured,
}

impl Verdict {
    pub(super) fn word(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT met",
            Verdict::Undecided => "undecided",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Target {
    pub(super) goal: String,
    pub(super) measured: String,
    pub(super) verdict: Verdict,
}

/// Everything `netcopy bench` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BenchReport {
    /// `netcopy X.Y.Z`.
    pub(super) tool: String,
    pub(super) machine: MachineInfo,
    pub(super) rounds: u32,
    pub(super) seconds: u32,
    pub(super) peers: Outcome<PeerSection>,
    /// Absent from results written before this part existed.
    #[serde(default = "not_run")]
    pub(super) bare: Outcome<BareSection>,
    pub(super) ceiling: Outcome<CeilingSection>,
    pub(super) overhead: Outcome<OverheadSection>,
    pub(super) trace_capacity: Outcome<CapacitySection>,
    pub(super) targets: Vec<Target>,
    /// CPU other processes took while each part ran (noise).
    pub(super) load: Vec<PartLoad>,
    /// Wall-clock seconds the whole benchmark took.
    pub(super) elapsed_seconds: f64,
}

fn not_run<T>() -> Outcome<T> {
    Outcome::NotMeasured {
        reason: "not part of the benchmark when this report was written".into(),
    }
}

impl BenchReport {
    /// True when some part failed (as opposed to being skipped with a reason).
    pub(crate) fn failed(&self) -> bool {
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
            || failed(self.bare.why_not())
            || self.bare.measured().is_some_and(|b| {
                b.comparisons
                    .iter()
                    .any(|c| matches!(c, Outcome::Failed { .. }))
            })
            || self.overhead.measured().is_some_and(|o| {
                o.variants
                    .iter()
                    .any(|v| matches!(v, Outcome::Failed { .. }))
            })
    }
}

/// One step of the sweep: a paced stream of failing `recvfrom` calls.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CapacityStep {
    /// Calls per second asked for (all threads together); None: as fast as they can.
    pub(super) target_per_s: Option<f64>,
    /// Generator threads.
    pub(super) threads: usize,
    /// Calls the generator made, per second.
    pub(super) calls_per_s: f64,
    pub(super) calls: u64,
    pub(super) stats: TraceStats,
}

impl CapacityStep {
    /// Events delivered per second of generation.
    pub(super) fn delivered_per_s(&self) -> f64 {
        self.stats.events_per_second()
    }
}

/// The event rate of a real workload under the trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct WorkloadRate {
    pub(super) label: String,
    pub(super) stats: TraceStats,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CapacitySection {
    pub(super) ring_bytes: u32,
    pub(super) generator: String,
    pub(super) steps: Vec<CapacityStep>,
    /// The highest delivered rate of a step with no loss.
    pub(super) lossless_events_per_s: Option<f64>,
    /// The lowest call rate of a step that lost events.
    pub(super) lowest_lossy_calls_per_s: Option<f64>,
    /// What the draining thread can carry on a CPU of its own: events per second of its
    /// CPU time in the busiest unpaced step (beyond it the ring fills; how fast depends
    /// on its size).
    #[serde(default)]
    pub(super) drain_ceiling_events_per_s: Option<f64>,
    /// Calls per second of one unpaced generator thread with no trace running: with the
    /// sweep's traced one-thread unpaced step, what a traced call costs all in.
    #[serde(default)]
    pub(super) untraced_calls_per_s: Option<f64>,
    /// Records the per-CPU rings hold, all CPUs together.
    #[serde(default)]
    pub(super) ring_records: u64,
    /// The densest cells of the default `netcopy run` sweep.
    pub(super) workloads: Vec<Outcome<WorkloadRate>>,
}
