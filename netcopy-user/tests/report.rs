//! `netcopy report DIR`, end to end on a synthetic results.json (no root, no kernel probes):
//! every cell reaches results.csv, every plot is well-formed SVG with one series per mode,
//! the crossover table agrees with a recomputation from the JSON, unavailable hardware
//! counters are said to be unavailable (never drawn as zero), an interrupted run is
//! reported as such, and bad inputs fail with a clear message.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

use netcopy::{
    experiment::output::plots::mode_color_hex,
    experiment::placement::{PinRequest, Placement},
    experiment::results::{
        Cell, CopyFigure, CpuFigures, FigureSummary, FloorFigures, FloorPlacement, LatencyFigures,
        Machine, MachineFloor, PlanEventRecord, PlanRecord, Results, RunConfig, StreamFigures,
        TopologyKind, TopologyRecord, ZeroCopyFigures, SCHEMA_VERSION,
    },
    kernel::{
        callers::CallerChain,
        perf::{CounterKind, CounterReadings, CounterValue},
    },
    ledger::{
        causes::{CauseSource, CopyCause, Explanation},
        FigureSource, ModeLedger, ReceiverStats, SiteFigure, Verdict, Workload,
    },
    workload::client::{LatencyKind, LatencySummary, ReceiveMechanism},
    workload::modes::Mode,
};

const SIZES: [u64; 6] = [1024, 4096, 16384, 65536, 262144, 1 << 20];
const THREADS: [usize; 2] = [1, 4];
const REPEATS: u32 = 3;
/// Each repeat's figures scaled by this: a small, known spread.
const REPEAT_SPREAD: [f64; 3] = [0.98, 1.0, 1.02];
const NO_PMU: &str = "perf_event_open failed: No such file or directory (os error 2): \
                      this machine has no PMU (virtual machine without hardware counters)";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netcopy-report-test-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("NETCOPY_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The modes of the synthetic run whose figures the main test knows by heart (the later
/// modes of the table have curves too, for the test that every mode is drawn).
const FIXTURE_MODES: [Mode; 3] = [Mode::TwoCopy, Mode::OneCopy, Mode::ZeroCopy];

/// Throughput in Gbit/s: saturating curves with a known shape. one-copy overtakes
/// two-copy at 16K and stays ahead except that it dips at 1M (as in the study), zero-copy
/// loses at small sizes and wins from 256K on.
fn gbps(mode: Mode, size: u64, threads: usize, repeat: u32) -> f64 {
    let s = size as f64;
    let (peak, half) = match mode {
        Mode::TwoCopy => (18.0, 6000.0),
        Mode::OneCopy => (24.0, 12000.0),
        Mode::ZeroCopy => (30.0, 90000.0),
        Mode::IoUring => (23.0, 11000.0),
        Mode::IoUringZc => (31.0, 80000.0),
        Mode::Sendfile => (26.0, 20000.0),
        Mode::Splice => (25.0, 30000.0),
    };
    let mut g = peak * s / (s + half);
    if mode == Mode::OneCopy && size == 1 << 20 {
        g *= 0.75;
    }
    let t = if threads > 1 { 1.3 } else { 1.0 };
    g * t * REPEAT_SPREAD[repeat as usize]
}

fn ns_per_byte(mode: Mode, size: u64, repeat: u32) -> f64 {
    let s = size as f64;
    let (fixed, per) = match mode {
        Mode::TwoCopy => (3000.0, 0.45),
        Mode::OneCopy => (3200.0, 0.35),
        Mode::ZeroCopy => (9000.0, 0.36),
        Mode::IoUring => (2800.0, 0.35),
        Mode::IoUringZc => (8000.0, 0.36),
        Mode::Sendfile => (5000.0, 0.5),
        Mode::Splice => (6000.0, 0.55),
    };
    (fixed / s + per) * (1.0 + 1.5 * (REPEAT_SPREAD[repeat as usize] - 1.0))
}

fn hw_unavailable_readings(pid: u32) -> CounterReadings {
    let mut counters = BTreeMap::new();
    for kind in CounterKind::ALL {
        let v = if kind.is_hardware() {
            CounterValue::Unavailable {
                reason: NO_PMU.to_string(),
            }
        } else {
            CounterValue::Available {
                value: 1_000_000 + kind as u64,
                raw: 1_000_000 + kind as u64,
                scaled: false,
            }
        };
        counters.insert(kind, v);
    }
    CounterReadings {
        source: "perf_event_open".to_string(),
        pid,
        threads_opened: 2,
        inherit: true,
        coverage_note: None,
        counters,
    }
}

fn copy(bytes: Option<u64>, msgs: u64, source: FigureSource, how: &str) -> CopyFigure {
    CopyFigure {
        bytes,
        calls: bytes.map(|_| msgs),
        source,
        how: how.to_string(),
        bytes_per_message: bytes.map(|b| b as f64 / msgs as f64),
        counted_on: Vec::new(),
    }
}

fn cell(mode: Mode, size: u64, threads: usize, repeat: u32) -> Cell {
    let seconds = 2.0;
    let g = gbps(mode, size, threads, repeat);
    let payload = (g * 1e9 / 8.0 * seconds) as u64 / size * size;
    let msgs = payload / size;
    let wire = msgs * (size + 16);
    let claim = mode.spec().claim;
    let zc = claim.zerocopy_attach;
    let mut copies = BTreeMap::new();
    let user = if claim.user_copy { wire } else { 0 };
    copies.insert(
        "user_copy".to_string(),
        copy(Some(user), msgs, FigureSource::Observed, "sender memcpy"),
    );
    copies.insert(
        "kernel_send_copy".to_string(),
        copy(
            Some(if zc { 0 } else { wire }),
            msgs,
            FigureSource::Inferred,
            "tcp_sendmsg_locked accepted minus attached",
        ),
    );
    copies.insert(
        "zerocopy_attach".to_string(),
        copy(
            Some(if zc { wire } else { 0 }),
            msgs,
            FigureSource::Inferred,
            "tcp_sendmsg_locked with MSG_ZEROCOPY",
        ),
    );
    copies.insert(
        "deferred_copy".to_string(),
        copy(
            Some(if zc { wire } else { 0 }),
            msgs,
            FigureSource::Reported,
            "completions flagged SO_EE_CODE_ZEROCOPY_COPIED",
        ),
    );
    copies.insert(
        "zerocopy_completions".to_string(),
        copy(
            Some(if zc { wire } else { 0 }),
            msgs,
            FigureSource::Reported,
            "error-queue notifications",
        ),
    );
    copies.insert(
        "kernel_recv_copy".to_string(),
        copy(
            Some(wire),
            msgs,
            FigureSource::Observed,
            "tracepoint skb/skb_copy_datagram_iovec",
        ),
    );
    let copied: u64 = [
        user,
        if zc { 0 } else { wire },
        if zc { wire } else { 0 },
        wire,
    ]
    .iter()
    .sum();
    let npb = ns_per_byte(mode, size, repeat);
    let total_ns = (npb * payload as f64) as u64;
    let mode_factor = match mode {
        Mode::TwoCopy => 1.0,
        Mode::OneCopy => 0.85,
        Mode::ZeroCopy => 1.25,
        Mode::IoUring => 0.8,
        Mode::IoUringZc => 1.2,
        Mode::Sendfile => 1.1,
        Mode::Splice => 1.15,
    };
    let p50 = (8.0 + size as f64 / 2000.0 * (1.0 + threads as f64 / 4.0)) * mode_factor;
    Cell {
        mode,
        recv: ReceiveMechanism::Copy,
        zerocopy_receive: None,
        size,
        threads,
        repeat,
        placement: Some(Placement {
            server_cpus: vec![0],
            client_cpus: vec![1],
        }),
        topology: TopologyKind::Loopback,
        stream: StreamFigures {
            messages: msgs,
            payload_bytes: payload,
            seconds,
            throughput_gbps: g,
            integrity_errors: 0,
            discarded_bytes: 0,
        },
        latency: LatencyFigures {
            kind: LatencyKind::RoundTrip,
            transactions: 5000,
            latency_us: LatencySummary {
                p50,
                p90: p50 * 1.4,
                p99: p50 * 3.0,
                p999: p50 * 6.0,
                max: p50 * 20.0,
                mean: p50 * 1.2,
                samples: 5000,
            },
            integrity_errors: 0,
        },
        copies,
        copies_per_byte: Some(copied as f64 / payload as f64),
        causes: Vec::new(),
        zerocopy: if zc {
            ZeroCopyFigures {
                sends: msgs,
                notifications: msgs / 3 + 1,
                completed_sends: msgs,
                copied_sends: msgs,
                copied_bytes: wire,
                enobufs_retries: 0,
                unsent_sends: 0,
                unsent_copied_sends: 0,
            }
        } else {
            ZeroCopyFigures::default()
        },
        server_counters: Some(hw_unavailable_readings(4242)),
        client_counters: Some(hw_unavailable_readings(4243)),
        cpu: CpuFigures {
            server_cpu_ns: Some(total_ns * 3 / 5),
            client_cpu_ns: Some(total_ns * 2 / 5),
            source: "perf_event_open task-clock".to_string(),
            server_ns_per_byte: Some(npb * 0.6),
            total_ns_per_byte: Some(npb),
            cycles_per_byte: None,
            llc_misses_per_mib: None,
            hw_unavailable_reason: Some(NO_PMU.to_string()),
        },
        trace_sample: None,
    }
}

fn site(expected: u64, observed: Option<u64>, source: FigureSource, how: &str) -> SiteFigure {
    SiteFigure {
        expected_bytes: expected,
        expected_payload_bytes: expected.saturating_sub(64 * 16),
        expected_protocol_bytes: expected.min(64 * 16),
        observed_bytes: observed,
        calls: observed.map(|_| 64),
        source,
        how: how.to_string(),
        counted_on: Vec::new(),
    }
}

fn ledger(mode: Mode) -> ModeLedger {
    let n = 64 * (65536 + 16);
    let zc = mode == Mode::ZeroCopy;
    let mut sites = BTreeMap::new();
    let user = if mode == Mode::TwoCopy { n } else { 0 };
    sites.insert(
        "user_copy".to_string(),
        site(user, Some(user), FigureSource::Observed, "sender memcpy"),
    );
    let send = if zc { 40 } else { n + 40 };
    sites.insert(
        "kernel_send_copy".to_string(),
        site(
            send,
            Some(send),
            FigureSource::Inferred,
            "accepted minus attached",
        ),
    );
    let attach = if zc { n } else { 0 };
    sites.insert(
        "zerocopy_attach".to_string(),
        site(
            attach,
            Some(attach),
            FigureSource::Inferred,
            "MSG_ZEROCOPY sends",
        ),
    );
    sites.insert(
        "deferred_copy".to_string(),
        site(
            0,
            Some(if zc { n } else { 0 }),
            FigureSource::Reported,
            "skb_copy_ubufs not probe-able here; completions flagged copied",
        ),
    );
    sites.insert(
        "zerocopy_completions".to_string(),
        site(attach, Some(attach), FigureSource::Reported, "error queue"),
    );
    sites.insert(
        "kernel_recv_copy".to_string(),
        site(n + 40, Some(n + 40), FigureSource::Observed, "tracepoint"),
    );
    ModeLedger {
        mode,
        receiver: ReceiverStats::default(),
        verdict: if zc {
            Verdict::Degraded
        } else {
            Verdict::Match
        },
        workload: Workload {
            messages: 64,
            message_size: 65536,
            requests: 1,
        },
        sites,
        findings: if zc {
            vec![format!(
                "zero-copy did NOT avoid the copy: the kernel copied {n} bytes after the send \
                 (reported: ...), and flagged 64 of 64 completed sends SO_EE_CODE_ZEROCOPY_COPIED"
            )]
        } else {
            Vec::new()
        },
        completions: None,
        causes: if zc {
            vec![observed_local_delivery()]
        } else {
            Vec::new()
        },
    }
}

/// A cause as the 6.1 guest observes it: its deferred copies' callers.
fn observed_local_delivery() -> Explanation {
    Explanation {
        cause: CopyCause::LocalDelivery {
            device: "lo".into(),
            how: "observed: 64 deferred copies at skb_copy_ubufs".into(),
        },
        source: CauseSource::Observed,
        callers: vec![CallerChain {
            callers: vec![
                "__netif_receive_skb_core.constprop.0+0xba2".into(),
                "__netif_receive_skb_one_core+0x3c".into(),
                "process_backlog+0x81".into(),
            ],
            copies: 64,
            bytes: 64 * (65536 + 16),
        }],
    }
}

fn synthetic() -> Results {
    synthetic_of(&FIXTURE_MODES)
}

fn synthetic_of(modes: &[Mode]) -> Results {
    let mut cells = Vec::new();
    for &mode in modes {
        for size in SIZES {
            for threads in THREADS {
                for repeat in 0..REPEATS {
                    cells.push(cell(mode, size, threads, repeat));
                }
            }
        }
    }
    Results {
        schema_version: SCHEMA_VERSION,
        tool: "netcopy 0.1.0".to_string(),
        started_at_unix: 1_764_000_000,
        finished_at_unix: Some(1_764_000_600),
        complete: true,
        interrupted: false,
        machine: Machine {
            hostname: "testhost".to_string(),
            kernel: "6.18.0-test".to_string(),
            cpus: 2,
            cpu_model: "Test CPU @ 2.0GHz".to_string(),
            memory_bytes: 24 << 30,
            perf_hw_available: false,
            perf_hw_reason: NO_PMU.to_string(),
        },
        topology: TopologyRecord::default(),
        config: RunConfig {
            modes: modes.to_vec(),
            sizes: SIZES.to_vec(),
            threads: THREADS.to_vec(),
            repeat: REPEATS,
            stream_seconds: 2.0,
            rr_seconds: 1.0,
            quick: false,
            pin: PinRequest::Auto,
            interleaved: true,
            recv: vec![ReceiveMechanism::Copy],
        },
        plan: PlanRecord {
            events: vec![
                PlanEventRecord {
                    event: "send_path".to_string(),
                    strategy: Some("tracepoint tcp/tcp_sendmsg_locked".to_string()),
                    sources: [
                        ("kernel_send_copy".to_string(), "inferred".to_string()),
                        ("zerocopy_attach".to_string(), "inferred".to_string()),
                    ]
                    .into_iter()
                    .collect(),
                    rejected: vec![(
                        "fentry tcp_sendmsg_locked".to_string(),
                        "no fentry on this kernel".to_string(),
                    )],
                },
                PlanEventRecord {
                    event: "deferred_copy".to_string(),
                    strategy: None,
                    sources: BTreeMap::new(),
                    rejected: vec![(
                        "kprobe skb_copy_ubufs".to_string(),
                        "kprobes are not enabled in this kernel".to_string(),
                    )],
                },
            ],
        },
        verification: modes.iter().map(|m| ledger(*m)).collect(),
        machine_floor: Some(floor()),
        cells,
        groups: Vec::new(),
    }
}

/// The machine floor: 5 us on one CPU, 16.5 us across two, 8 us unpinned (p50).
fn floor() -> MachineFloor {
    let figures = |placement, cpus: Vec<usize>, p50: f64| FloorFigures {
        placement,
        cpus,
        round_trips: vec![1000; 3],
        round_trip_p50_us: FigureSummary::of(&[p50 * 0.97, p50, p50 * 1.03]).unwrap(),
        round_trip_p99_us: FigureSummary::of(&[p50 * 3.0, p50 * 3.1, p50 * 3.2]).unwrap(),
    };
    MachineFloor {
        message_bytes: 1,
        seconds: 0.2,
        placements: vec![
            figures(FloorPlacement::OneCpu, vec![0], 5.0),
            figures(FloorPlacement::TwoCpus, vec![0, 1], 16.5),
            figures(FloorPlacement::Unpinned, vec![], 8.0),
        ],
        not_measured: Vec::new(),
    }
}

fn netcopy(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(args)
        .output()
        .expect("running netcopy")
}

fn report(dir: &Path) -> Output {
    netcopy(&["report".as_ref(), dir.as_os_str()])
}

fn write_results(dir: &Path, results: &Results) {
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(results).unwrap(),
    )
    .unwrap();
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "netcopy report failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CSV parser for the quoting results.csv uses (RFC 4180 subset).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV does not end with a newline"
    );
    rows
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The crossover rule, written again independently of analysis.rs.
fn expected_crossover(
    r: &Results,
    challenger: Mode,
    baseline: Mode,
    metric: &str,
    threads: usize,
) -> String {
    let med = |mode: Mode, size: u64| -> Option<f64> {
        let mut v: Vec<f64> = r
            .cells
            .iter()
            .filter(|c| c.mode == mode && c.size == size && c.threads == threads)
            .filter_map(|c| match metric {
                "throughput" => Some(c.stream.throughput_gbps),
                _ => c.cpu.total_ns_per_byte,
            })
            .collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    let sizes: BTreeSet<u64> = r.cells.iter().map(|c| c.size).collect();
    let mut ahead = Vec::new();
    for s in sizes {
        if let (Some(a), Some(b)) = (med(challenger, s), med(baseline, s)) {
            ahead.push((s, if metric == "throughput" { a > b } else { a < b }));
        }
    }
    let mut at = None;
    for (s, lead) in ahead.iter().rev() {
        if *lead {
            at = Some(*s);
        } else {
            break;
        }
    }
    match (ahead.is_empty(), at) {
        (true, _) => "no data".to_string(),
        (false, Some(s)) => s.to_string(),
        (false, None) => "never".to_string(),
    }
}

/// Whether the crossover `point` (bytes, `never` or `no data`) is decided, by the rule
/// written again independently of the analysis: with 3 repeats a side, the repeats'
/// ranges must be clear of each other at the crossover, every larger size and the size
/// below it (for never: at the largest size).
fn expected_decided(
    r: &Results,
    challenger: Mode,
    baseline: Mode,
    metric: &str,
    threads: usize,
    point: &str,
) -> bool {
    let range = |mode: Mode, size: u64| -> Option<(f64, f64, usize)> {
        let v: Vec<f64> = r
            .cells
            .iter()
            .filter(|c| c.mode == mode && c.size == size && c.threads == threads)
            .filter_map(|c| match metric {
                "throughput" => Some(c.stream.throughput_gbps),
                _ => c.cpu.total_ns_per_byte,
            })
            .collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((lo, hi, v.len()))
    };
    // +1: the challenger is decidedly better, -1: decidedly worse, 0: undecided.
    let verdict = |size: u64| -> i32 {
        let (Some(a), Some(b)) = (range(challenger, size), range(baseline, size)) else {
            return 0;
        };
        if a.2 < 3 || b.2 < 3 {
            return 0;
        }
        let higher = if a.0 > b.1 {
            1
        } else if a.1 < b.0 {
            -1
        } else {
            0
        };
        if metric == "throughput" {
            higher
        } else {
            -higher
        }
    };
    let sizes: Vec<u64> = r
        .cells
        .iter()
        .map(|c| c.size)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    match point {
        "no data" => false,
        "never" => sizes.last().is_some_and(|s| verdict(*s) == -1),
        bytes => {
            let at: u64 = bytes.parse().unwrap();
            let from = sizes.iter().position(|s| *s == at).unwrap();
            sizes[from..].iter().all(|s| verdict(*s) == 1)
                && (from == 0 || verdict(sizes[from - 1]) == -1)
        }
    }
}

/// The rows of the first Markdown table after `heading`, split into trimmed cells.
fn table_after(md: &str, heading: &str) -> Vec<Vec<String>> {
    let start = md
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in report"));
    md[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn svg_doc(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
    text
}

fn polylines_with_stroke(doc: &roxmltree::Document, color: &str) -> usize {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| {
            n.attribute("stroke")
                .is_some_and(|s| s.eq_ignore_ascii_case(color))
        })
        .count()
}

fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            n.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn report_rebuilds_csv_plots_and_markdown_from_results_json() {
    let results = synthetic();
    let dir = TempDir::new("full");
    write_results(&dir.0, &results);
    let out = report(&dir.0);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for f in [
        "results.csv",
        "report.md",
        "report.html",
        "throughput_vs_size.svg",
        "latency_vs_threads.svg",
        "cpu_per_byte_vs_size.svg",
        "cache_misses_vs_size.svg",
        "copies_per_message.svg",
        "receive_cost_vs_size.svg",
    ] {
        assert!(dir.0.join(f).is_file(), "{f} missing");
        assert!(stdout.contains(f), "{f} not listed in {stdout}");
    }

    // results.csv: one row per cell, every key present once.
    let csv = parse_csv(&std::fs::read_to_string(dir.0.join("results.csv")).unwrap());
    let header = &csv[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(csv.len() - 1, results.cells.len());
    assert!(csv.iter().all(|r| r.len() == header.len()));
    let keys: BTreeSet<(String, u64, usize, u32)> = csv[1..]
        .iter()
        .map(|r| {
            (
                r[col("mode")].clone(),
                r[col("size")].parse().unwrap(),
                r[col("threads")].parse().unwrap(),
                r[col("repeat")].parse().unwrap(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, u64, usize, u32)> = results
        .cells
        .iter()
        .map(|c| (c.mode.name().to_string(), c.size, c.threads, c.repeat))
        .collect();
    assert_eq!(keys, expected);
    for r in &csv[1..] {
        // Unavailable hardware figures are empty, never 0.
        assert_eq!(r[col("cycles_per_byte")], "");
        assert_eq!(r[col("server_cycles")], "");
        assert_eq!(r[col("client_cache_misses")], "");
        assert!(!r[col("server_task_clock_ns")].is_empty());
        assert!(r[col("throughput_gbps")].parse::<f64>().unwrap() > 0.0);
        assert!(r[col("latency_p99_us")].parse::<f64>().unwrap() > 0.0);
        assert!(!r[col("kernel_recv_copy_bytes_per_message")].is_empty());
        assert!(!r[col("total_ns_per_byte")].is_empty());
    }

    // Plots: XML, one series per mode with its legend label.
    for (name, per_mode, labels) in [
        ("throughput_vs_size.svg", 1, vec![""]),
        ("cpu_per_byte_vs_size.svg", 1, vec![""]),
        ("latency_vs_threads.svg", 2, vec![" p50", " p99"]),
    ] {
        let text = svg_doc(&dir.0, name);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let t = texts(&doc);
        for mode in FIXTURE_MODES {
            // One polyline for the series and one for its legend entry.
            assert_eq!(
                polylines_with_stroke(&doc, &mode_color_hex(mode)),
                2 * per_mode,
                "{name}: series of {mode}"
            );
            for l in &labels {
                let label = format!("{}{l}", mode.name());
                assert!(t.contains(&label), "{name}: no legend {label:?} in {t:?}");
            }
        }
    }
    let cache = svg_doc(&dir.0, "cache_misses_vs_size.svg");
    let doc = roxmltree::Document::parse(&cache).unwrap();
    let t = texts(&doc).join(" ");
    assert!(t.contains("unavailable"), "{t}");
    assert!(t.contains("no PMU"), "the reason is missing: {t}");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count(),
        0
    );
    let bars = svg_doc(&dir.0, "copies_per_message.svg");
    let doc = roxmltree::Document::parse(&bars).unwrap();
    let t = texts(&doc);
    for l in [
        "two-copy",
        "one-copy",
        "zero-copy",
        "deferred_copy",
        "kernel_recv_copy",
    ] {
        assert!(t.iter().any(|x| x == l), "copies plot lacks {l:?}: {t:?}");
    }

    // report.md: the zero-copy finding at the top, the crossover table as recomputed.
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    let top = md
        .find("did NOT avoid the copy")
        .expect("zero-copy finding");
    assert!(top < md.find("## Machine and kernel").unwrap());
    let zc_sends: u64 = results
        .cells
        .iter()
        .filter(|c| c.mode == Mode::ZeroCopy)
        .map(|c| c.zerocopy.completed_sends)
        .sum();
    assert!(
        md.contains(&format!("{zc_sends} of {zc_sends} completions")),
        "{md}"
    );
    assert!(md.contains("6.18.0-test"));
    // The cause beside the verdict, with its caller chain, read back from results.json.
    assert!(
        md.contains("### zero-copy: degraded: cause local_delivery (observed)\n"),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| 64 | {} | __netif_receive_skb_core.constprop.0+0xba2 <- \
             __netif_receive_skb_one_core+0x3c <- process_backlog+0x81 |",
            64 * (65536 + 16)
        )),
        "{md}"
    );
    assert!(
        md.contains("**not observable**"),
        "plan's unobservable event"
    );
    assert!(md.contains("kprobes are not enabled in this kernel"));
    assert!(!md.contains("interrupted"));
    let table = table_after(&md, "## Crossovers");
    let head = &table[0];
    let idx = |name: &str| head.iter().position(|h| h == name).unwrap();
    let mut seen = 0;
    for row in &table[2..] {
        let challenger = Mode::ALL
            .into_iter()
            .find(|m| m.name() == row[idx("challenger")])
            .unwrap();
        let baseline = Mode::ALL
            .into_iter()
            .find(|m| m.name() == row[idx("baseline")])
            .unwrap();
        let metric = &row[idx("metric")];
        let threads: usize = row[idx("threads")].parse().unwrap();
        assert_eq!(threads, 1);
        let point = expected_crossover(&results, challenger, baseline, metric, threads);
        assert_eq!(row[idx("crossover (bytes)")], point, "{row:?}");
        let decided = expected_decided(&results, challenger, baseline, metric, threads, &point);
        assert_eq!(
            row[idx("decided")],
            if decided { "decided" } else { "undecided" },
            "{row:?}"
        );
        seen += 1;
    }
    // The synthetic data hold both kinds: zero-copy overtakes two-copy clearly; one-copy's
    // dip at 1M leaves it within 2 % of two-copy there, inside the repeats' spread.
    assert!(expected_decided(
        &results,
        Mode::ZeroCopy,
        Mode::TwoCopy,
        "throughput",
        1,
        "262144"
    ));
    assert!(!expected_decided(
        &results,
        Mode::OneCopy,
        Mode::TwoCopy,
        "throughput",
        1,
        "never"
    ));
    assert!(
        md.contains("zero-copy over two-copy in throughput (1 thread(s)): decided: from 256K on"),
        "{md}"
    );
    assert!(
        md.contains("one-copy over two-copy in throughput (1 thread(s)): undecided"),
        "{md}"
    );
    // Every figure with its interval: 3 repeats give the range, 75 % coverage.
    assert!(md.contains("75 % for 3 repeats"), "{md}");
    // The machine's floor, and the 1-thread latency read against it.
    let floor = table_after(&md, "## The machine's floor");
    assert_eq!(
        floor.len(),
        2 + 3,
        "header, rule, three placements: {floor:?}"
    );
    assert!(floor[3][0].contains("two CPUs (as the cells)"), "{floor:?}");
    assert!(floor[3][3].starts_with("16.5 ["), "{floor:?}");
    assert!(
        md.contains("is at most 2 times the floor with the cells' placement (two CPUs"),
        "{md}"
    );
    assert!(md.contains("server on CPU 0, client on CPU 1, in every cell"));
    // The study side by side: its published figures, each beside this run's.
    let study = table_after(&md, "## The study side by side");
    let study_says: Vec<&str> = study[2..].iter().map(|r| r[1].as_str()).collect();
    for said in [
        "about 7 cycles/byte",
        "about 0.37 cycles/byte",
        "from about 4-8 KB on",
        "from about 64 KB on",
    ] {
        assert!(study_says.contains(&said), "{said:?} missing: {study:?}");
    }
    let cycles_row = study[2..]
        .iter()
        .find(|r| r[1] == "about 7 cycles/byte")
        .unwrap();
    assert!(
        cycles_row[2].starts_with("cycles unavailable"),
        "{cycles_row:?}"
    );
    assert!(cycles_row[3].contains("no PMU"), "{cycles_row:?}");
    assert_eq!(seen, 6, "3 pairs x 2 metrics");
    // The synthetic data was built with known answers.
    assert_eq!(
        expected_crossover(&results, Mode::OneCopy, Mode::TwoCopy, "throughput", 1),
        "never",
        "one-copy dips at 1M"
    );
    assert_eq!(
        expected_crossover(&results, Mode::ZeroCopy, Mode::TwoCopy, "throughput", 1),
        "262144"
    );
    assert!(
        md.contains("fell from"),
        "non-monotonic one-copy at 1M flagged"
    );
    assert!(md.contains("r = "), "correlation");
    assert!(md.contains("(n = 108)"), "correlation over every cell");
}

/// A run of every mode of the table: each is drawn in every plot with the table's colour
/// and name, listed in the report, and compared with the baselines the table names.
#[test]
fn every_mode_of_the_table_is_drawn_and_reported() {
    let dir = TempDir::new("every-mode");
    let results = synthetic_of(&Mode::ALL);
    write_results(&dir.0, &results);
    ok(&report(&dir.0));
    for name in ["throughput_vs_size.svg", "cpu_per_byte_vs_size.svg"] {
        let text = svg_doc(&dir.0, name);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let t = texts(&doc);
        for mode in Mode::ALL {
            assert_eq!(
                polylines_with_stroke(&doc, &mode_color_hex(mode)),
                2,
                "{name}: series of {mode}"
            );
            assert!(t.contains(&mode.name().to_string()), "{name}: {mode}");
        }
    }
    let bars = svg_doc(&dir.0, "copies_per_message.svg");
    let t = texts(&roxmltree::Document::parse(&bars).unwrap());
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    for mode in Mode::ALL {
        assert!(
            t.iter().any(|x| x == mode.name()),
            "copies plot lacks {mode}"
        );
        assert!(md.contains(mode.name()), "report.md never names {mode}");
    }
    let pairs: usize = Mode::ALL.iter().map(|m| m.spec().challenges.len()).sum();
    let table = table_after(&md, "## Crossovers");
    assert_eq!(
        table.len() - 2,
        2 * pairs,
        "every pair of the table, 2 metrics"
    );
}

#[test]
fn interrupted_run_still_reports() {
    let mut results = synthetic();
    results.complete = false;
    results.interrupted = true;
    results.finished_at_unix = None;
    results.cells.truncate(7);
    let dir = TempDir::new("interrupted");
    write_results(&dir.0, &results);
    let out = report(&dir.0);
    ok(&out);
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(md.contains("The run was interrupted"), "{md}");
    assert!(md.contains("7 measured of 108 planned"), "{md}");
    let csv = parse_csv(&std::fs::read_to_string(dir.0.join("results.csv")).unwrap());
    assert_eq!(csv.len() - 1, 7);
    for f in [
        "throughput_vs_size.svg",
        "latency_vs_threads.svg",
        "cpu_per_byte_vs_size.svg",
        "cache_misses_vs_size.svg",
        "copies_per_message.svg",
    ] {
        svg_doc(&dir.0, f);
    }
}

/// Timed cells whose client closed with sends still queued: the completions of sends
/// that never left the socket are counted apart in the finding and the answer.
#[test]
fn completions_of_sends_that_never_left_the_socket_are_counted_apart() {
    let mut results = synthetic();
    for c in results
        .cells
        .iter_mut()
        .filter(|c| c.mode == Mode::ZeroCopy)
    {
        // Of the cell's completions, 3 were of sends freed unsent: 1 in a range flagged
        // with sent ones, 2 not flagged. Every send that left was flagged.
        c.zerocopy.unsent_sends = 3;
        c.zerocopy.unsent_copied_sends = 1;
        c.zerocopy.copied_sends = c.zerocopy.completed_sends - 2;
    }
    let zc: Vec<_> = results
        .cells
        .iter()
        .filter(|c| c.mode == Mode::ZeroCopy)
        .map(|c| c.zerocopy.clone())
        .collect();
    let completed: u64 = zc.iter().map(|z| z.completed_sends).sum();
    let copied: u64 = zc.iter().map(|z| z.copied_sends).sum();
    let unsent = 3 * zc.len() as u64;
    let sent = completed - unsent;
    let dir = TempDir::new("unsent");
    write_results(&dir.0, &results);
    ok(&report(&dir.0));
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(
        md.contains(&format!(
            "{copied} of {completed} completions (completed MSG_ZEROCOPY sends"
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "{unsent} of the completions were of sends that never left the socket (the kernel \
             freed them unsent when the client stopped reading and closed, so they say \
             nothing of the path): {sent} of the {sent} sends that left were flagged"
        )),
        "{md}"
    );
    assert!(
        md.contains("groups every completion of a send that left the socket was flagged"),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "{sent} of the {sent} completions of sends that left the socket ({unsent} more \
             were of sends the kernel freed unsent when the client stopped reading and \
             closed, {} of those in ranges flagged with sent ones)",
            zc.len()
        )),
        "{md}"
    );
}

/// results.csv says where each cell ran and which host counted each copy figure.
#[test]
fn csv_names_each_cells_topology_and_the_host_that_counted() {
    let mut results = synthetic();
    let here = results.machine.hostname.clone();
    results.cells[0].topology = TopologyKind::Remote;
    results.cells[0]
        .copies
        .get_mut("kernel_send_copy")
        .unwrap()
        .counted_on = vec!["agent-host".to_string()];
    results.cells[0]
        .copies
        .get_mut("kernel_recv_copy")
        .unwrap()
        .counted_on = vec!["agent-host".to_string(), here.clone()];
    results.cells[1].topology = TopologyKind::Netns;
    let dir = TempDir::new("csv-topology");
    write_results(&dir.0, &results);
    ok(&report(&dir.0));
    let csv = parse_csv(&std::fs::read_to_string(dir.0.join("results.csv")).unwrap());
    let col = |name: &str| csv[0].iter().position(|h| h == name).expect(name);
    let (topology, send, recv) = (
        col("topology"),
        col("kernel_send_copy_counted_on"),
        col("kernel_recv_copy_counted_on"),
    );
    assert_eq!(csv[1][topology], "remote");
    assert_eq!(csv[1][send], "agent-host");
    assert_eq!(csv[1][recv], format!("agent-host+{here}"));
    assert_eq!(csv[2][topology], "netns");
    // A figure that names no host was counted on the run's own.
    assert_eq!(csv[2][send], here);
    assert!(csv[3..].iter().all(|row| row[topology] == "loopback"));
}

/// A run that swept both receive mechanisms: its report sets them side by side, per mode
/// and size, with what the kernel copied and mapped and what each cost, decided or not;
/// the modes' own tables keep to the copy cells.
#[test]
fn both_receive_mechanisms_are_reported_side_by_side() {
    use netcopy::workload::client::ZeroCopyReceiveFigures;
    let mut results = synthetic_of(&[Mode::OneCopy, Mode::ZeroCopy]);
    results.config.recv = vec![ReceiveMechanism::Copy, ReceiveMechanism::ZeroCopy];
    let copies: Vec<Cell> = results.cells.clone();
    for c in copies {
        let mut z = c.clone();
        z.recv = ReceiveMechanism::ZeroCopy;
        let payload = z.stream.payload_bytes;
        // Behind zero-copy 3/4 of the bytes mapped, behind one-copy none; the client's CPU
        // time halves where pages were mapped.
        let mapped = if z.mode == Mode::ZeroCopy {
            payload / 4 * 3
        } else {
            0
        };
        z.zerocopy_receive = Some(ZeroCopyReceiveFigures {
            mapped_bytes: mapped,
            copybuf_bytes: payload - mapped,
            ..Default::default()
        });
        let recv = z.copies.get_mut("kernel_recv_copy").unwrap();
        recv.bytes = Some(payload - mapped);
        if mapped > 0 {
            z.cpu.client_cpu_ns = z.cpu.client_cpu_ns.map(|ns| ns / 2);
        }
        results.cells.push(z);
    }
    let dir = TempDir::new("recv");
    write_results(&dir.0, &results);
    ok(&report(&dir.0));
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    let section = md
        .split("## Receive mechanisms: what the kernel copied and what it cost")
        .nth(1)
        .unwrap_or_else(|| panic!("no receive section: {md}"));
    let section = section.split("\n## ").next().unwrap();
    assert!(
        section.contains("| zero-copy | 65536 (64K) | zerocopy (n=3) | 0.250"),
        "{section}"
    );
    assert!(
        section.contains("| zero-copy | 65536 (64K) | copy (n=3) |"),
        "{section}"
    );
    assert!(section.contains("lower (decided)"), "{section}");
    assert!(
        section.contains("Behind one-copy, zero-copy receive mapped 0.0-0.0 %"),
        "{section}"
    );
    assert!(section.contains("compound pages"), "{section}");
    assert!(md.contains("zero-copy receive behind zero-copy: the kernel mapped 75.0-75.0 %"));
    let svg = svg_doc(&dir.0, "receive_cost_vs_size.svg");
    assert!(svg.contains("zero-copy / recv zerocopy"), "{svg}");
    assert!(svg.contains("one-copy / recv copy"), "{svg}");
    let csv = parse_csv(&std::fs::read_to_string(dir.0.join("results.csv")).unwrap());
    let recv_col = csv[0].iter().position(|h| h == "recv").unwrap();
    let zerocopy_rows = csv[1..]
        .iter()
        .filter(|row| row[recv_col] == "zerocopy")
        .count();
    assert_eq!(zerocopy_rows, csv.len() / 2);
    // The modes' throughput table holds the copy cells only: 3 repeats, not 6.
    assert!(!md.contains("(n=6)"));
}

#[test]
fn no_cells_still_reports() {
    let mut results = synthetic();
    results.complete = false;
    results.interrupted = true;
    results.cells.clear();
    let dir = TempDir::new("empty");
    write_results(&dir.0, &results);
    ok(&report(&dir.0));
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    assert!(md.contains("interrupted"));
}

fn fails_with(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded; stderr: {stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_inputs_fail_clearly() {
    let missing = std::env::temp_dir().join("netcopy-report-test-does-not-exist");
    fails_with(report(&missing), "does not exist");

    let empty = TempDir::new("no-json");
    fails_with(report(&empty.0), "has no results.json");

    let garbage = TempDir::new("garbage");
    std::fs::write(
        garbage.0.join("results.json"),
        "{\"schema_version\": 1, oops",
    )
    .unwrap();
    fails_with(report(&garbage.0), "not JSON");

    let future = TempDir::new("future");
    let mut v = serde_json::to_value(synthetic()).unwrap();
    v["schema_version"] = 999.into();
    std::fs::write(future.0.join("results.json"), v.to_string()).unwrap();
    fails_with(report(&future.0), "unsupported schema_version 999");

    let wrong = TempDir::new("wrong-shape");
    std::fs::write(
        wrong.0.join("results.json"),
        format!("{{\"schema_version\": {SCHEMA_VERSION}, \"cells\": 3}}"),
    )
    .unwrap();
    fails_with(
        report(&wrong.0),
        "does not match the netcopy results schema",
    );
}

/// `netcopy report DIR` with its address space capped and a deadline, so that a report
/// that reads without bound fails (or is killed) instead of taking the machine with it.
fn report_bounded(dir: &Path) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_netcopy"));
    command
        .arg("report")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("running netcopy report");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn results_json_must_be_a_regular_file_of_bounded_size() {
    // A symlink to /dev/zero: endless bytes, never a results document.
    let zero = TempDir::new("dev-zero");
    std::os::unix::fs::symlink("/dev/zero", zero.0.join("results.json")).unwrap();
    fails_with(report_bounded(&zero.0), "not a regular file");

    // A FIFO: opening it would block until a writer comes.
    let fifo = TempDir::new("fifo");
    let path = std::ffi::CString::new(
        fifo.0
            .join("results.json")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    fails_with(report_bounded(&fifo.0), "not a regular file");

    // A regular file larger than any results.json netcopy writes (sparse: no disk used).
    let huge = TempDir::new("huge");
    let file = std::fs::File::create(huge.0.join("results.json")).unwrap();
    file.set_len(8 << 30).unwrap();
    fails_with(report_bounded(&huge.0), "larger than");

    // A symlink to a real results.json is fine.
    let real = TempDir::new("real");
    write_results(&real.0, &synthetic());
    let linked = TempDir::new("linked");
    std::os::unix::fs::symlink(real.0.join("results.json"), linked.0.join("results.json")).unwrap();
    ok(&report_bounded(&linked.0));
}

/// Headless Chromium when installed (Debian's `chromium`; `cargo xtask setup` installs it).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium with a fresh profile on `page`, plus `args`; bounded in time.
/// Its output goes to files, not pipes: a DOM dump larger than a pipe's buffer would
/// block it while we wait.
fn run_chromium(browser: &Path, page: &Path, args: &[String]) -> (String, String) {
    let profile = TempDir::new("chromium-profile");
    let outputs = TempDir::new("chromium-output");
    let (stdout, stderr) = (outputs.0.join("stdout"), outputs.0.join("stderr"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("starting chromium");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 2 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    assert!(status.success(), "chromium failed: {}", read(&stderr));
    (read(&stdout), read(&stderr))
}

/// Added to a copy of report.html (never to the report itself): once the page has
/// loaded, writes for each image `alt:complete:width:height:non-white pixels`, and the
/// page's height, into attributes of the body, which --dump-dom then shows.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const out = [];
  for (const img of document.images) {
    let ink = 0;
    if (img.complete && img.naturalWidth > 0) {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      for (let k = 0; k < d.length; k += 4) {
        if (d[k + 3] > 0 && (d[k] < 240 || d[k + 1] < 240 || d[k + 2] < 240)) ink++;
      }
    }
    out.push([img.alt, img.complete, img.naturalWidth, img.naturalHeight, ink].join(':'));
  }
  document.body.setAttribute('data-check', out.join(';'));
  document.body.setAttribute('data-height', document.documentElement.scrollHeight);
});
</script>"#;

#[test]
fn report_html_renders_every_plot_in_chromium() {
    let test = "report_html_renders_every_plot_in_chromium";
    let Some(browser) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: chromium is not installed (`cargo xtask setup` installs it)");
        }
        eprintln!("skipped: chromium is not installed: {test}");
        return;
    };
    let dir = TempDir::new("html");
    write_results(&dir.0, &synthetic());
    ok(&report(&dir.0));
    let html = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    // Self-contained: every plot inline, nothing to fetch.
    let plots = 5;
    assert_eq!(
        html.matches("<img src=\"data:image/svg+xml;base64,")
            .count(),
        plots
    );
    for outside in ["src=\"http", "href=\"http", "src=\"file:", ".svg\""] {
        assert!(!html.contains(outside), "report.html refers to {outside:?}");
    }
    for section in [
        "Crossovers",
        "The study side by side",
        "Findings",
        "Verification",
    ] {
        assert!(html.contains(section), "report.html lacks {section:?}");
    }

    // Every image decoded, at its natural size, with something drawn in it.
    let probe_page = dir.0.join("probe.html");
    std::fs::write(
        &probe_page,
        html.replace("</body>", &format!("{PROBE}</body>")),
    )
    .unwrap();
    let dom = run_chromium(
        &browser,
        &probe_page,
        &[
            "--virtual-time-budget=10000".to_string(),
            "--dump-dom".to_string(),
        ],
    );
    let dom = dom.0;
    let attribute = |name: &str| -> String {
        let start = dom
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("the probe did not run: no {name} in {dom}"))
            + name.len()
            + 2;
        dom[start..start + dom[start..].find('"').unwrap()].to_string()
    };
    let images: Vec<Vec<String>> = attribute("data-check")
        .split(';')
        .map(|i| i.split(':').map(str::to_string).collect())
        .collect();
    assert_eq!(images.len(), plots, "{images:?}");
    for image in &images {
        let number = |i: usize| image[i].parse::<u64>().unwrap();
        assert_eq!(image[1], "true", "not loaded: {image:?}");
        assert!(
            number(2) >= 600 && number(3) >= 300,
            "broken or tiny: {image:?}"
        );
        assert!(number(4) > 500, "nothing drawn: {image:?}");
    }

    // A screenshot of the whole page shows every mode's series in its colour.
    let height: u32 = attribute("data-height").parse().unwrap();
    let shot = dir.0.join("report.png");
    run_chromium(
        &browser,
        &dir.0.join("report.html"),
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size=1280,{}", height.clamp(800, 40000)),
            "--hide-scrollbars".to_string(),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("chromium wrote no screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = &pixels[..info.buffer_size()];
    for mode in FIXTURE_MODES {
        let (r, g, b) = mode.spec().colour;
        let near =
            |p: &[u8]| p[0].abs_diff(r) <= 8 && p[1].abs_diff(g) <= 8 && p[2].abs_diff(b) <= 8;
        let count = pixels.chunks(channels).filter(|p| near(p)).count();
        assert!(
            count > 200,
            "{mode}: {count} pixels of its colour in the screenshot"
        );
    }
}

#[test]
fn odd_shapes_never_panic_and_stay_well_formed() {
    let base = synthetic();
    let mut cases: Vec<(&str, Results)> = Vec::new();
    // One cell, one mode, a size that is not a power of two, no latency samples.
    let mut one = base.clone();
    let mut c = cell(Mode::OneCopy, 1000, 3, 0);
    c.latency.transactions = 0;
    c.latency.latency_us = LatencySummary::default();
    one.cells = vec![c];
    cases.push(("one-cell", one));
    // Zero throughput (a cell that delivered nothing), missing CPU and copy figures.
    let mut zero = base.clone();
    for c in &mut zero.cells {
        if c.size == 1024 {
            c.stream.throughput_gbps = 0.0;
            c.cpu = CpuFigures::default();
            c.copies.clear();
            c.copies_per_byte = None;
            c.server_counters = None;
        }
    }
    cases.push(("zeros", zero));
    // No verification, no plan, hardware counters available in some cells.
    let mut partial = base.clone();
    partial.verification.clear();
    partial.plan.events.clear();
    for (i, c) in partial.cells.iter_mut().enumerate() {
        if i % 2 == 0 {
            c.cpu.cycles_per_byte = Some(1.5);
            c.cpu.llc_misses_per_mib = Some(120.0 + i as f64);
            c.cpu.hw_unavailable_reason = None;
        }
    }
    // A site this kernel cannot observe.
    for c in &mut partial.cells {
        c.copies.insert(
            "kernel_send_copy".to_string(),
            copy(
                None,
                1,
                FigureSource::Unavailable,
                "no send-path probe on this kernel",
            ),
        );
    }
    cases.push(("partial-hw", partial));
    for (name, results) in cases {
        let dir = TempDir::new(name);
        let written = netcopy::experiment::output::write_outputs(&dir.0, &results)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(written.len(), 9, "{name}");
        for p in &written {
            if p.extension().is_some_and(|e| e == "svg") {
                let text = std::fs::read_to_string(p).unwrap();
                roxmltree::Document::parse(&text)
                    .unwrap_or_else(|e| panic!("{name}: {} is not XML: {e}", p.display()));
            }
        }
        let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
        assert!(!md.contains("NaN") && !md.contains("inf "), "{name}: {md}");
        if name == "partial-hw" {
            let cache = std::fs::read_to_string(dir.0.join("cache_misses_vs_size.svg")).unwrap();
            assert!(cache.contains("Unavailable in 54 of 108 cells"), "{cache}");
            assert!(md.contains("available in 54 of 108 cells"));
            let bars = std::fs::read_to_string(dir.0.join("copies_per_message.svg")).unwrap();
            assert!(bars.contains("not observable: kernel_send_copy"), "{bars}");
            let csv = std::fs::read_to_string(dir.0.join("results.csv")).unwrap();
            assert!(csv.lines().nth(1).unwrap().contains(",,,unavailable,"));
        }
    }
}
