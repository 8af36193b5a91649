//! netcopy's copy probes: the embedded object loaded, the attach plan carried out (the
//! best strategy of every event that works on this kernel), processes put in the filter,
//! and the copy counters read back.

use std::{collections::HashMap, os::fd::AsFd};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray},
    Btf, Ebpf,
};
use netcopy_common::{
    counter_index, CopySite, FilterEntry, KernelOffsets, SiteCounter, TraceOffsets,
    COUNTED_SITE_COUNT, SLOT_COUNT,
};

use super::{
    attach::{self, Attachment},
    btf::KernelBtf,
    callers::{CallerCounts, CopyCallers, KernelSymbols},
    copy_layout::CopyLayout,
    maps::{self, COUNTERS_MAP, FILTER_GENERATION_MAP, FILTER_MAP, OFFSETS_MAP},
    object,
    plan::{
        AttachPlan, AttachPoint, ChosenStrategy, EventPlan, HookKinds, KernelEvent, Layout,
        ProbeDecl, RejectedStrategy, Strategy, ON_DEMAND, PROBES,
    },
    trace_layout::TraceLayout,
};
use crate::util::sys;

/// Counters of every slot and site, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    counters: [[SiteCounter; COUNTED_SITE_COUNT]; SLOT_COUNT],
}

impl CopyCounts {
    /// One counter; zero for a site no program counts (the user copy).
    pub fn get(&self, slot: u32, site: CopySite) -> SiteCounter {
        match site.counter() {
            Some(counter) => self.counters[slot as usize][counter as usize],
            None => SiteCounter::default(),
        }
    }

    /// Adds to one counter (used to build expected figures in tests and analyses); a site
    /// no program counts has no counter to add to, and stays zero.
    pub fn add(&mut self, slot: u32, site: CopySite, calls: u64, bytes: u64) {
        if let Some(counter) = site.counter() {
            let c = &mut self.counters[slot as usize][counter as usize];
            c.calls += calls;
            c.bytes += bytes;
        }
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &CopyCounts) -> CopyCounts {
        let mut out = CopyCounts::default();
        for slot in 0..SLOT_COUNT {
            for site in 0..COUNTED_SITE_COUNT {
                let (now, then) = (self.counters[slot][site], earlier.counters[slot][site]);
                out.counters[slot][site] = SiteCounter {
                    calls: now.calls.wrapping_sub(then.calls),
                    bytes: now.bytes.wrapping_sub(then.bytes),
                };
            }
        }
        out
    }
}

/// How to load the probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Bytes of room for traced calls waiting to be read, shared out in one ring per CPU
    /// (`maps::LogLayout`; a power of two, at least a page), so that a
    /// `trace::SyscallTracer` can run on these probes. None: no tracing; the
    /// trace maps get their minimum sizes and copy counting pays no memory for them.
    pub trace_ring_bytes: Option<u32>,
    /// Hook kinds not to use: strategies that need one are skipped (and listed as not
    /// used, with this as the reason).
    pub avoid: HookKinds,
}

/// netcopy's probes, loaded and attached; dropping it detaches and unloads everything.
pub struct CopyProbes {
    ebpf: Ebpf,
    plan: AttachPlan,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The layout facts this kernel lacks, with why: strategies that need one are not used.
    missing_layouts: HashMap<Layout, String>,
    options: LoadOptions,
    /// How the trace's per-CPU rings were sized at load.
    trace_log: maps::LogLayout,
    /// On-demand events attached now.
    on_demand_attached: Vec<KernelEvent>,
    /// Every program attached now, with its link (what [`CopyProbes::suspend`] detaches).
    links: Vec<Attachment>,
    /// While suspended: what [`CopyProbes::resume`] attaches again.
    suspended: Option<Vec<(&'static str, AttachPoint)>>,
}

impl CopyProbes {
    /// Loads the embedded object and attaches the best strategy for every event.
    pub fn load() -> Result<Self> {
        Self::load_with(LoadOptions::default())
    }

    /// [`CopyProbes::load`] with options (e.g. room for a syscall trace).
    pub fn load_with(options: LoadOptions) -> Result<Self> {
        sys::require_root("loading the copy probes")?;
        let bytes = object::bytes()?;
        let tracefs = super::host::tracefs()?;
        attach::raise_memlock();
        let kernel_btf = KernelBtf::load().ok();
        let aya_btf = Btf::from_sys_fs().ok();
        let copy_layout = CopyLayout::discover(&tracefs, kernel_btf.as_ref());
        let trace_layout = TraceLayout::discover(&tracefs, kernel_btf.as_ref());
        let mut missing_layouts = copy_layout.missing;
        missing_layouts.extend(trace_layout.missing.iter().cloned());
        // The object holds the trace's ring buffer, which the kernel must support to load it.
        if !matches!(
            aya::sys::is_map_supported(aya::maps::MapType::RingBuf),
            Ok(true)
        ) {
            return Err(anyhow!(
                "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux >= 5.8), \
                 which netcopy's eBPF object needs"
            ));
        }
        let (mut ebpf, trace_log) = attach::load_object(bytes, options.trace_ring_bytes)?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        {
            let mut offsets: Array<_, KernelOffsets> = Array::try_from(
                ebpf.map_mut(OFFSETS_MAP)
                    .ok_or_else(|| anyhow!("eBPF object has no map {OFFSETS_MAP}"))?,
            )?;
            offsets
                .set(0, copy_layout.offsets, 0)
                .context("writing kernel offsets to the eBPF map")?;
            let mut trace_offsets: Array<_, TraceOffsets> =
                Array::try_from(ebpf.map_mut(maps::TRACE_OFFSETS_MAP).ok_or_else(|| {
                    anyhow!("eBPF object has no map {}", maps::TRACE_OFFSETS_MAP)
                })?)?;
            trace_offsets
                .set(0, trace_layout.offsets, 0)
                .context("writing trace offsets to the eBPF map")?;
        }
        let mut plan = AttachPlan::default();
        let mut links = Vec::new();
        for decl in PROBES {
            plan.events.push(choose_strategy(decl, |strategy| {
                not_avoided(strategy, options.avoid)?;
                links.extend(attach::attach_strategy(
                    &mut ebpf,
                    strategy,
                    &missing_layouts,
                    aya_btf.as_ref(),
                )?);
                Ok(())
            }));
        }
        // On-demand events: checked (layouts, tracepoints) but not attached. Their programs
        // are loaded now only when a trace was asked for (the verifier then has its say
        // before anything starts); otherwise the first attach loads them, and probes that
        // only count copies pay neither the ~40 ms of verification nor the memory.
        let prepare_started = std::time::Instant::now();
        let load_now = options.trace_ring_bytes.is_some();
        for decl in ON_DEMAND {
            plan.events.push(choose_strategy(decl, |strategy| {
                not_avoided(strategy, options.avoid)?;
                attach::prepare_strategy(&mut ebpf, strategy, &missing_layouts, &tracefs, load_now)
            }));
        }
        log::debug!(
            "on-demand events prepared (programs loaded: {load_now}) in {:?}",
            prepare_started.elapsed()
        );
        Ok(Self {
            ebpf,
            plan,
            logger,
            missing_layouts,
            options,
            trace_log,
            on_demand_attached: Vec::new(),
            links,
            suspended: None,
        })
    }

    pub fn plan(&self) -> &AttachPlan {
        &self.plan
    }

    /// The options these probes were loaded with.
    pub fn options(&self) -> LoadOptions {
        self.options
    }

    /// How the trace's per-CPU rings were laid out at load: what a reader maps.
    pub fn trace_log_layout(&self) -> maps::LogLayout {
        self.trace_log
    }

    /// Attaches on-demand event `event` (see [`ON_DEMAND`]) with the strategy the plan
    /// chose at load. Attaching an attached event is an error.
    pub fn attach_on_demand(&mut self, event: KernelEvent) -> Result<()> {
        if self.on_demand_attached.contains(&event) {
            return Err(anyhow!("{} is already attached", event.name()));
        }
        if self.suspended.is_some() {
            return Err(anyhow!(
                "cannot attach {} while the probes are suspended",
                event.name()
            ));
        }
        let strategy = self.on_demand_strategy(event)?;
        let links = attach::attach_strategy(&mut self.ebpf, strategy, &self.missing_layouts, None)
            .with_context(|| format!("attaching {}", event.name()))?;
        self.links.extend(links);
        self.on_demand_attached.push(event);
        Ok(())
    }

    /// Detaches on-demand event `event`: its programs are unloaded, so nothing of it is
    /// left in the kernel; the next [`CopyProbes::attach_on_demand`] loads them again.
    pub fn detach_on_demand(&mut self, event: KernelEvent) -> Result<()> {
        let strategy = self.on_demand_strategy(event)?;
        for p in strategy.programs {
            self.links.retain(|a| a.program != p.program);
            attach::unload_all(&mut self.ebpf, &[p.program]);
            if let Some(suspended) = self.suspended.as_mut() {
                suspended.retain(|(name, _)| *name != p.program);
            }
        }
        self.on_demand_attached.retain(|e| *e != event);
        Ok(())
    }

    /// Detaches every attached program but keeps them loaded, with their maps and
    /// counters, until [`CopyProbes::resume`]: while suspended the probes cost the
    /// kernel nothing at their hooks. Attaching again takes milliseconds where loading
    /// takes the verifier's tenths of a second, which is what lets the benchmark switch
    /// the probes on and off many times a second on one running workload.
    pub fn suspend(&mut self) -> Result<()> {
        if self.suspended.is_some() {
            return Err(anyhow!("the probes are already suspended"));
        }
        let links: Vec<Attachment> = self.links.drain(..).collect();
        self.suspended = Some(links.iter().map(|a| (a.program, a.point)).collect());
        attach::detach_side_by_side(links);
        Ok(())
    }

    /// Where the programs are attached (or will be again, while suspended).
    pub fn attach_points(&self) -> Vec<AttachPoint> {
        match &self.suspended {
            Some(detached) => detached.iter().map(|(_, point)| *point).collect(),
            None => self.links.iter().map(|a| a.point).collect(),
        }
    }

    /// Attaches again what [`CopyProbes::suspend`] detached, to the same hooks.
    pub fn resume(&mut self) -> Result<()> {
        let Some(detached) = self.suspended.take() else {
            return Err(anyhow!("the probes are not suspended"));
        };
        for (name, point) in detached {
            self.links
                .push(Attachment::reattach(&mut self.ebpf, name, point)?);
        }
        Ok(())
    }

    fn on_demand_strategy(&self, event: KernelEvent) -> Result<&'static Strategy> {
        let decl: &'static ProbeDecl = ON_DEMAND
            .iter()
            .find(|d| d.event == event)
            .ok_or_else(|| anyhow!("{} is not an on-demand event", event.name()))?;
        let planned = self
            .plan
            .get(event)
            .ok_or_else(|| anyhow!("{} is not in the attach plan", event.name()))?;
        let Some(chosen) = &planned.chosen else {
            let reasons: Vec<String> = planned
                .rejected
                .iter()
                .map(|r| format!("{}: {}", r.label, r.reason))
                .collect();
            return Err(anyhow!(
                "{} is not possible on this kernel: {}",
                event.name(),
                reasons.join("; ")
            ));
        };
        decl.strategies
            .iter()
            .find(|s| s.label == chosen.label)
            .ok_or_else(|| anyhow!("{}: strategy {} not declared", event.name(), chosen.label))
    }

    /// An independent handle on map `name` of the loaded object (a duplicated fd), for
    /// readers that must not borrow the probes (e.g. a ring buffer drained by a tracer).
    pub fn map_handle(&self, name: &str) -> Result<Map> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| anyhow!("eBPF object has no map {name}"))?;
        let data = match map {
            Map::Array(d)
            | Map::HashMap(d)
            | Map::LruHashMap(d)
            | Map::PerCpuArray(d)
            | Map::PerCpuHashMap(d)
            | Map::RingBuf(d) => d,
            _ => return Err(anyhow!("map {name} has a type map_handle does not support")),
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating the fd of map {name}"))?;
        let data = MapData::from_fd(fd).with_context(|| format!("reopening map {name}"))?;
        Map::from_map_data(data).with_context(|| format!("reopening map {name}"))
    }

    /// Counts the copies of process `tgid` in counter slot `slot`; with `follow_forks`
    /// its future children are counted in the same slot.
    pub fn watch_process(&mut self, tgid: u32, slot: u32, follow_forks: bool) -> Result<()> {
        if slot as usize >= SLOT_COUNT {
            return Err(anyhow!("slot {slot} out of range (0..{SLOT_COUNT})"));
        }
        let mut filter: BpfHashMap<_, u32, FilterEntry> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(FILTER_MAP)
                .ok_or_else(|| anyhow!("eBPF object has no map {FILTER_MAP}"))?,
        )?;
        let entry = FilterEntry {
            slot,
            follow_forks: u32::from(follow_forks),
        };
        filter
            .insert(tgid, entry, 0)
            .with_context(|| format!("adding process {tgid} to the filter"))?;
        self.bump_filter_generation()
    }

    /// Stops counting process `tgid` (no error if it was not watched).
    pub fn unwatch_process(&mut self, tgid: u32) -> Result<()> {
        let mut filter: BpfHashMap<_, u32, FilterEntry> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(FILTER_MAP)
                .ok_or_else(|| anyhow!("eBPF object has no map {FILTER_MAP}"))?,
        )?;
        match filter.remove(&tgid) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing process {tgid} from the filter"))
            }
        }
        self.bump_filter_generation()
    }

    /// Invalidates the programs' per-CPU cache of filter answers. Called after every
    /// change to the filter: an answer cached before it is dropped, whichever CPU holds it.
    fn bump_filter_generation(&mut self) -> Result<()> {
        let mut generation: Array<_, u64> = Array::try_from(
            self.ebpf
                .map_mut(FILTER_GENERATION_MAP)
                .ok_or_else(|| anyhow!("eBPF object has no map {FILTER_GENERATION_MAP}"))?,
        )?;
        let next = generation
            .get(&0, 0)
            .context("reading the filter generation")?
            .wrapping_add(1)
            .max(1);
        generation
            .set(0, next, 0)
            .context("bumping the filter generation")
    }

    /// The programs loaded now (attached, or loaded for an on-demand event), with their
    /// kernel ids: what `runstats::read` reads the kernel's accounting of.
    pub fn loaded_programs(&self) -> Vec<super::runstats::LoadedProgram> {
        super::runstats::loaded_in(&self.ebpf)
    }

    /// Whether the kernel stacks of deferred copies are kept here (the copy-caller event
    /// has a strategy on this kernel).
    pub fn copy_callers_observable(&self) -> bool {
        self.plan
            .get(KernelEvent::CopyCaller)
            .is_some_and(|e| e.chosen.is_some())
    }

    /// The copy-caller maps now, None where this kernel cannot show callers. Two readings
    /// make a phase's with [`CallerCounts::since`], or with [`CopyProbes::callers_since`].
    pub fn read_copy_callers(&self) -> Result<Option<CallerCounts>> {
        if !self.copy_callers_observable() {
            return Ok(None);
        }
        CallerCounts::read(&self.ebpf).map(Some)
    }

    /// The deferred copies of `slot` since `before` (a [`CopyProbes::read_copy_callers`]),
    /// by caller chain, named with this kernel's symbols; None where callers cannot be
    /// shown here.
    pub fn callers_since(
        &self,
        before: Option<&CallerCounts>,
        slot: u32,
    ) -> Result<Option<CopyCallers>> {
        let (Some(before), Some(now)) = (before, self.read_copy_callers()?) else {
            return Ok(None);
        };
        let symbols = KernelSymbols::load().unwrap_or_else(|e| {
            log::warn!("naming copy callers: {e:#}");
            KernelSymbols::unreadable()
        });
        Ok(Some(now.since(before).of_slot(slot, &symbols)))
    }

    /// Current counters, summed over CPUs. Take two readings and use
    /// [`CopyCounts::since`] to measure an interval.
    pub fn read_counters(&mut self) -> Result<CopyCounts> {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
        let counters: PerCpuArray<_, SiteCounter> = PerCpuArray::try_from(
            self.ebpf
                .map(COUNTERS_MAP)
                .ok_or_else(|| anyhow!("eBPF object has no map {COUNTERS_MAP}"))?,
        )?;
        let mut out = CopyCounts::default();
        for slot in 0..SLOT_COUNT as u32 {
            for site in CopySite::COUNTED {
                let Some(index) = counter_index(slot, site) else {
                    continue;
                };
                let per_cpu = counters.get(&index, 0).context("reading copy counters")?;
                let total = per_cpu
                    .iter()
                    .fold(SiteCounter::default(), |acc, c| SiteCounter {
                        calls: acc.calls + c.calls,
                        bytes: acc.bytes + c.bytes,
                    });
                out.add(slot, site, total.calls, total.bytes);
            }
        }
        Ok(out)
    }
}

/// Fails for a strategy that needs a hook kind the caller asked to avoid.
fn not_avoided(strategy: &Strategy, avoid: HookKinds) -> Result<()> {
    match strategy.avoided_hook(avoid) {
        Some(point) => bail!(
            "avoided on request ({} is a {} hook)",
            point,
            point.kind().name()
        ),
        None => Ok(()),
    }
}

/// Tries `decl`'s strategies best first with `attempt`; the first that succeeds is chosen,
/// and every better one that failed is kept with its reason.
fn choose_strategy(
    decl: &ProbeDecl,
    mut attempt: impl FnMut(&'static Strategy) -> Result<()>,
) -> EventPlan {
    let mut event_plan = EventPlan {
        event: decl.event,
        chosen: None,
        rejected: Vec::new(),
    };
    for strategy in decl.strategies {
        match attempt(strategy) {
            Ok(()) => {
                event_plan.chosen = Some(ChosenStrategy::of(strategy));
                break;
            }
            Err(e) => event_plan.rejected.push(RejectedStrategy {
                label: strategy.label,
                reason: format!("{e:#}"),
            }),
        }
    }
    event_plan
}
