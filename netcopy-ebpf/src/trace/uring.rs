//! io_uring requests of traced processes, which never go through the socket system
//! calls: `io_uring/io_uring_submit_req` (`io_uring_submit_sqe` before Linux 6.3; in the
//! submitting task, or its SQPOLL thread of the same thread group) and
//! `io_uring/io_uring_complete` (`io_uring_create` forgets a ring address made anew),
//! logged into the same per-CPU logs as the calls, as [`IoUringEvent`] records.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use netcopy_common::{
    IoUringEvent, SyscallEvent, IORING_OP_SENDMSG_ZC, IORING_OP_SEND_ZC, IO_URING_SEND_FLAGS_KNOWN,
    TP_URING_COMPLETE_CFLAGS_OFFSET, TP_URING_COMPLETE_RES_OFFSET, TP_URING_CREATE_CTX_OFFSET,
    TP_URING_CTX_OFFSET, TP_URING_REQ_OFFSET, TP_URING_SUBMIT_OPCODE_OFFSET,
    TP_URING_USER_DATA_OFFSET, TRACE_KIND_IO_URING_COMPLETE, TRACE_KIND_IO_URING_SUBMIT,
    TRACE_LOST_RING_FULL,
};

use super::{append, lost, ring_doorbell_if_due, slot_mask, TRACE_OFFSETS};
use crate::{filter::current_slot, offsets::field};

/// Rings (`struct io_ring_ctx *`) a traced process submitted to, with its filter slot
/// (low word) and tgid (high word): completions are posted wherever the kernel completes
/// them (the submitter's task work, an io-wq worker), so they are told ours by their ring.
#[map(name = "NETCOPY_TRACE_URING_RINGS")]
static URING_RINGS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// One per CPU: the io_uring record being built (the programs cannot nest on a CPU:
/// classic tracepoint programs skip while another runs there).
#[map(name = "NETCOPY_TRACE_URING_SCRATCH")]
static URING_SCRATCH: PerCpuArray<IoUringEvent> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn tp_field<T: Copy>(ctx: &TracePointContext, offset: u32) -> T {
    // SAFETY: a constant offset inside the record, checked against this kernel's tracefs
    // format file by the loader.
    unsafe { *(ctx.as_ptr().add(offset as usize) as *const T) }
}

/// Logs one io_uring event of slot `slot` on ring `ring`, of process `pid` and thread
/// `tid`.
#[inline(always)]
fn log_uring(ctx: &TracePointContext, kind: u32, ring: u64, slot: u32, pid: u32, tid: u32) {
    let Some(event) = URING_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch entry; no other program uses it while this one runs.
    unsafe {
        (*event).time_ns = bpf_ktime_get_ns();
        (*event).ring = ring;
        (*event).request = tp_field::<u64>(ctx, TP_URING_REQ_OFFSET);
        (*event).user_data = tp_field::<u64>(ctx, TP_URING_USER_DATA_OFFSET);
        (*event).pid = pid;
        (*event).tid = tid;
        (*event).kind = kind;
        (*event).slot = slot;
        if kind == TRACE_KIND_IO_URING_SUBMIT {
            let opcode = u32::from(tp_field::<u8>(ctx, TP_URING_SUBMIT_OPCODE_OFFSET));
            (*event).opcode = opcode;
            (*event).res = 0;
            (*event).cflags = 0;
            (*event).send_flags = 0;
            if opcode == IORING_OP_SEND_ZC || opcode == IORING_OP_SENDMSG_ZC {
                // The send's flags (REPORT_USAGE among them): prepared before the
                // tracepoint fires.
                if let Some(off) = TRACE_OFFSETS.get(0) {
                    if let Some(flags) = field::<u16>((*event).request, off.uring_req_send_flags) {
                        (*event).send_flags = u32::from(flags) | IO_URING_SEND_FLAGS_KNOWN;
                    }
                }
            }
        } else {
            (*event).opcode = 0;
            (*event).send_flags = 0;
            (*event).res = i64::from(tp_field::<i32>(ctx, TP_URING_COMPLETE_RES_OFFSET));
            (*event).cflags = tp_field::<u32>(ctx, TP_URING_COMPLETE_CFLAGS_OFFSET);
        }
        if append(event as *const SyscallEvent) {
            ring_doorbell_if_due();
        } else {
            lost(TRACE_LOST_RING_FULL);
        }
    }
}

/// `io_uring/io_uring_submit_req`, in the submitting task (or its SQPOLL thread, of the
/// same thread group): a request of a traced process.
#[tracepoint]
pub fn netcopy_trace_uring_submit(ctx: TracePointContext) -> u32 {
    submitted(&ctx)
}

/// `io_uring/io_uring_submit_sqe`, the same event before Linux 6.3 renamed it (and dropped
/// its `force_nonblock`): `ctx`, `req`, `user_data` and `opcode` sit where they do in
/// `io_uring_submit_req` (the loader checks), so the record is read the same way. A
/// program of its own, so that each program belongs to one strategy (`declared_points`
/// names a program's hooks by the first strategy that declares it).
#[tracepoint]
pub fn netcopy_trace_uring_submit_sqe(ctx: TracePointContext) -> u32 {
    submitted(&ctx)
}

#[inline(always)]
fn submitted(ctx: &TracePointContext) -> u32 {
    let mask = slot_mask();
    if mask == 0 {
        return 0;
    }
    let Some(slot) = current_slot() else { return 0 };
    if slot >= 32 || mask & (1 << slot) == 0 {
        return 0;
    }
    let ring = tp_field::<u64>(ctx, TP_URING_CTX_OFFSET);
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let _ = URING_RINGS.insert(ring, u64::from(slot) | u64::from(pid) << 32, 0);
    log_uring(ctx, TRACE_KIND_IO_URING_SUBMIT, ring, slot, pid, tid);
    0
}

/// `io_uring/io_uring_complete`: a CQE posted on a ring a traced process submitted to.
#[tracepoint]
pub fn netcopy_trace_uring_complete(ctx: TracePointContext) -> u32 {
    let mask = slot_mask();
    if mask == 0 {
        return 0;
    }
    let ring = tp_field::<u64>(&ctx, TP_URING_CTX_OFFSET);
    // SAFETY: plain data in an LRU map.
    let Some(owner) = (unsafe { URING_RINGS.get(ring) }).copied() else {
        return 0;
    };
    let (slot, pid) = (owner as u32, (owner >> 32) as u32);
    if slot >= 32 || mask & (1 << slot) == 0 {
        return 0;
    }
    // Posted by a thread of the process (its own, an io-wq worker), or else on its
    // behalf (another task's context): then booked to its main thread.
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = if (pid_tgid >> 32) as u32 == pid {
        pid_tgid as u32
    } else {
        pid
    };
    log_uring(&ctx, TRACE_KIND_IO_URING_COMPLETE, ring, slot, pid, tid);
    0
}

/// `io_uring/io_uring_create`, for every ring made on the machine while a trace runs: a
/// new ring may sit where a traced process's freed one was, and is not ours until a
/// traced process submits to it.
#[tracepoint]
pub fn netcopy_trace_uring_create(ctx: TracePointContext) -> u32 {
    if slot_mask() == 0 {
        return 0;
    }
    let ring = tp_field::<u64>(&ctx, TP_URING_CREATE_CTX_OFFSET);
    let _ = URING_RINGS.remove(ring);
    0
}
