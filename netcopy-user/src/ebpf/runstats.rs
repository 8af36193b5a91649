//! The kernel's own accounting of what eBPF programs cost: with `BPF_ENABLE_STATS` held,
//! the kernel counts every run of every program and the nanoseconds spent in it
//! (`bpf_prog_info.run_cnt`, `run_time_ns`). That is exact where a wall-clock comparison
//! on a noisy machine is not, so `netcopy bench` reports the probes' cost per call and
//! per payload byte from it.
//!
//! The accounting is not free: two clock reads per run, which on a virtual machine
//! (kvm-clock) cost about as much as a small program. [`EmptyProgram`] measures that
//! floor on the same hook during the same run, so that it can be taken off.

use std::{collections::HashMap, os::fd::OwnedFd};

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{loaded_programs, Program},
    Btf, Ebpf,
};
use serde::{Deserialize, Serialize};

use super::{object, plan::AttachPoint};
use crate::sys;

/// Runs and time of one program so far (since it was loaded, while stats were on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounter {
    pub runs: u64,
    pub nanos: u64,
}

impl RunCounter {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: RunCounter) -> RunCounter {
        RunCounter {
            runs: self.runs.saturating_sub(earlier.runs),
            nanos: self.nanos.saturating_sub(earlier.nanos),
        }
    }

    /// Mean nanoseconds per run, None without runs.
    pub fn nanos_per_run(self) -> Option<f64> {
        (self.runs > 0).then(|| self.nanos as f64 / self.runs as f64)
    }
}

/// One loaded program of ours: its kernel id, name in netcopy-ebpf and hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedProgram {
    pub id: u32,
    pub program: String,
    /// Every hook the plan attaches it to (empty: not in the plan).
    pub points: Vec<AttachPoint>,
}

impl LoadedProgram {
    /// The hooks, comma-separated.
    pub fn hooks(&self) -> String {
        if self.points.is_empty() {
            return "(not in the plan)".into();
        }
        self.points
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Turns the kernel's run-time accounting on for as long as the value lives (the kernel
/// keeps it on while any holder's fd is open).
pub struct StatsEnabled {
    _fd: OwnedFd,
}

impl StatsEnabled {
    pub fn enable() -> Result<StatsEnabled> {
        sys::require_root("enabling the kernel's eBPF run-time statistics")?;
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
            anyhow!(
                "BPF_ENABLE_STATS failed ({}): the kernel's eBPF run-time statistics need \
                 Linux >= 5.8",
                super::describe_error(&e)
            )
        })?;
        Ok(StatsEnabled { _fd: fd })
    }
}

/// The counters of the programs `ids`, read from the kernel. A program that is no longer
/// loaded is missing from the answer.
pub fn read(ids: &[u32]) -> Result<HashMap<u32, RunCounter>> {
    let mut out = HashMap::new();
    for info in loaded_programs() {
        let info = info.context("listing the loaded eBPF programs")?;
        if ids.contains(&info.id()) {
            out.insert(
                info.id(),
                RunCounter {
                    runs: info.run_count(),
                    nanos: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                },
            );
        }
    }
    Ok(out)
}

/// The loaded programs of `ebpf`, with the hooks the plan declares for them.
pub fn loaded_in(ebpf: &Ebpf) -> Vec<LoadedProgram> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            let id = program_id(program)?;
            Some(LoadedProgram {
                id,
                program: name.to_string(),
                points: super::plan::declared_points(name),
            })
        })
        .collect()
}

fn program_id(program: &Program) -> Option<u32> {
    program.info().ok().map(|info| info.id())
}

/// Program of the object that does nothing; loaded here onto any tp_btf hook.
const EMPTY_PROGRAM: &str = "netcopy_trial_tp_btf";

/// An eBPF program that does nothing, on one tracepoint (tp_btf): its run time under the
/// kernel's accounting is the accounting's own cost on that hook, and attached without
/// the accounting, what the kernel's dispatch to any program on that hook costs.
pub struct EmptyProgram {
    // Holds the program (the object stays loaded while this lives).
    ebpf: Ebpf,
    pub id: u32,
    pub tracepoint: &'static str,
    link: Option<aya::programs::tp_btf::BtfTracePointLinkId>,
}

impl EmptyProgram {
    /// Loads the empty program for `tracepoint` and attaches it.
    pub fn attach(tracepoint: &'static str) -> Result<EmptyProgram> {
        let mut empty = Self::load(tracepoint)?;
        empty.attach_again()?;
        Ok(empty)
    }

    /// Loads the empty program for `tracepoint`, not attached.
    pub fn load(tracepoint: &'static str) -> Result<EmptyProgram> {
        sys::require_root("loading an eBPF program")?;
        let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
        // The object's trace maps at their smallest: this copy only runs one program.
        let (mut ebpf, _) = super::loader::load_object(object::bytes()?, None)
            .context("loading netcopy's eBPF object for the empty program")?;
        let program = Self::program(&mut ebpf)?;
        program
            .load(tracepoint, &btf)
            .with_context(|| format!("loading the empty program on tp_btf {tracepoint}"))?;
        let id = program
            .info()
            .context("reading the empty program's id")?
            .id();
        Ok(EmptyProgram {
            ebpf,
            id,
            tracepoint,
            link: None,
        })
    }

    fn program(ebpf: &mut Ebpf) -> Result<&mut aya::programs::BtfTracePoint> {
        ebpf.program_mut(EMPTY_PROGRAM)
            .ok_or_else(|| anyhow!("eBPF object has no program {EMPTY_PROGRAM}"))?
            .try_into()
            .map_err(|e| anyhow!("{EMPTY_PROGRAM}: {e}"))
    }

    /// Attaches the loaded program (again); attaching an attached one is a no-op.
    pub fn attach_again(&mut self) -> Result<()> {
        if self.link.is_some() {
            return Ok(());
        }
        let tracepoint = self.tracepoint;
        let link = Self::program(&mut self.ebpf)?
            .attach()
            .with_context(|| format!("attaching the empty program to tp_btf {tracepoint}"))?;
        self.link = Some(link);
        Ok(())
    }

    /// Detaches the program; it stays loaded.
    pub fn detach(&mut self) -> Result<()> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        let tracepoint = self.tracepoint;
        Self::program(&mut self.ebpf)?
            .detach(link)
            .with_context(|| format!("detaching the empty program from tp_btf {tracepoint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_subtract_and_average() {
        let before = RunCounter {
            runs: 10,
            nanos: 1_000,
        };
        let after = RunCounter {
            runs: 110,
            nanos: 21_000,
        };
        let delta = after.since(before);
        assert_eq!(
            delta,
            RunCounter {
                runs: 100,
                nanos: 20_000
            }
        );
        assert_eq!(delta.nanos_per_run(), Some(200.0));
        assert_eq!(RunCounter::default().nanos_per_run(), None);
        // A program reloaded between the readings restarts at zero: never negative.
        assert_eq!(before.since(after), RunCounter::default());
    }
}
