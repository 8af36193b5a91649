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

use super::{
    attach::{self, attach_loaded, detach_side_by_side, load_for, Link},
    object,
    plan::AttachPoint,
};
use crate::util::sys;

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

/// The program of netcopy's object that does nothing, for each kind of hook.
pub(super) fn empty_program_name(point: AttachPoint) -> &'static str {
    match point {
        AttachPoint::Tracepoint { .. } => "netcopy_trial_tp",
        AttachPoint::BtfTracepoint { .. } => "netcopy_trial_tp_btf",
        AttachPoint::Kprobe { .. } => "netcopy_trial_kprobe",
        AttachPoint::Kretprobe { .. } => "netcopy_trial_kretprobe",
        AttachPoint::Fentry { .. } => "netcopy_trial_fentry",
        AttachPoint::Fexit { .. } => "netcopy_trial_fexit",
    }
}

/// True when the kernel fixes a program's hook when it is loaded (tp_btf, fentry,
/// fexit): each hook needs a loaded copy of its own. Tracepoint and kprobe programs are
/// loaded once and attached to any number of hooks.
fn hook_fixed_at_load(point: AttachPoint) -> bool {
    matches!(
        point,
        AttachPoint::BtfTracepoint { .. } | AttachPoint::Fentry { .. } | AttachPoint::Fexit { .. }
    )
}

fn kernel_btf() -> Result<Btf> {
    Btf::from_sys_fs().context("reading the kernel's BTF")
}

/// netcopy's object with its trace maps at their smallest (the copy runs empty programs
/// only).
fn load_empty_object() -> Result<Ebpf> {
    sys::require_root("loading an eBPF program")?;
    let (ebpf, _) = attach::load_object(object::bytes()?, None)
        .context("loading netcopy's eBPF object for the empty programs")?;
    Ok(ebpf)
}

fn empty_program(ebpf: &mut Ebpf, point: AttachPoint) -> Result<&mut Program> {
    let name = empty_program_name(point);
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))
}

/// An eBPF program that does nothing, on one hook: its run time under the kernel's
/// accounting is the accounting's own cost on that hook, and attached without the
/// accounting, what the kernel's dispatch to any program on that hook costs.
pub struct EmptyProgram {
    // Declared first: the link is dropped (detached) before the object.
    link: Option<Link>,
    // Holds the program (the object stays loaded while this lives).
    ebpf: Ebpf,
    pub id: u32,
    pub point: AttachPoint,
}

impl EmptyProgram {
    /// Loads the empty program for `point` and attaches it.
    pub fn attach(point: AttachPoint) -> Result<EmptyProgram> {
        let mut empty = Self::load(point)?;
        empty.attach_again()?;
        Ok(empty)
    }

    /// Loads the empty program for `point`, not attached.
    fn load(point: AttachPoint) -> Result<EmptyProgram> {
        let btf = hook_fixed_at_load(point).then(kernel_btf).transpose()?;
        Self::load_with(point, btf.as_ref())
    }

    /// [`EmptyProgram::load`] with the kernel's BTF read already (needed for a hook fixed
    /// at load).
    fn load_with(point: AttachPoint, btf: Option<&Btf>) -> Result<EmptyProgram> {
        let mut ebpf = load_empty_object()?;
        let program = empty_program(&mut ebpf, point)?;
        load_for(program, point, btf)
            .with_context(|| format!("loading the empty program for {point}"))?;
        let id = program
            .info()
            .context("reading the empty program's id")?
            .id();
        Ok(EmptyProgram {
            link: None,
            ebpf,
            id,
            point,
        })
    }

    /// Attaches the loaded program (again); attaching an attached one is a no-op.
    fn attach_again(&mut self) -> Result<()> {
        if self.link.is_none() {
            let point = self.point;
            let program = empty_program(&mut self.ebpf, point)?;
            let link = attach_loaded(program, point)
                .with_context(|| format!("attaching the empty program to {point}"))?;
            self.link = Some(link);
        }
        Ok(())
    }

    /// Detaches the program; it stays loaded.
    pub fn detach(&mut self) {
        drop(self.link.take());
    }
}

/// Empty programs on a whole set of hooks (an instrument's): attached, what the kernel's
/// dispatch to programs on those hooks costs with no program doing any work, the floor
/// under any instrument on them. A hook the kernel fixes at load (tp_btf, fentry, fexit)
/// gets an [`EmptyProgram`] of its own; the others share one loaded object, whose empty
/// tracepoint and kprobe programs are attached to each of them.
pub struct EmptyHooks {
    fixed: Vec<EmptyProgram>,
    shared: Option<SharedEmpty>,
}

struct SharedEmpty {
    // Declared first: the links are dropped (detached) before the object.
    links: Vec<Link>,
    ebpf: Ebpf,
    points: Vec<AttachPoint>,
}

impl EmptyHooks {
    /// Loads an empty program for each of `points`, none attached.
    pub fn load(points: &[AttachPoint]) -> Result<EmptyHooks> {
        let mut unique: Vec<AttachPoint> = Vec::new();
        for &point in points {
            if !unique.contains(&point) {
                unique.push(point);
            }
        }
        let (fixed, shared): (Vec<AttachPoint>, Vec<AttachPoint>) =
            unique.into_iter().partition(|&p| hook_fixed_at_load(p));
        // Read once for all the hooks fixed at load (parsing it takes a while).
        let btf = (!fixed.is_empty()).then(kernel_btf).transpose()?;
        let fixed = fixed
            .into_iter()
            .map(|point| EmptyProgram::load_with(point, btf.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let shared = if shared.is_empty() {
            None
        } else {
            let mut ebpf = load_empty_object()?;
            for &point in &shared {
                load_for(empty_program(&mut ebpf, point)?, point, None)
                    .with_context(|| format!("loading the empty program for {point}"))?;
            }
            Some(SharedEmpty {
                links: Vec::new(),
                ebpf,
                points: shared,
            })
        };
        Ok(EmptyHooks { fixed, shared })
    }

    /// Attaches every program (again); attaching attached ones is a no-op.
    pub fn attach(&mut self) -> Result<()> {
        for program in &mut self.fixed {
            program.attach_again()?;
        }
        if let Some(shared) = &mut self.shared {
            if shared.links.is_empty() {
                for &point in &shared.points {
                    let program = empty_program(&mut shared.ebpf, point)?;
                    let link = attach_loaded(program, point)
                        .with_context(|| format!("attaching the empty program to {point}"))?;
                    shared.links.push(link);
                }
            }
        }
        Ok(())
    }

    /// Detaches every program; they stay loaded.
    pub fn detach(&mut self) {
        for program in &mut self.fixed {
            program.detach();
        }
        if let Some(shared) = &mut self.shared {
            detach_side_by_side(std::mem::take(&mut shared.links));
        }
    }

    /// The kernel ids of the empty programs (a shared program once).
    pub fn ids(&self) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.fixed.iter().map(|p| p.id).collect();
        if let Some(shared) = &self.shared {
            let mut names: Vec<&str> = shared
                .points
                .iter()
                .map(|&p| empty_program_name(p))
                .collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let program = shared
                    .ebpf
                    .program(name)
                    .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
                ids.push(
                    program
                        .info()
                        .with_context(|| format!("reading the id of {name}"))?
                        .id(),
                );
            }
        }
        Ok(ids)
    }

    /// The hooks: those fixed at load first, then the shared ones.
    pub fn points(&self) -> Vec<AttachPoint> {
        let fixed = self.fixed.iter().map(|p| p.point);
        let shared = self.shared.iter().flat_map(|s| s.points.iter().copied());
        fixed.chain(shared).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_hook_has_an_empty_program_in_the_object() {
        let points = [
            AttachPoint::Tracepoint {
                category: "sched",
                name: "sched_process_fork",
            },
            AttachPoint::BtfTracepoint {
                name: "sched_process_fork",
            },
            AttachPoint::Kprobe { function: "f" },
            AttachPoint::Kretprobe { function: "f" },
            AttachPoint::Fentry { function: "f" },
            AttachPoint::Fexit { function: "f" },
        ];
        // What the object would have to offer: every name distinct, and the names of
        // hooks fixed at load exactly tp_btf, fentry and fexit.
        let names: Vec<&str> = points.iter().map(|&p| empty_program_name(p)).collect();
        let mut distinct = names.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), points.len(), "{names:?}");
        let fixed: Vec<&str> = points
            .iter()
            .filter(|&&p| hook_fixed_at_load(p))
            .map(|&p| empty_program_name(p))
            .collect();
        assert_eq!(
            fixed,
            [
                "netcopy_trial_tp_btf",
                "netcopy_trial_fentry",
                "netcopy_trial_fexit"
            ]
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
