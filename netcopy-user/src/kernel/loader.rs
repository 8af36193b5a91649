//! Loads netcopy's eBPF object, carries out the attach plan and reads the copy ledger.

use std::{
    collections::HashMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray},
    programs::{
        fentry::FEntryLink, fexit::FExitLink, kprobe::KProbeLink, tp_btf::BtfTracePointLink,
        trace_point::TracePointLink, ProbeKind, Program,
    },
    Btf, Ebpf, EbpfLoader,
};
use netcopy_common::{
    counter_index, CopySite, FilterEntry, KernelOffsets, SiteCounter, TraceOffsets, OFFSET_UNKNOWN,
    SITE_COUNT, SLOT_COUNT,
};

use super::maps::{self, COUNTERS_MAP, FILTER_GENERATION_MAP, FILTER_MAP, OFFSETS_MAP};
use super::{
    btf::{KernelBtf, VMLINUX_BTF},
    object,
    plan::{
        AttachPlan, AttachPoint, ChosenStrategy, EventPlan, HookKinds, KernelEvent, Layout,
        ProbeDecl, RejectedStrategy, Strategy, ON_DEMAND, PROBES,
    },
    tracefs::TracepointFormat,
};
use crate::util::sys;

/// Counters of every slot and site, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    counters: [[SiteCounter; SITE_COUNT]; SLOT_COUNT],
}

impl CopyCounts {
    pub fn get(&self, slot: u32, site: CopySite) -> SiteCounter {
        self.counters[slot as usize][site as usize]
    }

    /// Adds to one counter (used to build expected figures in tests and analyses).
    pub fn add(&mut self, slot: u32, site: CopySite, calls: u64, bytes: u64) {
        let c = &mut self.counters[slot as usize][site as usize];
        c.calls += calls;
        c.bytes += bytes;
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &CopyCounts) -> CopyCounts {
        let mut out = CopyCounts::default();
        for slot in 0..SLOT_COUNT {
            for site in 0..SITE_COUNT {
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

/// Offsets found for this kernel, and for each layout fact that could not be found, why.
struct OffsetDiscovery {
    offsets: KernelOffsets,
    missing: HashMap<Layout, String>,
}

impl OffsetDiscovery {
    fn run(tracefs: &Path, btf: Option<&KernelBtf>) -> Self {
        let mut o = KernelOffsets::default();
        let mut missing = HashMap::new();
        let tp = |category: &str, name: &str, field: &str, size: u32| -> Result<u32> {
            TracepointFormat::read(tracefs, category, name)?.offset(field, size)
        };
        // A field the programs read at a constant offset: this kernel must agree.
        let tp_at = |category: &str, name: &str, field: &str, size: u32, at: u32| -> Result<()> {
            let found = tp(category, name, field, size)?;
            if found != at {
                bail!(
                    "{category}/{name} keeps `{field}` at offset {found}; netcopy's program \
                     reads it at {at} (the layout of every kernel it was built for)"
                );
            }
            Ok(())
        };
        let mut record = |layout: Layout, result: Result<()>| {
            if let Err(e) = result {
                missing.insert(layout, format!("{e:#}"));
            }
        };
        record(
            Layout::TpSkbCopyLen,
            tp_at(
                "skb",
                "skb_copy_datagram_iovec",
                "len",
                4,
                netcopy_common::TP_SKB_COPY_LEN_OFFSET,
            ),
        );
        record(
            Layout::TpForkPids,
            (|| {
                o.tp_fork_parent_pid = tp("sched", "sched_process_fork", "parent_pid", 4)?;
                o.tp_fork_child_pid = tp("sched", "sched_process_fork", "child_pid", 4)?;
                Ok(())
            })(),
        );
        let Some(btf) = btf else {
            for layout in [
                Layout::SendDecision,
                Layout::SkbZerocopyOwner,
                Layout::SkbDataLen,
                Layout::UargBytelen,
            ] {
                missing.insert(layout, "kernel BTF is unavailable".to_string());
            }
            return Self {
                offsets: o,
                missing,
            };
        };
        let bit = |value: u64, name: &str| -> Result<u32> {
            u32::try_from(value)
                .ok()
                .filter(|v| *v < 64)
                .ok_or_else(|| anyhow!("{name} = {value} is not a bit number below 64"))
        };
        record(
            Layout::SendDecision,
            (|| {
                o.msghdr_msg_flags = btf.member_offset("msghdr", "msg_flags")?;
                // Newer kernels keep sk_flags in sock_common (#define sk_flags
                // __sk_common.skc_flags); older ones have it in struct sock.
                o.sock_sk_flags = btf.member_offset("sock", "sk_flags").or_else(|_| {
                    Ok::<u32, anyhow::Error>(
                        btf.member_offset("sock", "__sk_common")?
                            + btf.member_offset("sock_common", "skc_flags")?,
                    )
                })?;
                o.sock_sk_route_caps = btf.member_offset("sock", "sk_route_caps")?;
                o.sock_zerocopy_bit = bit(btf.enum_value("SOCK_ZEROCOPY")?, "SOCK_ZEROCOPY")?;
                o.netif_f_sg_bit = bit(btf.enum_value("NETIF_F_SG_BIT")?, "NETIF_F_SG_BIT")?;
                Ok(())
            })(),
        );
        record(
            Layout::SkbZerocopyOwner,
            (|| {
                o.skb_head = btf.member_offset("sk_buff", "head")?;
                o.skb_end = btf.member_offset("sk_buff", "end")?;
                o.skb_cb = btf.member_offset("sk_buff", "cb")?;
                o.skb_sk = btf.member_offset("sk_buff", "sk")?;
                o.shinfo_destructor_arg = btf.member_offset("skb_shared_info", "destructor_arg")?;
                Ok(())
            })(),
        );
        record(
            Layout::SkbDataLen,
            (|| {
                o.skb_data_len = btf.member_offset("sk_buff", "data_len")?;
                Ok(())
            })(),
        );
        record(
            Layout::UargBytelen,
            (|| {
                // Kernels >= 6.2 split the zero-copy fields into struct ubuf_info_msgzc.
                let uarg = ["ubuf_info_msgzc", "ubuf_info"]
                    .into_iter()
                    .find(|s| btf.member_offset(s, "bytelen").is_ok())
                    .ok_or_else(|| anyhow!("neither ubuf_info_msgzc nor ubuf_info has bytelen"))?;
                o.uarg_bytelen = btf.member_offset(uarg, "bytelen")?;
                // Optional: without it completions are counted but not split by copied.
                if let Ok(bit) = btf.member_bit_offset(uarg, "zerocopy") {
                    o.uarg_zerocopy_bit = bit;
                }
                Ok(())
            })(),
        );
        // Optional, for the trace only: without it a sendmsg's request is read from user
        // memory, as on the kprobe and fentry strategies.
        let send_iter = (|| -> Result<[u32; 5]> {
            let iter = btf.member_offset("msghdr", "msg_iter")?;
            let value = |name: &str| -> Result<u32> {
                u32::try_from(btf.enum_value(name)?)
                    .map_err(|_| anyhow!("{name} does not fit 32 bits"))
            };
            Ok([
                iter + btf.member_offset("iov_iter", "iter_type")?,
                iter + btf.member_offset("iov_iter", "count")?,
                iter + btf.member_offset("iov_iter", "nr_segs")?,
                value("ITER_IOVEC")?,
                // Kernels before 6.0 have no ITER_UBUF: every request is ITER_IOVEC.
                value("ITER_UBUF").unwrap_or(OFFSET_UNKNOWN),
            ])
        })();
        match send_iter {
            Ok([kind, count, segs, iovec, ubuf]) => {
                o.msghdr_iter_type = kind;
                o.msghdr_iter_count = count;
                o.msghdr_iter_nr_segs = segs;
                o.iter_iovec = iovec;
                o.iter_ubuf = ubuf;
            }
            Err(e) => log::debug!("the trace reads sendmsg requests from user memory: {e:#}"),
        }
        Self {
            offsets: o,
            missing,
        }
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

/// In-flight map entries when tracing: live threads of the traced processes that have
/// made a traced call (an entry is kept between a thread's calls and freed at its exit).
const TRACE_INFLIGHT_ENTRIES: u32 = 8192;

/// netcopy's probes, loaded and attached; dropping it detaches and unloads everything.
pub struct CopyProbes {
    ebpf: Ebpf,
    plan: AttachPlan,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    discovery: OffsetDiscovery,
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

/// One program attached to one hook, and the link that keeps it there: dropping it
/// detaches the program (which stays loaded).
struct Attachment {
    program: &'static str,
    point: AttachPoint,
    _link: Link,
}

/// An attachment's link, owned (taken from aya's per-program table), by program type:
/// dropping it detaches the program. Never read: held for its drop.
#[allow(dead_code)]
pub(super) enum Link {
    TracePoint(TracePointLink),
    BtfTracePoint(BtfTracePointLink),
    KProbe(KProbeLink),
    FEntry(FEntryLink),
    FExit(FExitLink),
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
        let tracefs = crate::kernel::host::tracefs()?;
        // Kernels >= 5.11 charge BPF memory to the cgroup; older ones need memlock raised.
        // Failing to raise it (no CAP_SYS_RESOURCE) is not an error in itself.
        raise_memlock();
        let kernel_btf = KernelBtf::load().ok();
        let aya_btf = Btf::from_sys_fs().ok();
        let mut discovery = OffsetDiscovery::run(&tracefs, kernel_btf.as_ref());
        let trace_layout =
            crate::kernel::trace_layout::TraceLayout::discover(&tracefs, kernel_btf.as_ref());
        discovery
            .missing
            .extend(trace_layout.missing.iter().cloned());
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
        let (mut ebpf, trace_log) = load_object(bytes, options.trace_ring_bytes)?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        {
            let mut offsets: Array<_, KernelOffsets> = Array::try_from(
                ebpf.map_mut(OFFSETS_MAP)
                    .ok_or_else(|| anyhow!("eBPF object has no map {OFFSETS_MAP}"))?,
            )?;
            offsets
                .set(0, discovery.offsets, 0)
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
                links.extend(attach_strategy(
                    &mut ebpf,
                    strategy,
                    &discovery,
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
                prepare_strategy(&mut ebpf, strategy, &discovery, &tracefs, load_now)
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
            discovery,
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
        let links = attach_strategy(&mut self.ebpf, strategy, &self.discovery, None)
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
            if let Some(program) = self.ebpf.program_mut(p.program) {
                unload(program);
            }
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
        detach_side_by_side(links);
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
            let program = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
            let link = attach_loaded(program, point)
                .with_context(|| format!("attaching {point} ({name}) again"))?;
            self.links.push(Attachment {
                program: name,
                point,
                _link: link,
            });
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
            for site in CopySite::ALL {
                let per_cpu = counters
                    .get(&counter_index(slot, site), 0)
                    .context("reading copy counters")?;
                let total = per_cpu
                    .iter()
                    .fold(SiteCounter::default(), |acc, c| SiteCounter {
                        calls: acc.calls + c.calls,
                        bytes: acc.bytes + c.bytes,
                    });
                out.counters[slot as usize][site as usize] = total;
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
                event_plan.chosen = Some(ChosenStrategy {
                    label: strategy.label,
                    sources: strategy.sources,
                });
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

fn attach_strategy(
    ebpf: &mut Ebpf,
    strategy: &Strategy,
    discovery: &OffsetDiscovery,
    btf: Option<&Btf>,
) -> Result<Vec<Attachment>> {
    for need in strategy.needs {
        if let Some(reason) = discovery.missing.get(need) {
            return Err(anyhow!("kernel layout unknown: {reason}"));
        }
    }
    let mut attached: Vec<Attachment> = Vec::new();
    let mut result = Ok(());
    for p in strategy.programs {
        let program = match ebpf.program_mut(p.program) {
            Some(program) => program,
            None => {
                result = Err(anyhow!("eBPF object has no program {}", p.program));
                break;
            }
        };
        match attach_program(program, p.point, btf) {
            Ok(link) => attached.push(Attachment {
                program: p.program,
                point: p.point,
                _link: link,
            }),
            Err(e) => {
                let detail = match e.downcast_ref::<aya::programs::ProgramError>() {
                    Some(pe) => super::describe_error(pe),
                    None => format!("{e:#}"),
                };
                result = Err(anyhow!("{} ({}): {detail}", p.point, p.program));
                break;
            }
        }
    }
    if let Err(e) = result {
        // A strategy is all or nothing: detach and unload what it attached so the next
        // one does not count the same copies twice.
        let names: Vec<&'static str> = attached.iter().map(|a| a.program).collect();
        drop(attached);
        for name in names {
            if let Some(program) = ebpf.program_mut(name) {
                unload(program);
            }
        }
        return Err(e);
    }
    Ok(attached)
}

/// Checks an on-demand strategy (layouts, tracepoints, programs) and, with `load`, loads
/// its programs without attaching them. On-demand events use classic tracepoints only.
fn prepare_strategy(
    ebpf: &mut Ebpf,
    strategy: &Strategy,
    discovery: &OffsetDiscovery,
    tracefs: &Path,
    load: bool,
) -> Result<()> {
    for need in strategy.needs {
        if let Some(reason) = discovery.missing.get(need) {
            return Err(anyhow!("kernel layout unknown: {reason}"));
        }
    }
    let mut loaded: Vec<&'static str> = Vec::new();
    let mut result = Ok(());
    for p in strategy.programs {
        let AttachPoint::Tracepoint { category, name } = p.point else {
            result = Err(anyhow!(
                "{}: on-demand events support tracepoints only",
                p.point
            ));
            break;
        };
        if !tracefs.join("events").join(category).join(name).is_dir() {
            result = Err(anyhow!(
                "tracepoint {category}/{name} does not exist on this kernel ({})",
                tracefs.join("events").join(category).join(name).display()
            ));
            break;
        }
        match ebpf.program_mut(p.program) {
            Some(Program::TracePoint(tp)) => {
                if load && tp.fd().is_err() {
                    if let Err(e) = tp.load() {
                        result = Err(anyhow!(
                            "{} ({}): {}",
                            p.point,
                            p.program,
                            super::describe_error(&e)
                        ));
                        break;
                    }
                    loaded.push(p.program);
                }
            }
            Some(_) => {
                result = Err(anyhow!("the program has the wrong type for {}", p.point));
                break;
            }
            None => {
                result = Err(anyhow!("eBPF object has no program {}", p.program));
                break;
            }
        }
    }
    if result.is_err() {
        for name in loaded {
            if let Some(program) = ebpf.program_mut(name) {
                unload(program);
            }
        }
    }
    result
}

/// Loads the object `bytes` into the kernel with its trace maps sized for
/// `trace_ring_bytes` of calls (a power of two, at least a page); None: no trace, the
/// trace maps at their smallest (a page of calls, one in-flight entry). Returns the
/// object and how its per-CPU trace rings are laid out.
pub(super) fn load_object(
    bytes: &[u8],
    trace_ring_bytes: Option<u32>,
) -> Result<(Ebpf, maps::LogLayout)> {
    let page = sys_page_size();
    let (ring_bytes, inflight_entries) = match trace_ring_bytes {
        Some(bytes) => {
            if !bytes.is_power_of_two() || bytes < page {
                return Err(anyhow!(
                    "trace ring buffer size {bytes} must be a power of two of at least one \
                     page ({page} bytes)"
                ));
            }
            (bytes, TRACE_INFLIGHT_ENTRIES)
        }
        None => (page, 1),
    };
    let log = maps::LogLayout::new(ring_bytes, possible_cpus());
    let records = u64::from(log.records_per_cpu);
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(maps::RING_MAP, page)
        .map_max_entries(maps::LOG_MAP, log.entries())
        .map_max_entries(maps::LOG_POS_MAP, 2 * log.cpus)
        .map_max_entries(maps::INFLIGHT_MAP, inflight_entries)
        .override_global(maps::LOG_RECORDS_GLOBAL, &records, true)
        .override_global(maps::WAKE_EVERY_GLOBAL, &log.wake_every, true);
    let ebpf = loader
        .load(bytes)
        .context("loading netcopy's eBPF object into the kernel")?;
    Ok((ebpf, log))
}

/// CPUs the kernel may run programs on (per-CPU maps have one slot for each); 1 when the
/// list cannot be read, which only makes the trace wake its reader more often.
pub(crate) fn possible_cpus() -> u32 {
    aya::util::nr_cpus()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn sys_page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}

fn need_btf(btf: Option<&Btf>) -> Result<&Btf> {
    btf.ok_or_else(|| anyhow!("needs kernel BTF ({VMLINUX_BTF}), which is unavailable"))
}

/// Loads `program` for `point` (unless it is loaded) and attaches it there.
fn attach_program(program: &mut Program, point: AttachPoint, btf: Option<&Btf>) -> Result<Link> {
    load_for(program, point, btf)?;
    attach_loaded(program, point)
}

/// Loads `program` for `point`, unless it is loaded (tp_btf, fentry and fexit programs
/// are loaded for their hook, and need the kernel's BTF for it).
pub(super) fn load_for(program: &mut Program, point: AttachPoint, btf: Option<&Btf>) -> Result<()> {
    if program_fd_missing(program) {
        match (point, &mut *program) {
            (AttachPoint::Tracepoint { .. }, Program::TracePoint(tp)) => tp.load()?,
            (AttachPoint::BtfTracepoint { name }, Program::BtfTracePoint(tp)) => {
                tp.load(name, need_btf(btf)?)?
            }
            (AttachPoint::Kprobe { .. }, Program::KProbe(kp))
                if matches!(kp.kind(), ProbeKind::Entry) =>
            {
                kp.load()?
            }
            (AttachPoint::Kretprobe { .. }, Program::KProbe(kp))
                if matches!(kp.kind(), ProbeKind::Return) =>
            {
                kp.load()?
            }
            (AttachPoint::Fentry { function }, Program::FEntry(fe)) => {
                fe.load(function, need_btf(btf)?)?
            }
            (AttachPoint::Fexit { function }, Program::FExit(fe)) => {
                fe.load(function, need_btf(btf)?)?
            }
            (point, _) => return Err(anyhow!("the program has the wrong type for {point}")),
        }
    }
    Ok(())
}

fn program_fd_missing(program: &Program) -> bool {
    match program {
        Program::TracePoint(p) => p.fd().is_err(),
        Program::BtfTracePoint(p) => p.fd().is_err(),
        Program::KProbe(p) => p.fd().is_err(),
        Program::FEntry(p) => p.fd().is_err(),
        Program::FExit(p) => p.fd().is_err(),
        _ => true,
    }
}

/// Attaches the loaded `program` to `point` (tp_btf, fentry and fexit programs were
/// loaded for their hook, so `point` only names it) and takes the link out of aya's
/// table, so that the attachment lives exactly as long as the returned link.
pub(super) fn attach_loaded(program: &mut Program, point: AttachPoint) -> Result<Link> {
    Ok(match (point, program) {
        (AttachPoint::Tracepoint { category, name }, Program::TracePoint(tp)) => {
            let id = tp.attach(category, name)?;
            Link::TracePoint(tp.take_link(id)?)
        }
        (AttachPoint::BtfTracepoint { .. }, Program::BtfTracePoint(tp)) => {
            let id = tp.attach()?;
            Link::BtfTracePoint(tp.take_link(id)?)
        }
        (AttachPoint::Kprobe { function }, Program::KProbe(kp))
            if matches!(kp.kind(), ProbeKind::Entry) =>
        {
            let id = kp.attach(function, 0)?;
            Link::KProbe(kp.take_link(id)?)
        }
        (AttachPoint::Kretprobe { function }, Program::KProbe(kp))
            if matches!(kp.kind(), ProbeKind::Return) =>
        {
            let id = kp.attach(function, 0)?;
            Link::KProbe(kp.take_link(id)?)
        }
        (AttachPoint::Fentry { .. }, Program::FEntry(fe)) => {
            let id = fe.attach()?;
            Link::FEntry(fe.take_link(id)?)
        }
        (AttachPoint::Fexit { .. }, Program::FExit(fe)) => {
            let id = fe.attach()?;
            Link::FExit(fe.take_link(id)?)
        }
        (point, _) => return Err(anyhow!("the program has the wrong type for {point}")),
    })
}

/// Drops `links` (owned links: dropping one detaches its program) from threads of their
/// own. Each detach of a classic tracepoint's last user waits for an RCU grace period in
/// the kernel (tens of milliseconds; ~1.5 s for the trace's dozen one after another).
/// Detached side by side, the waits overlap.
pub(super) fn detach_side_by_side<L: Send>(links: Vec<L>) {
    std::thread::scope(|scope| {
        for link in links {
            let spawned = std::thread::Builder::new()
                .name("netcopy-detach".into())
                .spawn_scoped(scope, move || drop(link));
            // Without a thread the detach happens here, in turn (the closure, and the
            // link in it, is dropped with the error).
            drop(spawned);
        }
    });
}

fn unload(program: &mut Program) {
    let _ = match program {
        Program::TracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        _ => Ok(()),
    };
}

fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is reported via errno only.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

/// Where the tracefs `events` directory is, for messages.
pub fn tracefs_path() -> Option<PathBuf> {
    crate::kernel::host::tracefs().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_format(root: &Path, category: &str, name: &str, fields: &[(&str, u32, u32)]) {
        let dir = root.join("events").join(category).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!("name: {name}\nID: 1\nformat:\n");
        text.push_str("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n");
        for (field, offset, size) in fields {
            text.push_str(&format!(
                "\tfield:long {field};\toffset:{offset};\tsize:{size};\tsigned:1;\n"
            ));
        }
        std::fs::write(dir.join("format"), text).unwrap();
    }

    #[test]
    fn tracepoint_fields_read_at_constant_offsets_are_checked() {
        let root = std::env::temp_dir().join(format!("netcopy-loader-tp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // The receive copy's record with `len` moved.
        write_format(
            &root,
            "skb",
            "skb_copy_datagram_iovec",
            &[("skbaddr", 8, 8), ("len", 24, 4)],
        );
        let discovery = OffsetDiscovery::run(&root, None);
        let _ = std::fs::remove_dir_all(&root);
        let why = &discovery.missing[&Layout::TpSkbCopyLen];
        assert!(
            why.contains("skb/skb_copy_datagram_iovec keeps `len` at offset 24")
                && why.contains("reads it at 16"),
            "{why}"
        );
    }
}
