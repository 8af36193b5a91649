//! Message slots for the senders whose buffers the kernel keeps reading after the send
//! call returned (MSG_ZEROCOPY, io_uring SENDMSG_ZC): a slot holds a whole message,
//! header included, and is neither restamped nor freed until every send from it has
//! completed. Slots are created lazily, bounded by a count and a byte budget
//! ([`ZeroCopyConfig`]); how a sender learns of completions is its own business.

use std::io;

use super::{one_copy::IOV_COUNT, sender::header_for};
use crate::workload::{message::ComplexMessage, protocol::MESSAGE_HEADER_LEN};

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
    /// Slots for messages of `size` payload bytes.
    fn slots_for(&self, size: u64) -> usize {
        let by_bytes = self.max_pool_bytes / (size + MESSAGE_HEADER_LEN as u64);
        (by_bytes.min(self.max_in_flight as u64) as usize).max(1)
    }
}

struct Slot {
    message: ComplexMessage,
    /// Boxed so its address stays put while the kernel references it.
    header: Box<[u8; MESSAGE_HEADER_LEN]>,
    /// Sends of this slot the kernel has not completed.
    outstanding: u32,
    /// The slot is mid-send: earlier parts may complete before later parts are issued.
    sending: bool,
}

/// The pool of one sender.
pub(super) struct SlotPool {
    config: ZeroCopyConfig,
    /// The unstamped message every new slot of the current size is cloned from.
    template: Option<ComplexMessage>,
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
        self.template.as_ref().map(|m| m.size() as u64) == Some(size)
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
        let template = ComplexMessage::new(size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
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
        let message = self.template.clone().ok_or_else(|| {
            io::Error::other("a message slot was requested before the pool was set up")
        })?;
        self.slots.push(Slot {
            message,
            header: Box::new([0; MESSAGE_HEADER_LEN]),
            outstanding: 0,
            sending: false,
        });
        Ok(Some(self.slots.len() - 1))
    }

    /// Slots in the pool.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Stamps slot `index` with `seq` and marks it mid-send. Returns the slots now busy.
    pub(super) fn begin(&mut self, index: usize, seq: u64) -> usize {
        let slot = &mut self.slots[index];
        slot.message.stamp(seq);
        header_for(&slot.message, seq).encode_into(&mut slot.header);
        slot.sending = true;
        self.busy += 1;
        self.busy
    }

    /// Header plus fields of slot `index`, in wire order.
    pub(super) fn slices(&self, index: usize) -> [&[u8]; IOV_COUNT] {
        let slot = &self.slots[index];
        let fields = slot.message.fields();
        std::array::from_fn(|i| {
            if i == 0 {
                &slot.header[..]
            } else {
                fields[i - 1]
            }
        })
    }

    /// Header plus payload bytes of slot `index`.
    pub(super) fn total_len(&self, index: usize) -> usize {
        MESSAGE_HEADER_LEN + self.slots[index].message.size()
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
        assert_eq!(config.slots_for(8 << 20), 7);
        assert_eq!(config.slots_for(64 << 20), 1);
        assert_eq!(config.slots_for(1 << 31), 1);
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
        assert_eq!(pool.begin(a, 7), 1);
        assert_eq!(pool.total_len(a), 116);
        assert_eq!(pool.slices(a)[0].len(), MESSAGE_HEADER_LEN);
        pool.add_send(a);
        pool.add_send(a);
        pool.complete_send(a);
        pool.complete_send(a);
        assert_eq!(pool.take_free(), None, "still mid-send");
        pool.end(a);
        assert_eq!(pool.free_slots(), &[a]);
        assert_eq!(pool.begin(b, 8), 1, "a was released");
        pool.add_send(b);
        pool.end(b);
        assert!(pool.reset(200).is_err(), "b awaits its completion");
        pool.complete_send(b);
        assert!(pool.reset(200).is_ok());
    }
}
