//! The complex message: 8 separately heap-allocated fields of printable ASCII.
//!
//! The point of the message is that its payload is NOT contiguous in memory: sending it
//! forces a choice between serializing it (a user-space copy), handing the kernel an iovec
//! (one kernel copy) or pinning the pages (MSG_ZEROCOPY).
//!
//! Layout: the payload of `size` bytes is split into 8 fields by the weights
//! [`FIELD_WEIGHTS`] (unequal on purpose), with each inner boundary moved to an odd offset
//! where possible so that fields do not start on aligned addresses of the wire stream. Sizes
//! below 8 leave some fields empty. Content is deterministic pseudo-random printable ASCII
//! derived from the size alone, so every message slot of one size starts out identical.
//!
//! Stamping: before each send, the first [`STAMP_LEN`] bytes of every field with at least
//! that many bytes are overwritten with a printable encoding of the sequence number
//! ([`stamp_bytes`]). A buffer that the kernel still references and that is restamped too
//! early therefore reaches the receiver with a wrong stamp or a wrong checksum.
//!
//! Checksum: CRC32C of the whole payload (fields concatenated). A full CRC per send would add
//! a read pass over the payload and distort the CPU-per-byte measurement, so the CRC is kept
//! affine in the stamp: CRC32C is linear over GF(2) apart from its conditioning, and
//! `crc(A || B) = Z_|B|(crc(A)) ^ crc(B)` where `Z_n` is the linear operator "append n zero
//! bytes". Hence `crc(payload) = A · crc(stamp) ^ K` with a 32x32 bit matrix `A` and a
//! constant `K` that depend only on the layout and the unstamped field tails. Both are
//! computed once per message slot; a stamp costs one 8-byte CRC and one matrix-vector
//! product (32 conditional XORs). `crc32c::crc32c_combine` would give the same numbers but
//! rebuilds its operator on every call (log2(len) matrix squarings, tens of microseconds per
//! field), which for small messages costs more than the send being measured.

use std::fmt;

mod large;

pub(crate) use large::{LargeMessage, PieceBuffers, PIECE_BYTES};

/// Number of separately allocated fields in a message.
pub(crate) const FIELD_COUNT: usize = 8;
/// Relative field sizes: unequal so that no two fields line up.
const FIELD_WEIGHTS: [u64; FIELD_COUNT] = [3, 5, 7, 11, 13, 17, 19, 23];
/// Bytes overwritten at the start of each field by [`ComplexMessage::stamp`].
pub(crate) const STAMP_LEN: usize = 8;
/// Largest payload: the wire format carries the payload length as a u32.
pub(crate) const MAX_PAYLOAD_SIZE: u64 = u32::MAX as u64;

const WEIGHT_TOTAL: u64 = {
    let mut sum = 0;
    let mut i = 0;
    while i < FIELD_COUNT {
        sum += FIELD_WEIGHTS[i];
        i += 1;
    }
    sum
};

/// 64 printable ASCII characters: a power of two keeps the generator unbiased and cheap.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The message could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageError {
    SizeZero,
    TooLarge { size: u64 },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::SizeZero => write!(f, "a message needs at least 1 payload byte"),
            MessageError::TooLarge { size } => write!(
                f,
                "message size {size} exceeds the wire format's limit of {MAX_PAYLOAD_SIZE} bytes"
            ),
        }
    }
}

impl std::error::Error for MessageError {}

/// Where the 8 fields of a payload of `size` bytes start and how long they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldLayout {
    size: usize,
    offsets: [usize; FIELD_COUNT],
    lens: [usize; FIELD_COUNT],
}

impl FieldLayout {
    /// The layout for a payload of `size` bytes (1 ..= [`MAX_PAYLOAD_SIZE`]).
    pub(crate) fn new(size: u64) -> Result<Self, MessageError> {
        if size == 0 {
            return Err(MessageError::SizeZero);
        }
        if size > MAX_PAYLOAD_SIZE {
            return Err(MessageError::TooLarge { size });
        }
        // Inner boundaries at the cumulative weights, each moved to an odd offset where that
        // keeps the boundaries in order; boundary[0] = 0 and boundary[8] = size.
        let mut boundaries = [0u64; FIELD_COUNT + 1];
        boundaries[FIELD_COUNT] = size;
        let mut cumulative = 0;
        for k in 1..FIELD_COUNT {
            cumulative += FIELD_WEIGHTS[k - 1];
            let previous = boundaries[k - 1];
            let mut boundary = (size * cumulative / WEIGHT_TOTAL).max(previous);
            if boundary % 2 == 0 && boundary > 0 {
                if boundary - 1 > previous {
                    boundary -= 1;
                } else if boundary + 1 < size {
                    boundary += 1;
                }
            }
            boundaries[k] = boundary.min(size);
        }
        let mut offsets = [0usize; FIELD_COUNT];
        let mut lens = [0usize; FIELD_COUNT];
        for i in 0..FIELD_COUNT {
            offsets[i] = boundaries[i] as usize;
            lens[i] = (boundaries[i + 1] - boundaries[i]) as usize;
        }
        Ok(FieldLayout {
            size: size as usize,
            offsets,
            lens,
        })
    }

    /// Length of each field.
    #[cfg(test)]
    fn lens(&self) -> [usize; FIELD_COUNT] {
        self.lens
    }

    /// Offset of each field in the concatenated payload.
    #[cfg(test)]
    fn offsets(&self) -> [usize; FIELD_COUNT] {
        self.offsets
    }

    /// Whether field `index` is long enough to carry a stamp.
    fn is_stamped(&self, index: usize) -> bool {
        self.lens[index] >= STAMP_LEN
    }

    /// Payload offsets at which a stamp starts (one per field of at least [`STAMP_LEN`] bytes).
    pub(crate) fn stamp_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        (0..FIELD_COUNT)
            .filter(|&i| self.is_stamped(i))
            .map(|i| self.offsets[i])
    }
}

/// The printable encoding of a sequence number written at the start of each field: the low
/// 48 bits of `seq` in base 64, most significant digit first.
pub(crate) fn stamp_bytes(seq: u64) -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        let shift = 6 * (STAMP_LEN - 1 - i);
        *byte = ALPHABET[((seq >> shift) & 63) as usize];
    }
    out
}

/// A 32x32 matrix over GF(2) acting on CRC32C register values; column `n` is the image of
/// bit `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gf2Matrix([u32; 32]);

/// Reflected CRC32C (Castagnoli) polynomial.
const CRC32C_POLY_REFLECTED: u32 = 0x82F6_3B78;

impl Gf2Matrix {
    const ZERO: Gf2Matrix = Gf2Matrix([0; 32]);

    fn identity() -> Self {
        let mut columns = [0u32; 32];
        for (n, column) in columns.iter_mut().enumerate() {
            *column = 1 << n;
        }
        Gf2Matrix(columns)
    }

    /// Matrix times vector.
    #[inline]
    fn apply(&self, mut vector: u32) -> u32 {
        let mut result = 0;
        let mut n = 0;
        while vector != 0 {
            if vector & 1 != 0 {
                result ^= self.0[n];
            }
            vector >>= 1;
            n += 1;
        }
        result
    }

    /// `self ∘ other`: first `other`, then `self`.
    fn compose(&self, other: &Gf2Matrix) -> Gf2Matrix {
        let mut columns = [0u32; 32];
        for (n, column) in columns.iter_mut().enumerate() {
            *column = self.apply(other.0[n]);
        }
        Gf2Matrix(columns)
    }

    /// Element-wise XOR (matrix addition over GF(2)).
    fn xor(&self, other: &Gf2Matrix) -> Gf2Matrix {
        let mut columns = self.0;
        for (column, theirs) in columns.iter_mut().zip(other.0.iter()) {
            *column ^= theirs;
        }
        Gf2Matrix(columns)
    }

    /// The operator that feeds `len` zero bytes through the raw CRC32C register: `Z_len`.
    fn crc32c_zeros(len: u64) -> Gf2Matrix {
        // One zero bit: shift right, XOR the polynomial when the low bit falls out.
        let mut one_bit = [0u32; 32];
        one_bit[0] = CRC32C_POLY_REFLECTED;
        for (n, column) in one_bit.iter_mut().enumerate().skip(1) {
            *column = 1 << (n - 1);
        }
        let one_bit = Gf2Matrix(one_bit);
        let two_bits = one_bit.compose(&one_bit);
        let four_bits = two_bits.compose(&two_bits);
        let mut power = four_bits.compose(&four_bits); // one zero byte
        let mut result = Gf2Matrix::identity();
        let mut remaining = len;
        while remaining != 0 {
            if remaining & 1 != 0 {
                result = power.compose(&result);
            }
            remaining >>= 1;
            if remaining != 0 {
                power = power.compose(&power);
            }
        }
        result
    }
}

/// splitmix64: tiny, fast, good enough for filler text, and identical on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Seed of the filler text; the size and field index are mixed in.
const CONTENT_SEED: u64 = 0x6E65_7463_6F70_7931; // "netcopy1"

fn fill_printable(field: &mut [u8], size: u64, index: usize) {
    let mut rng =
        SplitMix64(CONTENT_SEED ^ size.rotate_left(17) ^ ((index as u64 + 1) * 0x1000_0001));
    for chunk in field.chunks_mut(10) {
        let mut bits = rng.next();
        for byte in chunk {
            *byte = ALPHABET[(bits & 63) as usize];
            bits >>= 6;
        }
    }
}

/// The message: 8 heap-allocated fields, stamped with a sequence number before each send,
/// with a checksum that is cheap to keep current.
#[derive(Clone)]
pub(crate) struct ComplexMessage {
    layout: FieldLayout,
    fields: [Box<[u8]>; FIELD_COUNT],
    /// `A`: maps `crc32c(stamp)` to its contribution to the payload CRC.
    stamp_operator: Gf2Matrix,
    /// `K`: the payload CRC's contribution from everything that is not a stamp.
    crc_constant: u32,
    crc: u32,
    seq: Option<u64>,
}

impl fmt::Debug for ComplexMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComplexMessage")
            .field("size", &self.layout.size)
            .field("field_lens", &self.layout.lens)
            .field("crc", &self.crc)
            .field("seq", &self.seq)
            .finish()
    }
}

impl ComplexMessage {
    /// Builds the unstamped message of `size` payload bytes (1 ..= [`MAX_PAYLOAD_SIZE`]).
    pub(crate) fn new(size: u64) -> Result<Self, MessageError> {
        let layout = FieldLayout::new(size)?;
        let fields: [Box<[u8]>; FIELD_COUNT] = std::array::from_fn(|i| {
            let mut field = vec![0u8; layout.lens[i]];
            fill_printable(&mut field, size, i);
            field.into_boxed_slice()
        });
        let (stamp_operator, crc_constant) =
            fold_crc(&layout, |i, range| crc32c::crc32c(&fields[i][range]));
        let crc = crc32c::crc32c(&concat(&fields));
        Ok(ComplexMessage {
            layout,
            fields,
            stamp_operator,
            crc_constant,
            crc,
            seq: None,
        })
    }

    /// Payload bytes.
    pub(crate) fn size(&self) -> usize {
        self.layout.size
    }

    #[cfg(test)]
    fn layout(&self) -> &FieldLayout {
        &self.layout
    }

    /// The 8 fields, in wire order.
    pub(crate) fn fields(&self) -> [&[u8]; FIELD_COUNT] {
        std::array::from_fn(|i| &*self.fields[i])
    }

    /// CRC32C of the concatenated fields as they are now.
    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }

    /// The sequence number of the last stamp, `None` before the first.
    #[cfg(test)]
    fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// Writes the stamp of `seq` into every field that has room and updates the CRC without
    /// reading the payload.
    pub(crate) fn stamp(&mut self, seq: u64) {
        let stamp = stamp_bytes(seq);
        for (i, field) in self.fields.iter_mut().enumerate() {
            if self.layout.is_stamped(i) {
                field[..STAMP_LEN].copy_from_slice(&stamp);
            }
        }
        self.crc = self.crc_of_stamp(seq);
        self.seq = Some(seq);
    }

    /// The payload CRC of this message stamped with `seq`.
    pub(crate) fn crc_of_stamp(&self, seq: u64) -> u32 {
        self.stamp_operator.apply(crc32c::crc32c(&stamp_bytes(seq))) ^ self.crc_constant
    }

    /// Length of each field, in wire order.
    pub(crate) fn field_lens(&self) -> [usize; FIELD_COUNT] {
        self.layout.lens
    }

    /// Writes this message's fields, stamped with `seq`, into `out` (one buffer per field,
    /// each exactly [`ComplexMessage::field_lens`] long) by generating the content afresh,
    /// never by copying this message's own fields, and returns the payload CRC.
    ///
    /// For senders that hand the kernel page references with no word of when it lets go
    /// (splice, sendfile): they can never restamp a buffer the kernel may still read, so
    /// each message is produced in fresh pages, as a program producing new data would,
    /// and no user-space copy of the payload is made.
    pub(crate) fn generate_into(&self, seq: u64, out: [&mut [u8]; FIELD_COUNT]) -> u32 {
        let stamp = stamp_bytes(seq);
        for (i, field) in out.into_iter().enumerate() {
            assert_eq!(
                field.len(),
                self.layout.lens[i],
                "field {i} of a generated message has the wrong length"
            );
            fill_printable(field, self.layout.size as u64, i);
            if self.layout.is_stamped(i) {
                field[..STAMP_LEN].copy_from_slice(&stamp);
            }
        }
        self.crc_of_stamp(seq)
    }

    /// The payload as one contiguous buffer (tests only: this is a copy).
    #[cfg(test)]
    pub(crate) fn to_payload(&self) -> Vec<u8> {
        concat(&self.fields)
    }
}

/// The payload CRC's operators `(A, K)` for `layout` (see the module docs), given the CRC32C
/// of any range of a field's unstamped content: `crc_of(field, range)`.
fn fold_crc(
    layout: &FieldLayout,
    mut crc_of: impl FnMut(usize, std::ops::Range<usize>) -> u32,
) -> (Gf2Matrix, u32) {
    // Fold crc(payload) = Z_len_i(crc_so_far) ^ crc(field_i) over the fields, keeping the
    // stamp's contribution symbolic: crc(field_i) = Z_tail_i(crc(stamp)) ^ crc(tail_i).
    let mut stamp_operator = Gf2Matrix::ZERO;
    let mut crc_constant = 0u32;
    for i in 0..FIELD_COUNT {
        let len = layout.lens[i];
        let shift = Gf2Matrix::crc32c_zeros(len as u64);
        stamp_operator = shift.compose(&stamp_operator);
        crc_constant = shift.apply(crc_constant);
        if layout.is_stamped(i) {
            stamp_operator = stamp_operator.xor(&Gf2Matrix::crc32c_zeros((len - STAMP_LEN) as u64));
            crc_constant ^= crc_of(i, STAMP_LEN..len);
        } else {
            crc_constant ^= crc_of(i, 0..len);
        }
    }
    (stamp_operator, crc_constant)
}

fn concat(fields: &[Box<[u8]>; FIELD_COUNT]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len()).sum());
    for field in fields {
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC32C of `A || B` from `crc(A)`, `crc(B)` and `|B|` (the zlib-style combine, built
    /// on [`Gf2Matrix`]): checks the operator that `ComplexMessage::new` folds the fields
    /// with.
    fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
        Gf2Matrix::crc32c_zeros(len_b).apply(crc_a) ^ crc_b
    }

    const SIZES: [u64; 14] = [
        1,
        2,
        7,
        8,
        9,
        63,
        64,
        97,
        98,
        4095,
        4096,
        65537,
        (1 << 20) + 3,
        (8 << 20) + 1,
    ];

    #[test]
    fn combine_matches_full_crc_and_the_crate() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0usize, 1, 7, 8, 9, 100, 4096, 9_999, 10_000] {
            let (a, b) = data.split_at(split);
            let expected = crc32c::crc32c(&data);
            let combined = crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len() as u64);
            assert_eq!(combined, expected, "split at {split}");
            assert_eq!(
                crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                expected
            );
        }
    }

    #[test]
    fn layout_covers_the_payload_with_unequal_odd_fields() {
        for size in SIZES.into_iter().chain([3, 5, 15, 16, 17, 1000, 1 << 30]) {
            let layout = FieldLayout::new(size).unwrap();
            let lens = layout.lens();
            let offsets = layout.offsets();
            assert_eq!(lens.iter().sum::<usize>() as u64, size, "size {size}");
            assert_eq!(offsets[0], 0);
            for i in 1..FIELD_COUNT {
                assert_eq!(offsets[i], offsets[i - 1] + lens[i - 1], "size {size}");
            }
            if size >= 98 {
                for (i, offset) in offsets.iter().enumerate().skip(1) {
                    assert_eq!(offset % 2, 1, "size {size}: field {i} at an even offset");
                }
            }
            if size >= 1000 {
                for i in 1..FIELD_COUNT {
                    assert!(
                        lens[i] > lens[i - 1],
                        "size {size}: lens {lens:?} not unequal"
                    );
                }
            }
        }
        // Sizes below 8 leave fields empty.
        let small = FieldLayout::new(1).unwrap();
        assert_eq!(small.lens().iter().filter(|&&l| l == 0).count(), 7);
        assert_eq!(FieldLayout::new(0), Err(MessageError::SizeZero));
        assert!(matches!(
            FieldLayout::new(MAX_PAYLOAD_SIZE + 1),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn cheap_crc_equals_full_crc_after_every_stamp() {
        for size in SIZES {
            let mut message = ComplexMessage::new(size).unwrap();
            assert_eq!(
                message.crc(),
                crc32c::crc32c(&message.to_payload()),
                "unstamped size {size}"
            );
            for seq in [0u64, 1, 2, 63, 64, 12345, 1 << 40, u64::MAX] {
                message.stamp(seq);
                let payload = message.to_payload();
                assert_eq!(payload.len() as u64, size);
                assert_eq!(
                    message.crc(),
                    crc32c::crc32c(&payload),
                    "size {size} seq {seq}"
                );
                assert_eq!(message.seq(), Some(seq));
            }
        }
    }

    #[test]
    fn stamps_are_at_the_field_starts_and_content_is_printable() {
        let mut message = ComplexMessage::new(4096).unwrap();
        message.stamp(77);
        let payload = message.to_payload();
        let stamp = stamp_bytes(77);
        let layout = *message.layout();
        assert_eq!(layout.stamp_offsets().count(), FIELD_COUNT);
        for offset in layout.stamp_offsets() {
            assert_eq!(&payload[offset..offset + STAMP_LEN], &stamp);
        }
        assert!(payload.iter().all(|b| b.is_ascii_graphic()));
        // Fields are separate allocations.
        let fields = message.fields();
        for i in 1..FIELD_COUNT {
            let end_of_previous = fields[i - 1].as_ptr_range().end;
            assert_ne!(end_of_previous, fields[i].as_ptr());
        }
        // Short fields are not stamped.
        let mut tiny = ComplexMessage::new(9).unwrap();
        let before = tiny.to_payload();
        tiny.stamp(5);
        assert_eq!(tiny.layout().stamp_offsets().count(), 0);
        assert_eq!(tiny.to_payload(), before);
    }

    #[test]
    fn generated_fields_equal_the_stamped_message() {
        for size in SIZES.into_iter().take(12) {
            let mut message = ComplexMessage::new(size).unwrap();
            let lens = message.field_lens();
            let mut buffers: Vec<Vec<u8>> = lens.iter().map(|&len| vec![0u8; len]).collect();
            let mut rest = buffers.as_mut_slice();
            let out: [&mut [u8]; FIELD_COUNT] = std::array::from_fn(|_| {
                let (first, tail) = std::mem::take(&mut rest).split_first_mut().unwrap();
                rest = tail;
                first.as_mut_slice()
            });
            let crc = message.generate_into(4242, out);
            message.stamp(4242);
            assert_eq!(buffers.concat(), message.to_payload(), "size {size}");
            assert_eq!(crc, message.crc(), "size {size}");
            assert_eq!(crc, crc32c::crc32c(&buffers.concat()), "size {size}");
        }
    }

    #[test]
    fn content_is_deterministic_and_stamps_differ() {
        let a = ComplexMessage::new(65537).unwrap();
        let b = ComplexMessage::new(65537).unwrap();
        assert_eq!(a.to_payload(), b.to_payload());
        assert_ne!(stamp_bytes(1), stamp_bytes(2));
        assert_eq!(&stamp_bytes(0), b"AAAAAAAA");
        assert!(stamp_bytes(u64::MAX).iter().all(|b| b.is_ascii_graphic()));
    }
}
