//! Loads netcopy's eBPF object, carries out the attach plan and reads the copy ledger.

use std::{collections::HashMap, path::PathBuf};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap as BpfHashMap, PerCpuArray},
    programs::{Program, TracePoint},
    Ebpf, EbpfLoader,
};
use netcopy_common::{
    counter_index, CopySite, FilterEntry, KernelOffsets, SiteCounter, SITE_COUNT, SLOT_COUNT,
};

use super::{
    object,
    plan::{
        AttachPlan, AttachPoint, ChosenStrategy, EventPlan, RejectedStrategy, Strategy, PROBES,
    },
    tracefs::TracepointFormat,
};
use crate::sys;

const FILTER_MAP: &str = "NETCOPY_FILTER";
const COUNTERS_MAP: &str = "NETCOPY_COUNTERS";
const OFFSETS_MAP: &str = "NETCOPY_OFFSETS";

/// Counters of every slot and site, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    counters: [[SiteCounter; SITE_COUNT]; SLOT_COUNT],
}

impl CopyCounts {
    pub fn get(&self, slot: u32, site: CopySite) -> SiteCounter {
        self.counters[slot as usize][site as usize]
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

/// Offsets found for this kernel, and the attach points that cannot be used because a
/// field they need is missing.
struct OffsetDiscovery {
    offsets: KernelOffsets,
    unusable: HashMap<String, String>,
}

impl OffsetDiscovery {
    fn run(tracefs: &std::path::Path) -> Self {
        let mut offsets = KernelOffsets::default();
        let mut unusable = HashMap::new();
        let mut read = |category: &str, name: &str, field: &str, size: u32| -> Option<u32> {
            let format = TracepointFormat::read(tracefs, category, name);
            match format.and_then(|f| f.offset(field, size)) {
                Ok(off) => Some(off),
                Err(e) => {
                    let label = format!("tracepoint {category}/{name}");
                    unusable.entry(label).or_insert_with(|| format!("{e:#}"));
                    None
                }
            }
        };
        if let Some(off) = read("skb", "skb_copy_datagram_iovec", "len", 4) {
            offsets.tp_skb_copy_len = off;
        }
        if let Some(off) = read("sched", "sched_process_fork", "parent_pid", 4) {
            offsets.tp_fork_parent_pid = off;
        }
        if let Some(off) = read("sched", "sched_process_fork", "child_pid", 4) {
            offsets.tp_fork_child_pid = off;
        }
        Self { offsets, unusable }
    }
}

/// netcopy's probes, loaded and attached; dropping it detaches and unloads everything.
pub struct CopyProbes {
    ebpf: Ebpf,
    plan: AttachPlan,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl CopyProbes {
    /// Loads the embedded object and attaches the best strategy for every event.
    pub fn load() -> Result<Self> {
        sys::require_root("loading the copy probes")?;
        let bytes = object::bytes()?;
        let tracefs = sys::tracefs()?;
        // Kernels >= 5.11 charge BPF memory to the cgroup; older ones need memlock raised.
        // Failing to raise it (no CAP_SYS_RESOURCE) is not an error in itself.
        raise_memlock();
        let discovery = OffsetDiscovery::run(&tracefs);
        let mut ebpf = EbpfLoader::new()
            .load(bytes)
            .context("loading netcopy's eBPF object into the kernel")?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        {
            let mut offsets: Array<_, KernelOffsets> = Array::try_from(
                ebpf.map_mut(OFFSETS_MAP)
                    .ok_or_else(|| anyhow!("eBPF object has no map {OFFSETS_MAP}"))?,
            )?;
            offsets
                .set(0, discovery.offsets, 0)
                .context("writing kernel offsets to the eBPF map")?;
        }
        let mut plan = AttachPlan::default();
        for decl in PROBES {
            let mut event_plan = EventPlan {
                event: decl.event,
                chosen: None,
                rejected: Vec::new(),
            };
            for strategy in decl.strategies {
                match attach_strategy(&mut ebpf, strategy, &discovery) {
                    Ok(()) => {
                        event_plan.chosen = Some(ChosenStrategy {
                            label: strategy.label,
                            source: strategy.source,
                        });
                        break;
                    }
                    Err(e) => event_plan.rejected.push(RejectedStrategy {
                        label: strategy.label,
                        reason: format!("{e:#}"),
                    }),
                }
            }
            plan.events.push(event_plan);
        }
        Ok(Self { ebpf, plan, logger })
    }

    pub fn plan(&self) -> &AttachPlan {
        &self.plan
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
        Ok(())
    }

    /// Stops counting process `tgid` (no error if it was not watched).
    pub fn unwatch_process(&mut self, tgid: u32) -> Result<()> {
        let mut filter: BpfHashMap<_, u32, FilterEntry> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(FILTER_MAP)
                .ok_or_else(|| anyhow!("eBPF object has no map {FILTER_MAP}"))?,
        )?;
        match filter.remove(&tgid) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing process {tgid} from the filter")),
        }
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

fn attach_strategy(
    ebpf: &mut Ebpf,
    strategy: &Strategy,
    discovery: &OffsetDiscovery,
) -> Result<()> {
    let mut attached: Vec<&'static str> = Vec::new();
    let result = (|| -> Result<()> {
        for p in strategy.programs {
            let label = p.point.to_string();
            if let Some(reason) = discovery.unusable.get(&label) {
                return Err(anyhow!("{reason}"));
            }
            let program = ebpf
                .program_mut(p.program)
                .ok_or_else(|| anyhow!("eBPF object has no program {}", p.program))?;
            match (p.point, program) {
                (AttachPoint::Tracepoint { category, name }, Program::TracePoint(tp)) => {
                    load_once(tp)?;
                    tp.attach(category, name)
                        .with_context(|| format!("attaching {} to {label}", p.program))?;
                }
                (point, _) => {
                    return Err(anyhow!(
                        "program {} has the wrong type for {point}",
                        p.program
                    ))
                }
            }
            attached.push(p.program);
        }
        Ok(())
    })();
    if result.is_err() {
        // A strategy is all or nothing: unload what it attached so the next one does not
        // count the same copies twice.
        for name in attached {
            if let Some(Program::TracePoint(tp)) = ebpf.program_mut(name) {
                let _ = tp.unload();
            }
        }
    }
    result
}

fn load_once(tp: &mut TracePoint) -> Result<()> {
    if tp.fd().is_err() {
        tp.load().context("loading tracepoint program")?;
    }
    Ok(())
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
    sys::tracefs().ok()
}
