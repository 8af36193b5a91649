//! The trace's record decoder: bytes as the per-CPU call logs hold them, through decoding,
//! the summary and every output `netcopy trace` writes. Every whole record is decoded or
//! counted as malformed; every decoded call is one line of syscalls.jsonl and is counted
//! once in the summary; every output is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcopy::trace::{render_log_bytes, RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let (output, malformed, [jsonl, chrome, summary, table]) =
        render_log_bytes(data).expect("rendering in memory cannot fail");
    let records = output.events.len() as u64;
    assert_eq!(records + malformed, (data.len() / RECORD_LEN) as u64);
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(
        lines.len() as u64,
        records + 1,
        "one line per call and the end"
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
    }
    serde_json::from_str::<serde_json::Value>(&chrome).expect("trace.json is JSON");
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary is JSON");
    assert_eq!(summary["events"], records);
    let calls: u64 = output.summary.syscalls.iter().map(|s| s.calls).sum();
    assert_eq!(calls, records);
    assert!(table.lines().count() >= 2);
});
