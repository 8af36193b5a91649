//! The results of `netcopy run`: one versioned JSON document (`results.json`) holding every
//! cell with every figure and how it was obtained. Plots and the report are rebuilt from
//! this file alone (`netcopy report DIR`), so everything they show must be in it.
//!
//! Here: the schema, `write_results` (atomic, so that a run killed mid-write still
//! leaves a valid file) and `load_results` (which names a file of another schema version
//! as such, and reads every older version it can: a field added since has a default).
//!
//! Schema versions: 1, the first; 2 adds `config.pin`, `config.interleaved`, each cell's
//! `placement`, `machine_floor` and `groups` (every figure over its repeats with an
//! interval for the median). A version 1 file reads as an unpinned, not interleaved run
//! without a floor. 3 adds `topology` (where the ends ran, with the agent's host for two
//! hosts), each cell's `topology` and zero-copy `causes`, and each copy figure's
//! `counted_on`: a version 2 reader
//! would show a two-host run's agent-counted figures as one loopback kernel's, so the
//! version says it cannot read them. An older file reads as a loopback run. 4 adds the
//! receive mechanism: `config.recv`, each cell's `recv` and `zerocopy_receive`, each
//! verification ledger's `receiver` (an older reader would take a zerocopy cell for a copy
//! one); files before it read as received with recv() (copy).

use std::{collections::BTreeMap, fs, io::Read, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    experiment::placement::{PinRequest, Placement},
    kernel::perf::CounterReadings,
    kernel::plan::AttachPlan,
    ledger::{causes::Explanation, FigureSource, ModeLedger},
    util::stats::{self, MedianInterval},
    workload::client::{LatencyKind, LatencySummary, ReceiveMechanism, ZeroCopyReceiveFigures},
    workload::modes::Mode,
};

/// Bumped on any change a reader of an older file would misread.
pub const SCHEMA_VERSION: u32 = 4;
/// The oldest schema version this netcopy still reads.
const OLDEST_READABLE_VERSION: u32 = 1;

/// The results file in a results directory.
pub(crate) const RESULTS_FILE: &str = "results.json";

/// Writes `DIR/results.json` through a temporary file and a rename: readers never see half
/// a file.
pub(crate) fn write_results(dir: &Path, results: &Results) -> Result<()> {
    let text = serde_json::to_string_pretty(results).context("encoding results")?;
    crate::util::fs::write_atomic(&dir.join(RESULTS_FILE), text)
}

/// The largest results.json `netcopy report` reads. A run writes about 8 KiB per cell, so
/// this holds some 30,000 cells, far beyond any sweep `netcopy run` accepts; the bound
/// keeps a wrong file (a symlink to a device, a huge file) from exhausting memory.
pub(crate) const MAX_RESULTS_BYTES: u64 = 256 << 20;

/// Reads and checks `DIR/results.json`.
pub(crate) fn load_results(dir: &Path) -> Result<Results> {
    if !dir.exists() {
        bail!("results directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the results directory of `netcopy run`",
            dir.display()
        );
    }
    let path = dir.join(RESULTS_FILE);
    if !path.exists() {
        bail!(
            "{} has no {RESULTS_FILE}: is it the results directory of `netcopy run`?",
            dir.display()
        );
    }
    let bytes = read_bounded(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_results_bytes(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// A results document from its bytes: at most [`MAX_RESULTS_BYTES`] of UTF-8, then
/// [`parse_results`]. The one path from a file's bytes to [`Results`]; public for the fuzz
/// target (fuzz/).
#[doc(hidden)]
pub fn parse_results_bytes(bytes: &[u8]) -> Result<Results> {
    if bytes.len() as u64 > MAX_RESULTS_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = std::str::from_utf8(bytes).context("not UTF-8 text")?;
    parse_results(text)
}

fn too_large(len: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "larger than the {} MiB a results.json may have ({len} bytes or more): not a \
         file `netcopy run` wrote",
        MAX_RESULTS_BYTES >> 20
    )
}

/// The bytes of `path`, which must be a regular file (a symlink to one is fine) of at most
/// [`MAX_RESULTS_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let regular = |meta: &fs::Metadata| -> Result<()> {
        if meta.is_file() {
            return Ok(());
        }
        bail!(
            "not a regular file (it is {}): results.json must be the file `netcopy run` wrote",
            file_kind(meta)
        )
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    let meta = fs::metadata(path)?;
    regular(&meta)?;
    if meta.len() > MAX_RESULTS_BYTES {
        return Err(too_large(meta.len()));
    }
    // Non-blocking and checked again on the open file, in case the path changed between.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    regular(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(MAX_RESULTS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RESULTS_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// "a directory", "a FIFO", ... for an error message.
fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Parses a results document, checking its schema version first so that a file from
/// another version is named as such instead of failing on some missing field.
fn parse_results(text: &str) -> Result<Results> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("not JSON (is the file truncated or corrupted?)")?;
    let Some(obj) = value.as_object() else {
        bail!("not a netcopy results document: the top level is not a JSON object");
    };
    let Some(version) = obj.get("schema_version") else {
        bail!("not a netcopy results document: no \"schema_version\"");
    };
    let Some(version) = version.as_u64() else {
        bail!("not a netcopy results document: \"schema_version\" is {version}, not a number");
    };
    if !(u64::from(OLDEST_READABLE_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&version) {
        bail!(
            "unsupported schema_version {version}: this netcopy reads schema_version \
             {OLDEST_READABLE_VERSION} to {SCHEMA_VERSION}; rebuild the report with the \
             netcopy that wrote the file"
        );
    }
    serde_json::from_value(value).with_context(|| {
        format!("does not match the netcopy results schema (schema_version {version})")
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    /// `netcopy X.Y.Z`.
    pub tool: String,
    /// Seconds since the Unix epoch, UTC.
    pub started_at_unix: u64,
    pub finished_at_unix: Option<u64>,
    /// False while running and when the run was interrupted: cells then holds what was
    /// measured before the stop.
    pub complete: bool,
    pub interrupted: bool,
    /// This host: the receiver's on two hosts (the sender's host is in `topology`).
    pub machine: Machine,
    pub config: RunConfig,
    /// Where the sender and the receiver ran; loopback before schema 3.
    #[serde(default)]
    pub topology: TopologyRecord,
    /// How each kernel event was observed on this machine.
    pub plan: PlanRecord,
    /// `netcopy verify` at the start of the run: exact copy counts per mode.
    pub verification: Vec<ModeLedger>,
    /// What this machine adds to a round trip with no mode involved; None before schema 2.
    #[serde(default)]
    pub machine_floor: Option<MachineFloor>,
    pub cells: Vec<Cell>,
    /// Every figure of each (mode, size, threads) over its repeats, with an interval for
    /// the median. Derived from `cells` by netcopy's analysis and written for readers of
    /// this file; `netcopy report` computes it again from the cells.
    #[serde(default)]
    pub groups: Vec<GroupSummary>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    /// Whether hardware counters could be read, and why not.
    pub perf_hw_available: bool,
    pub perf_hw_reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub modes: Vec<Mode>,
    pub sizes: Vec<u64>,
    pub threads: Vec<usize>,
    pub repeat: u32,
    /// Seconds of the stream (throughput) phase of each cell.
    pub stream_seconds: f64,
    /// Seconds of the request/response (latency) phase of each cell.
    pub rr_seconds: f64,
    pub quick: bool,
    /// `--pin`: where the cells' server and client threads were asked to run.
    #[serde(default = "PinRequest::before_recorded")]
    pub pin: PinRequest,
    /// The repeats of a (size, threads) point ran round-robin across its modes (the mode
    /// order rotating by one each repeat), so that slow drift hits every mode alike; false
    /// before schema 2, where every mode's cells ran one after another.
    #[serde(default)]
    pub interleaved: bool,
    /// `--recv`: the receive mechanisms swept (before: copy only).
    #[serde(default = "copy_receive_only")]
    pub recv: Vec<ReceiveMechanism>,
}

fn copy_receive_only() -> Vec<ReceiveMechanism> {
    vec![ReceiveMechanism::Copy]
}

/// Which kind of ends a cell ran on, as results.json records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    /// What every run before the topologies was.
    #[default]
    Loopback,
    Netns,
    Remote,
}

impl TopologyKind {
    pub fn name(self) -> &'static str {
        match self {
            TopologyKind::Loopback => "loopback",
            TopologyKind::Netns => "netns",
            TopologyKind::Remote => "remote",
        }
    }
}

/// Where a run's ends ran.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TopologyRecord {
    pub kind: TopologyKind,
    /// One line: the namespaces and veth, or the agent's host and this one.
    #[serde(default)]
    pub description: String,
    /// The sender's host, on two hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRecord>,
}

impl TopologyRecord {
    /// The description, or what a run before schema 3 was.
    pub fn text(&self) -> String {
        if self.description.is_empty() {
            "loopback: sender and receiver on this kernel".to_string()
        } else {
            self.description.clone()
        }
    }
}

/// The agent's host of a two-host run, as it introduced itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AgentRecord {
    /// Where the controller reached it.
    pub address: String,
    pub hostname: String,
    /// `uname -r` there.
    pub kernel: String,
    /// Its attach plan, as `netcopy probes --json` prints it.
    pub plan: serde_json::Value,
}

/// An owned copy of the attach plan (the live one borrows static strings).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanRecord {
    pub events: Vec<PlanEventRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanEventRecord {
    pub event: String,
    /// The strategy used, None when the event is not observable here.
    pub strategy: Option<String>,
    /// Ledger site -> how its figure is obtained.
    pub sources: BTreeMap<String, String>,
    /// Better-ranked strategies that failed, with the reason.
    pub rejected: Vec<(String, String)>,
}

impl From<&AttachPlan> for PlanRecord {
    fn from(plan: &AttachPlan) -> Self {
        PlanRecord {
            events: plan
                .events
                .iter()
                .map(|e| PlanEventRecord {
                    event: e.event.name().to_string(),
                    strategy: e.chosen.as_ref().map(|c| c.label.to_string()),
                    sources: e
                        .chosen
                        .iter()
                        .flat_map(|c| c.sources.iter())
                        .map(|s| (s.site.to_string(), s.source.name().to_string()))
                        .collect(),
                    rejected: e
                        .rejected
                        .iter()
                        .map(|r| (r.label.to_string(), r.reason.clone()))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// One measured combination of mode, message size, thread count and repetition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    pub mode: Mode,
    /// How the client received (before: copy).
    #[serde(default)]
    pub recv: ReceiveMechanism,
    /// `--recv zerocopy`: what the kernel mapped and copied over the stream phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerocopy_receive: Option<ZeroCopyReceiveFigures>,
    pub size: u64,
    pub threads: usize,
    /// 0-based repetition index.
    pub repeat: u32,
    /// Where the server and the client threads ran; None before schema 2 (unpinned). On
    /// two hosts only this host's processes (the client's) are pinned.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Where the ends ran (loopback before schema 3).
    #[serde(default)]
    pub topology: TopologyKind,
    pub stream: StreamFigures,
    pub latency: LatencyFigures,
    /// Copy sites over the stream phase, from the copy probes (kernel) and the sender.
    pub copies: BTreeMap<String, CopyFigure>,
    /// Payload bytes copied (all copy sites) per payload byte delivered.
    pub copies_per_byte: Option<f64>,
    /// For a mode that claims to avoid the copy: why the kernel copied its pages anyway
    /// in this cell (empty when it did not; not recorded before schema 3), each observed
    /// at the copy or inferred from the path (a cause of an older file reads as inferred).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Explanation>,
    pub zerocopy: ZeroCopyFigures,
    /// Perf counters of the server process over the stream phase.
    pub server_counters: Option<CounterReadings>,
    /// Perf counters of this process (the client threads) over the stream phase.
    pub client_counters: Option<CounterReadings>,
    pub cpu: CpuFigures,
    /// Where this cell's syscall trace sample is, relative to the results directory.
    pub trace_sample: Option<String>,
}

/// The throughput phase (stream pattern, fixed duration).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamFigures {
    pub messages: u64,
    pub payload_bytes: u64,
    pub seconds: f64,
    pub throughput_gbps: f64,
    pub integrity_errors: u64,
    /// Bytes of a partial last message discarded at the end of the phase.
    pub discarded_bytes: u64,
}

/// The latency phase (request/response, one message per transaction).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyFigures {
    pub kind: LatencyKind,
    pub transactions: u64,
    pub latency_us: LatencySummary,
    pub integrity_errors: u64,
}

/// One copy site over a phase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CopyFigure {
    pub bytes: Option<u64>,
    pub calls: Option<u64>,
    pub source: FigureSource,
    pub how: String,
    /// Bytes per delivered message (payload + protocol), None when not observable.
    pub bytes_per_message: Option<f64>,
    /// The host(s) whose kernel counted it (the sender's own count for user_copy); empty
    /// before schema 3 (this host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted_on: Vec<String>,
}

/// What the zero-copy sender learned from completions over the stream phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ZeroCopyFigures {
    pub sends: u64,
    pub notifications: u64,
    pub completed_sends: u64,
    pub copied_sends: u64,
    pub copied_bytes: u64,
    pub enobufs_retries: u64,
    /// Completed sends that never left the sender's socket: freed undelivered when the
    /// client stopped reading and closed (`SenderStats::unsent_sends`). Their
    /// completions say nothing of the path; the sends that left are `completed_sends -
    /// unsent_sends`, of which `copied_sends - unsent_copied_sends` were flagged copied.
    /// Absent (0) before this field.
    #[serde(default)]
    pub unsent_sends: u64,
    /// Of those, in notifications flagged copied (a range shared with sends that left).
    #[serde(default)]
    pub unsent_copied_sends: u64,
}

impl ZeroCopyFigures {
    /// Sends that left the socket, and of them the ones flagged copied.
    pub fn sent_and_copied(&self) -> (u64, u64) {
        (
            self.completed_sends.saturating_sub(self.unsent_sends),
            self.copied_sends.saturating_sub(self.unsent_copied_sends),
        )
    }
}

/// CPU time and what it costs per byte.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuFigures {
    /// Server CPU time over the stream phase (task-clock, else /proc/PID/stat), counted
    /// where the server ran (by the agent on two hosts).
    pub server_cpu_ns: Option<u64>,
    /// Client (this process) CPU time over the stream phase.
    pub client_cpu_ns: Option<u64>,
    /// Where the CPU times came from.
    pub source: String,
    pub server_ns_per_byte: Option<f64>,
    pub total_ns_per_byte: Option<f64>,
    /// Server cycles per payload byte; None when the machine has no PMU.
    pub cycles_per_byte: Option<f64>,
    /// Server LLC load misses (else cache misses) per MiB of payload.
    pub llc_misses_per_mib: Option<f64>,
    /// Why cycles/cache figures are missing, when they are.
    pub hw_unavailable_reason: Option<String>,
}

/// The confidence aimed at by every interval of the median: reached from 6 repeats on;
/// with fewer, the interval is the repeats' range and says its lower coverage.
pub(crate) const INTERVAL_CONFIDENCE: f64 = 0.95;

/// How the intervals are obtained, in one line (results.json readers, the report).
pub(crate) const INTERVAL_METHOD: &str =
    "distribution-free interval for the median from order statistics (binomial ranks, no \
     assumption on the distribution's shape): 95 % from 6 repeats on, the repeats' range \
     below that (75 % for 3 repeats, 87.5 % for 4, 93.75 % for 5)";

/// One figure over repeats: every value, its median and an interval for the median.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FigureSummary {
    /// One value per repeat that had the figure, in repeat order.
    pub values: Vec<f64>,
    pub median: f64,
    /// None for a single value, which bounds nothing.
    pub interval: Option<MedianInterval>,
}

impl FigureSummary {
    /// None when no value is a finite number.
    pub fn of(values: &[f64]) -> Option<FigureSummary> {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        Some(FigureSummary {
            median: stats::median(&values)?,
            interval: stats::median_interval_up_to(&values, INTERVAL_CONFIDENCE),
            values,
        })
    }
}

/// The figures of one (mode, size, threads) over its repeats, by the names the cells
/// give them (`throughput_gbps`, `latency_p50_us`, `total_ns_per_byte`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub mode: Mode,
    pub size: u64,
    pub threads: usize,
    pub repeats: usize,
    pub figures: BTreeMap<String, FigureSummary>,
    /// How every interval here was obtained.
    pub interval_method: String,
}

/// What this machine adds to a round trip with no mode involved: a 1-byte TCP ping-pong
/// over loopback between two threads of netcopy, pinned to one CPU, to two, or not at
/// all. A cell's latency is read against it: what the floor already costs, no mode can
/// remove.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineFloor {
    /// Bytes each way per round trip.
    pub message_bytes: u64,
    /// Seconds of ping-pong per placement and repeat.
    pub seconds: f64,
    /// How the repeats ran: round-robin across the placements.
    pub placements: Vec<FloorFigures>,
    /// Placements that could not be measured here, with the reason.
    pub not_measured: Vec<(FloorPlacement, String)>,
}

/// Where the two threads of the ping-pong ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloorPlacement {
    /// Both threads on one CPU: every hand-over is a switch on that CPU.
    OneCpu,
    /// One thread per CPU: every hand-over wakes the other CPU.
    TwoCpus,
    /// Where the scheduler put them.
    Unpinned,
}

impl FloorPlacement {
    pub(crate) fn label(self) -> &'static str {
        match self {
            FloorPlacement::OneCpu => "one CPU",
            FloorPlacement::TwoCpus => "two CPUs",
            FloorPlacement::Unpinned => "unpinned",
        }
    }
}

/// The ping-pong at one placement over its repeats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorFigures {
    pub placement: FloorPlacement,
    /// The CPUs of the two threads (empty when unpinned).
    pub cpus: Vec<usize>,
    /// Round trips per repeat.
    pub round_trips: Vec<u64>,
    /// Median round trip of each repeat, microseconds.
    pub round_trip_p50_us: FigureSummary,
    /// 99th percentile round trip of each repeat, microseconds.
    pub round_trip_p99_us: FigureSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_documents_are_named() {
        let e = parse_results("not json").unwrap_err();
        assert!(format!("{e:#}").contains("not JSON"));
        let e = parse_results("{\"schema_version\": 999}").unwrap_err();
        assert!(format!("{e:#}").contains("unsupported schema_version 999"));
        let e = parse_results("[1]").unwrap_err();
        assert!(format!("{e:#}").contains("not a JSON object"));
        let e = parse_results("{\"schema_version\": 1}").unwrap_err();
        assert!(format!("{e:#}").contains("does not match"));
        let e = parse_results("{\"schema_version\": 0}").unwrap_err();
        assert!(format!("{e:#}").contains("reads schema_version 1 to"));
    }

    /// Found by the results_json fuzz target: a figure such as a latency mean of
    /// 18.919230153647074 came back from results.json as 18.91923015364707 (the parser's
    /// default float reading is off by one ULP for some numbers), so that rewriting a
    /// loaded file changed its figures.
    #[test]
    fn figures_survive_a_load_and_a_write_to_the_last_digit() {
        let golden = include_str!("../../tests/fixtures/report-golden/results.json");
        let mut doc: serde_json::Value = serde_json::from_str(golden).unwrap();
        doc["cells"][0]["latency"]["latency_us"]["mean"] = serde_json::json!(18.919230153647074);
        let text = serde_json::to_string_pretty(&doc).unwrap();
        assert!(text.contains("18.919230153647074"));
        let written = serde_json::to_string_pretty(&parse_results(&text).unwrap()).unwrap();
        assert!(written.contains("\"mean\": 18.919230153647074"));
        let again = serde_json::to_string_pretty(&parse_results(&written).unwrap()).unwrap();
        assert_eq!(written, again);
    }

    #[test]
    fn bytes_are_bounded_and_utf8_before_they_are_parsed() {
        let e = parse_results_bytes(b"{\"schema_version\": \xff}").unwrap_err();
        assert!(format!("{e:#}").contains("not UTF-8"), "{e:#}");
        let huge = vec![b' '; MAX_RESULTS_BYTES as usize + 1];
        let e = parse_results_bytes(&huge).unwrap_err();
        assert!(
            format!("{e:#}").contains("larger than the 256 MiB"),
            "{e:#}"
        );
        let e = parse_results_bytes(b"{\"schema_version\": 999}").unwrap_err();
        assert!(format!("{e:#}").contains("unsupported schema_version 999"));
    }
}
