//! Which processes are ours: the filter map, and following forks of filtered processes.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use aya_log_ebpf::warn;
use netcopy_common::FilterEntry;

use crate::maps::{offsets, FILTER};

/// Slot of the current process, or None when it is not being measured.
#[inline(always)]
pub fn current_slot() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: FilterEntry is plain data; a concurrent delete can at worst give a stale copy.
    unsafe { FILTER.get(&tgid) }.map(|entry| entry.slot)
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
    let entry = match unsafe { FILTER.get(&parent) } {
        Some(entry) if entry.follow_forks != 0 => *entry,
        _ => return Ok(()),
    };
    // A thread created with clone(CLONE_THREAD) also fires this tracepoint with its tid as
    // child_pid; inserting it is harmless because lookups use the tgid.
    FILTER
        .insert(&(child as u32), &FilterEntry { ..entry }, 0)
        .map_err(|e| {
            warn!(
                ctx,
                "netcopy: filter map full, child {} of {} not followed", child, parent
            );
            e as i64
        })
}
