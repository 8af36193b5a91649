//! `netcopy report`'s reading of results.json, from the file's bytes (size bound, UTF-8,
//! schema version, schema). A document that loads is written back as `netcopy run`
//! writes it, and that text loads again and writes back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::experiment::results::parse_results_bytes;

fuzz_target!(|data: &[u8]| {
    let Ok(results) = parse_results_bytes(data) else {
        return;
    };
    let written = serde_json::to_string_pretty(&results).expect("results always serialize");
    let reread = parse_results_bytes(written.as_bytes()).expect("what netcopy writes it reads");
    let again = serde_json::to_string_pretty(&reread).unwrap();
    assert_eq!(written, again, "load(write(x)) == x");
});
