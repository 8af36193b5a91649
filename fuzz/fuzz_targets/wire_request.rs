//! The server's request decoder, fed any 24 bytes and any size limit (the 8 bytes after
//! them, big-endian; u64::MAX without them). A request that decodes is re-encoded to
//! exactly its bytes and respects the limit; one that does not is refused for the first
//! field that is wrong, in wire order, with a status that is not "ok".
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::workload::protocol::{Request, RequestError, Status, REQUEST_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((bytes, rest)) = data.split_first_chunk::<REQUEST_LEN>() else {
        return;
    };
    let max_size = rest
        .first_chunk::<8>()
        .map_or(u64::MAX, |b| u64::from_be_bytes(*b));
    let be16 = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let be64 = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    match Request::decode(bytes, max_size) {
        Ok(request) => {
            assert_eq!(&request.encode(), bytes, "decode(encode(x)) == x");
            assert!(request.size >= 1 && request.size <= max_size);
            assert_eq!(request.count, be64(16));
        }
        Err(error) => {
            assert_ne!(error.status(), Status::Ok);
            assert!(!error.to_string().is_empty());
            let magic_ok = bytes[..4] == *b"NCPY";
            let expected = if !magic_ok {
                Status::BadMagic
            } else if be16(4) != 1 {
                Status::UnsupportedVersion
            } else if be16(6) != 0 {
                Status::BadFlags
            } else if be64(8) == 0 {
                Status::SizeZero
            } else {
                Status::SizeOverLimit
            };
            assert_eq!(error.status(), expected, "{error:?}");
            if let RequestError::SizeOverLimit { size, limit } = error {
                assert!(size > limit);
            }
        }
    }
});
