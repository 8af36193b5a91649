//! Part 3: what netcopy's instruments cost. Interleaved windows on one running workload
//! (`windows`) give throughput and CPU overheads with intervals; one more run per
//! instrument with the kernel's accounting on (`program_cost`) gives the programs' exact
//! run time.

use std::{path::Path, time::Duration};

use anyhow::{anyhow, bail, Result};

use super::{
    affinity, ours,
    program_cost::{ProgramCost, ProgramMeter},
    progress::progress,
    schema::{Instrument, Outcome, OverheadSection, PairedFigure, VariantFigures, CONFIDENCE},
    tracing::Tracer,
    windows::{self, WindowRun, WindowSample, OVERHEAD_SIZE},
};
use crate::{
    kernel::{runstats::LoadedProgram, CopyProbes},
    ledger::{CLIENT_SLOT, SERVER_SLOT},
    util::{stats, stats::Summary, sys},
    workload::{
        client::{run_client, ClientConfig, RunLimit},
        harness::ServerProcess,
    },
};

/// Each instrument's window in a block, the settling time after every switch, and blocks
/// per round-second of `--rounds` x `--seconds` (the default 5 x 2 gives 60 blocks, about
/// 100 s).
pub(super) const WINDOW_MS: u64 = 200;
pub(super) const SETTLE_MS: u64 = 50;
const BLOCKS_PER_ROUND_SECOND: u32 = 6;

/// Measures every instrument of [`Instrument::ALL`]; each row says why when it could not.
pub(super) fn section(
    rounds: u32,
    seconds: u32,
    tracer: &std::result::Result<Tracer, String>,
) -> Outcome<OverheadSection> {
    if !sys::is_root() {
        return Outcome::NotMeasured {
            reason: "loading the copy probes needs root; run `sudo netcopy bench` or \
                     `cargo xtask bench`"
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
    let instruments: Vec<Instrument> = Instrument::ALL
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
    let failure = |instrument: Instrument| {
        run.failed
            .iter()
            .find(|(f, _)| *f == instrument)
            .map(|(_, why)| why.clone())
    };
    let base_cpu = Summary::of(
        &run.samples
            .iter()
            .filter(|w| w.instrument == Instrument::None)
            .filter_map(WindowSample::cpu_ns_per_byte)
            .collect::<Vec<_>>(),
    );
    // All accounted runs first, then the rows: the order of the progress lines.
    let program_costs: Vec<Option<Outcome<ProgramCost>>> = Instrument::ALL
        .iter()
        .map(|&instrument| {
            (instruments.contains(&instrument)
                && instrument.is_netcopy()
                && failure(instrument).is_none())
            .then(|| {
                program_cost(
                    instrument,
                    seconds,
                    tracer.as_ref().ok(),
                    pinned_cpu,
                    base_cpu.as_ref().map(|b| b.median),
                )
            })
        })
        .collect();
    let variants = Instrument::ALL
        .into_iter()
        .zip(program_costs)
        .map(|(instrument, program_cost)| {
            if let Some(error) = failure(instrument) {
                return Outcome::Failed { error };
            }
            if let (Instrument::SyscallTracing, Err(reason)) = (instrument, tracer) {
                return Outcome::NotMeasured {
                    reason: format!("syscall tracing: {reason}"),
                };
            }
            variant(&run, instrument, program_cost)
        })
        .collect();
    Outcome::Measured(OverheadSection {
        mode: ours::peer().mode,
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

/// The figures of one instrument's windows, paired block by block with the no-probe
/// windows.
fn variant(
    run: &WindowRun,
    instrument: Instrument,
    program_cost: Option<Outcome<ProgramCost>>,
) -> Outcome<VariantFigures> {
    let windows: Vec<&WindowSample> = run
        .samples
        .iter()
        .filter(|w| w.instrument == instrument)
        .collect();
    let Some(gbps) = Summary::of(&windows.iter().filter_map(|w| w.gbps()).collect::<Vec<_>>())
    else {
        return Outcome::Failed {
            error: "no window moved any data".into(),
        };
    };
    let cpu_values: Vec<f64> = windows.iter().filter_map(|w| w.cpu_ns_per_byte()).collect();
    let cpu = (cpu_values.len() == windows.len())
        .then(|| Summary::of(&cpu_values))
        .flatten();
    let is_base = instrument == Instrument::None;
    let losses = windows::paired(
        &run.samples,
        instrument,
        WindowSample::gbps,
        stats::throughput_loss_pct,
    );
    let increases = windows::paired(
        &run.samples,
        instrument,
        WindowSample::cpu_ns_per_byte,
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
    Outcome::Measured(VariantFigures {
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
        evidence: evidence(run, instrument),
        program_cost,
    })
}

/// What shows that `instrument` was active in its windows.
fn evidence(run: &WindowRun, instrument: Instrument) -> Vec<String> {
    match instrument {
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
    }
}

/// The kernel's accounting of `instrument`'s programs over one run of their own, against
/// the no-probe windows' CPU per byte.
fn program_cost(
    instrument: Instrument,
    seconds: u32,
    tracer: Option<&Tracer>,
    pinned_cpu: Option<usize>,
    base_cpu_ns_per_byte: Option<f64>,
) -> Outcome<ProgramCost> {
    match accounted_run(instrument, seconds, tracer, pinned_cpu) {
        Ok(cost) => {
            let cost = cost.relative_to(base_cpu_ns_per_byte);
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
    }
}

/// One run of the overhead workload (the bench peer, [`OVERHEAD_SIZE`] messages, 1 thread,
/// server and client on `pinned_cpu`) under `instrument`, with the kernel's accounting of the programs' run
/// time on: what the programs cost, by the kernel's own clock. A run of its own, since
/// the accounting has a cost of its own.
fn accounted_run(
    instrument: Instrument,
    seconds: u32,
    tracer: Option<&Tracer>,
    pinned_cpu: Option<usize>,
) -> std::result::Result<ProgramCost, String> {
    let server = ServerProcess::spawn(ours::peer().mode, &[]).map_err(|e| format!("{e:#}"))?;
    let own = std::process::id();
    let mut probes = None;
    let mut trace = None;
    let loaded = (|| -> Result<Vec<LoadedProgram>> {
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
