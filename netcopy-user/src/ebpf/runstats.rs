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

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{loaded_programs, trace_point::TracePointLink, Program, TracePoint},
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

/// Program of the object that does nothing, for any classic tracepoint.
const EMPTY_CLASSIC_PROGRAM: &str = "netcopy_trial_tp";

/// Empty programs on a whole set of hooks (an instrument's): attached, what the kernel's
/// dispatch to programs on those hooks costs with no program doing any work, the floor
/// under any instrument on them. A tp_btf hook gets an [`EmptyProgram`] of its own (a
/// tp_btf program's hook is fixed when it is loaded); the classic tracepoints share one
/// loaded program, attached to each.
pub struct EmptyHooks {
    btf: Vec<EmptyProgram>,
    classic: Option<EmptyClassic>,
}

struct EmptyClassic {
    // Declared first: the links are dropped (detached) before the object.
    links: Vec<TracePointLink>,
    ebpf: Ebpf,
    tracepoints: Vec<(&'static str, &'static str)>,
}

impl EmptyClassic {
    fn program(&mut self) -> Result<&mut TracePoint> {
        self.ebpf
            .program_mut(EMPTY_CLASSIC_PROGRAM)
            .ok_or_else(|| anyhow!("eBPF object has no program {EMPTY_CLASSIC_PROGRAM}"))?
            .try_into()
            .map_err(|e| anyhow!("{EMPTY_CLASSIC_PROGRAM}: {e}"))
    }
}

impl EmptyHooks {
    /// Loads an empty program for each of `points`, none attached. Only tracepoints and
    /// tp_btf hooks are covered: another kind of hook is an error, not left out, so that
    /// a floor is never measured on part of an instrument's hooks.
    pub fn load(points: &[AttachPoint]) -> Result<EmptyHooks> {
        let mut btf = Vec::new();
        let mut tracepoints = Vec::new();
        for point in points {
            match *point {
                AttachPoint::BtfTracepoint { name } => {
                    if !btf.iter().any(|p: &EmptyProgram| p.tracepoint == name) {
                        btf.push(EmptyProgram::load(name)?);
                    }
                }
                AttachPoint::Tracepoint { category, name } => {
                    if !tracepoints.contains(&(category, name)) {
                        tracepoints.push((category, name));
                    }
                }
                other => bail!(
                    "no empty program for {other}: the empty programs cover tracepoints and \
                     tp_btf hooks only"
                ),
            }
        }
        let classic = if tracepoints.is_empty() {
            None
        } else {
            sys::require_root("loading an eBPF program")?;
            let (ebpf, _) = super::loader::load_object(object::bytes()?, None)
                .context("loading netcopy's eBPF object for the empty tracepoint program")?;
            let mut classic = EmptyClassic {
                links: Vec::new(),
                ebpf,
                tracepoints,
            };
            classic
                .program()?
                .load()
                .context("loading the empty tracepoint program")?;
            Some(classic)
        };
        Ok(EmptyHooks { btf, classic })
    }

    /// Attaches every program (again); attaching attached ones is a no-op.
    pub fn attach(&mut self) -> Result<()> {
        for program in &mut self.btf {
            program.attach_again()?;
        }
        if let Some(classic) = &mut self.classic {
            if classic.links.is_empty() {
                let tracepoints = classic.tracepoints.clone();
                for (category, name) in tracepoints {
                    let program = classic.program()?;
                    let link = program
                        .attach(category, name)
                        .and_then(|id| program.take_link(id))
                        .with_context(|| {
                            format!("attaching the empty program to tracepoint {category}/{name}")
                        })?;
                    classic.links.push(link);
                }
            }
        }
        Ok(())
    }

    /// Detaches every program; they stay loaded.
    pub fn detach(&mut self) -> Result<()> {
        for program in &mut self.btf {
            program.detach()?;
        }
        if let Some(classic) = &mut self.classic {
            super::loader::detach_side_by_side(std::mem::take(&mut classic.links));
        }
        Ok(())
    }

    /// The hooks, in the order they were given.
    pub fn points(&self) -> Vec<AttachPoint> {
        let btf = self
            .btf
            .iter()
            .map(|p| AttachPoint::BtfTracepoint { name: p.tracepoint });
        let classic = self
            .classic
            .iter()
            .flat_map(|c| c.tracepoints.iter())
            .map(|&(category, name)| AttachPoint::Tracepoint { category, name });
        btf.chain(classic).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_programs_refuse_hooks_they_cannot_cover() {
        // Refused before anything is loaded: no root needed.
        let error = EmptyHooks::load(&[AttachPoint::Kprobe {
            function: "tcp_sendmsg_locked",
        }])
        .err()
        .expect("a kprobe hook is refused");
        assert!(
            format!("{error:#}").contains("no empty program for kprobe tcp_sendmsg_locked"),
            "{error:#}"
        );
    }

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
