//! Messages above [`PIECE_BYTES`], sent in pieces so that a connection's memory does not
//! grow with the size a client asks for.
//!
//! The bytes on the wire are exactly those of the [`ComplexMessage`](super::ComplexMessage)
//! of that size (same layout, content, stamps and CRC: the wire format does not change);
//! only the sender's buffers differ. A [`LargeMessage`] knows the whole message's layout and
//! CRC operators without holding its payload. Piece `k` is the payload range
//! `k * PIECE_BYTES ..` of at most [`PIECE_BYTES`] bytes, laid out as 8 separately
//! allocated fields of its own (the [`FieldLayout`] of the piece's length) in
//! [`PieceBuffers`] that a sender reuses, or in fresh pages (splice, sendfile). The piece's
//! content is generated from the message's content rule at its offset, stamps included;
//! the first piece follows the message header.

use std::ops::Range;

#[cfg(test)]
use super::fill_printable;
use super::{
    fold_crc, stamp_bytes, FieldLayout, Gf2Matrix, MessageError, SplitMix64, ALPHABET,
    CONTENT_SEED, FIELD_COUNT, STAMP_LEN,
};

/// The largest message sent from one set of buffers, and the size of every piece of a
/// larger one (the last may be shorter). 1 MiB: the sweep's sizes (up to 1 MiB) are sent
/// whole, as before pieces existed.
pub(crate) const PIECE_BYTES: usize = 1 << 20;

/// Characters per generator output in [`fill_printable`]: 10 x 6 bits of 64.
const CHARS_PER_DRAW: usize = 10;
/// splitmix64's increment: the generator's state after `n` draws is `seed + n * GAMMA`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The generator of field `index` of a `size`-byte message, positioned at draw `draw`.
fn generator_at(size: u64, index: usize, draw: u64) -> SplitMix64 {
    let seed = CONTENT_SEED ^ size.rotate_left(17) ^ ((index as u64 + 1) * 0x1000_0001);
    SplitMix64(seed.wrapping_add(draw.wrapping_mul(GAMMA)))
}

/// The unstamped content of field `index` of a `size`-byte message from byte `offset` on,
/// into `out`: what [`fill_printable`] writes there.
fn fill_printable_at(out: &mut [u8], size: u64, index: usize, offset: usize) {
    let mut rng = generator_at(size, index, (offset / CHARS_PER_DRAW) as u64);
    let mut skip = offset % CHARS_PER_DRAW;
    let mut pos = 0;
    while pos < out.len() {
        let mut bits = rng.next() >> (6 * skip);
        let n = (CHARS_PER_DRAW - skip).min(out.len() - pos);
        for byte in &mut out[pos..pos + n] {
            *byte = ALPHABET[(bits & 63) as usize];
            bits >>= 6;
        }
        pos += n;
        skip = 0;
    }
}

/// A message of more than [`PIECE_BYTES`]: its layout and CRC, no payload.
#[derive(Debug, Clone)]
pub(crate) struct LargeMessage {
    layout: FieldLayout,
    stamp_operator: Gf2Matrix,
    crc_constant: u32,
}

impl LargeMessage {
    /// The message of `size` payload bytes. The CRC operators need one pass over the
    /// whole content (generated in 64 KiB steps); the process keeps those of the last
    /// [`KEPT_OPERATORS`] sizes, so connections asking for the same size share one pass.
    pub(crate) fn new(size: u64) -> Result<Self, MessageError> {
        let layout = FieldLayout::new(size)?;
        if let Some(message) = kept_operators(size, None) {
            return Ok(message);
        }
        let message = Self::compute(layout, size);
        kept_operators(size, Some(&message));
        Ok(message)
    }

    fn compute(layout: FieldLayout, size: u64) -> Self {
        let mut scratch = vec![0u8; 64 << 10];
        let (stamp_operator, crc_constant) = fold_crc(&layout, |i, range| {
            let mut crc = 0;
            let mut at = range.start;
            while at < range.end {
                let n = (range.end - at).min(scratch.len());
                fill_printable_at(&mut scratch[..n], size, i, at);
                crc = crc32c::crc32c_append(crc, &scratch[..n]);
                at += n;
            }
            crc
        });
        LargeMessage {
            layout,
            stamp_operator,
            crc_constant,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.layout.size
    }

    /// The payload CRC of this message stamped with `seq`.
    pub(crate) fn crc(&self, seq: u64) -> u32 {
        self.stamp_operator.apply(crc32c::crc32c(&stamp_bytes(seq))) ^ self.crc_constant
    }

    pub(crate) fn pieces(&self) -> usize {
        self.layout.size.div_ceil(PIECE_BYTES)
    }

    /// The payload range of piece `k`.
    pub(crate) fn piece_range(&self, k: usize) -> Range<usize> {
        let start = k * PIECE_BYTES;
        start..(start + PIECE_BYTES).min(self.layout.size)
    }

    /// The 8 field lengths of piece `k`: the layout of a message of the piece's length.
    pub(crate) fn piece_field_lens(&self, k: usize) -> [usize; FIELD_COUNT] {
        FieldLayout::new(self.piece_range(k).len() as u64)
            .expect("a piece holds 1 ..= PIECE_BYTES bytes")
            .lens
    }

    /// Writes piece `k` of this message stamped with `seq` into `out` (each buffer exactly
    /// [`LargeMessage::piece_field_lens`] long): payload bytes as they appear on the wire.
    pub(crate) fn generate_piece(&self, seq: u64, k: usize, out: [&mut [u8]; FIELD_COUNT]) {
        let stamp = stamp_bytes(seq);
        let lens = self.piece_field_lens(k);
        let mut position = self.piece_range(k).start;
        // The message field holding `position`.
        let mut field = 0;
        for (i, buffer) in out.into_iter().enumerate() {
            assert_eq!(
                buffer.len(),
                lens[i],
                "field {i} of piece {k} has the wrong length"
            );
            let mut filled = 0;
            while filled < buffer.len() {
                while position >= self.layout.offsets[field] + self.layout.lens[field] {
                    field += 1;
                }
                let in_field = position - self.layout.offsets[field];
                let n = (buffer.len() - filled).min(self.layout.lens[field] - in_field);
                let dst = &mut buffer[filled..filled + n];
                fill_printable_at(dst, self.layout.size as u64, field, in_field);
                if self.layout.is_stamped(field) && in_field < STAMP_LEN {
                    let end = STAMP_LEN.min(in_field + n);
                    dst[..end - in_field].copy_from_slice(&stamp[in_field..end]);
                }
                filled += n;
                position += n;
            }
        }
    }
}

/// Sizes whose [`LargeMessage`] the process keeps (a few hundred bytes each).
const KEPT_OPERATORS: usize = 16;

/// Looks up the kept message of `size`, or with `insert` keeps it (dropping the oldest).
fn kept_operators(size: u64, insert: Option<&LargeMessage>) -> Option<LargeMessage> {
    static KEPT: std::sync::Mutex<Vec<LargeMessage>> = std::sync::Mutex::new(Vec::new());
    // A poisoned lock only means another thread panicked mid-update of plain values.
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    match insert {
        None => kept.iter().find(|m| m.layout.size as u64 == size).cloned(),
        Some(message) => {
            if kept.iter().any(|m| m.layout.size as u64 == size) {
                return None; // another connection computed it meanwhile
            }
            if kept.len() >= KEPT_OPERATORS {
                kept.remove(0);
            }
            kept.push(message.clone());
            None
        }
    }
}

/// One piece's 8 separately allocated fields, allocated once per sender (or slot) and
/// regenerated for every piece.
pub(crate) struct PieceBuffers {
    fields: [Box<[u8]>; FIELD_COUNT],
    lens: [usize; FIELD_COUNT],
}

impl PieceBuffers {
    /// Room for any piece: each field as long as the longest field `i` of any piece length
    /// (a shorter piece's field can exceed the full piece's by the odd-offset adjustment).
    pub(crate) fn new() -> Self {
        let full = FieldLayout::new(PIECE_BYTES as u64)
            .expect("PIECE_BYTES is a valid size")
            .lens;
        PieceBuffers {
            fields: std::array::from_fn(|i| vec![0u8; full[i] + 2].into_boxed_slice()),
            lens: [0; FIELD_COUNT],
        }
    }

    /// Generates piece `k` of `message` stamped with `seq` into the buffers.
    pub(crate) fn fill(&mut self, message: &LargeMessage, seq: u64, k: usize) {
        self.lens = message.piece_field_lens(k);
        let lens = self.lens;
        let mut rest: &mut [Box<[u8]>] = &mut self.fields;
        let out: [&mut [u8]; FIELD_COUNT] = std::array::from_fn(|i| {
            let (first, tail) = std::mem::take(&mut rest)
                .split_first_mut()
                .expect("8 fields");
            rest = tail;
            &mut first[..lens[i]]
        });
        message.generate_piece(seq, k, out);
    }

    /// The current piece's fields, in wire order.
    pub(crate) fn fields(&self) -> [&[u8]; FIELD_COUNT] {
        std::array::from_fn(|i| &self.fields[i][..self.lens[i]])
    }

    /// Payload bytes of the current piece.
    pub(crate) fn len(&self) -> usize {
        self.lens.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ComplexMessage;
    use super::*;

    #[test]
    fn content_at_an_offset_equals_the_whole_fields() {
        for size in [5u64, 97, 4096, 100_003] {
            let layout = FieldLayout::new(size).unwrap();
            for index in 0..FIELD_COUNT {
                let mut whole = vec![0u8; layout.lens[index]];
                fill_printable(&mut whole, size, index);
                let mut again = vec![0u8; whole.len()];
                fill_printable_at(&mut again, size, index, 0);
                assert_eq!(whole, again);
                for offset in [0, 1, 9, 10, 11, 19, 33]
                    .into_iter()
                    .filter(|&o| o < whole.len())
                {
                    let mut part = vec![0u8; whole.len() - offset];
                    fill_printable_at(&mut part, size, index, offset);
                    assert_eq!(
                        part,
                        whole[offset..],
                        "size {size} field {index} at {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn pieces_concatenate_to_the_whole_message() {
        // Just above the bound, and sizes whose stamps or field boundaries straddle pieces.
        for size in [PIECE_BYTES as u64 + 1, 3 * PIECE_BYTES as u64 + 12_345] {
            let mut whole = ComplexMessage::new(size).unwrap();
            let large = LargeMessage::new(size).unwrap();
            for seq in [0u64, 77, u64::MAX] {
                whole.stamp(seq);
                assert_eq!(large.crc(seq), whole.crc(), "size {size} seq {seq}");
                let mut buffers = PieceBuffers::new();
                let mut wire = Vec::new();
                for k in 0..large.pieces() {
                    buffers.fill(&large, seq, k);
                    assert_eq!(buffers.len(), large.piece_range(k).len());
                    let fields = buffers.fields();
                    for i in 1..FIELD_COUNT {
                        assert_ne!(fields[i - 1].as_ptr_range().end, fields[i].as_ptr());
                    }
                    for field in fields {
                        wire.extend_from_slice(field);
                    }
                }
                assert_eq!(wire, whole.to_payload(), "size {size} seq {seq}");
            }
        }
    }

    #[test]
    fn a_stamp_split_across_two_pieces_is_written_in_both() {
        // A size whose field boundary falls within STAMP_LEN bytes before the end of piece
        // 0 (the weights put boundary k near size * cumulative_k / 98).
        let straddles = |size: u64| {
            let layout = FieldLayout::new(size).unwrap();
            (1..FIELD_COUNT).any(|i| {
                let o = layout.offsets[i];
                layout.is_stamped(i) && o < PIECE_BYTES && o + STAMP_LEN > PIECE_BYTES
            })
        };
        let size = (PIECE_BYTES as u64 * 98 / 3 - 400..PIECE_BYTES as u64 * 98 / 3 + 400)
            .find(|&s| straddles(s))
            .expect("some size near 98/3 MiB puts field 1's stamp across the piece end");
        let mut whole = ComplexMessage::new(size).unwrap();
        whole.stamp(0x0123_4567_89AB);
        let large = LargeMessage::new(size).unwrap();
        let mut buffers = PieceBuffers::new();
        let mut wire = Vec::new();
        for k in 0..large.pieces() {
            buffers.fill(&large, 0x0123_4567_89AB, k);
            buffers
                .fields()
                .iter()
                .for_each(|f| wire.extend_from_slice(f));
        }
        assert_eq!(large.crc(0x0123_4567_89AB), whole.crc());
        assert!(
            wire == whole.to_payload(),
            "size {size}: pieces differ from the message"
        );
    }

    #[test]
    fn piece_buffers_have_room_for_every_piece_length() {
        let buffers = PieceBuffers::new();
        for len in 1..=PIECE_BYTES as u64 {
            let lens = FieldLayout::new(len).unwrap().lens;
            for (i, (len_i, field)) in lens.iter().zip(&buffers.fields).enumerate() {
                assert!(*len_i <= field.len(), "piece of {len}, field {i}");
            }
        }
    }
}
