//! `netcopy bench`: where netcopy stands against what users would pick instead (iperf3),
//! against the machine's limits (memcpy bandwidth), and what its own instruments cost
//! (copy counting, syscall tracing).
//!
//! Every comparison runs both sides in one run, alternating them round by round
//! (ABAB...), and reports the median, min and max of the rounds and the ratio of the
//! medians. Targets are printed as met / NOT met; nothing here asserts a speed.
//!
//! Where each idea lives: this module runs the parts in order ([`measure`]); `schema` is
//! the report every part fills in and both renderers read; one module per part (`peers`,
//! `ceiling`, `overhead` with `windows` and `program_cost`, `capacity`); `targets` turns
//! the figures into verdicts; `text` and `markdown` render the report. Below them: `ours`
//! (netcopy's side, the mode read from the mode table), `iperf` (theirs), `memcpy`,
//! `machine`, `affinity`, `tracing` (the trace host) and `progress`. The parts import
//! `schema`, never this module.

mod affinity;
mod bare;
mod capacity;
mod ceiling;
#[cfg(test)]
mod fixtures;
mod iperf;
mod machine;
pub(crate) mod markdown;
mod memcpy;
mod method;
mod ours;
mod overhead;
mod peer_tools;
mod peers;
mod placement;
mod program_cost;
pub(crate) mod progress;
mod schema;
mod targets;
pub(crate) mod text;

pub mod tracing;
pub mod windows;

use std::time::Instant;

pub use schema::Instrument;
pub(crate) use schema::Part;

use machine::{CpuSnapshot, MachineInfo};
use progress::progress;
use schema::{BenchReport, Outcome, PartLoad};

/// What one `netcopy bench` measures.
pub(crate) struct BenchPlan {
    /// Rounds of each comparison (the probe overhead's blocks scale with it).
    pub(crate) rounds: u32,
    /// Seconds of every single run.
    pub(crate) seconds: u32,
    /// The parts to run; empty: all.
    pub(crate) parts: Vec<Part>,
}

impl BenchPlan {
    fn runs(&self, part: Part) -> bool {
        self.parts.is_empty() || self.parts.contains(&part)
    }
}

/// Runs the parts of `plan` in order, each with the load other processes put on the
/// machine meanwhile, and sets the targets.
pub(crate) fn measure(plan: &BenchPlan) -> BenchReport {
    let started = Instant::now();
    let machine = MachineInfo::collect();
    progress(&format!("machine: {}", machine.describe()));
    let seconds = plan.seconds;

    let mut load = Vec::new();
    let mut measure_load = |part: Part, before: Option<CpuSnapshot>| {
        if let (Some(before), Some(after)) = (before, CpuSnapshot::take()) {
            let l = after.since(&before, machine.cpus);
            progress(&format!("{}: {}", part.name(), l.describe()));
            load.push(PartLoad { part, load: l });
        }
    };

    let peers = if plan.runs(Part::Peers) {
        let before = CpuSnapshot::take();
        let p = Outcome::Measured(peers::section(plan.rounds, seconds));
        measure_load(Part::Peers, before);
        p
    } else {
        not_selected("peers")
    };
    let bare = if plan.runs(Part::Bare) {
        let before = CpuSnapshot::take();
        let b = Outcome::Measured(bare::section(plan.rounds, seconds));
        measure_load(Part::Bare, before);
        b
    } else {
        not_selected("bare")
    };
    let ceiling = if plan.runs(Part::Ceiling) {
        let before = CpuSnapshot::take();
        let c = ceiling::section(&peers, machine.cpus);
        measure_load(Part::Ceiling, before);
        c
    } else {
        not_selected("ceiling")
    };
    let tracer = tracing::Tracer::find();
    let overhead = if plan.runs(Part::Probes) {
        let before = CpuSnapshot::take();
        let o = overhead::section(plan.rounds, seconds, &tracer);
        measure_load(Part::Probes, before);
        o
    } else {
        not_selected("probes")
    };
    let trace_capacity = if plan.runs(Part::Trace) {
        let before = CpuSnapshot::take();
        let t = match &tracer {
            Err(reason) => Outcome::NotMeasured {
                reason: reason.clone(),
            },
            Ok(tracer) => match capacity::measure(tracer, seconds) {
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
        rounds: plan.rounds,
        seconds,
        peers,
        bare,
        ceiling,
        overhead,
        trace_capacity,
        targets: Vec::new(),
        load,
        elapsed_seconds: 0.0,
    };
    report.targets = targets::targets(&report);
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

fn not_selected<T>(part: &str) -> Outcome<T> {
    Outcome::NotMeasured {
        reason: format!("{part} not selected (--only)"),
    }
}
