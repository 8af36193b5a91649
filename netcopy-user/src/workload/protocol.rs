//! The netcopy wire format, version 1. All integers are big-endian.
//!
//! ```text
//! request (client -> server), REQUEST_LEN = 24 bytes
//!   0  u32 magic 0x4E435059 ("NCPY")
//!   4  u16 version = 1
//!   6  u16 flags = 0
//!   8  u64 message size (payload bytes per message)
//!  16  u64 message count (0 = stream until the client closes)
//!
//! reply header (server -> client, one per request), REPLY_HEADER_LEN = 16 bytes
//!   0  u32 magic
//!   4  u16 version
//!   6  u16 status (0 ok, see Status)
//!   8  u8  mode (1 two-copy, 2 one-copy, 3 zero-copy)
//!   9  3 reserved zero bytes
//!  12  u32 length of the UTF-8 error text that follows only when status != 0 (else 0)
//!
//! then, when status is ok, `count` messages, each:
//!   message header, MESSAGE_HEADER_LEN = 16 bytes
//!     0  u32 payload length
//!     4  u32 CRC32C of the payload
//!     8  u64 sequence number, 0-based per request
//!   payload: the 8 fields concatenated
//! ```
//!
//! On an error status the server writes the header and the text, then closes the
//! connection. A connection may carry several requests one after another.

use std::fmt;

/// "NCPY".
const MAGIC: u32 = 0x4E43_5059;
const VERSION: u16 = 1;
pub const REQUEST_LEN: usize = 24;
pub const REPLY_HEADER_LEN: usize = 16;
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Longest error text a client accepts; the server's texts are far shorter.
pub const MAX_ERROR_TEXT_LEN: u32 = 4096;

/// Reply status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Ok = 0,
    BadMagic = 1,
    UnsupportedVersion = 2,
    BadFlags = 3,
    SizeZero = 4,
    SizeOverLimit = 5,
    /// The server could not serve a valid request (e.g. the kernel refused SO_ZEROCOPY).
    ServerError = 6,
    /// The server already serves its most connections (`--max-connections`).
    Busy = 7,
}

impl Status {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::BadMagic,
            2 => Status::UnsupportedVersion,
            3 => Status::BadFlags,
            4 => Status::SizeZero,
            5 => Status::SizeOverLimit,
            6 => Status::ServerError,
            7 => Status::Busy,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadMagic => "bad magic",
            Status::UnsupportedVersion => "unsupported version",
            Status::BadFlags => "bad flags",
            Status::SizeZero => "size zero",
            Status::SizeOverLimit => "size over limit",
            Status::ServerError => "server error",
            Status::Busy => "busy",
        }
    }
}

/// A valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Payload bytes per message.
    pub size: u64,
    /// Messages to send; 0 streams until the client closes.
    pub count: u64,
}

/// Why a request was rejected; each maps to one [`Status`]. Public for the fuzz target
/// (fuzz/), like [`Request::decode`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    BadMagic(u32),
    UnsupportedVersion(u16),
    BadFlags(u16),
    SizeZero,
    SizeOverLimit { size: u64, limit: u64 },
}

impl RequestError {
    pub fn status(&self) -> Status {
        match self {
            RequestError::BadMagic(_) => Status::BadMagic,
            RequestError::UnsupportedVersion(_) => Status::UnsupportedVersion,
            RequestError::BadFlags(_) => Status::BadFlags,
            RequestError::SizeZero => Status::SizeZero,
            RequestError::SizeOverLimit { .. } => Status::SizeOverLimit,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadMagic(magic) => write!(
                f,
                "bad magic 0x{magic:08x} (expected 0x{MAGIC:08x} \"NCPY\"): not a netcopy client"
            ),
            RequestError::UnsupportedVersion(version) => write!(
                f,
                "unsupported protocol version {version} (this server speaks version {VERSION})"
            ),
            RequestError::BadFlags(flags) => {
                write!(
                    f,
                    "request flags 0x{flags:04x} set, but no flags are defined"
                )
            }
            RequestError::SizeZero => write!(f, "message size 0 requested; the minimum is 1 byte"),
            RequestError::SizeOverLimit { size, limit } => write!(
                f,
                "message size {size} exceeds this server's limit of {limit} bytes"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

impl Request {
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&VERSION.to_be_bytes());
        out[6..8].copy_from_slice(&0u16.to_be_bytes());
        out[8..16].copy_from_slice(&self.size.to_be_bytes());
        out[16..24].copy_from_slice(&self.count.to_be_bytes());
        out
    }

    /// Decodes and validates a request against the server's size limit. Checks run in wire
    /// order, so garbage is reported as a bad magic before anything else.
    #[doc(hidden)]
    pub fn decode(bytes: &[u8; REQUEST_LEN], max_size: u64) -> Result<Request, RequestError> {
        let magic = u32::from_be_bytes(field(bytes, 0));
        if magic != MAGIC {
            return Err(RequestError::BadMagic(magic));
        }
        let version = u16::from_be_bytes(field(bytes, 4));
        if version != VERSION {
            return Err(RequestError::UnsupportedVersion(version));
        }
        let flags = u16::from_be_bytes(field(bytes, 6));
        if flags != 0 {
            return Err(RequestError::BadFlags(flags));
        }
        let size = u64::from_be_bytes(field(bytes, 8));
        let count = u64::from_be_bytes(field(bytes, 16));
        if size == 0 {
            return Err(RequestError::SizeZero);
        }
        if size > max_size {
            return Err(RequestError::SizeOverLimit {
                size,
                limit: max_size,
            });
        }
        Ok(Request { size, count })
    }
}

/// A reply header as it travels; `status` stays a raw code so that a client can report
/// codes it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub status: u16,
    /// Wire byte of the server's mode.
    pub mode: u8,
    /// Length of the error text that follows (0 when the status is ok).
    pub error_len: u32,
}

/// Why a reply header was not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    BadMagic(u32),
    UnsupportedVersion(u16),
    ReservedNotZero([u8; 3]),
    ErrorTextTooLong(u32),
    TextWithOkStatus(u32),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BadMagic(magic) => write!(
                f,
                "reply has bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}): not a netcopy server"
            ),
            ReplyError::UnsupportedVersion(version) => write!(
                f,
                "reply has protocol version {version}, this client speaks {VERSION}"
            ),
            ReplyError::ReservedNotZero(bytes) => {
                write!(f, "reply has non-zero reserved bytes {bytes:?}")
            }
            ReplyError::ErrorTextTooLong(len) => write!(
                f,
                "reply announces an error text of {len} bytes (limit {MAX_ERROR_TEXT_LEN})"
            ),
            ReplyError::TextWithOkStatus(len) => {
                write!(
                    f,
                    "reply has status ok but announces {len} bytes of error text"
                )
            }
        }
    }
}

impl std::error::Error for ReplyError {}

impl ReplyHeader {
    pub(crate) fn ok(mode: u8) -> Self {
        ReplyHeader {
            status: Status::Ok.code(),
            mode,
            error_len: 0,
        }
    }

    pub fn encode(&self) -> [u8; REPLY_HEADER_LEN] {
        let mut out = [0u8; REPLY_HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&VERSION.to_be_bytes());
        out[6..8].copy_from_slice(&self.status.to_be_bytes());
        out[8] = self.mode;
        out[12..16].copy_from_slice(&self.error_len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; REPLY_HEADER_LEN]) -> Result<ReplyHeader, ReplyError> {
        let magic = u32::from_be_bytes(field(bytes, 0));
        if magic != MAGIC {
            return Err(ReplyError::BadMagic(magic));
        }
        let version = u16::from_be_bytes(field(bytes, 4));
        if version != VERSION {
            return Err(ReplyError::UnsupportedVersion(version));
        }
        let status = u16::from_be_bytes(field(bytes, 6));
        let reserved: [u8; 3] = field(bytes, 9);
        if reserved != [0; 3] {
            return Err(ReplyError::ReservedNotZero(reserved));
        }
        let error_len = u32::from_be_bytes(field(bytes, 12));
        if status == Status::Ok.code() && error_len != 0 {
            return Err(ReplyError::TextWithOkStatus(error_len));
        }
        if error_len > MAX_ERROR_TEXT_LEN {
            return Err(ReplyError::ErrorTextTooLong(error_len));
        }
        Ok(ReplyHeader {
            status,
            mode: bytes[8],
            error_len,
        })
    }
}

/// The header in front of every message payload. Public for the fuzz target (fuzz/).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub payload_len: u32,
    pub crc32c: u32,
    pub seq: u64,
}

impl MessageHeader {
    pub fn encode(&self) -> [u8; MESSAGE_HEADER_LEN] {
        let mut out = [0u8; MESSAGE_HEADER_LEN];
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encode_into(&self, out: &mut [u8; MESSAGE_HEADER_LEN]) {
        out[0..4].copy_from_slice(&self.payload_len.to_be_bytes());
        out[4..8].copy_from_slice(&self.crc32c.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
    }

    pub fn decode(bytes: &[u8; MESSAGE_HEADER_LEN]) -> MessageHeader {
        MessageHeader {
            payload_len: u32::from_be_bytes(field(bytes, 0)),
            crc32c: u32::from_be_bytes(field(bytes, 4)),
            seq: u64::from_be_bytes(field(bytes, 8)),
        }
    }
}

/// Fixed-size big-endian field at `offset`; the callers' offsets are constants within the
/// fixed-size arrays, so the slice always has exactly N bytes.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 64 << 20;

    #[test]
    fn request_round_trips_with_exact_bytes() {
        let request = Request {
            size: 0x0102_0304,
            count: 7,
        };
        let bytes = request.encode();
        assert_eq!(
            bytes,
            [0x4E, 0x43, 0x50, 0x59, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(Request::decode(&bytes, u64::MAX), Ok(request));
        let stream = Request { size: 1, count: 0 };
        assert_eq!(Request::decode(&stream.encode(), LIMIT), Ok(stream));
        let at_limit = Request {
            size: LIMIT,
            count: 1,
        };
        assert_eq!(Request::decode(&at_limit.encode(), LIMIT), Ok(at_limit));
    }

    #[test]
    fn request_rejections_have_distinct_statuses() {
        let good = Request { size: 10, count: 1 }.encode();

        let mut bad_magic = good;
        bad_magic[0] = b'G';
        let err = Request::decode(&bad_magic, LIMIT).unwrap_err();
        assert!(matches!(err, RequestError::BadMagic(_)));
        assert_eq!(err.status(), Status::BadMagic);

        let mut bad_version = good;
        bad_version[5] = 2;
        let err = Request::decode(&bad_version, LIMIT).unwrap_err();
        assert_eq!(err, RequestError::UnsupportedVersion(2));
        assert_eq!(err.status(), Status::UnsupportedVersion);

        let mut bad_flags = good;
        bad_flags[7] = 1;
        let err = Request::decode(&bad_flags, LIMIT).unwrap_err();
        assert_eq!(err, RequestError::BadFlags(1));
        assert_eq!(err.status(), Status::BadFlags);

        let zero = Request { size: 0, count: 1 }.encode();
        let err = Request::decode(&zero, LIMIT).unwrap_err();
        assert_eq!(err, RequestError::SizeZero);
        assert_eq!(err.status(), Status::SizeZero);

        let huge = Request {
            size: LIMIT + 1,
            count: 1,
        }
        .encode();
        let err = Request::decode(&huge, LIMIT).unwrap_err();
        assert_eq!(
            err,
            RequestError::SizeOverLimit {
                size: LIMIT + 1,
                limit: LIMIT
            }
        );
        assert_eq!(err.status(), Status::SizeOverLimit);
        assert!(err.to_string().contains("limit"));

        let statuses = [
            Status::Ok,
            Status::BadMagic,
            Status::UnsupportedVersion,
            Status::BadFlags,
            Status::SizeZero,
            Status::SizeOverLimit,
            Status::ServerError,
        ];
        for status in statuses {
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        let mut codes: Vec<u16> = statuses.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), statuses.len());
        assert_eq!(Status::from_code(999), None);
    }

    #[test]
    fn reply_header_round_trips_and_rejects() {
        let ok = ReplyHeader::ok(3);
        let bytes = ok.encode();
        assert_eq!(
            bytes,
            [0x4E, 0x43, 0x50, 0x59, 0, 1, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ReplyHeader::decode(&bytes), Ok(ok));

        let error = ReplyHeader {
            status: Status::SizeOverLimit.code(),
            mode: 1,
            error_len: 42,
        };
        assert_eq!(ReplyHeader::decode(&error.encode()), Ok(error));

        let mut bad_magic = bytes;
        bad_magic[3] = 0;
        assert!(matches!(
            ReplyHeader::decode(&bad_magic),
            Err(ReplyError::BadMagic(_))
        ));
        let mut bad_version = bytes;
        bad_version[4] = 1;
        assert_eq!(
            ReplyHeader::decode(&bad_version),
            Err(ReplyError::UnsupportedVersion(257))
        );
        let mut reserved = bytes;
        reserved[10] = 9;
        assert_eq!(
            ReplyHeader::decode(&reserved),
            Err(ReplyError::ReservedNotZero([0, 9, 0]))
        );
        let ok_with_text = ReplyHeader {
            status: 0,
            mode: 1,
            error_len: 5,
        };
        assert_eq!(
            ReplyHeader::decode(&ok_with_text.encode()),
            Err(ReplyError::TextWithOkStatus(5))
        );
        let long_text = ReplyHeader {
            status: 1,
            mode: 1,
            error_len: MAX_ERROR_TEXT_LEN + 1,
        };
        assert_eq!(
            ReplyHeader::decode(&long_text.encode()),
            Err(ReplyError::ErrorTextTooLong(MAX_ERROR_TEXT_LEN + 1))
        );
    }

    #[test]
    fn message_header_round_trips() {
        let header = MessageHeader {
            payload_len: 65537,
            crc32c: 0xDEAD_BEEF,
            seq: u64::MAX - 1,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[0..4], &[0, 1, 0, 1]);
        assert_eq!(&bytes[4..8], &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(MessageHeader::decode(&bytes), header);
    }
}
