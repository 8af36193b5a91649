//! Part 3's exact figure: what the probes cost by the kernel's own accounting of its eBPF
//! programs (`BPF_ENABLE_STATS`: runs and nanoseconds of every program), per call and per
//! payload byte, beside the wall-clock comparison. On a shared virtual machine the
//! wall clock moves by more between two runs than the probes cost; this does not.
//!
//! What it counts: the time inside the programs, less the accounting's own cost (an empty
//! program on the receive-copy hook, during the same run), plus, for syscall tracing, the
//! CPU time of the thread that drains the ring buffer. What it cannot count: the kernel's
//! dispatch to the programs (a few nanoseconds a call) and the cache lines the programs
//! take from the workload; the wall-clock rows include those.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::{
    plan::AttachPoint,
    runstats::{self, EmptyProgram, LoadedProgram, RunCounter, StatsEnabled},
};

/// The hook of the empty program: the receive copy, which fires several times per
/// message on the same CPU as the send path, so its floor is the one the probes pay.
pub(super) const FLOOR_HOOK: &str = "skb_copy_datagram_iovec";

/// One program during the measured run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ProgramFigure {
    pub(super) program: String,
    pub(super) hook: String,
    pub(super) runs: u64,
    /// As the kernel accounted it, the accounting's own cost included.
    pub(super) ns_per_run: f64,
    pub(super) runs_per_message: f64,
}

/// The probes' cost during one run, by the kernel's accounting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ProgramCost {
    /// Busiest first (runs x ns per run).
    pub(super) programs: Vec<ProgramFigure>,
    pub(super) floor_hook: String,
    /// Nanoseconds the accounting itself adds to a run (the empty program's mean).
    pub(super) floor_ns_per_run: f64,
    pub(super) messages: u64,
    pub(super) payload_bytes: u64,
    /// Sum over programs of runs x (ns per run - floor), per payload byte.
    pub(super) programs_ns_per_byte: f64,
    /// The trace-draining thread's CPU per payload byte (syscall tracing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) drain_ns_per_byte: Option<f64>,
    /// (programs + drain) as a percentage of the no-probe runs' median CPU per byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pct_of_base_cpu: Option<f64>,
}

impl ProgramCost {
    /// The figures from the counters' deltas over a run that moved `messages` messages
    /// of `payload_bytes` bytes in all.
    fn compute(
        programs: &[(LoadedProgram, RunCounter)],
        floor: RunCounter,
        messages: u64,
        payload_bytes: u64,
    ) -> Result<ProgramCost> {
        if payload_bytes == 0 || messages == 0 {
            return Err(anyhow!("the run moved no payload"));
        }
        let floor_ns_per_run = floor.nanos_per_run().ok_or_else(|| {
            anyhow!("the empty program on tp_btf {FLOOR_HOOK} never ran, so the accounting's own cost is unknown")
        })?;
        let mut figures: Vec<(u64, ProgramFigure)> = Vec::new();
        let mut net_nanos = 0.0;
        for (program, delta) in programs {
            let Some(ns_per_run) = delta.nanos_per_run() else {
                continue;
            };
            net_nanos += delta.runs as f64 * (ns_per_run - floor_ns_per_run).max(0.0);
            figures.push((
                delta.nanos,
                ProgramFigure {
                    program: program.program.clone(),
                    hook: program.hooks(),
                    runs: delta.runs,
                    ns_per_run,
                    runs_per_message: delta.runs as f64 / messages as f64,
                },
            ));
        }
        figures.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(ProgramCost {
            programs: figures.into_iter().map(|(_, f)| f).collect(),
            floor_hook: FLOOR_HOOK.into(),
            floor_ns_per_run,
            messages,
            payload_bytes,
            programs_ns_per_byte: net_nanos / payload_bytes as f64,
            drain_ns_per_byte: None,
            pct_of_base_cpu: None,
        })
    }

    /// Adds the trace-draining thread's CPU time during the run.
    pub(super) fn with_drain(mut self, drain_cpu_seconds: f64) -> ProgramCost {
        self.drain_ns_per_byte = Some(drain_cpu_seconds * 1e9 / self.payload_bytes as f64);
        self
    }

    /// CPU per payload byte the instrument adds, by this accounting.
    pub(super) fn added_ns_per_byte(&self) -> f64 {
        self.programs_ns_per_byte + self.drain_ns_per_byte.unwrap_or(0.0)
    }

    /// Sets the percentage against the no-probe runs' CPU per byte.
    pub(super) fn relative_to(mut self, base_cpu_ns_per_byte: Option<f64>) -> ProgramCost {
        self.pct_of_base_cpu = base_cpu_ns_per_byte
            .filter(|b| *b > 0.0)
            .map(|b| self.added_ns_per_byte() / b * 100.0);
        self
    }

    /// One sentence: the total and what it is made of.
    pub(super) fn summary(&self) -> String {
        let mut text = format!(
            "by the kernel's accounting (one more run): the programs took {:.4} CPU ns per \
             payload byte",
            self.programs_ns_per_byte
        );
        if let Some(drain) = self.drain_ns_per_byte {
            text.push_str(&format!(
                ", the draining thread {drain:.4} while the workload ran"
            ));
        }
        match self.pct_of_base_cpu {
            Some(p) => text.push_str(&format!(": {p:+.1}% of the no-probe CPU per byte")),
            None => text.push_str(" (no no-probe CPU figure to compare with)"),
        }
        text
    }

    /// The floor, as a sentence.
    pub(super) fn floor_text(&self) -> String {
        format!(
            "accounting floor: an empty program on tp_btf {} ran {:.0} ns per call, taken off \
             every program's mean",
            self.floor_hook, self.floor_ns_per_run
        )
    }
}

/// The accounting switched on around one run: built after the probes are loaded, read
/// before and after the workload.
pub(super) struct ProgramMeter {
    programs: Vec<LoadedProgram>,
    floor: EmptyProgram,
    before: HashMap<u32, RunCounter>,
    _stats: StatsEnabled,
}

impl ProgramMeter {
    pub(super) fn start(programs: Vec<LoadedProgram>) -> Result<ProgramMeter> {
        if programs.is_empty() {
            return Err(anyhow!("no eBPF program of netcopy's is loaded"));
        }
        let stats = StatsEnabled::enable()?;
        let floor = EmptyProgram::attach(AttachPoint::BtfTracepoint { name: FLOOR_HOOK })?;
        let before = runstats::read(&ids(&programs, &floor))?;
        Ok(ProgramMeter {
            programs,
            floor,
            before,
            _stats: stats,
        })
    }

    /// The deltas since `start`, as figures for a run of `messages` / `payload_bytes`
    /// (read while the programs are still loaded).
    pub(super) fn finish(self, messages: u64, payload_bytes: u64) -> Result<ProgramCost> {
        let after = runstats::read(&ids(&self.programs, &self.floor))
            .context("reading the programs' run-time statistics")?;
        let delta = |id: u32| -> Result<RunCounter> {
            let now = after
                .get(&id)
                .ok_or_else(|| anyhow!("program {id} was unloaded during the run"))?;
            Ok(now.since(self.before.get(&id).copied().unwrap_or_default()))
        };
        let mut deltas = Vec::new();
        for program in &self.programs {
            deltas.push((program.clone(), delta(program.id)?));
        }
        ProgramCost::compute(&deltas, delta(self.floor.id)?, messages, payload_bytes)
    }
}

fn ids(programs: &[LoadedProgram], floor: &EmptyProgram) -> Vec<u32> {
    programs
        .iter()
        .map(|p| p.id)
        .chain(std::iter::once(floor.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(id: u32, name: &str) -> LoadedProgram {
        LoadedProgram {
            id,
            program: name.into(),
            points: vec![
                AttachPoint::BtfTracepoint { name: "somewhere" },
                AttachPoint::Tracepoint {
                    category: "syscalls",
                    name: "sys_exit_recvfrom",
                },
            ],
        }
    }

    #[test]
    fn net_cost_takes_the_floor_off_every_run() {
        let programs = [
            (
                program(1, "send"),
                RunCounter {
                    runs: 400,
                    nanos: 400 * 180,
                },
            ),
            (
                program(2, "recv"),
                RunCounter {
                    runs: 200,
                    nanos: 200 * 150,
                },
            ),
            // Attached but never ran: not listed.
            (program(3, "idle"), RunCounter::default()),
        ];
        let floor = RunCounter {
            runs: 200,
            nanos: 200 * 80,
        };
        let cost = ProgramCost::compute(&programs, floor, 100, 1_000_000).unwrap();
        assert_eq!(cost.floor_ns_per_run, 80.0);
        // 400 x 100 + 200 x 70 = 54 000 ns over 1 000 000 bytes.
        assert!((cost.programs_ns_per_byte - 0.054).abs() < 1e-12);
        assert_eq!(cost.programs.len(), 2);
        assert_eq!(cost.programs[0].program, "send");
        assert_eq!(cost.programs[0].runs_per_message, 4.0);
        assert_eq!(cost.programs[1].ns_per_run, 150.0);
        assert_eq!(
            cost.programs[0].hook,
            "tp_btf somewhere, tracepoint syscalls/sys_exit_recvfrom"
        );
        assert_eq!(cost.drain_ns_per_byte, None);
        let cost = cost.relative_to(Some(0.5));
        assert!((cost.pct_of_base_cpu.unwrap() - 10.8).abs() < 1e-9);
    }

    #[test]
    fn a_program_cheaper_than_the_floor_adds_nothing_and_the_drain_counts() {
        let programs = [(
            program(1, "tiny"),
            RunCounter {
                runs: 10,
                nanos: 10 * 60,
            },
        )];
        let floor = RunCounter {
            runs: 10,
            nanos: 10 * 80,
        };
        let cost = ProgramCost::compute(&programs, floor, 10, 1_000)
            .unwrap()
            .with_drain(0.000_002)
            .relative_to(Some(1.0));
        assert_eq!(cost.programs_ns_per_byte, 0.0);
        assert!((cost.drain_ns_per_byte.unwrap() - 2.0).abs() < 1e-9);
        assert!((cost.pct_of_base_cpu.unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(cost.relative_to(None).pct_of_base_cpu, None);
    }

    #[test]
    fn no_payload_or_no_floor_is_an_error_not_a_figure() {
        let programs = [(
            program(1, "send"),
            RunCounter {
                runs: 1,
                nanos: 100,
            },
        )];
        let floor = RunCounter { runs: 1, nanos: 50 };
        assert!(ProgramCost::compute(&programs, floor, 0, 0).is_err());
        let err = ProgramCost::compute(&programs, RunCounter::default(), 1, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("never ran"), "{err}");
    }
}
