//! The reader of the per-CPU call logs that the trace's exit program writes
//! (`NETCOPY_TRACE_LOG`, see netcopy-ebpf/src/trace.rs): both arrays are mapped into this
//! process, so that taking a call costs a copy of its record and nothing else.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use anyhow::{anyhow, Context, Result};
use aya::maps::Map;
use netcopy_common::SyscallEvent;

use super::summary::RingHeadroom;
use crate::kernel::maps::LogLayout;

/// Bytes of one entry of the positions array: a cache line, so that a CPU's head and the
/// reader's tail for it are never on one line.
const POS_ENTRY: usize = 64;

/// A read-only or read-write shared mapping of a `BPF_F_MMAPABLE` array's values.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(map: &Map, len: usize, writable: bool, what: &str) -> Result<Mapping> {
        let fd = match map {
            Map::Array(data) => data.fd().as_fd().as_raw_fd(),
            _ => return Err(anyhow!("{what} is not an array map")),
        };
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of a map fd; the kernel checks the length
        // against the array's size and its BPF_F_MMAPABLE flag.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(anyhow::Error::new(std::io::Error::last_os_error()))
                .with_context(|| format!("mapping {what} into memory"));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| anyhow!("mmap returned null"))?;
        Ok(Mapping { base, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The logs of all CPUs, and how far the reader has taken each.
pub(super) struct CallLog {
    records: Mapping,
    positions: Mapping,
    layout: LogLayout,
    /// How full the logs were found since the last [`CallLog::take_headroom`].
    headroom: RingHeadroom,
    /// When the previous drain ended: the reader was away from the logs since.
    last_drain_end: Option<Instant>,
}

// SAFETY: the mappings are plain shared memory owned by this value; the reader is the
// only writer of the tails, through `&mut self`.
unsafe impl Send for CallLog {}

impl CallLog {
    /// Maps the log (`log`) and positions (`positions`) arrays laid out as `layout`.
    pub(super) fn open(log: &Map, positions: &Map, layout: LogLayout) -> Result<CallLog> {
        let record = std::mem::size_of::<SyscallEvent>();
        let records = Mapping::new(
            log,
            layout.entries() as usize * record,
            false,
            "the trace's call log",
        )?;
        let positions = Mapping::new(
            positions,
            2 * layout.cpus as usize * POS_ENTRY,
            true,
            "the trace's log positions",
        )?;
        Ok(CallLog {
            records,
            positions,
            layout,
            headroom: RingHeadroom::new(u64::from(layout.records_per_cpu)),
            last_drain_end: None,
        })
    }

    fn position(&self, index: usize) -> &AtomicU64 {
        // SAFETY: index < 2 * cpus, so the word is inside the mapping; it is 8-byte
        // aligned (the mapping is page-aligned, entries are 64 bytes), and the kernel's
        // programs access it only as a whole u64.
        unsafe { AtomicU64::from_ptr(self.positions.base.as_ptr().add(index * POS_ENTRY).cast()) }
    }

    /// Hands every record written since the last call to `take`, CPU by CPU in the
    /// order each CPU wrote them, and frees their room; returns how many.
    pub(super) fn drain(&mut self, mut take: impl FnMut(SyscallEvent)) -> usize {
        let per_cpu = u64::from(self.layout.records_per_cpu);
        let started = Instant::now();
        let away_ns = self
            .last_drain_end
            .map_or(0, |end| duration_ns(started.duration_since(end)));
        let mut taken = 0;
        for cpu in 0..self.layout.cpus as usize {
            // Acquire: the records before the head are complete (the writer stores the
            // head after them).
            let head = self.position(2 * cpu).load(Ordering::Acquire);
            let tail = self.position(2 * cpu + 1).load(Ordering::Relaxed);
            // A head more than a log ahead cannot happen (the writer checks the tail);
            // take at most one log's worth whatever the words say.
            let count = head.wrapping_sub(tail).min(per_cpu);
            self.headroom.found(count, away_ns);
            for n in 0..count {
                let index = cpu as u64 * per_cpu + (tail.wrapping_add(n)) % per_cpu;
                // SAFETY: index < cpus * per_cpu, inside the mapping; read_unaligned
                // copies the record out of the shared memory.
                let event = unsafe {
                    std::ptr::read_unaligned(
                        self.records
                            .base
                            .as_ptr()
                            .add(index as usize * std::mem::size_of::<SyscallEvent>())
                            .cast::<SyscallEvent>(),
                    )
                };
                take(event);
            }
            // Release: the records are copied out before the writer may reuse their room.
            self.position(2 * cpu + 1)
                .store(tail.wrapping_add(count), Ordering::Release);
            taken += count as usize;
        }
        let ended = Instant::now();
        self.headroom
            .drained(duration_ns(ended.duration_since(started)));
        self.last_drain_end = Some(ended);
        taken
    }

    /// Makes the next drain count no absence before it: for the drain after the trace
    /// stopped, whose wait was the programs' detaching (about a second of RCU grace
    /// periods), not the reader being kept from the logs.
    pub(super) fn forget_absence(&mut self) {
        self.last_drain_end = None;
    }

    /// How full the logs were found since the previous call (or the opening), and
    /// starts over.
    pub(super) fn take_headroom(&mut self) -> RingHeadroom {
        let fresh = RingHeadroom::new(self.headroom.records_per_cpu);
        std::mem::replace(&mut self.headroom, fresh)
    }

    /// Drops whatever the logs hold (leftovers of an earlier trace); what they held
    /// is not part of the next trace's headroom.
    pub(super) fn discard(&mut self) {
        self.drain(|_| {});
        self.take_headroom();
    }
}

fn duration_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
