//! Message slots for the senders whose buffers the kernel keeps reading after the send
//! call returned (MSG_ZEROCOPY, io_uring SENDMSG_ZC): a slot holds a whole message,
//! header included, or for a message above `PIECE_BYTES` one piece of it (8 fields of its
//! own, the header in the first piece), and is neither restamped nor refilled nor freed
//! until every send from it has completed. Slots are created lazily, bounded by a count
//! and a byte budget ([`ZeroCopyConfig`]) counted in slots of at most `PIECE_BYTES` of
//! payload each; how a sender learns of completions is its own business.

use std::io;

use super::sender::{header_for, Template, IOV_COUNT};
use crate::workload::{
    message::{ComplexMessage, PieceBuffers, PIECE_BYTES},
    protocol::MESSAGE_HEADER_LEN,
};

/// How the slot pool is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeroCopyConfig {
    /// Most messages awaiting completion at once.
    pub max_in_flight: usize,
    /// Most bytes (headers + payloads) in the pool; at least one slot always exists.
    pub max_pool_bytes: u64,
}

impl Default for ZeroCopyConfig {
    fn default() -> Self {
        ZeroCopyConfig {
            max_in_flight: 64,
            max_pool_bytes: 64 << 20,
        }
    }
}

impl ZeroCopyConfig {
    /// Slots for messages of `size` payload bytes (pieces of [`PIECE_BYTES`] above that).
    pub(crate) fn slots_for(&self, size: u64) -> usize {
        let slot_bytes = size.min(PIECE_BYTES as u64) + MESSAGE_HEADER_LEN as u64;
        let by_bytes = self.max_pool_bytes / slot_bytes;
        (by_bytes.min(self.max_in_flight as u64) as usize).max(1)
    }
}

/// What a slot sends from.
enum Body {
    Whole(Box<ComplexMessage>),
    Piece(PieceBuffers),
}

struct Slot {
    body: Body,
    /// Boxed so its address stays put while the kernel references it.
    header: Box<[u8; MESSAGE_HEADER_LEN]>,
    /// Header bytes this slot sends: all 16 for a whole message and a first piece, else 0.
    header_len: usize,
    /// Sends of this slot the kernel has not completed.
    outstanding: u32,
    /// The slot is mid-send: earlier parts may complete before later parts are issued.
    sending: bool,
}

/// The pool of one sender.
pub(super) struct SlotPool {
    config: ZeroCopyConfig,
    /// The unstamped message every new slot of the current size is cloned from, or the
    /// layout and CRC of a message sent in pieces.
    template: Option<Template>,
    slots: Vec<Slot>,
    max_slots: usize,
    free: Vec<usize>,
    /// Slots being sent or awaiting completion.
    busy: usize,
}

impl SlotPool {
    pub(super) fn new(config: ZeroCopyConfig) -> Self {
        SlotPool {
            config,
            template: None,
            slots: Vec::new(),
            max_slots: 1,
            free: Vec::new(),
            busy: 0,
        }
    }

    /// Whether the pool holds messages of `size` payload bytes.
    pub(super) fn holds_size(&self, size: u64) -> bool {
        self.template.as_ref().map(|t| t.size() as u64) == Some(size)
    }

    /// Empties the pool and sets it up for messages of `size`. Only once no slot is busy:
    /// the caller waits for every completion first.
    pub(super) fn reset(&mut self, size: u64) -> io::Result<()> {
        if self.busy > 0 {
            return Err(io::Error::other(format!(
                "the message pool cannot change size while {} slots await completion",
                self.busy
            )));
        }
        let template = Template::new(size)?;
        self.slots.clear();
        self.free.clear();
        self.max_slots = self.config.slots_for(size);
        self.template = Some(template);
        Ok(())
    }

    /// A completed slot, if any.
    pub(super) fn take_free(&mut self) -> Option<usize> {
        self.free.pop()
    }

    /// Whether [`SlotPool::grow`] would add a slot.
    pub(super) fn can_grow(&self) -> bool {
        self.slots.len() < self.max_slots
    }

    /// A new slot, while the pool may grow.
    pub(super) fn grow(&mut self) -> io::Result<Option<usize>> {
        if !self.can_grow() {
            return Ok(None);
        }
        let body = match &self.template {
            Some(Template::Whole(message)) => Body::Whole(Box::new(message.clone())),
            Some(Template::Large(_)) => Body::Piece(PieceBuffers::new()),
            None => {
                return Err(io::Error::other(
                    "a message slot was requested before the pool was set up",
                ))
            }
        };
        self.slots.push(Slot {
            body,
            header: Box::new([0; MESSAGE_HEADER_LEN]),
            header_len: MESSAGE_HEADER_LEN,
            outstanding: 0,
            sending: false,
        });
        Ok(Some(self.slots.len() - 1))
    }

    /// Slots in the pool.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Pieces each message of the current size is sent in (1 up to `PIECE_BYTES`).
    pub(super) fn pieces(&self) -> usize {
        self.template.as_ref().map_or(1, |t| t.pieces())
    }

    /// Fills slot `index` with piece `k` of the message stamped with `seq` (a whole
    /// message: restamps it, `k` is 0) and marks it mid-send. Returns the slots now busy
    /// and the payload bytes generated afresh (0 for a restamped whole message).
    pub(super) fn begin(&mut self, index: usize, seq: u64, k: usize) -> (usize, u64) {
        let slot = &mut self.slots[index];
        let generated = match (&mut slot.body, &self.template) {
            (Body::Whole(message), _) => {
                message.stamp(seq);
                header_for(message, seq).encode_into(&mut slot.header);
                slot.header_len = MESSAGE_HEADER_LEN;
                0
            }
            (Body::Piece(buffers), Some(Template::Large(message))) => {
                buffers.fill(message, seq, k);
                if k == 0 {
                    let template = self.template.as_ref().expect("matched above");
                    template.header(seq).encode_into(&mut slot.header);
                    slot.header_len = MESSAGE_HEADER_LEN;
                } else {
                    slot.header_len = 0;
                }
                buffers.len() as u64
            }
            (Body::Piece(_), _) => unreachable!("piece slots exist only for large templates"),
        };
        slot.sending = true;
        self.busy += 1;
        (self.busy, generated)
    }

    /// Header plus fields of slot `index`, in wire order (the header empty after a
    /// message's first piece).
    pub(super) fn slices(&self, index: usize) -> [&[u8]; IOV_COUNT] {
        let slot = &self.slots[index];
        let fields = match &slot.body {
            Body::Whole(message) => message.fields(),
            Body::Piece(buffers) => buffers.fields(),
        };
        std::array::from_fn(|i| {
            if i == 0 {
                &slot.header[..slot.header_len]
            } else {
                fields[i - 1]
            }
        })
    }

    /// Header bytes slot `index` sends.
    pub(super) fn header_len(&self, index: usize) -> usize {
        self.slots[index].header_len
    }

    /// Header plus payload bytes of slot `index`.
    pub(super) fn total_len(&self, index: usize) -> usize {
        let slot = &self.slots[index];
        slot.header_len
            + match &slot.body {
                Body::Whole(message) => message.size(),
                Body::Piece(buffers) => buffers.len(),
            }
    }

    /// One more send of slot `index` awaits its completion.
    pub(super) fn add_send(&mut self, index: usize) {
        self.slots[index].outstanding += 1;
    }

    /// The kernel completed one send of slot `index`.
    pub(super) fn complete_send(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.outstanding -= 1;
        if slot.outstanding == 0 && !slot.sending {
            self.release(index);
        }
    }

    /// Every send of slot `index` is issued (or the send failed).
    pub(super) fn end(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.sending = false;
        if slot.outstanding == 0 {
            self.release(index);
        }
    }

    fn release(&mut self, index: usize) {
        self.busy -= 1;
        self.free.push(index);
    }

    /// Leaks every slot: for a sender dropped while the kernel may still read its pages,
    /// which freed memory handed out again would change under the transmission.
    pub(super) fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.slots));
    }

    #[cfg(test)]
    pub(super) fn free_slots(&self) -> &[usize] {
        &self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_bounded_by_count_and_bytes() {
        let config = ZeroCopyConfig::default();
        assert_eq!(config.slots_for(1), 64);
        assert_eq!(config.slots_for(1 << 20), 63);
        // Above PIECE_BYTES a slot holds one piece: the pool counts pieces.
        assert_eq!(config.slots_for(8 << 20), 63);
        assert_eq!(config.slots_for(64 << 20), 63);
    }

    #[test]
    fn a_slot_is_free_only_when_issued_and_completed() {
        let mut pool = SlotPool::new(ZeroCopyConfig {
            max_in_flight: 2,
            max_pool_bytes: 1 << 20,
        });
        pool.reset(100).unwrap();
        assert!(pool.holds_size(100) && !pool.holds_size(101));
        let a = pool.grow().unwrap().unwrap();
        let b = pool.grow().unwrap().unwrap();
        assert_eq!(pool.grow().unwrap(), None, "bounded by max_in_flight");
        assert_eq!(pool.begin(a, 7, 0), (1, 0));
        assert_eq!(pool.total_len(a), 116);
        assert_eq!(pool.slices(a)[0].len(), MESSAGE_HEADER_LEN);
        pool.add_send(a);
        pool.add_send(a);
        pool.complete_send(a);
        pool.complete_send(a);
        assert_eq!(pool.take_free(), None, "still mid-send");
        pool.end(a);
        assert_eq!(pool.free_slots(), &[a]);
        assert_eq!(pool.begin(b, 8, 0), (1, 0), "a was released");
        pool.add_send(b);
        pool.end(b);
        assert!(pool.reset(200).is_err(), "b awaits its completion");
        pool.complete_send(b);
        assert!(pool.reset(200).is_ok());
    }
}
