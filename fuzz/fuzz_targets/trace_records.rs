//! The trace's record decoder: bytes as the per-CPU call logs hold them, through decoding,
//! the zero-copy account, the summary and every output `netcopy trace` writes. Every whole
//! record is a system call, an io_uring event or counted as malformed; every decoded one is
//! one line of syscalls.jsonl and is counted once in the summary; every output is valid
//! JSON. The seeds (fuzz/seeds/trace_records) are written by a test of netcopy-user
//! (trace::fuzz_seeds), which fails when they no longer match the record layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::trace::{render_log_bytes, RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let (output, malformed, [jsonl, chrome, summary, table]) =
        render_log_bytes(data).expect("rendering in memory cannot fail");
    let calls = output.events.len() as u64;
    let uring = output.io_uring.len() as u64;
    assert_eq!(calls + uring + malformed, (data.len() / RECORD_LEN) as u64);
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(
        lines.len() as u64,
        calls + uring + 1,
        "one line per call and io_uring event, and the end"
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
    }
    serde_json::from_str::<serde_json::Value>(&chrome).expect("trace.json is JSON");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary is JSON");
    assert_eq!(summary["events"], calls);
    assert_eq!(summary["io_uring_events"], uring);
    let counted: u64 = output.summary.syscalls.iter().map(|s| s.calls).sum();
    assert_eq!(counted, calls);
    assert!(table.lines().count() >= 2);
});
