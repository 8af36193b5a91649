//! `netcopy trace`: one record per send/receive system call of the traced processes,
//! with the copies the kernel made inside that call.
//!
//! - `syscalls/sys_enter_*` (one program per call) creates a per-thread in-flight record
//!   in `NETCOPY_TRACE_INFLIGHT`, for processes whose filter slot is set in
//!   `NETCOPY_TRACE_SLOTS`. write/read/writev/readv are recorded only when their fd is a
//!   socket: the program follows current->files->fdt->fd[fd]->f_inode->i_mode (offsets
//!   from BTF) and checks S_IFSOCK, so a failed call on a socket is recorded as well as a
//!   successful one, and calls on pipes and files never are.
//! - While a call is in flight, `counters::count` adds the bytes of every send copy, zero-copy
//!   attach and receive copy counted on the same thread to the record (`on_copy`).
//! - `syscalls/sys_exit_*` completes the record (return value, mmsg lengths, recvmsg's
//!   output flags) and appends it to its CPU's log in `NETCOPY_TRACE_LOG`, which the
//!   reader maps into its memory. When the log has no room, a per-CPU lost counter is
//!   incremented instead. Every so many records a CPU rings the reader's doorbell, an
//!   8-byte record in the `NETCOPY_TRACE_EVENTS` ring buffer, whose fd the reader polls.
//! - Zero-copy sends (`sock`): a MSG_ZEROCOPY send carries the socket's `sk_zckey` at
//!   entry and exit (the numbers the kernel gave its sends), a recvmsg(MSG_ERRQUEUE) the
//!   `sock_extended_err` it read (a completion names a range of those numbers); user space
//!   attributes one to the other.
//! - io_uring requests (`uring`) go into the same logs, as `IoUringEvent` records.
//!
//! The user side attaches these programs only while a trace runs, so the copy counting of
//! experiments pays nothing for them; `on_copy` checks the slot mask (an inlined array
//! lookup) before anything else.

use core::{ffi::c_void, ptr::write_volatile};

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_user,
        generated,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext,
};
use netcopy_common::{
    CopySite, KernelOffsets, SyscallEvent, TraceOffsets, TracedSyscall, IOVEC_SIZE, MSG_ZEROCOPY,
    OFFSET_UNKNOWN, SYSCALL_EXIT_RET_OFFSET, TRACE_INFO_EXT_ERR, TRACE_INFO_MSG_FLAGS_OUT,
    TRACE_INFO_REQUESTED_KERNEL, TRACE_INFO_REQUESTED_PARTIAL, TRACE_INFO_REQUESTED_PENDING,
    TRACE_INFO_RETURNED_PARTIAL, TRACE_INFO_SOCK, TRACE_INFO_ZCKEY, TRACE_IOVEC_CHUNK,
    TRACE_LOST_COUNTERS, TRACE_LOST_INFLIGHT_FULL, TRACE_LOST_RING_FULL, TRACE_MAX_IOVECS,
    TRACE_MAX_MMSG, TRACE_MAX_MMSG_IOVECS, TRACE_MAX_MMSG_RETURNED, TRACE_SITE_COUNT,
};

use crate::{filter::current_slot, offsets::field};

mod sock;
mod uring;

use sock::{is_socket, read_extended_err, sock_of, zckey};

/// Bit `slot` set: the processes in that filter slot are traced. 0: tracing is off.
#[map(name = "NETCOPY_TRACE_SLOTS")]
static TRACE_SLOTS: Array<u32> = Array::with_max_entries(1, 0);

/// One entry: the layouts the loader found for this kernel.
#[map(name = "NETCOPY_TRACE_OFFSETS")]
static TRACE_OFFSETS: Array<TraceOffsets> = Array::with_max_entries(1, 0);

/// tid -> the traced call it is inside (`end_ns == 0`) or its last one (idle). The
/// loader sizes it (1 entry when tracing was not requested at load, so that it costs no
/// memory).
#[map(name = "NETCOPY_TRACE_INFLIGHT")]
static INFLIGHT: HashMap<u32, SyscallEvent> = HashMap::with_max_entries(8192, 0);

/// The reader's doorbell: one empty record, with a wake-up, per [`NETCOPY_TRACE_WAKE_EVERY`]
/// records a CPU logs. One page.
#[map(name = "NETCOPY_TRACE_EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// `BPF_F_MMAPABLE`: the reader maps the array's values into its memory.
const MMAPABLE: u32 = 1 << 10;

/// Completed calls: CPU `c` owns entries `c * R .. (c + 1) * R` (R =
/// [`NETCOPY_TRACE_LOG_RECORDS`]) and writes them in turn. Sized by the loader.
///
/// A log per CPU written with plain stores, rather than the ring buffer's output helper:
/// by the kernel's accounting the helper (a lock shared by all CPUs, a record header, a
/// commit) cost ~200 ns a call here whatever the record's size, the most expensive part
/// of the exit program. A CPU's log has one writer: only the exit programs write it, and
/// they run in process context with preemption off.
#[map(name = "NETCOPY_TRACE_LOG")]
static LOG: Array<SyscallEvent> = Array::with_max_entries(1, MMAPABLE);

/// Per CPU `c`, in 64-byte entries so that writer and reader do not share a cache line:
/// entry `2c` holds the records `c` has written (its head, word 0), entry `2c + 1` the
/// records the reader has taken (its tail, word 0). Both only grow. Sized by the loader.
#[map(name = "NETCOPY_TRACE_LOG_POS")]
static LOG_POS: Array<[u64; 8]> = Array::with_max_entries(2, MMAPABLE);

/// Records of each CPU's log; set by the loader (0 until then: nothing is logged).
#[no_mangle]
static NETCOPY_TRACE_LOG_RECORDS: u64 = 0;

/// `SyscallEvent` in 8-byte words, copied one by one (see `append`).
const EVENT_WORDS: usize = core::mem::size_of::<SyscallEvent>() / 8;

/// Appends a completed call to this CPU's log; false when the log is full.
///
/// The words are copied with volatile accesses: a struct copy becomes the eBPF target's
/// byte-wise memcpy. The head is stored after the record, and x86-64 keeps stores in
/// order, so a reader that sees the new head sees the whole record. A weakly ordered CPU
/// (arm64) would need a store-release here, which BPF has only since Linux 6.15;
/// netcopy is built and tested on x86-64.
#[inline(always)]
unsafe fn append(event: *const SyscallEvent) -> bool {
    let per_cpu = core::ptr::read_volatile(&NETCOPY_TRACE_LOG_RECORDS);
    if per_cpu == 0 {
        return false;
    }
    let cpu = u64::from(bpf_get_smp_processor_id());
    let (Some(head), Some(tail)) = (
        LOG_POS.get_ptr_mut((2 * cpu) as u32),
        LOG_POS.get_ptr((2 * cpu + 1) as u32),
    ) else {
        return false;
    };
    let written = core::ptr::read_volatile(&(*head)[0]);
    let taken = core::ptr::read_volatile(&(*tail)[0]);
    if written.wrapping_sub(taken) >= per_cpu {
        return false;
    }
    let Some(slot) = LOG.get_ptr_mut((cpu * per_cpu + written % per_cpu) as u32) else {
        return false;
    };
    let (src, dst) = (event as *const u64, slot as *mut u64);
    let mut i = 0;
    while i < EVENT_WORDS {
        write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
        i += 1;
    }
    write_volatile(&mut (*head)[0], written + 1);
    true
}

/// One all-zero record, never written: the value a thread's first in-flight entry is
/// created from.
#[map(name = "NETCOPY_TRACE_TEMPLATE")]
static TRACE_TEMPLATE: Array<SyscallEvent> = Array::with_max_entries(1, 0);

/// Per-CPU counts of calls that could not be recorded (`TRACE_LOST_*`).
#[map(name = "NETCOPY_TRACE_LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(TRACE_LOST_COUNTERS as u32, 0);

/// `MSG_ERRQUEUE` from the kernel's socket.h.
const MSG_ERRQUEUE: u32 = 0x2000;

#[inline(always)]
fn lost(index: u32) {
    if let Some(counter) = LOST.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, only touched by programs on this CPU.
        unsafe { *counter += 1 };
    }
}

/// Records a CPU logs between two rings of the reader's doorbell: set by the loader to an
/// eighth of a CPU's log (0 before the loader sets it: ring on every record).
#[no_mangle]
static NETCOPY_TRACE_WAKE_EVERY: u64 = 0;

/// Per-CPU: records logged since this CPU last rang the doorbell.
#[map(name = "NETCOPY_TRACE_UNWOKEN")]
static UNWOKEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Rings the reader's doorbell once per [`NETCOPY_TRACE_WAKE_EVERY`] records of this CPU.
/// A wake-up per call is an inter-processor interrupt per traced call (a VM exit in a
/// guest), which cost more than the rest of the tracing together. The reader polls with
/// a timeout anyway, so quiet periods are still drained.
#[inline(always)]
fn ring_doorbell_if_due() {
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    // SAFETY: a constant the loader set before loading (read-only data).
    let every = unsafe { core::ptr::read_volatile(&NETCOPY_TRACE_WAKE_EVERY) };
    let Some(unwoken) = UNWOKEN.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU slot, only touched by programs on this CPU.
    unsafe {
        *unwoken += 1;
        if *unwoken < every {
            return;
        }
        *unwoken = 0;
    }
    // A full doorbell ring means the reader has wake-ups pending already.
    let _ = EVENTS.output::<u64>(&0, BPF_RB_FORCE_WAKEUP);
}

/// The slot mask, or 0 when tracing is off.
#[inline(always)]
fn slot_mask() -> u32 {
    TRACE_SLOTS.get(0).copied().unwrap_or(0)
}

/// Called by `counters::count` for every copy it counts: books it to the calling thread's
/// traced call, if it has one. Deferred copies and completions are never booked to a
/// call: they belong to earlier sends, even when they run on this thread's stack.
#[inline(always)]
pub fn on_copy(slot: u32, site: CopySite, bytes: u64) {
    let Some(index) = site.trace_index() else {
        return;
    };
    let mask = slot_mask();
    if mask == 0 || slot >= 32 || mask & (1 << slot) == 0 {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(event) = INFLIGHT.get_ptr_mut(tid) {
        if index < TRACE_SITE_COUNT {
            // SAFETY: the entry belongs to this thread, which is running this program.
            unsafe {
                (*event).copies[index].calls += 1;
                (*event).copies[index].bytes += bytes;
            }
        }
    }
}

/// Called by the tp_btf send program at the first pass of a TCP send through
/// `tcp_sendmsg_locked`, with its `struct msghdr *`: a traced sendmsg in flight on this
/// thread takes its request from the kernel's iov_iter, which already holds the total
/// and the iovec count, instead of reading the caller's msghdr and iovecs from user
/// memory (two reads that cost more than the rest of the entry program). Only a
/// user-backed iterator is the caller's request: a protocol that sends through TCP with
/// buffers of its own (kernel TLS, MPTCP) passes a kernel iterator, and the call exit
/// then reads user memory as before.
#[inline(always)]
pub fn on_send_start(msg: u64, off: &KernelOffsets) {
    if slot_mask() == 0 || off.msghdr_iter_type == OFFSET_UNKNOWN {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(event) = INFLIGHT.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: the entry belongs to this thread, which is running this program; probe
    // reads of kernel memory at offsets from this kernel's BTF.
    unsafe {
        if (*event).end_ns != 0 || (*event).info & TRACE_INFO_REQUESTED_PENDING == 0 {
            return;
        }
        let Some(kind) = field::<u8>(msg, off.msghdr_iter_type) else {
            return;
        };
        let kind = u32::from(kind);
        let iovecs = if kind == off.iter_iovec {
            match field::<u64>(msg, off.msghdr_iter_nr_segs) {
                Some(segs) => segs as u32,
                None => return,
            }
        } else if kind == off.iter_ubuf {
            1
        } else {
            return;
        };
        let Some(count) = field::<u64>(msg, off.msghdr_iter_count) else {
            return;
        };
        (*event).requested = count;
        (*event).iovecs = iovecs;
        (*event).info =
            ((*event).info & !TRACE_INFO_REQUESTED_PENDING) | TRACE_INFO_REQUESTED_KERNEL;
    }
}

#[inline(always)]
unsafe fn user<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_UNKNOWN || base == 0 {
        return None;
    }
    bpf_probe_read_user((base + u64::from(offset)) as *const T).ok()
}

/// Sum of `iov_len` over the first `count` iovecs at `iov` (at most `max`).
///
/// Reads [`TRACE_IOVEC_CHUNK`] iovecs per probe read: a probe read costs about as much
/// as the rest of the entry program, and one-copy's sendmsg carries 9 iovecs. The read
/// is always of a whole chunk (a constant size: older verifiers lose the bounds of a
/// computed one), even when fewer iovecs are left: the words past the array are not
/// used. Only when the array ends right before memory that is not mapped does the chunk
/// read fail; then the chunk's iovecs are read one at a time.
#[inline(always)]
fn sum_iovecs(iov: u64, count: u64, max: u32, event: &mut SyscallEvent) {
    const WORDS: usize = 2 * TRACE_IOVEC_CHUNK as usize;
    let limit = if count > u64::from(max) {
        event.info |= TRACE_INFO_REQUESTED_PARTIAL;
        u64::from(max)
    } else {
        count
    };
    // The chunk's first index is a constant in every pass of the loop (never a running
    // sum of what earlier passes read), so the verifier sees one state per pass.
    let mut chunk: u32 = 0;
    while chunk < max.div_ceil(TRACE_IOVEC_CHUNK) {
        let first = u64::from(chunk * TRACE_IOVEC_CHUNK);
        if first >= limit {
            return;
        }
        let left = limit - first;
        let src = iov + first * u64::from(IOVEC_SIZE);
        // Filled by the helper (a constant-size read initialises all of it for the
        // verifier); read through the pointer, since moving the array out of the
        // MaybeUninit would add a byte-wise copy.
        let mut words = core::mem::MaybeUninit::<[u64; WORDS]>::uninit();
        let base = words.as_mut_ptr() as *mut u64;
        // SAFETY: user memory of the current task, read with a fault-tolerant helper
        // into `words`, which is exactly TRACE_IOVEC_CHUNK iovecs long.
        let rc = unsafe {
            generated::bpf_probe_read_user(
                base as *mut c_void,
                TRACE_IOVEC_CHUNK * IOVEC_SIZE,
                src as *const c_void,
            )
        };
        // Two loops, not one choosing per iovec: an Option crossing the branches leaves
        // LLVM an undefined register to copy, which the verifier refuses to read.
        let mut i: u32 = 0;
        if rc == 0 {
            while i < TRACE_IOVEC_CHUNK {
                if u64::from(i) >= left {
                    break;
                }
                // iov_len, the second word of each iovec.
                // SAFETY: 2 * i + 1 < WORDS, written by the helper.
                event.requested += unsafe { core::ptr::read(base.add(2 * i as usize + 1)) };
                event.iovecs += 1;
                i += 1;
            }
        } else {
            while i < TRACE_IOVEC_CHUNK {
                if u64::from(i) >= left {
                    break;
                }
                // SAFETY: user memory of the current task.
                match unsafe { user::<u64>(src + u64::from(i * IOVEC_SIZE), 8) } {
                    Some(len) => event.requested += len,
                    None => {
                        event.info |= TRACE_INFO_REQUESTED_PARTIAL;
                        return;
                    }
                }
                event.iovecs += 1;
                i += 1;
            }
        }
        chunk += 1;
    }
}

/// The iovecs of the `struct user_msghdr` at `msg`.
#[inline(always)]
fn sum_msghdr(msg: u64, max: u32, off: &TraceOffsets, event: &mut SyscallEvent) {
    // `msg_iovlen` follows `msg_iov` in every 64-bit ABI: one probe read for both (a
    // probe read of user memory costs about as much as the rest of the entry program).
    // SAFETY: user memory of the current task.
    let (iov, count) = if off.msghdr_iovlen == off.msghdr_iov.wrapping_add(8) {
        match unsafe { user::<[u64; 2]>(msg, off.msghdr_iov) } {
            Some([iov, count]) => (Some(iov), Some(count)),
            None => (None, None),
        }
    } else {
        unsafe {
            (
                user::<u64>(msg, off.msghdr_iov),
                user::<u64>(msg, off.msghdr_iovlen),
            )
        }
    };
    match (iov, count) {
        (Some(iov), Some(count)) => sum_iovecs(iov, count, max, event),
        _ => event.info |= TRACE_INFO_REQUESTED_PARTIAL,
    }
}

#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: TracedSyscall) {
    let mask = slot_mask();
    if mask == 0 {
        return;
    }
    let Some(slot) = current_slot() else { return };
    if slot >= 32 || mask & (1 << slot) == 0 {
        return;
    }
    let Some(off) = TRACE_OFFSETS.get(0) else {
        return;
    };
    let args = syscall.arg_offsets();
    let read = |offset: u32| -> Option<u64> {
        if offset == OFFSET_UNKNOWN {
            return None;
        }
        // SAFETY: a constant offset inside the record (`syscall` is a constant in every
        // program), checked against this kernel's tracefs format file by the loader.
        Some(unsafe { *(ctx.as_ptr().add(offset as usize) as *const u64) })
    };
    let Some(fd) = read(args.fd) else { return };
    let fd = fd as i32;
    let socket_only = matches!(
        syscall,
        TracedSyscall::Write | TracedSyscall::Read | TracedSyscall::Writev | TracedSyscall::Readv
    );
    if socket_only && !is_socket(fd, off) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(event) = inflight_entry(tid) else {
        lost(TRACE_LOST_INFLIGHT_FULL);
        return;
    };
    // SAFETY: the entry belongs to this thread, which is running this program. Every
    // field is stored one by one: a struct literal becomes a call to the byte-wise
    // memset/memmove of the eBPF target (hundreds of instructions per call).
    let event = unsafe { &mut *event };
    event.pid = (pid_tgid >> 32) as u32;
    event.tid = tid;
    event.syscall = syscall as u32;
    event.fd = fd;
    event.flags = read(args.flags).unwrap_or(0) as u32;
    event.messages = 1;
    event.slot = slot;
    // Volatile: LLVM would merge adjacent zero stores back into a memset call.
    // SAFETY: plain stores to fields of the entry.
    unsafe {
        write_volatile(&mut event.info, 0);
        write_volatile(&mut event.iovecs, 0);
        write_volatile(&mut event.requested, 0);
        write_volatile(&mut event.returned, 0);
        write_volatile(&mut event.ret, 0);
        write_volatile(&mut event.msg_flags_out, 0);
        write_volatile(&mut event.end_ns, 0);
        let mut i = 0;
        while i < TRACE_SITE_COUNT {
            write_volatile(&mut event.copies[i].calls, 0);
            write_volatile(&mut event.copies[i].bytes, 0);
            i += 1;
        }
    }
    let ptr = read(args.ptr).unwrap_or(0);
    let len = read(args.len).unwrap_or(0);
    event.arg_ptr = ptr;
    let sends = matches!(
        syscall,
        TracedSyscall::Sendto | TracedSyscall::Sendmsg | TracedSyscall::Sendmmsg
    );
    if sends && event.flags & MSG_ZEROCOPY != 0 {
        // The kernel numbers a socket's MSG_ZEROCOPY sends with sk_zckey; reading it
        // around the call gives this call's numbers, which its completions name later.
        if let Some(sock) = sock_of(fd, off) {
            event.sock = sock;
            event.info |= TRACE_INFO_SOCK;
            if let Some(key) = zckey(sock, off) {
                event.zckey[0] = key;
                event.info |= TRACE_INFO_ZCKEY;
            }
        }
    }
    match syscall {
        TracedSyscall::Sendto
        | TracedSyscall::Recvfrom
        | TracedSyscall::Write
        | TracedSyscall::Read => {
            event.requested = len;
            event.iovecs = 1;
        }
        TracedSyscall::Sendmsg => {
            // Found later: see `on_send_start`.
            event.info |= TRACE_INFO_REQUESTED_PENDING;
        }
        TracedSyscall::Recvmsg => {
            sum_msghdr(ptr, TRACE_MAX_IOVECS, off, event);
        }
        TracedSyscall::Writev | TracedSyscall::Readv => {
            sum_iovecs(ptr, len, TRACE_MAX_IOVECS, event);
        }
        TracedSyscall::Sendmmsg | TracedSyscall::Recvmmsg => {
            event.messages = len as u32;
            let mut m: u32 = 0;
            while m < TRACE_MAX_MMSG {
                if u64::from(m) >= len {
                    break;
                }
                let msg = ptr + u64::from(m) * u64::from(off.mmsghdr_size);
                sum_msghdr(msg, TRACE_MAX_MMSG_IOVECS, off, event);
                m += 1;
            }
            if len > u64::from(TRACE_MAX_MMSG) {
                event.info |= TRACE_INFO_REQUESTED_PARTIAL;
            }
        }
    }
    // Taken last, so that reading the iovecs is not counted in the call's duration.
    // SAFETY: no preconditions.
    event.start_ns = unsafe { bpf_ktime_get_ns() };
}

/// The in-flight entry of thread `tid`, created on its first traced call. An entry stays
/// in the map between the thread's calls (`end_ns != 0` marks it idle) and is rewritten
/// in place: a hash insert and delete per call would cost more than the rest of the two
/// programs. `netcopy_trace_thread_exit` removes it with the thread.
#[inline(always)]
fn inflight_entry(tid: u32) -> Option<*mut SyscallEvent> {
    if let Some(entry) = INFLIGHT.get_ptr_mut(tid) {
        return Some(entry);
    }
    // The template is a map value that nothing writes (all zero): inserting from it
    // copies inside the kernel, not with the eBPF target's byte loops.
    let template = TRACE_TEMPLATE.get(0)?;
    INFLIGHT.insert(tid, template, 0).ok()?;
    INFLIGHT.get_ptr_mut(tid)
}

#[inline(always)]
fn exit(ctx: &TracePointContext) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(event) = INFLIGHT.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: the entry belongs to this thread, which is running this program.
    if unsafe { (*event).end_ns } != 0 {
        // Idle: this exit is of a call that was not traced (a read on a pipe, say).
        return;
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(off) = TRACE_OFFSETS.get(0) else {
        return;
    };
    // SAFETY: a constant offset inside the record, checked against this kernel's tracefs
    // format file of every exit tracepoint this program is attached to; the entry belongs
    // to this thread, which is running this program.
    unsafe {
        let ret: i64 = *(ctx.as_ptr().add(SYSCALL_EXIT_RET_OFFSET as usize) as *const i64);
        // Nonzero: marks the entry idle once the record is out (a clock that reads 0
        // would only cost this one call).
        (*event).end_ns = now;
        (*event).ret = ret;
        let syscall = (*event).syscall;
        let ptr = (*event).arg_ptr;
        if syscall == TracedSyscall::Sendmmsg as u32 || syscall == TracedSyscall::Recvmmsg as u32 {
            // ret is the number of messages sent or received; their byte counts are in
            // the msg_len fields the kernel wrote back.
            let mut m: u32 = 0;
            while m < TRACE_MAX_MMSG_RETURNED {
                if i64::from(m) >= ret {
                    break;
                }
                let msg = ptr + u64::from(m) * u64::from(off.mmsghdr_size);
                match user::<u32>(msg, off.mmsghdr_len) {
                    Some(len) => (*event).returned += u64::from(len),
                    None => {
                        (*event).info |= TRACE_INFO_RETURNED_PARTIAL;
                        break;
                    }
                }
                m += 1;
            }
            if ret > i64::from(TRACE_MAX_MMSG_RETURNED) {
                (*event).info |= TRACE_INFO_RETURNED_PARTIAL;
            }
        } else if ret > 0 {
            (*event).returned = ret as u64;
        }
        if (*event).info & TRACE_INFO_REQUESTED_PENDING != 0 {
            // No TCP send saw the request (another protocol, an early error, or a
            // strategy without tp_btf): read it from the caller's memory, which the call
            // leaves as it was.
            (*event).info &= !TRACE_INFO_REQUESTED_PENDING;
            sum_msghdr(ptr, TRACE_MAX_IOVECS, off, &mut *event);
        }
        if syscall == TracedSyscall::Recvmsg as u32 {
            if let Some(flags) = user::<u32>(ptr, off.msghdr_flags) {
                (*event).msg_flags_out = flags;
                (*event).info |= TRACE_INFO_MSG_FLAGS_OUT;
            }
            if (*event).flags & MSG_ERRQUEUE != 0 && ret >= 0 {
                // A zero-copy completion (or another queued error) the caller read.
                if let Some(ee) = read_extended_err(ptr, off) {
                    (*event).ext_err = ee;
                    (*event).info |= TRACE_INFO_EXT_ERR;
                    if let Some(sock) = sock_of((*event).fd, off) {
                        (*event).sock = sock;
                        (*event).info |= TRACE_INFO_SOCK;
                    }
                }
            }
        }
        if (*event).info & TRACE_INFO_ZCKEY != 0 {
            match zckey((*event).sock, off) {
                Some(key) => (*event).zckey[1] = key,
                None => (*event).info &= !TRACE_INFO_ZCKEY,
            }
        }
        if append(event) {
            ring_doorbell_if_due();
        } else {
            lost(TRACE_LOST_RING_FULL);
        }
    }
}

/// `sched/sched_process_exit`, in the context of every exiting thread while a trace
/// runs: frees the thread's in-flight entry (entries stay between calls, see `enter`).
#[tracepoint]
pub fn netcopy_trace_thread_exit(_ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = INFLIGHT.remove(tid);
    0
}

#[tracepoint]
pub fn netcopy_trace_sendto(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Sendto);
    0
}

#[tracepoint]
pub fn netcopy_trace_sendmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Sendmsg);
    0
}

#[tracepoint]
pub fn netcopy_trace_sendmmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Sendmmsg);
    0
}

#[tracepoint]
pub fn netcopy_trace_recvfrom(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Recvfrom);
    0
}

#[tracepoint]
pub fn netcopy_trace_recvmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Recvmsg);
    0
}

#[tracepoint]
pub fn netcopy_trace_recvmmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Recvmmsg);
    0
}

#[tracepoint]
pub fn netcopy_trace_write(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Write);
    0
}

#[tracepoint]
pub fn netcopy_trace_read(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Read);
    0
}

#[tracepoint]
pub fn netcopy_trace_writev(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Writev);
    0
}

#[tracepoint]
pub fn netcopy_trace_readv(ctx: TracePointContext) -> u32 {
    enter(&ctx, TracedSyscall::Readv);
    0
}

/// `sys_exit_*` of the socket calls (sendto ... recvmmsg).
#[tracepoint]
pub fn netcopy_trace_exit_sock(ctx: TracePointContext) -> u32 {
    exit(&ctx);
    0
}

/// `sys_exit_*` of write/read/writev/readv: a separate program so that the two trace
/// events of the attach plan can be attached and detached independently.
#[tracepoint]
pub fn netcopy_trace_exit_rw(ctx: TracePointContext) -> u32 {
    exit(&ctx);
    0
}
