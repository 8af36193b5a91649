//! The control protocol's framing: a 4-byte big-endian length, then that many bytes of one
//! JSON object. Every frame is bounded ([`MAX_FRAME`]) before a byte of it is buffered, so a
//! peer cannot make either end allocate more than that, and every way a frame can be wrong
//! is a [`FrameError`], never a panic: the decoder is what the fuzz target drives.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// The largest frame either end sends or accepts: far above any real message (a phase's
/// report is a few KiB), far below what could hurt the agent.
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read or decoded.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection cleanly between two frames.
    Closed,
    /// The socket failed, or the peer vanished in the middle of a frame.
    Io(io::Error),
    /// A length of 0 or above [`MAX_FRAME`].
    BadLength(u64),
    /// The body is not UTF-8 JSON of the expected shape.
    BadBody(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("the peer closed the connection"),
            FrameError::Io(e) => write!(f, "control connection: {e}"),
            FrameError::BadLength(n) => write!(
                f,
                "a control frame of {n} bytes (allowed: 1 to {MAX_FRAME}): not a netcopy peer?"
            ),
            FrameError::BadBody(e) => write!(f, "a malformed control message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encodes `message` as one frame.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // A message of ours that does not serialize is a bug, not bad input.
    let body = serde_json::to_vec(message).expect("control messages always serialize");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let frame = encode(message);
    if frame.len() - 4 > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a control message of {} bytes is over the frame limit",
                frame.len() - 4
            ),
        ));
    }
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame and decodes its body.
pub fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match read_exact_or_eof(input, &mut len)? {
        Filled::Eof => return Err(FrameError::Closed),
        Filled::Partial => {
            return Err(FrameError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a frame header",
            )))
        }
        Filled::Whole => {}
    }
    let len = u32::from_be_bytes(len) as usize;
    check_length(len as u64)?;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a frame",
            ))
        } else {
            FrameError::Io(e)
        }
    })?;
    decode_body(&body)
}

/// Decodes one whole frame held in memory (header and body), as the fuzz target does.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let Some((header, body)) = frame.split_first_chunk::<4>() else {
        return Err(FrameError::BadBody(format!(
            "{} bytes are too few for a frame header",
            frame.len()
        )));
    };
    let len = u32::from_be_bytes(*header) as u64;
    check_length(len)?;
    if body.len() as u64 != len {
        return Err(FrameError::BadBody(format!(
            "the header says {len} bytes, the frame holds {}",
            body.len()
        )));
    }
    decode_body(body)
}

fn check_length(len: u64) -> Result<(), FrameError> {
    if len == 0 || len > MAX_FRAME as u64 {
        return Err(FrameError::BadLength(len));
    }
    Ok(())
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::BadBody(e.to_string()))
}

enum Filled {
    Whole,
    Partial,
    Eof,
}

/// `read_exact` that tells a clean end of stream (no byte read) from one mid-buffer.
fn read_exact_or_eof(input: &mut impl Read, buf: &mut [u8]) -> Result<Filled, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(Filled::Eof),
            Ok(0) => return Ok(Filled::Partial),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(Filled::Whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }

    #[test]
    fn frames_round_trip_one_after_another() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Ping { n: 1 }).unwrap();
        write_frame(&mut wire, &Ping { n: 2 }).unwrap();
        let mut input = &wire[..];
        assert_eq!(read_frame::<Ping>(&mut input).unwrap(), Ping { n: 1 });
        assert_eq!(read_frame::<Ping>(&mut input).unwrap(), Ping { n: 2 });
        assert!(matches!(
            read_frame::<Ping>(&mut input),
            Err(FrameError::Closed)
        ));
        assert_eq!(
            decode::<Ping>(&encode(&Ping { n: 7 })).unwrap(),
            Ping { n: 7 }
        );
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_before_anything_is_buffered() {
        for len in [0u32, MAX_FRAME as u32 + 1, u32::MAX] {
            let mut input = &len.to_be_bytes()[..];
            match read_frame::<Ping>(&mut input) {
                Err(FrameError::BadLength(n)) => assert_eq!(n, u64::from(len)),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_frames_and_garbage_are_errors() {
        let frame = encode(&Ping { n: 3 });
        for cut in 1..frame.len() {
            let mut input = &frame[..cut];
            assert!(
                matches!(read_frame::<Ping>(&mut input), Err(FrameError::Io(_))),
                "cut at {cut}"
            );
            assert!(decode::<Ping>(&frame[..cut]).is_err());
        }
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\xff\x00{]x");
        assert!(matches!(
            read_frame::<Ping>(&mut &garbage[..]),
            Err(FrameError::BadBody(_))
        ));
        let wrong_shape = encode(&serde_json::json!({"n": "three"}));
        assert!(matches!(
            decode::<Ping>(&wrong_shape),
            Err(FrameError::BadBody(_))
        ));
        assert!(decode::<Ping>(b"").is_err());
    }
}
