//! The library side of `netcopy trace`: start tracing the processes of some filter slots
//! on loaded [`CopyProbes`], drain the per-CPU call logs, stop and get every call back.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf};
use netcopy_common::{SyscallEvent, SLOT_COUNT, TRACE_LOST_INFLIGHT_FULL, TRACE_LOST_RING_FULL};

use super::{
    event::SyscallRecord,
    log::CallLog,
    store::RawRecords,
    summary::{LostCounts, TraceSummary},
    uring::UringRecord,
    zerocopy::ZeroCopyAccount,
};
use crate::kernel::{
    maps::{INFLIGHT_MAP, LOG_MAP, LOG_POS_MAP, LOST_MAP, RING_MAP, SLOTS_MAP, URING_RINGS_MAP},
    plan::KernelEvent,
    CopyProbes,
};
use crate::util::time::monotonic_ns;

/// Everything a finished trace recorded.
#[derive(Clone, Debug)]
pub struct TraceOutput {
    /// Every recorded call, as the logs delivered them: at every drain, each CPU's calls
    /// in the order they ended (`in_start_order` gives the writers a timeline).
    pub events: Vec<SyscallRecord>,
    /// The io_uring events of the traced processes (submits and completions), in the
    /// order they happened.
    pub io_uring: Vec<UringRecord>,
    /// The zero-copy sends of `events` and `io_uring`, and what became of them.
    pub zerocopy: ZeroCopyAccount,
    /// Calls that could not be recorded.
    pub lost: LostCounts,
    pub summary: TraceSummary,
    /// CLOCK_MONOTONIC when the trace started and stopped, ns (the clock of the events).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Wall clock at the start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Thread and process names (`comm`) by tid, as seen while tracing.
    pub names: BTreeMap<u32, String>,
    /// What the trace could not cover on this kernel, in words.
    pub notes: Vec<String>,
}

impl TraceOutput {
    /// The calls in the order they started (of equal starts, in delivery order). Sorts
    /// references: sorting the records themselves (about 150 bytes each) costs more than
    /// draining them did.
    pub(super) fn in_start_order(&self) -> Vec<(usize, &SyscallRecord)> {
        let mut calls: Vec<(usize, &SyscallRecord)> = self.events.iter().enumerate().collect();
        calls.sort_by_key(|(_, r)| r.start_ns);
        calls
    }
}

/// A running syscall trace. Only one can run on a [`CopyProbes`] at a time.
pub struct SyscallTracer {
    /// The doorbell: the programs ring it every so many calls; its fd is what to poll.
    ring: RingBuf<MapData>,
    log: CallLog,
    ring_id: u32,
    slots: Array<MapData, u32>,
    lost: PerCpuArray<MapData, u64>,
    inflight: BpfHashMap<MapData, u32, SyscallEvent>,
    lost_baseline: LostCounts,
    attached: Vec<KernelEvent>,
    raw: RawRecords,
    names: BTreeMap<u32, String>,
    notes: Vec<String>,
    malformed: u64,
    /// The (pid, tid) of the last record whose names were looked up: consecutive
    /// records of one thread skip the lookup.
    last_named: (u32, u32),
    start_ns: u64,
    start_unix_ns: u64,
    active: bool,
}

/// The events a trace attaches: the socket calls are required; write/read on sockets and
/// io_uring requests are traced where the kernel allows it (a note says when not).
const REQUIRED: KernelEvent = KernelEvent::TraceSocketCalls;
const OPTIONAL: [(KernelEvent, &str); 2] = [
    (
        KernelEvent::TraceSocketReadWrite,
        "write, read, writev and readv on sockets are not traced",
    ),
    (
        KernelEvent::TraceIoUring,
        "io_uring requests are not traced",
    ),
];

impl SyscallTracer {
    /// Starts tracing every process in filter slots `slots` (put them there with
    /// [`CopyProbes::watch_process`]; with `follow_forks` their children are traced too).
    /// The probes must have been loaded with `LoadOptions::trace_ring_bytes`.
    pub fn start(probes: &mut CopyProbes, slots: &[u32]) -> Result<SyscallTracer> {
        if probes.options().trace_ring_bytes.is_none() {
            bail!(
                "these probes were loaded without room for a syscall trace: load them with \
                 CopyProbes::load_with(LoadOptions {{ trace_ring_bytes: Some(..), .. }})"
            );
        }
        let mut mask = 0u32;
        for &slot in slots {
            if slot as usize >= SLOT_COUNT {
                bail!("slot {slot} out of range (0..{SLOT_COUNT})");
            }
            mask |= 1 << slot;
        }
        if mask == 0 {
            bail!("no filter slot to trace");
        }
        let ring_map = probes.map_handle(RING_MAP)?;
        let ring_id = map_id(&ring_map)?;
        let ring = RingBuf::try_from(ring_map).context("opening the trace doorbell ring buffer")?;
        let log = CallLog::open(
            &probes.map_handle(LOG_MAP)?,
            &probes.map_handle(LOG_POS_MAP)?,
            probes.trace_log_layout(),
        )?;
        let slots_map: Array<MapData, u32> = Array::try_from(probes.map_handle(SLOTS_MAP)?)?;
        let lost: PerCpuArray<MapData, u64> = PerCpuArray::try_from(probes.map_handle(LOST_MAP)?)?;
        let inflight: BpfHashMap<MapData, u32, SyscallEvent> =
            BpfHashMap::try_from(probes.map_handle(INFLIGHT_MAP)?)?;
        if slots_map
            .get(&0, 0)
            .context("reading the trace slot mask")?
            != 0
        {
            bail!("a syscall trace is already running on these probes");
        }
        let mut tracer = SyscallTracer {
            ring,
            log,
            ring_id,
            slots: slots_map,
            lost,
            inflight,
            lost_baseline: LostCounts::default(),
            attached: Vec::new(),
            raw: RawRecords::default(),
            names: BTreeMap::new(),
            notes: Vec::new(),
            malformed: 0,
            last_named: (0, 0),
            start_ns: 0,
            start_unix_ns: 0,
            active: false,
        };
        // Leftovers of an earlier trace that stopped with calls in flight, and its rings
        // (whose addresses a new ring of another process may take).
        tracer.clear_inflight()?;
        clear_rings(probes)?;
        while tracer.ring.next().is_some() {}
        tracer.log.discard();
        tracer.lost_baseline = tracer.read_lost()?;
        if let Err(e) = probes.attach_on_demand(REQUIRED) {
            return Err(e.context("cannot trace socket system calls"));
        }
        tracer.attached.push(REQUIRED);
        for (event, consequence) in OPTIONAL {
            match probes.attach_on_demand(event) {
                Ok(()) => tracer.attached.push(event),
                Err(e) => tracer.notes.push(format!("{consequence}: {e:#}")),
            }
        }
        tracer.start_ns = monotonic_ns();
        tracer.start_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        if let Err(e) = tracer.slots.set(0, mask, 0) {
            for event in tracer.attached.drain(..) {
                let _ = probes.detach_on_demand(event);
            }
            return Err(anyhow::Error::new(e).context("enabling the trace"));
        }
        tracer.active = true;
        Ok(tracer)
    }

    /// The doorbell ring buffer's fd, to poll it alongside other fds; call [`SyscallTracer::drain`]
    /// when it is readable.
    pub(super) fn ring_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ring.as_fd()
    }

    /// Waits up to `timeout` for events, then drains them; returns how many were added.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize> {
        let mut fds = [libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(anyhow::Error::new(err).context("polling the trace doorbell"));
            }
        }
        Ok(self.drain())
    }

    /// Takes every call waiting in the logs; returns how many.
    pub fn drain(&mut self) -> usize {
        // The doorbell's records carry nothing: they only woke this thread.
        while self.ring.next().is_some() {}
        let SyscallTracer {
            log,
            raw,
            names,
            last_named,
            ..
        } = self;
        log.drain(|event| {
            // Names now: the thread may be gone by the time the trace stops.
            if *last_named != (event.pid, event.tid) {
                learn_names(names, event.pid, event.tid);
                *last_named = (event.pid, event.tid);
            }
            raw.push(event);
        })
    }

    /// Decodes what was drained since the last call (counting undecodable records).
    fn take_records(&mut self) -> (Vec<SyscallRecord>, Vec<UringRecord>) {
        let (records, uring, malformed) = std::mem::take(&mut self.raw).decode();
        self.malformed += malformed;
        (records, uring)
    }

    /// Stops recording new calls without detaching the programs (the slot mask goes to 0,
    /// so they return at once). Detaching costs an RCU grace period per tracepoint (over a
    /// second for all of them in a VM); a caller that takes many short samples, like
    /// `netcopy run`, pauses between them instead.
    pub fn pause(&mut self) -> Result<()> {
        self.slots.set(0, 0, 0).context("pausing the trace")?;
        self.drain();
        Ok(())
    }

    /// Records again after [`SyscallTracer::pause`], for the same slots as at the start.
    pub fn resume(&mut self, slots: &[u32]) -> Result<()> {
        let mask = slots
            .iter()
            .filter(|&&s| (s as usize) < SLOT_COUNT)
            .fold(0u32, |m, &s| m | 1 << s);
        if mask == 0 {
            bail!("no filter slot to trace");
        }
        self.slots.set(0, mask, 0).context("resuming the trace")?;
        Ok(())
    }

    /// Everything recorded since the start or the previous take, as a finished trace of
    /// its own; the tracer keeps running (or paused) and starts a new sample.
    pub fn take_sample(&mut self) -> Result<TraceOutput> {
        self.drain();
        let end_ns = monotonic_ns();
        let lost = self.lost()?;
        let (records, uring) = self.take_records();
        let zerocopy = ZeroCopyAccount::build(&records, &uring);
        let summary = self.summarize(&records, &uring, &zerocopy, lost, end_ns);
        let output = TraceOutput {
            events: records,
            io_uring: uring,
            zerocopy,
            lost,
            summary,
            start_ns: self.start_ns,
            end_ns,
            start_unix_ns: self.start_unix_ns,
            names: self.names.clone(),
            notes: self.notes.clone(),
        };
        self.lost_baseline = self.read_lost()?;
        self.start_ns = end_ns;
        self.start_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Ok(output)
    }

    /// Calls lost since the start.
    pub fn lost(&self) -> Result<LostCounts> {
        let now = self.read_lost()?;
        Ok(LostCounts {
            ring_full: now.ring_full.wrapping_sub(self.lost_baseline.ring_full),
            inflight_full: now
                .inflight_full
                .wrapping_sub(self.lost_baseline.inflight_full),
        })
    }

    /// Stops recording, detaches the trace programs (they are unloaded: nothing of the
    /// trace stays in the kernel), drains what is left and returns the whole trace.
    /// `probes` must be the probes the trace was started on. The calling thread is a
    /// normal thread again afterwards (see [`end_drain_priority`]).
    ///
    /// [`end_drain_priority`]: super::priority::end_drain_priority
    pub fn stop(mut self, probes: &mut CopyProbes) -> Result<TraceOutput> {
        let same = probes
            .map_handle(RING_MAP)
            .and_then(|m| map_id(&m))
            .map(|id| id == self.ring_id)
            .unwrap_or(false);
        if !same {
            bail!("SyscallTracer::stop was given other probes than the trace was started on");
        }
        // New calls are no longer recorded; calls already in flight still complete and
        // are delivered until the programs are detached.
        self.slots.set(0, 0, 0).context("disabling the trace")?;
        self.active = false;
        let mut detach_errors = Vec::new();
        for event in std::mem::take(&mut self.attached) {
            if let Err(e) = probes.detach_on_demand(event) {
                detach_errors.push(format!("{e:#}"));
            }
        }
        self.log.forget_absence();
        self.drain();
        // The logs are empty and nothing writes them any more: what is left (decoding,
        // the summary) runs as a normal thread, not at the drain's priority, which would
        // throttle it to the drain's budget or keep a CPU from everything else.
        super::priority::end_drain_priority();
        let end_ns = monotonic_ns();
        let lost = self.lost()?;
        self.clear_inflight()?;
        if !detach_errors.is_empty() {
            bail!("detaching the trace programs: {}", detach_errors.join("; "));
        }
        let _ = clear_rings(probes);
        let (records, uring) = self.take_records();
        if self.malformed > 0 {
            self.notes.push(format!(
                "{} records were malformed (an unknown system call) and skipped",
                self.malformed
            ));
        }
        let zerocopy = ZeroCopyAccount::build(&records, &uring);
        if zerocopy.unmatched_numbers > 0 || zerocopy.unmatched_uring_notifications > 0 {
            self.notes.push(format!(
                "zero-copy completions named {} MSG_ZEROCOPY sends and {} io_uring sends                  that were not traced (sent before the trace started)",
                zerocopy.unmatched_numbers, zerocopy.unmatched_uring_notifications
            ));
        }
        let summary = self.summarize(&records, &uring, &zerocopy, lost, end_ns);
        Ok(TraceOutput {
            events: records,
            io_uring: uring,
            zerocopy,
            lost,
            summary,
            start_ns: self.start_ns,
            end_ns,
            start_unix_ns: self.start_unix_ns,
            names: std::mem::take(&mut self.names),
            notes: std::mem::take(&mut self.notes),
        })
    }

    /// The figures of what was drained since the start or the last sample, with how
    /// full the logs got meanwhile.
    fn summarize(
        &mut self,
        records: &[SyscallRecord],
        uring: &[UringRecord],
        zerocopy: &ZeroCopyAccount,
        lost: LostCounts,
        end_ns: u64,
    ) -> TraceSummary {
        let mut summary = TraceSummary::build(
            records,
            uring,
            zerocopy,
            lost,
            end_ns.saturating_sub(self.start_ns),
        );
        summary.ring = self.log.take_headroom();
        summary
    }

    fn read_lost(&self) -> Result<LostCounts> {
        let sum = |index: u32| -> Result<u64> {
            let per_cpu = self
                .lost
                .get(&index, 0)
                .context("reading the trace's lost counters")?;
            Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(LostCounts {
            ring_full: sum(TRACE_LOST_RING_FULL)?,
            inflight_full: sum(TRACE_LOST_INFLIGHT_FULL)?,
        })
    }

    fn clear_inflight(&mut self) -> Result<()> {
        let keys: Vec<u32> = self.inflight.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            match self.inflight.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("clearing in-flight calls")),
            }
        }
        Ok(())
    }
}

/// Empties the map of rings traced processes submitted to.
fn clear_rings(probes: &mut CopyProbes) -> Result<()> {
    let mut rings: BpfHashMap<MapData, u64, u64> =
        BpfHashMap::try_from(probes.map_handle(URING_RINGS_MAP)?)?;
    let keys: Vec<u64> = rings.keys().filter_map(|k| k.ok()).collect();
    for key in keys {
        match rings.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("clearing the traced rings")),
        }
    }
    Ok(())
}

/// Names of `pid` and `tid` from /proc, for the ones not known yet.
fn learn_names(names: &mut BTreeMap<u32, String>, pid: u32, tid: u32) {
    if names.contains_key(&pid) && names.contains_key(&tid) {
        return;
    }
    for (id, path) in [
        (pid, format!("/proc/{pid}/comm")),
        (tid, format!("/proc/{pid}/task/{tid}/comm")),
    ] {
        if let std::collections::btree_map::Entry::Vacant(slot) = names.entry(id) {
            if let Ok(name) = std::fs::read_to_string(path) {
                slot.insert(name.trim_end().to_string());
            }
        }
    }
}

impl Drop for SyscallTracer {
    fn drop(&mut self) {
        if self.active {
            // Not stopped: at least stop recording. The programs stay attached until
            // the probes are dropped (stop() needs them to detach).
            let _ = self.slots.set(0, 0, 0);
            log::warn!("a syscall trace was dropped without stop(); its programs stay attached until the probes are dropped");
        }
    }
}

fn map_id(map: &Map) -> Result<u32> {
    match map {
        Map::RingBuf(data) => Ok(data.info().context("reading map info")?.id()),
        _ => Err(anyhow!("{RING_MAP} is not a ring buffer")),
    }
}
