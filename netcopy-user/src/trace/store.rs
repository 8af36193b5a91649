//! Where drained records wait until the trace stops: chunks of fixed capacity, the drain
//! only copies each record into place and decodes nothing.
//!
//! Why chunks whose pages are touched in advance: a trace keeps every record (168 bytes)
//! until it stops, so at 3M calls/s the drain fills 500 MB of fresh memory a second. On
//! the 2-CPU guests netcopy is measured on, the first touch of an anonymous page costs
//! 1.6-1.9 us (a minor fault and the page's zeroing): 0.07 us per record, nearly all of
//! the drain's 0.08 us per record. The drain runs at real-time priority so that it gets to
//! the logs at once; every microsecond it spends there is one more the logs must wait. So
//! a normal-priority thread makes the chunks and touches their pages, a few ahead, and
//! the drain takes them ready; when none is ready (the helper starved of CPU), the drain
//! makes its own as before.

use std::{
    sync::mpsc::{sync_channel, Receiver},
    thread::JoinHandle,
};

use netcopy_common::SyscallEvent;

use super::{event::SyscallRecord, uring::UringRecord};

/// Records per chunk (4.25 MiB).
const CHUNK_RECORDS: usize = 32 * 1024;

/// Chunks the helper keeps ready: at 3M calls/s a chunk lasts 11 ms, so four ready
/// chunks are 44 ms for the helper to be late by; 17 MiB of memory.
const READY_CHUNKS: usize = 4;

/// Granule of the pages the helper touches (the smallest page size on x86-64).
const PAGE: usize = 4096;

/// The records of a trace (or a sample of one), in the order drained.
#[derive(Default)]
pub(super) struct RawRecords {
    chunks: Vec<Vec<SyscallEvent>>,
    /// Started with the second chunk: a trace that fits one chunk needs no helper.
    supply: Option<ChunkSupply>,
}

impl RawRecords {
    pub(super) fn push(&mut self, event: SyscallEvent) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_RECORDS => chunk.push(event),
            _ => {
                let mut chunk = self.next_chunk();
                chunk.push(event);
                self.chunks.push(chunk);
            }
        }
    }

    fn next_chunk(&mut self) -> Vec<SyscallEvent> {
        if self.chunks.is_empty() {
            return Vec::with_capacity(CHUNK_RECORDS);
        }
        let supply = self.supply.get_or_insert_with(ChunkSupply::start);
        supply
            .take()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_RECORDS))
    }

    pub(super) fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The decoded records (the io_uring ones in time order), and how many could not
    /// be decoded. The helper stops first: decoding needs the CPU more.
    pub(super) fn decode(mut self) -> (Vec<SyscallRecord>, Vec<UringRecord>, u64) {
        self.supply.take();
        decode_events(self.len(), self.chunks.iter().flatten())
    }
}

/// Decodes records of the call logs: the system calls, the io_uring events (in time
/// order), and how many records were neither. `calls` is a capacity hint.
pub(super) fn decode_events<'a>(
    calls: usize,
    events: impl Iterator<Item = &'a SyscallEvent>,
) -> (Vec<SyscallRecord>, Vec<UringRecord>, u64) {
    let mut records = Vec::with_capacity(calls);
    let mut uring = Vec::new();
    let mut malformed = 0;
    for event in events {
        if let Some(record) = UringRecord::from_event(event) {
            uring.push(record);
            continue;
        }
        match SyscallRecord::from_event(event) {
            Some(record) => records.push(record),
            None => malformed += 1,
        }
    }
    uring.sort_by_key(|r| r.time_ns);
    (records, uring, malformed)
}

/// A thread at normal priority making chunks with their pages touched, a few ahead.
struct ChunkSupply {
    ready: Option<Receiver<Vec<SyscallEvent>>>,
    thread: Option<JoinHandle<()>>,
}

impl ChunkSupply {
    /// Starts the helper; where no thread can be started, every chunk is made by the
    /// drain (as without a helper).
    fn start() -> ChunkSupply {
        let (tx, rx) = sync_channel(READY_CHUNKS);
        let thread = std::thread::Builder::new()
            .name("trace-chunks".into())
            .spawn(move || {
                // Spawned by the drain, which starts its threads as normal ones (reset
                // on fork); in case it did not, a real-time helper would take the CPU
                // from the traced workload it should only fill the gaps of.
                super::priority::end_drain_priority();
                while tx.send(touched_chunk()).is_ok() {}
            });
        match thread {
            Ok(thread) => ChunkSupply {
                ready: Some(rx),
                thread: Some(thread),
            },
            Err(e) => {
                log::debug!("no thread to prepare trace memory ({e}); the drain makes it");
                ChunkSupply {
                    ready: None,
                    thread: None,
                }
            }
        }
    }

    fn take(&self) -> Option<Vec<SyscallEvent>> {
        // Empty (none ready yet) or disconnected (the helper is gone): the drain makes
        // the chunk itself.
        self.ready.as_ref()?.try_recv().ok()
    }
}

impl Drop for ChunkSupply {
    fn drop(&mut self) {
        // The helper's next send fails once the receiver is gone, and it ends.
        self.ready.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An empty chunk whose every page has been written once, so that filling it faults
/// nothing in.
fn touched_chunk() -> Vec<SyscallEvent> {
    let mut chunk: Vec<SyscallEvent> = Vec::with_capacity(CHUNK_RECORDS);
    let spare = chunk.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    let base = spare.as_mut_ptr().cast::<u8>();
    for offset in (0..bytes).step_by(PAGE) {
        // SAFETY: inside the chunk's allocation; writing a byte of uninitialised
        // capacity is allowed (nothing reads it, and the length stays 0). Volatile, so
        // that the write is not optimised away.
        unsafe { base.add(offset).write_volatile(0) };
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> SyscallEvent {
        SyscallEvent {
            start_ns: n,
            ..SyscallEvent::default()
        }
    }

    #[test]
    fn records_come_back_in_the_order_pushed_across_chunks() {
        let mut raw = RawRecords::default();
        let n = 2 * CHUNK_RECORDS as u64 + 5;
        for i in 0..n {
            raw.push(event(i));
        }
        assert_eq!(raw.len() as u64, n);
        assert_eq!(raw.chunks.len(), 3);
        let starts: Vec<u64> = raw.chunks.iter().flatten().map(|e| e.start_ns).collect();
        assert_eq!(starts, (0..n).collect::<Vec<_>>());
        assert!(raw.chunks.iter().all(|c| c.capacity() == CHUNK_RECORDS));
    }

    #[test]
    fn one_chunk_needs_no_helper() {
        let mut raw = RawRecords::default();
        for i in 0..CHUNK_RECORDS as u64 {
            raw.push(event(i));
        }
        assert!(raw.supply.is_none());
        raw.push(event(0));
        assert!(raw.supply.is_some());
    }

    #[test]
    fn the_helper_hands_over_chunks_that_are_empty_and_full_size() {
        let supply = ChunkSupply::start();
        let chunk = loop {
            if let Some(c) = supply.take() {
                break c;
            }
            std::thread::yield_now();
        };
        assert!(chunk.is_empty());
        assert_eq!(chunk.capacity(), CHUNK_RECORDS);
        drop(supply); // joins the helper: the test ends only if it stops
    }

    #[test]
    fn without_a_helper_the_drain_makes_its_own_chunks() {
        let mut raw = RawRecords {
            supply: Some(ChunkSupply {
                ready: None,
                thread: None,
            }),
            ..RawRecords::default()
        };
        for i in 0..2 * CHUNK_RECORDS as u64 + 1 {
            raw.push(event(i));
        }
        assert_eq!(raw.chunks.len(), 3);
        assert_eq!(raw.len(), 2 * CHUNK_RECORDS + 1);
    }
}
