//! The control protocol's framing and messages, as both ends read them: the bytes as one
//! in-memory frame (`frame::decode`) and as a stream of frames (`frame::read_frame`), each
//! decoded as what the agent reads (ControllerMessage) and what the controller reads
//! (AgentMessage with the agent's report). What decodes re-encodes to a frame that decodes
//! to the same message; a frame over MAX_FRAME is refused before it is buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::remote::{
    frame::{decode, encode, read_frame, FrameError, MAX_FRAME},
    messages::{AgentMessage, ControllerMessage},
    phases::SenderReport,
};

type FromAgent = AgentMessage<SenderReport>;

/// `frame` decoded as `T`, then re-encoded: the encoding is a fixed point (compared as
/// bytes, so that it needs no PartialEq of the report).
fn fixed_point<T>(frame: &[u8]) -> Result<T, FrameError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let message: T = decode(frame)?;
    let again = encode(&message);
    let reread: T = decode(&again).expect("a frame we encode decodes");
    assert_eq!(encode(&reread), again, "decode(encode(x)) == x");
    Ok(message)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = fixed_point::<ControllerMessage>(data) {
        let reread: ControllerMessage = decode(&encode(&message)).unwrap();
        assert_eq!(reread, message);
    }
    let _ = fixed_point::<FromAgent>(data);

    // The same bytes as a stream: frames one after another until the first that fails.
    let mut input = data;
    for _ in 0..64 {
        let before = input.len();
        match read_frame::<ControllerMessage>(&mut input) {
            Ok(_) => assert!(before - input.len() > 4),
            Err(FrameError::BadLength(n)) => {
                assert!(n == 0 || n > MAX_FRAME as u64);
                // Refused on the header alone: not a byte of the body was taken.
                assert_eq!(before - input.len(), 4);
                break;
            }
            Err(_) => break,
        }
    }
    let mut input = data;
    while read_frame::<FromAgent>(&mut input).is_ok() {}
});
