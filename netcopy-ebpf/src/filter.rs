//! Which processes are ours: the filter map, and following forks of filtered processes.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use netcopy_common::FilterEntry;

use crate::offsets::offsets;

/// tgid -> slot: the only processes whose copies are counted.
#[map(name = "NETCOPY_FILTER")]
static FILTER: HashMap<u32, FilterEntry> = HashMap::with_max_entries(1024, 0);

/// Bumped by the user side after every change it makes to the filter (a watch or an
/// unwatch); 0 until the first one, which turns the cache below off.
#[map(name = "NETCOPY_FILTER_GENERATION")]
static GENERATION: Array<u64> = Array::with_max_entries(1, 0);

/// Entries of the per-CPU cache, indexed by the tgid's low bits. Two processes taking
/// turns on one CPU (a server and its client) evict each other's entry on every call
/// when their tgids agree in those bits: with 4 entries one pair in 4 did, and paid a
/// filter lookup per call; with 64, one in 64 (1 KiB per CPU).
const CACHE_WAYS: u32 = 64;

/// A filter answer this CPU found, valid while the generation is unchanged.
#[derive(Clone, Copy)]
#[repr(C)]
struct CachedSlot {
    tgid: u32,
    slot: u32,
    generation: u64,
}

/// Per CPU: the last filter answers, so that the programs on the send and receive paths
/// (several calls per message) read one local array entry instead of hashing the tgid
/// into the filter map on every call.
#[map(name = "NETCOPY_FILTER_CACHE")]
static CACHE: PerCpuArray<CachedSlot> = PerCpuArray::with_max_entries(CACHE_WAYS, 0);

/// Slot of the current process, or None when it is not being measured.
///
/// Only answers found in the filter are cached. A cached answer is used while the
/// generation it was found in is current: the user side removes an entry and then bumps
/// the generation, so an answer read before the removal is dropped with the bump (the
/// same window a lookup racing the removal has without the cache).
#[inline(always)]
pub fn current_slot() -> Option<u32> {
    slot_of(bpf_get_current_pid_tgid())
}

/// [`current_slot`] from a `bpf_get_current_pid_tgid()` the caller already has.
#[inline(always)]
pub fn slot_of(pid_tgid: u64) -> Option<u32> {
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a plain u64 in an array map; a concurrent bump gives the old or new value.
    let generation = GENERATION
        .get_ptr(0)
        .map(|g| unsafe { core::ptr::read_volatile(g) })
        .unwrap_or(0);
    let cached = CACHE.get_ptr_mut(tgid % CACHE_WAYS);
    if generation != 0 {
        if let Some(c) = cached {
            // SAFETY: a per-CPU entry, only touched by programs on this CPU.
            let c = unsafe { &mut *c };
            if c.tgid == tgid && c.generation == generation {
                return Some(c.slot);
            }
        }
    }
    // SAFETY: FilterEntry is plain data; a concurrent delete can at worst give a stale copy.
    let slot = unsafe { FILTER.get(tgid) }.map(|entry| entry.slot)?;
    if generation != 0 {
        if let Some(c) = cached {
            // SAFETY: as above.
            unsafe {
                *c = CachedSlot {
                    tgid,
                    slot,
                    generation,
                }
            };
        }
    }
    Some(slot)
}

/// `sched/sched_process_fork`: a child of a followed process is measured too, so that
/// `netcopy trace -- COMMAND` sees every process the command starts.
#[tracepoint]
pub fn netcopy_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

#[inline(always)]
fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    let offsets = offsets().ok_or(0)?;
    // SAFETY: offsets come from this kernel's tracefs format file for this tracepoint.
    let parent: i32 =
        unsafe { ctx.read_at(offsets.tp_fork_parent_pid as usize) }.map_err(i64::from)?;
    let child: i32 =
        unsafe { ctx.read_at(offsets.tp_fork_child_pid as usize) }.map_err(i64::from)?;
    let parent = parent as u32;
    // SAFETY: plain data, see current_slot.
    let entry = match unsafe { FILTER.get(parent) } {
        Some(entry) if entry.follow_forks != 0 => *entry,
        _ => return Ok(()),
    };
    // A thread created with clone(CLONE_THREAD) also fires this tracepoint with its tid as
    // child_pid; inserting it is harmless because lookups use the tgid.
    FILTER
        .insert(child as u32, FilterEntry { ..entry }, 0)
        .map_err(|e| {
            warn!(
                ctx,
                "netcopy: filter map full, child {} of {} not followed", child, parent
            );
            e as i64
        })
}
