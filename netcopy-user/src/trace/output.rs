//! The files a trace is written to: `syscalls.jsonl` (one call per line, then a last
//! `trace_end` line with the lost count), `trace.json` (Chrome trace event format, opens
//! in the Perfetto UI: one track per thread, each call a complete "X" slice) and
//! `summary.json`.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use netcopy_common::{CopySite, SyscallEvent};
use serde_json::{json, Value};

use super::{
    event::{event_from_bytes, msg_flags_text, RECORD_LEN},
    store::decode_events,
    summary::{LostCounts, TraceSummary},
    tracer::TraceOutput,
    zerocopy::ZeroCopyAccount,
};
use crate::util::errno::errno_name;

/// Where [`write_outputs`] put the files.
#[derive(Clone, Debug)]
pub struct OutputPaths {
    pub dir: PathBuf,
    pub jsonl: PathBuf,
    pub chrome_trace: PathBuf,
    pub summary: PathBuf,
}

/// The files [`write_outputs`] writes into its directory.
const OUTPUT_FILES: [&str; 3] = ["syscalls.jsonl", "trace.json", "summary.json"];

/// Makes `dir` ready for [`write_outputs`] before anything is traced: created if needed,
/// and refused when it is not a directory or already holds a trace, so that a trace is
/// never recorded only to be thrown away (or to overwrite an earlier one).
pub(crate) fn prepare_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot use {} as the output directory", dir.display()))?;
    if let Some(old) = OUTPUT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
    {
        anyhow::bail!(
            "{} already holds a trace ({}); give another --out or remove it",
            dir.display(),
            old.display()
        );
    }
    Ok(())
}

/// Writes `syscalls.jsonl`, `trace.json` and `summary.json` into `dir` (created if needed).
pub fn write_outputs(dir: &Path, output: &TraceOutput) -> Result<OutputPaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths = OutputPaths {
        dir: dir.to_path_buf(),
        jsonl: dir.join(OUTPUT_FILES[0]),
        chrome_trace: dir.join(OUTPUT_FILES[1]),
        summary: dir.join(OUTPUT_FILES[2]),
    };
    write_jsonl(&paths.jsonl, output)?;
    write_chrome_trace(&paths.chrome_trace, output)?;
    let summary = serde_json::to_string_pretty(&summary_json(output))?;
    fs::write(&paths.summary, summary + "\n")
        .with_context(|| format!("writing {}", paths.summary.display()))?;
    Ok(paths)
}

/// The summary object printed by `--json` and written to `summary.json`.
pub fn summary_json(output: &TraceOutput) -> Value {
    let mut j = output.summary.to_json();
    j["notes"] = json!(output.notes);
    j
}

/// One JSON object per line: every call and io_uring event in the order they started,
/// then `{"type":"trace_end", "lost_events": N, ...}`.
fn write_jsonl(path: &Path, output: &TraceOutput) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    jsonl(&mut w, output)?;
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

fn jsonl<W: Write>(w: &mut W, output: &TraceOutput) -> Result<()> {
    let calls = output.in_start_order();
    // io_uring events are in time order already: merge the two by start.
    let mut uring = output.io_uring.iter().enumerate().peekable();
    let write_uring = |w: &mut W, i: usize| -> Result<()> {
        let r = &output.io_uring[i];
        let opcode = output.zerocopy.uring_opcodes.get(&i).copied();
        serde_json::to_writer(
            &mut *w,
            &r.to_json(output.start_ns, opcode, output.zerocopy.uring_json(i)),
        )?;
        w.write_all(b"\n")?;
        Ok(())
    };
    for (index, r) in calls {
        while let Some((i, _)) = uring.next_if(|(_, u)| u.time_ns < r.start_ns) {
            write_uring(w, i)?;
        }
        serde_json::to_writer(
            &mut *w,
            &r.to_json(output.start_ns, output.zerocopy.call_json(index)),
        )?;
        w.write_all(b"\n")?;
    }
    for (i, _) in uring {
        write_uring(w, i)?;
    }
    let end = json!({
        "type": "trace_end",
        "events": output.events.len(),
        "lost_events": output.lost.total(),
        "lost": output.lost.to_json(),
        "duration_ns": output.end_ns.saturating_sub(output.start_ns),
        "start_unix_ns": output.start_unix_ns,
        "notes": output.notes,
    });
    serde_json::to_writer(&mut *w, &end)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// The trace in Chrome trace event format.
fn chrome_trace(output: &TraceOutput) -> Value {
    let t0 = output.start_ns;
    let us = |ns: u64| ns.saturating_sub(t0) as f64 / 1000.0;
    let mut events = Vec::with_capacity(output.events.len() + 16);
    let mut threads: BTreeMap<u32, u32> = BTreeMap::new();
    for r in &output.events {
        threads.insert(r.tid, r.pid);
    }
    // A thread that only submitted io_uring requests gets its track too.
    for r in &output.io_uring {
        threads.entry(r.tid).or_insert(r.pid);
    }
    let mut pids: Vec<u32> = threads.values().copied().collect();
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        let name = output
            .names
            .get(&pid)
            .map(|n| format!("{n} ({pid})"))
            .unwrap_or_else(|| format!("pid {pid}"));
        events.push(json!({
            "ph": "M", "name": "process_name", "pid": pid, "tid": pid,
            "args": { "name": name },
        }));
    }
    for (tid, pid) in &threads {
        let name = output
            .names
            .get(tid)
            .map(|n| format!("{n} ({tid})"))
            .unwrap_or_else(|| format!("tid {tid}"));
        events.push(json!({
            "ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
            "args": { "name": name },
        }));
    }
    for (index, r) in output.events.iter().enumerate() {
        let mut args = json!({
            "fd": r.fd,
            "flags": msg_flags_text(r.flags),
            "requested_bytes": r.requested,
            "ret": r.ret,
            "kernel_send_copy_bytes": r.copy(CopySite::KernelSendCopy).bytes,
            "zerocopy_attach_bytes": r.copy(CopySite::ZeroCopyAttach).bytes,
            "kernel_recv_copy_bytes": r.copy(CopySite::KernelRecvCopy).bytes,
            "copy_events": r.copy_events(),
        });
        if r.iovecs > 1 || r.messages > 1 {
            args["iovecs"] = json!(r.iovecs);
            args["messages"] = json!(r.messages);
        }
        match r.errno() {
            Some(errno) => args["error"] = json!(errno_name(errno)),
            None => args["returned_bytes"] = json!(r.returned),
        }
        if let Some(out) = r.msg_flags_out {
            args["msg_flags_out"] = json!(msg_flags_text(out));
        }
        if let Some(z) = output.zerocopy.call_json(index) {
            args["zerocopy"] = z;
        }
        events.push(json!({
            "ph": "X",
            "cat": "syscall",
            "name": r.syscall.name(),
            "pid": r.pid,
            "tid": r.tid,
            "ts": us(r.start_ns),
            "dur": r.duration_ns as f64 / 1000.0,
            "args": args,
        }));
    }
    for (i, r) in output.io_uring.iter().enumerate() {
        let opcode = output.zerocopy.uring_opcodes.get(&i).copied();
        let line = r.to_json(t0, opcode, output.zerocopy.uring_json(i));
        let name = match (line["type"].as_str(), opcode) {
            (Some("io_uring_submit"), Some(op)) => {
                format!("io_uring submit {}", super::uring::opcode_name(op))
            }
            (_, _) if r.is_notification() => "io_uring zero-copy notification".to_string(),
            (_, Some(op)) => format!("io_uring complete {}", super::uring::opcode_name(op)),
            _ => "io_uring complete".to_string(),
        };
        // An instant on the thread's track: a request's life is not one thread's slice.
        events.push(json!({
            "ph": "i", "s": "t", "cat": "io_uring", "name": name,
            "pid": r.pid, "tid": r.tid, "ts": us(r.time_ns), "args": line,
        }));
    }
    if output.lost.total() > 0 {
        // A global instant at the end, so that a lossy trace says so on screen.
        events.push(json!({
            "ph": "i", "s": "g", "name": format!("{} calls lost", output.lost.total()),
            "pid": 0, "tid": 0, "ts": us(output.end_ns),
            "args": output.lost.to_json(),
        }));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "tool": "netcopy trace",
            "events": output.events.len(),
            "lost_events": output.lost.total(),
            "lost": output.lost.to_json(),
            "start_unix_ns": output.start_unix_ns,
            "notes": output.notes,
        },
    })
}

fn write_chrome_trace(path: &Path, output: &TraceOutput) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, &chrome_trace(output))?;
    w.write_all(b"\n")?;
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// For the fuzz target (fuzz/): `bytes` as the call logs hold records (back to back, in
/// the eBPF program's byte order; a partial record at the end is dropped), taken through
/// every step from a record to what `netcopy trace` writes and prints: decoding (system
/// calls and io_uring events, as the tracer decodes them), the zero-copy account, the
/// summary, `syscalls.jsonl`, `trace.json`, `summary.json` and the table. Returns the
/// trace, how many records did not decode, and those four texts.
#[doc(hidden)]
pub fn render_log_bytes(bytes: &[u8]) -> Result<(TraceOutput, u64, [String; 4])> {
    let raw: Vec<SyscallEvent> = bytes
        .chunks_exact(RECORD_LEN)
        .map(|chunk| event_from_bytes(chunk.try_into().expect("chunks_exact gives RECORD_LEN")))
        .collect();
    let (events, io_uring, malformed) = decode_events(raw.len(), raw.iter());
    let starts = events
        .iter()
        .map(|r| r.start_ns)
        .chain(io_uring.iter().map(|u| u.time_ns));
    let ends = events
        .iter()
        .map(|r| r.start_ns.saturating_add(r.duration_ns))
        .chain(io_uring.iter().map(|u| u.time_ns));
    let start_ns = starts.min().unwrap_or(0);
    let end_ns = ends.max().unwrap_or(0);
    let lost = LostCounts::default();
    let zerocopy = ZeroCopyAccount::build(&events, &io_uring);
    let output = TraceOutput {
        summary: TraceSummary::build(&events, &io_uring, &zerocopy, lost, end_ns - start_ns),
        events,
        io_uring,
        zerocopy,
        lost,
        start_ns,
        end_ns,
        start_unix_ns: 0,
        names: BTreeMap::new(),
        notes: Vec::new(),
    };
    let mut lines = Vec::new();
    jsonl(&mut lines, &output)?;
    let texts = [
        String::from_utf8(lines).context("syscalls.jsonl is not UTF-8")?,
        serde_json::to_string(&chrome_trace(&output))?,
        serde_json::to_string_pretty(&summary_json(&output))?,
        output.summary.table(),
    ];
    Ok((output, malformed, texts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{
        event::SyscallRecord, summary::LostCounts, zerocopy::ZeroCopyAccount, TraceSummary,
    };
    use netcopy_common::{SiteCounter, SyscallEvent, TracedSyscall};

    fn sample() -> TraceOutput {
        let mut events = Vec::new();
        for (i, (call, ret)) in [
            (TracedSyscall::Sendmsg, 1000i64),
            (TracedSyscall::Recvfrom, -i64::from(libc::EAGAIN)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = SyscallEvent {
                start_ns: 5_000 + i as u64 * 1_000,
                end_ns: 5_500 + i as u64 * 1_000,
                ret,
                returned: ret.max(0) as u64,
                pid: 10,
                tid: 11 + i as u32,
                syscall: call as u32,
                fd: 4,
                flags: libc::MSG_DONTWAIT as u32,
                ..SyscallEvent::default()
            };
            e.copies[CopySite::KernelSendCopy.trace_index().unwrap()] = SiteCounter {
                calls: 1,
                bytes: ret.max(0) as u64,
            };
            events.push(SyscallRecord::from_event(&e).unwrap());
        }
        let lost = LostCounts {
            ring_full: 2,
            inflight_full: 0,
        };
        TraceOutput {
            summary: TraceSummary::build(&events, &[], &ZeroCopyAccount::default(), lost, 10_000),
            events,
            io_uring: Vec::new(),
            zerocopy: ZeroCopyAccount::default(),
            lost,
            start_ns: 4_000,
            end_ns: 14_000,
            start_unix_ns: 1,
            names: [(10, "helper".to_string()), (11, "worker".to_string())].into(),
            notes: vec![],
        }
    }

    #[test]
    fn chrome_trace_has_one_track_per_thread_and_complete_slices() {
        let j = chrome_trace(&sample());
        let events = j["traceEvents"].as_array().unwrap();
        let slices: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0]["ts"], 1.0);
        assert_eq!(slices[0]["dur"], 0.5);
        assert_eq!(slices[0]["args"]["flags"], "MSG_DONTWAIT");
        assert_eq!(slices[0]["args"]["returned_bytes"], 1000);
        assert_eq!(slices[1]["args"]["error"], "EAGAIN");
        let names: Vec<&Value> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names[0]["args"]["name"], "worker (11)");
        assert_eq!(names[1]["args"]["name"], "tid 12");
        assert_eq!(j["otherData"]["lost_events"], 2);
        assert!(events.iter().any(|e| e["ph"] == "i"));
    }

    #[test]
    fn the_jsonl_file_lists_calls_in_the_order_they_started() {
        // Delivered out of order, as two CPUs' logs are: the second call first.
        let mut output = sample();
        output.events.reverse();
        let dir = std::env::temp_dir().join(format!("netcopy-trace-order-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.jsonl");
        write_jsonl(&path, &output).unwrap();
        let starts: Vec<u64> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "syscall")
            .map(|v| v["monotonic_ns"].as_u64().unwrap())
            .collect();
        assert_eq!(starts, vec![5_000, 6_000]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn io_uring_events_are_merged_into_the_timeline_and_drawn_as_instants() {
        use crate::trace::uring::{UringKind, UringRecord};
        let mut output = sample();
        let event = |kind, time_ns, opcode| UringRecord {
            kind,
            time_ns,
            pid: 10,
            tid: 13,
            ring: 0x10,
            request: 0x20,
            user_data: 1,
            opcode,
            send_flags: None,
            res: 100,
            cflags: 0,
        };
        // Before, between and after the two calls (5_000 and 6_000).
        output.io_uring = vec![
            event(UringKind::Submit, 4_500, 9),
            event(UringKind::Complete, 5_500, 0),
            event(UringKind::Submit, 7_000, 26),
        ];
        output.zerocopy = ZeroCopyAccount::build(&output.events, &output.io_uring);
        let dir = std::env::temp_dir().join(format!("netcopy-trace-uring-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.jsonl");
        write_jsonl(&path, &output).unwrap();
        let types: Vec<String> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            types,
            [
                "io_uring_submit",
                "syscall",
                "io_uring_complete",
                "syscall",
                "io_uring_submit",
                "trace_end"
            ]
        );
        let lines: Vec<Value> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The completion's opcode comes from its submit (same ring and request).
        assert_eq!(lines[2]["opcode_name"], "SENDMSG");
        assert_eq!(lines[4]["opcode_name"], "SEND");
        let _ = fs::remove_dir_all(&dir);
        let j = chrome_trace(&output);
        let instants: Vec<&Value> = j["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cat"] == "io_uring")
            .collect();
        assert_eq!(instants.len(), 3);
        assert_eq!(instants[0]["name"], "io_uring submit SENDMSG");
        assert_eq!(instants[1]["name"], "io_uring complete SENDMSG");
        // Its thread has a track of its own.
        assert!(j["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "thread_name" && e["tid"] == 13));
    }

    #[test]
    fn files_parse_back() {
        let dir = std::env::temp_dir().join(format!("netcopy-trace-out-{}", std::process::id()));
        let paths = write_outputs(&dir, &sample()).unwrap();
        let jsonl = fs::read_to_string(&paths.jsonl).unwrap();
        let lines: Vec<Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "syscall");
        assert_eq!(lines[2]["type"], "trace_end");
        assert_eq!(lines[2]["lost_events"], 2);
        let trace: Value =
            serde_json::from_str(&fs::read_to_string(&paths.chrome_trace).unwrap()).unwrap();
        assert!(trace["traceEvents"].is_array());
        let summary: Value =
            serde_json::from_str(&fs::read_to_string(&paths.summary).unwrap()).unwrap();
        assert_eq!(summary["lost_events"], 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
