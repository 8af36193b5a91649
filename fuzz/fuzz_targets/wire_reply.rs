//! The client's side of the wire: a reply header, the error text behind it as the client
//! prints it, and a message header. What decodes re-encodes to the same bytes; the text a
//! hostile server sends reaches the terminal without a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::{
    util::text::printable,
    workload::protocol::{
        MessageHeader, ReplyHeader, Status, MAX_ERROR_TEXT_LEN, MESSAGE_HEADER_LEN,
        REPLY_HEADER_LEN,
    },
};

fuzz_target!(|data: &[u8]| {
    let Some((reply, rest)) = data.split_first_chunk::<REPLY_HEADER_LEN>() else {
        return;
    };
    if let Ok(header) = ReplyHeader::decode(reply) {
        assert_eq!(&header.encode(), reply, "decode(encode(x)) == x");
        assert!(header.error_len <= MAX_ERROR_TEXT_LEN);
        if header.status == Status::Ok.code() {
            assert_eq!(header.error_len, 0);
        }
        if let Some(status) = Status::from_code(header.status) {
            assert_eq!(status.code(), header.status);
        }
        let text = &rest[..rest.len().min(header.error_len as usize)];
        let shown = printable(&String::from_utf8_lossy(text));
        assert!(
            shown
                .chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'),
            "a control character reaches the terminal: {shown:?}"
        );
    } else {
        assert!(ReplyHeader::decode(reply)
            .unwrap_err()
            .to_string()
            .contains("reply"));
    }
    if let Some(message) = rest.first_chunk::<MESSAGE_HEADER_LEN>() {
        let header = MessageHeader::decode(message);
        assert_eq!(&header.encode(), message, "decode(encode(x)) == x");
    }
});
