//! The sweep behind `netcopy run` (whose command line is `cli::run`). It verifies every
//! mode's copies exactly, measures the machine's own round-trip floor, then for every
//! cell (mode x size x threads x repeat) starts a server where the topology puts it
//! (`experiment::ends`: this host, the sender's namespace, or a phase on the agent), pins
//! the processes of this host as placed, attaches the copy probes and perf counters,
//! measures a stream phase (throughput, copies, CPU) and a request/response phase
//! (latency), and appends the cell to `results.json`, which is rewritten atomically after
//! every cell (with every group's figures summarised) so that an interrupted or killed
//! run still leaves a valid file. The client always runs in this process and is counted
//! by this host's probes; the server is counted where it runs (by the agent on two hosts).
//! The machine floor is this host's loopback whatever the topology.
//!
//! Order: sizes, then thread counts, then repeats, then modes. The repeats of one
//! (size, threads) point go round-robin across its modes, the mode order rotating by one
//! each repeat, so that slow drift of the machine (another tenant, thermal state) falls
//! on every mode of a comparison alike instead of on whichever ran last.

use std::{
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use netcopy_common::CopySite;

use crate::{
    experiment::analysis::groups::group_summaries,
    experiment::ends::{Ends, Topology},
    experiment::floor::measure_floor,
    experiment::placement::Placement,
    experiment::results::{
        write_results, Cell, CopyFigure, CpuFigures, LatencyFigures, Machine, PlanRecord, Results,
        RunConfig, StreamFigures, ZeroCopyFigures, SCHEMA_VERSION,
    },
    experiment::verify,
    kernel::perf::{self, CounterKind, CounterReadings, CounterValue, ProcessCounters},
    kernel::{callers::CopyCallers, path::PathFacts, CopyProbes, LoadOptions},
    ledger::{
        self,
        causes::{explain, CopyEvidence, Explanation},
        ReceiverStats, Verdict, CLIENT_SLOT, SERVER_SLOT,
    },
    trace::{self, SyscallTracer},
    util::units::format_size,
    workload::client::{
        run_client, ClientConfig, ClientReport, Pattern, ReceiveMechanism, RunLimit,
    },
    workload::modes::{Mode, SenderStats},
    workload::server::stop_flag_on_signals,
};

/// Where the cells' syscall trace samples go, under the results directory.
pub(crate) const TRACES_DIR: &str = "traces";

/// Messages in each cell's syscall trace sample: enough to show every call pattern of the
/// mode, few enough that tracing never loses events and the sample stays small.
const TRACE_SAMPLE_MESSAGES: u64 = 16;
/// Ring buffer of the trace samples.
const TRACE_RING_BYTES: u32 = 8 << 20;
/// The trace samples record the server and the client.
const TRACED_SLOTS: [u32; 2] = [SERVER_SLOT, CLIENT_SLOT];

/// Messages per mode in the exact verification that opens every run.
const VERIFY_MESSAGES: u64 = 32;
const VERIFY_SIZE: u64 = 64 << 10;

/// Seconds of 1-byte ping-pong per floor placement and repeat.
const FLOOR_SECONDS: f64 = 0.2;

/// One cell to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CellPlan {
    mode: Mode,
    recv: ReceiveMechanism,
    size: u64,
    threads: usize,
    repeat: u32,
}

/// Every cell of `config` for `arms` (the (mode, receive mechanism) pairs this kernel
/// runs), in the order they are measured (see the module docs: the receive mechanisms
/// take their turns round-robin with the modes).
fn schedule(config: &RunConfig, arms: &[(Mode, ReceiveMechanism)]) -> Vec<CellPlan> {
    let mut cells = Vec::new();
    for &size in &config.sizes {
        for &threads in &config.threads {
            for repeat in 0..config.repeat {
                for k in 0..arms.len() {
                    let (mode, recv) = arms[(k + repeat as usize) % arms.len()];
                    cells.push(CellPlan {
                        mode,
                        recv,
                        size,
                        threads,
                        repeat,
                    });
                }
            }
        }
    }
    cells
}

/// The trace sample's directory name of a cell (copy receive keeps the older names).
fn cell_label(plan: &CellPlan) -> String {
    let recv = match plan.recv {
        ReceiveMechanism::Copy => String::new(),
        other => format!("-recv-{other}"),
    };
    format!(
        "{}{recv}-{}-t{}-r{}",
        plan.mode,
        format_size(plan.size),
        plan.threads,
        plan.repeat + 1
    )
}

/// Runs the sweep of `config` into `dir`, which exists: verification, the machine floor,
/// then every cell with its ends where `topology` puts them and the processes of this
/// host placed by `placement`, results.json rewritten after each. Returns the results,
/// `interrupted` when SIGINT or SIGTERM stopped it; on an error, results.json holds the
/// cells measured before it. With `trace_samples`, each cell also records a syscall trace
/// sample under `dir/traces` (of this host's processes: the client alone on two hosts).
/// `allowed` are the CPUs this process may use.
pub(crate) fn run_sweep(
    config: &RunConfig,
    topology: &Topology,
    placement: &Placement,
    allowed: &[usize],
    dir: &Path,
    trace_samples: bool,
) -> Result<Results> {
    let stop = stop_flag_on_signals().context("installing the SIGINT/SIGTERM handlers")?;

    let mut probes = CopyProbes::load_with(LoadOptions {
        trace_ring_bytes: trace_samples.then_some(TRACE_RING_BYTES),
        ..LoadOptions::default()
    })?;
    // Namespaces made for a sweep with zero-copy receive get its MTU, for every cell: the
    // mechanisms are compared on one path (the topology line says so).
    let recv_path = if config.recv.contains(&ReceiveMechanism::ZeroCopy) {
        ReceiveMechanism::ZeroCopy
    } else {
        ReceiveMechanism::Copy
    };
    let mut ends = Ends::set_up(topology, recv_path)?;
    // --pin places the processes of this host only: the agent's server runs where its
    // host's scheduler puts it.
    let placement = &match ends {
        Ends::Remote(_) => Placement {
            server_cpus: Vec::new(),
            client_cpus: placement.client_cpus.clone(),
        },
        _ => placement.clone(),
    };
    let hw = perf::capability_hw();
    let mut results = Results {
        schema_version: SCHEMA_VERSION,
        tool: format!("netcopy {}", env!("CARGO_PKG_VERSION")),
        started_at_unix: unix_now(),
        finished_at_unix: None,
        complete: false,
        interrupted: false,
        machine: machine(hw.available, &hw.reason),
        config: config.clone(),
        topology: ends.record(),
        plan: PlanRecord::from(probes.plan()),
        verification: Vec::new(),
        machine_floor: None,
        cells: Vec::new(),
        groups: Vec::new(),
    };
    eprintln!("netcopy run: writing to {}", dir.display());
    eprintln!("netcopy run: topology: {}", results.topology.text());
    eprintln!(
        "netcopy run: placement: {}{}",
        placement.describe(),
        match ends {
            Ends::Remote(_) => " (this host's client only: the agent's server is not pinned)",
            _ => "",
        }
    );
    eprintln!("{}", probes.plan().describe().trim_end());

    for &mode in &config.modes {
        for &recv in &config.recv {
            let ledger = verify::verify_mode(
                &mut probes,
                &mut ends,
                mode,
                recv,
                VERIFY_SIZE,
                VERIFY_MESSAGES,
            )
            .with_context(|| format!("verifying {mode} (receive {recv})"))?;
            match ledger.verdict {
                Verdict::Unsupported => eprintln!(
                    "verify {mode} (receive {recv}): {}; its cells are skipped",
                    ledger
                        .findings
                        .first()
                        .map_or("not supported", |f| f.as_str())
                ),
                verdict => eprintln!(
                    "verify {mode} (receive {recv}): {verdict:?}{}",
                    ledger
                        .causes
                        .iter()
                        .map(|c| format!("; cause: {}", c.text()))
                        .collect::<String>()
                ),
            }
            results.verification.push(ledger);
        }
    }
    write_results(dir, &results)?;

    // This host's own floor, over loopback: on another topology it still says what this
    // machine adds to a round trip, not what the path between the ends does.
    let floor = measure_floor(placement, allowed, config.repeat, FLOOR_SECONDS, &stop)
        .context("measuring the machine's round-trip floor")?;
    for f in &floor.placements {
        eprintln!(
            "floor {}: 1-byte round trip p50 {:.1} us",
            f.placement.label(),
            f.round_trip_p50_us.median
        );
    }
    results.machine_floor = Some(floor);
    write_results(dir, &results)?;

    // A mode this kernel cannot run has its verification say why, and no cells.
    let measured: Vec<(Mode, ReceiveMechanism)> = results
        .verification
        .iter()
        .filter(|l| l.verdict != Verdict::Unsupported)
        .map(|l| (l.mode, l.receiver.mechanism))
        .collect();
    let cells = schedule(config, &measured);
    // One tracer for the whole run, paused except during each cell's trace sample.
    let mut tracer = if !trace_samples {
        None
    } else {
        let mut tracer = SyscallTracer::start(&mut probes, &TRACED_SLOTS)?;
        tracer.pause()?;
        Some(tracer)
    };
    let bar = progress_bar(cells.len() as u64);
    for plan in cells {
        let CellPlan {
            mode,
            recv,
            size,
            threads,
            repeat,
        } = plan;
        if stop.load(Ordering::SeqCst) {
            results.interrupted = true;
            break;
        }
        bar.set_message(format!(
            "{mode} recv {recv} {} x{threads} #{}",
            format_size(size),
            repeat + 1
        ));
        let trace_dir = trace_samples.then(|| PathBuf::from(TRACES_DIR).join(cell_label(&plan)));
        let cell = measure_cell(&mut probes, &mut ends, config, placement, plan)
            .and_then(|mut cell| {
                if let (Some(rel), Some(tracer)) = (trace_dir, tracer.as_mut()) {
                    trace_sample(
                        &mut probes,
                        &mut ends,
                        tracer,
                        placement,
                        plan,
                        &dir.join(&rel),
                    )?;
                    cell.trace_sample = Some(rel.display().to_string());
                }
                Ok(cell)
            })
            .with_context(|| format!("cell {mode} recv {recv} {} x{threads}", format_size(size)));
        match cell {
            Ok(cell) => {
                progress_line(
                    &bar,
                    format!(
                    "{mode:<9} {recv:<8} {:>5} x{threads} #{}  {:>7.3} Gbit/s  p50 {:>8.1} us  copies/byte {}",
                    format_size(size),
                    repeat + 1,
                    cell.stream.throughput_gbps,
                    cell.latency.latency_us.p50,
                    cell.copies_per_byte
                        .map(|c| format!("{c:.2}"))
                        .unwrap_or_else(|| "n/a".into())
                ),
                );
                results.cells.push(cell);
                results.groups = group_summaries(&results);
                write_results(dir, &results)?;
            }
            // An interrupted cell is dropped; anything else is an error of the run.
            Err(_) if stop.load(Ordering::SeqCst) => {
                results.interrupted = true;
                break;
            }
            Err(e) => {
                bar.abandon();
                write_results(dir, &results)?;
                return Err(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(tracer) = tracer {
        tracer.stop(&mut probes)?;
    }
    ends.close()?;
    results.complete = !results.interrupted;
    results.finished_at_unix = Some(unix_now());
    write_results(dir, &results)?;
    Ok(results)
}

/// A line above the bar on a terminal; a plain line on stderr otherwise (CI logs), where
/// indicatif draws nothing at all.
fn progress_line(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/{len} cells  {msg}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Stream phase with copies and counters, then the latency phase, each with its own
/// server where `ends` puts it, the processes of this host placed by `placement` in both.
fn measure_cell(
    probes: &mut CopyProbes,
    ends: &mut Ends,
    config: &RunConfig,
    placement: &Placement,
    plan: CellPlan,
) -> Result<Cell> {
    let CellPlan {
        mode,
        recv,
        size,
        threads,
        repeat,
    } = plan;
    let own_pid = std::process::id();

    // Stream phase: throughput, copies, CPU. A local server is counted in the server slot
    // from here on, and its perf counters run until it stops.
    let phase = ends.start(probes, mode, size, false)?;
    let pinned = placement.apply(phase.local_pid())?;
    probes.watch_process(own_pid, CLIENT_SLOT, false)?;
    let mut client_counters = ProcessCounters::open(own_pid, true);
    let before = probes.read_counters()?;
    client_counters.enable();
    let mut client = ClientConfig::new(
        &phase.addr(),
        size,
        threads,
        RunLimit::Duration(Duration::from_secs_f64(config.stream_seconds)),
    );
    client.pattern = Pattern::Stream;
    client.recv = recv;
    let stream = ends.as_receiver(|| run_client(&client));
    drop(pinned);
    client_counters.disable();
    // On two hosts, ending the phase is control traffic of this process: no part of the cell.
    let after_client = probes.read_counters();
    let sender = ends.finish(probes, phase);
    let after = probes.read_counters();
    probes.unwatch_process(own_pid)?;
    let stream = stream?.map_err(|f| anyhow!("stream phase: {f}"))?;
    let sender = sender?;
    let delta = match &sender.side {
        Some(_) => after_client?.since(&before),
        None => after?.since(&before),
    };
    let client_readings = client_counters.read();
    let server_readings = sender.counters.clone();
    let sides = ends.sides(probes, &delta, sender.side.clone());

    // Latency phase: request/response, one message per transaction.
    let phase = ends.start(probes, mode, size, false)?;
    let pinned = placement.apply(phase.local_pid())?;
    let mut rr = ClientConfig::new(
        &phase.addr(),
        size,
        threads,
        RunLimit::Duration(Duration::from_secs_f64(config.rr_seconds)),
    );
    rr.pattern = Pattern::Rr;
    rr.recv = recv;
    let latency = ends.as_receiver(|| run_client(&rr));
    drop(pinned);
    ends.finish(probes, phase)?;
    let latency = latency?.map_err(|f| anyhow!("latency phase: {f}"))?;

    let remote_server = matches!(ends, Ends::Remote(_));
    let path = &sender.path;
    let callers = sender.copy_callers.as_ref();
    let sender = &sender.sender;
    let messages = stream.messages.max(1);
    let copies: std::collections::BTreeMap<String, CopyFigure> =
        ledger::observe_sites(mode, &sides, sender, &ReceiverStats::of(&stream))
            .into_iter()
            .map(|(site, o)| {
                (
                    site.name().to_string(),
                    CopyFigure {
                        bytes_per_message: o.bytes.map(|b| b as f64 / messages as f64),
                        bytes: o.bytes,
                        calls: o.calls,
                        source: o.source,
                        how: o.how,
                        counted_on: o.counted_on,
                    },
                )
            })
            .collect();
    let copied: Option<u64> = ledger::SITES
        .iter()
        .filter(|s| s.is_copy())
        .map(|s| copies[s.name()].bytes)
        .sum();
    let causes = zerocopy_causes(mode, &copies, sender, path, callers);
    let copies_per_byte = match (copied, stream.bytes) {
        (Some(c), b) if b > 0 => Some(c as f64 / b as f64),
        _ => None,
    };
    Ok(Cell {
        mode,
        recv,
        zerocopy_receive: stream.zerocopy_receive.as_ref().map(|z| z.total),
        size,
        threads,
        repeat,
        placement: Some(placement.clone()),
        topology: ends.kind(),
        stream: stream_figures(&stream),
        latency: LatencyFigures {
            kind: latency.latency_kind,
            transactions: latency.messages,
            latency_us: latency.latency_us.clone(),
            integrity_errors: latency.integrity_errors,
        },
        copies,
        copies_per_byte,
        causes,
        zerocopy: ZeroCopyFigures {
            sends: sender.zerocopy_sends,
            notifications: sender.completion_notifications,
            completed_sends: sender.completed_sends,
            copied_sends: sender.copied_sends,
            copied_bytes: sender.copied_bytes,
            enobufs_retries: sender.enobufs_retries,
            unsent_sends: sender.unsent_sends,
            unsent_copied_sends: sender.unsent_copied_sends,
        },
        cpu: cpu_figures(
            server_readings.as_ref(),
            &client_readings,
            stream.bytes,
            remote_server,
        ),
        server_counters: server_readings,
        client_counters: Some(client_readings),
        trace_sample: None,
    })
}

/// For a mode that claims to avoid the copy: why the kernel copied its pages anyway in
/// this cell, from the cell's copies, the sender's completions, the deferred copies'
/// callers where the sender's kernel shows them, and the path (what the
/// cell's bytes would copy at send beyond the protocol is not known without an exact
/// workload, so that evidence is left out: the verification has it).
fn zerocopy_causes(
    mode: Mode,
    copies: &std::collections::BTreeMap<String, CopyFigure>,
    sender: &SenderStats,
    path: &PathFacts,
    callers: Option<&CopyCallers>,
) -> Vec<Explanation> {
    if !mode.spec().claim.zerocopy_attach {
        return Vec::new();
    }
    let bytes = |site: CopySite| copies.get(site.name()).and_then(|f| f.bytes);
    explain(
        path,
        &CopyEvidence {
            copied_sends: sender.copied_sends,
            attached_bytes: bytes(CopySite::ZeroCopyAttach),
            copied_at_send_bytes: None,
            deferred_bytes: bytes(CopySite::DeferredCopy),
        },
        callers,
    )
}

/// A short stream of TRACE_SAMPLE_MESSAGES messages with every send and receive call of
/// server and client recorded, written to `dir` (syscalls.jsonl, trace.json, summary.json).
/// Separate from the measured phases, and the tracer is paused outside it, so tracing
/// costs them nothing but the paused programs' early return.
fn trace_sample(
    probes: &mut CopyProbes,
    ends: &mut Ends,
    tracer: &mut SyscallTracer,
    placement: &Placement,
    plan: CellPlan,
    dir: &Path,
) -> Result<()> {
    let CellPlan {
        mode,
        recv,
        size,
        threads,
        ..
    } = plan;
    let phase = ends.start(probes, mode, size, false)?;
    let pinned = placement.apply(phase.local_pid())?;
    let own_pid = std::process::id();
    probes.watch_process(own_pid, CLIENT_SLOT, false)?;
    // Calls of earlier phases that were still in the ring belong to no sample.
    tracer.take_sample()?;
    tracer.resume(&TRACED_SLOTS)?;
    let messages = TRACE_SAMPLE_MESSAGES.max(threads as u64);
    let mut config = ClientConfig::new(&phase.addr(), size, threads, RunLimit::Messages(messages));
    config.recv = recv;
    let client = ends.as_receiver(|| run_client(&config));
    drop(pinned);
    let stopped = ends.finish(probes, phase);
    let paused = tracer.pause();
    probes.unwatch_process(own_pid)?;
    client?.map_err(|f| anyhow!("trace sample: {f}"))?;
    stopped?;
    paused?;
    trace::write_outputs(dir, &tracer.take_sample()?)?;
    Ok(())
}

fn stream_figures(r: &ClientReport) -> StreamFigures {
    StreamFigures {
        messages: r.messages,
        payload_bytes: r.bytes,
        seconds: r.seconds,
        throughput_gbps: r.throughput_gbps,
        integrity_errors: r.integrity_errors,
        discarded_bytes: r.discarded_bytes,
    }
}

fn value(readings: &CounterReadings, kind: CounterKind) -> Option<u64> {
    match readings.get(kind) {
        CounterValue::Available { value, .. } => Some(value),
        CounterValue::Unavailable { .. } => None,
    }
}

/// CPU time per byte from the server's counters (read where it ran: by the agent on two
/// hosts, None when it sent none) and this process's (the client threads).
fn cpu_figures(
    server: Option<&CounterReadings>,
    client: &CounterReadings,
    bytes: u64,
    remote_server: bool,
) -> CpuFigures {
    let server_cpu = server.and_then(|s| value(s, CounterKind::TaskClock));
    let client_cpu = value(client, CounterKind::TaskClock);
    let per_byte = |ns: Option<u64>| ns.filter(|_| bytes > 0).map(|n| n as f64 / bytes as f64);
    let missing = || CounterValue::Unavailable {
        reason: "the agent reported no perf counters of its server".to_string(),
    };
    let cycles = server.map_or_else(missing, |s| s.get(CounterKind::Cycles));
    let misses = match server {
        None => missing(),
        Some(s) => match s.get(CounterKind::LlcLoadMisses) {
            CounterValue::Available { .. } => s.get(CounterKind::LlcLoadMisses),
            CounterValue::Unavailable { .. } => s.get(CounterKind::CacheMisses),
        },
    };
    let hw_unavailable_reason = match &cycles {
        CounterValue::Unavailable { reason } => Some(reason.clone()),
        CounterValue::Available { .. } => None,
    };
    CpuFigures {
        server_cpu_ns: server_cpu,
        client_cpu_ns: client_cpu,
        source: if remote_server {
            "perf_event_open task-clock (software counter): the server process counted by \
             the agent on its host, this process (client threads) here"
        } else {
            "perf_event_open task-clock (software counter), server process and this \
             process (client threads)"
        }
        .to_string(),
        server_ns_per_byte: per_byte(server_cpu),
        total_ns_per_byte: per_byte(server_cpu.zip(client_cpu).map(|(s, c)| s + c)),
        cycles_per_byte: perf::per_byte(&cycles, bytes),
        llc_misses_per_mib: perf::per_mib(&misses, bytes),
        hw_unavailable_reason,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn machine(perf_hw_available: bool, perf_hw_reason: &str) -> Machine {
    let host = crate::util::machine::HostFacts::collect();
    Machine {
        hostname: host.hostname,
        kernel: host.kernel,
        cpus: host.cpus,
        cpu_model: host.cpu_model,
        memory_bytes: host.memory_bytes.unwrap_or(0),
        perf_hw_available,
        perf_hw_reason: perf_hw_reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::placement::PinRequest;

    #[test]
    fn repeats_go_round_robin_across_the_modes_of_a_point() {
        let config = RunConfig {
            modes: vec![Mode::TwoCopy, Mode::OneCopy, Mode::ZeroCopy],
            sizes: vec![1024, 4096],
            threads: vec![1, 2],
            repeat: 3,
            stream_seconds: 0.5,
            rr_seconds: 0.25,
            quick: false,
            pin: PinRequest::Auto,
            interleaved: true,
            recv: vec![ReceiveMechanism::Copy],
        };
        let arms: Vec<_> = config
            .modes
            .iter()
            .map(|&m| (m, ReceiveMechanism::Copy))
            .collect();
        let cells = schedule(&config, &arms);
        assert_eq!(cells.len(), 3 * 2 * 2 * 3);
        // The first point (1K, 1 thread): 3 repeats of every mode, mode order rotated.
        let first: Vec<(Mode, u32)> = cells[..9].iter().map(|c| (c.mode, c.repeat)).collect();
        use Mode::{OneCopy as O, TwoCopy as T, ZeroCopy as Z};
        assert_eq!(
            first,
            [
                (T, 0),
                (O, 0),
                (Z, 0),
                (O, 1),
                (Z, 1),
                (T, 1),
                (Z, 2),
                (T, 2),
                (O, 2)
            ]
        );
        assert!(cells[..9].iter().all(|c| (c.size, c.threads) == (1024, 1)));
        assert_eq!((cells[9].size, cells[9].threads), (1024, 2));
        assert_eq!((cells[18].size, cells[18].threads), (4096, 1));
        // Every cell once.
        let unique: std::collections::BTreeSet<_> = cells
            .iter()
            .map(|c| (c.mode, c.size, c.threads, c.repeat))
            .collect();
        assert_eq!(unique.len(), cells.len());
    }

    #[test]
    fn receive_mechanisms_take_their_turns_with_the_modes() {
        use ReceiveMechanism::{Copy as C, ZeroCopy as Z};
        let config = RunConfig {
            modes: vec![Mode::OneCopy, Mode::ZeroCopy],
            sizes: vec![4096],
            threads: vec![1],
            repeat: 2,
            stream_seconds: 0.5,
            rr_seconds: 0.25,
            quick: false,
            pin: PinRequest::Auto,
            interleaved: true,
            recv: vec![C, Z],
        };
        let arms = [
            (Mode::OneCopy, C),
            (Mode::OneCopy, Z),
            (Mode::ZeroCopy, C),
            (Mode::ZeroCopy, Z),
        ];
        let cells = schedule(&config, &arms);
        let order: Vec<(Mode, ReceiveMechanism, u32)> =
            cells.iter().map(|c| (c.mode, c.recv, c.repeat)).collect();
        assert_eq!(
            order,
            [
                (Mode::OneCopy, C, 0),
                (Mode::OneCopy, Z, 0),
                (Mode::ZeroCopy, C, 0),
                (Mode::ZeroCopy, Z, 0),
                (Mode::OneCopy, Z, 1),
                (Mode::ZeroCopy, C, 1),
                (Mode::ZeroCopy, Z, 1),
                (Mode::OneCopy, C, 1),
            ]
        );
        assert_eq!(cell_label(&cells[1]), "one-copy-recv-zerocopy-4K-t1-r1");
        assert_eq!(cell_label(&cells[0]), "one-copy-4K-t1-r1");
    }
}
