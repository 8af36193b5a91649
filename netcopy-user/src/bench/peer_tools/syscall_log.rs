//! `perf trace` and `strace -f` recording the watched processes' send and receive calls
//! to a log, as a user would run them; the calls of one window are those between two
//! marker calls the benchmark's main thread (a thread of a watched process) makes at the
//! window's ends: a `recvfrom` on an empty UDP socket of its own (known in the log by its
//! fd, the call's first argument, which both tools print at its entry), which fails at
//! once and which both tools record like any other call.

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use netcopy_common::TracedSyscall;

use super::PeerTool;
use super::{
    process::{TempFile, ToolProcess},
    Stopped,
};

/// The marker call's length (any will do: the marker is known by its socket).
const MARKER_LEN: usize = 64;
/// How long perf trace keeps running after its closing marker is in its log.
const CATCH_UP: Duration = Duration::from_millis(100);

/// The calls both tools are told to record: those `netcopy trace` records.
fn traced_calls() -> String {
    TracedSyscall::ALL
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// perf trace's buffer per CPU (`-m`, pages, a power of two): what `netcopy trace`'s ring
/// gives each CPU, so that neither has the bigger buffer. perf trace's default (a few
/// hundred KiB) loses events at this workload's rate.
pub(super) fn perf_mmap_pages() -> u32 {
    let cpus = crate::kernel::attach::possible_cpus().max(1);
    let pages = crate::kernel::maps::DEFAULT_RING_BYTES / cpus / 4096;
    // The largest power of two not above it.
    1u32 << (31 - pages.max(16).leading_zeros())
}

/// Fails when this `perf` cannot run (Debian's wrapper finds no perf for the kernel).
pub(super) fn check_perf_trace(perf: &Path) -> std::result::Result<(), String> {
    let out = Command::new(perf)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", perf.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} version failed ({}): {}",
            perf.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A running `perf trace` or `strace -f`, its log in a file.
pub(super) struct Session {
    tool: PeerTool,
    process: ToolProcess,
    log: TempFile,
    marker: UdpSocket,
}

impl Session {
    /// Starts the tool on `pids` and waits until it records them.
    pub(super) fn start(tool: PeerTool, exe: &Path, pids: [u32; 2]) -> Result<Session> {
        let name = match tool {
            PeerTool::PerfTrace => "perf-trace",
            PeerTool::Strace => "strace",
            PeerTool::Bpftrace => bail!("bpftrace writes no system call log"),
        };
        let log = TempFile::new(name, "log");
        let log_path = log.0.display().to_string();
        let args: Vec<String> = match tool {
            // perf trace: every thread of both processes, the calls filtered in the kernel,
            // with as much buffer per CPU as `netcopy trace` has.
            PeerTool::PerfTrace => vec![
                "trace".into(),
                "-m".into(),
                perf_mmap_pages().to_string(),
                "-p".into(),
                format!("{},{}", pids[0], pids[1]),
                "-e".into(),
                traced_calls(),
                "-o".into(),
                log_path,
            ],
            // strace -f: every thread of both processes (-p attaches them all with -f).
            _ => vec![
                "-f".into(),
                "-e".into(),
                format!("trace={}", traced_calls()),
                "-o".into(),
                log_path,
                "-p".into(),
                pids[0].to_string(),
                "-p".into(),
                pids[1].to_string(),
            ],
        };
        let marker = UdpSocket::bind("127.0.0.1:0").context("binding the marker socket")?;
        let process = ToolProcess::spawn(exe, &args, Stdio::null())?;
        let mut session = Session {
            tool,
            process,
            log,
            marker,
        };
        match tool {
            // strace says when it has attached to every thread of a process.
            PeerTool::Strace => session.process.wait_until("attach", |p| {
                let said = p.stderr.text();
                Ok(pids
                    .iter()
                    .all(|pid| said.contains(&format!("Process {pid} attached"))))
            })?,
            // perf trace says nothing: its log grows once its events are enabled.
            _ => {
                let log = &session.log;
                session
                    .process
                    .wait_until("record a call", |_| Ok(log.len() > 0))?
            }
        }
        Ok(session)
    }

    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// perf trace reads its per-CPU buffers behind the workload, and what it has not read
    /// when it is stopped is never printed: before the stop, the closing marker must be
    /// in its log, and the other CPUs' buffers read up to that time (a round of reading
    /// every buffer takes far less than [`CATCH_UP`]). Gives up after
    /// [`process::START_LIMIT`]; the count then says the log lacks a marker.
    fn wait_for_closing_marker(&mut self) {
        let deadline = Instant::now() + super::process::START_LIMIT;
        let mut scanned = 0usize;
        let mut markers = 0;
        while markers < 2 && Instant::now() < deadline && self.process.check_running().is_ok() {
            let log = self.log.text();
            // Whole lines only: the last may still be written.
            let end = log.rfind('\n').map_or(0, |i| i + 1);
            if end > scanned {
                markers += parse_perf_trace(&log[scanned..end], self.marker.as_raw_fd())
                    .entries
                    .iter()
                    .filter(|e| e.marker)
                    .count();
                scanned = end;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(CATCH_UP);
    }

    /// One marker call, from this thread (of the benchmark process, which is watched).
    pub(super) fn mark(&self) {
        let mut buf = [0u8; MARKER_LEN];
        // SAFETY: a valid socket and buffer; recvfrom accepts null address pointers. The
        // call fails with EAGAIN, which is its purpose.
        unsafe {
            libc::recvfrom(
                self.marker.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Stops the tool and counts the calls between the markers of its log (None, with a
    /// note, when the log does not hold both markers).
    pub(super) fn stop(mut self) -> Result<(Option<BTreeMap<String, u64>>, Stopped)> {
        if self.tool == PeerTool::PerfTrace {
            self.wait_for_closing_marker();
        }
        let status = self.process.interrupt()?;
        // strace exits with status 130 after SIGINT, which is how it is stopped.
        let strace_stopped = self.tool == PeerTool::Strace && status.code() == Some(130);
        if !ToolProcess::stopped_cleanly(status) && !strace_stopped {
            bail!(
                "{} exited ({status}): {}",
                self.tool.label(),
                self.process.last_words()
            );
        }
        let log = self.log.text();
        let fd = self.marker.as_raw_fd();
        let parsed = match self.tool {
            PeerTool::PerfTrace => parse_perf_trace(&log, fd),
            _ => parse_strace(&log, fd),
        };
        let mut notes = Vec::new();
        let calls = match parsed.window() {
            Ok(calls) => Some(calls),
            Err(why) => {
                notes.push(format!("{}: {why}", self.tool.label()));
                None
            }
        };
        Ok((
            calls,
            Stopped {
                lost: parsed.lost,
                notes,
            },
        ))
    }
}

/// One call's entry in a log: where it stands in the tool's order and what it was.
struct Entry {
    /// perf trace: its timestamp (the log is ordered per CPU, not overall); strace: its
    /// line number (strace writes calls in the order it sees them).
    at: f64,
    name: String,
    marker: bool,
}

#[derive(Default)]
struct ParsedLog {
    entries: Vec<Entry>,
    lost: u64,
}

impl ParsedLog {
    /// The calls strictly between the two markers, by name.
    fn window(&self) -> std::result::Result<BTreeMap<String, u64>, String> {
        let markers: Vec<f64> = self
            .entries
            .iter()
            .filter(|e| e.marker)
            .map(|e| e.at)
            .collect();
        let [open, close] = markers[..] else {
            return Err(format!(
                "the log holds {} marker calls, not the 2 that bracket the window; \
                 window not counted",
                markers.len()
            ));
        };
        let mut calls = BTreeMap::new();
        for e in &self.entries {
            if !e.marker && e.at > open && e.at < close {
                *calls.entry(e.name.clone()).or_insert(0) += 1;
            }
        }
        Ok(calls)
    }
}

/// `perf trace` lines:
/// `  12.345 ( 0.004 ms): conn-0/990 sendmsg(fd: 6, msg: 0x7f.., flags: NOSIGNAL) = 65552`,
/// a call that blocked continues in a later `... [continued]: sendmsg()) = 65552` line
/// (not a call of its own), and lost events show as `LOST 12 events!`.
fn parse_perf_trace(log: &str, marker_fd: i32) -> ParsedLog {
    let mut parsed = ParsedLog::default();
    for line in log.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("LOST ") {
            if let Some(n) = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
            {
                parsed.lost += n;
            }
            continue;
        }
        let Some((head, rest)) = line.split_once("): ") else {
            continue;
        };
        let Some(at) = head
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
        else {
            continue;
        };
        // After `comm/tid`.
        let Some((_thread, call)) = rest.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with("...") {
            continue;
        }
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        parsed.entries.push(Entry {
            at,
            name: name.to_string(),
            marker: name == "recvfrom" && args.starts_with(&format!("fd: {marker_fd},")),
        });
    }
    parsed
}

/// `strace -f -o` lines: `2139  sendmsg(6, {...}, MSG_NOSIGNAL) = 65552`, a call that
/// blocked as `... <unfinished ...>` and later `2139  <... sendmsg resumed>) = 65552`
/// (not a call of its own); signals and exits as `--- ...` and `+++ ...`.
fn parse_strace(log: &str, marker_fd: i32) -> ParsedLog {
    let mut parsed = ParsedLog::default();
    for (number, line) in log.lines().enumerate() {
        let Some((_pid, call)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with('<') || call.starts_with("---") || call.starts_with("+++") {
            continue;
        }
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        parsed.entries.push(Entry {
            at: number as f64,
            name: name.to_string(),
            marker: name == "recvfrom" && args.starts_with(&format!("{marker_fd},")),
        });
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_trace_counts_the_calls_between_its_markers_by_timestamp() {
        let log = "\
 10.000 ( 0.004 ms): conn-0/990 sendmsg(fd: 6, msg: 0x7f8e81d4c450, flags: NOSIGNAL) = 65552
 11.000 ( 0.002 ms): netcopy/900 recvfrom(fd: 9, ubuf: 0x7ffd, size: 4093, flags: DONTWAIT) = -1 EAGAIN (Resource temporarily unavailable)
 11.500 ( 0.004 ms): conn-0/990 sendmsg(fd: 6, msg: 0x7f8e81d4c450, flags: NOSIGNAL)  ...
 11.400 ( 0.026 ms): client-0/991 recvfrom(fd: 3, ubuf: 0x7fa240004d00, size: 65536) = 65536
 11.600 ( 0.372 ms): conn-0/990  ... [continued]: sendmsg()) = 65552
LOST 7 events!
 12.000 ( 0.002 ms): netcopy/900 recvfrom(fd: 9, ubuf: 0x7ffd, size: 4093, flags: DONTWAIT) = -1 EAGAIN (Resource temporarily unavailable)
 12.100 ( 0.026 ms): client-0/991 recvfrom(fd: 3, ubuf: 0x7fa240004d00, size: 65536) = 65536
";
        let parsed = parse_perf_trace(log, 9);
        assert_eq!(parsed.lost, 7);
        let window = parsed.window().unwrap();
        assert_eq!(
            window,
            BTreeMap::from([("recvfrom".to_string(), 1), ("sendmsg".to_string(), 1)])
        );
    }

    #[test]
    fn strace_counts_the_calls_between_its_markers_in_log_order() {
        let log = "\
2139  sendmsg(6, {msg_name=NULL, msg_iov=[{iov_base=\"ab\"..., iov_len=16}]}, MSG_NOSIGNAL) = 65552
2100  recvfrom(9, 0x7ffd, 4093, MSG_DONTWAIT, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
2139  sendmsg(6, {msg_name=NULL}, MSG_NOSIGNAL <unfinished ...>
2138  recvfrom(3, \"AAAA\"..., 65536, 0, NULL, NULL) = 65536
2139  <... sendmsg resumed>) = 65552
2138  --- SIGCHLD {si_signo=SIGCHLD} ---
2100  recvfrom(9,  <unfinished ...>
2138  recvfrom(3, \"AAAA\"..., 16, 0, NULL, NULL) = 16
2100  <... recvfrom resumed>0x7ffd, 4093, MSG_DONTWAIT, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
2140  +++ exited with 0 +++
";
        let window = parse_strace(log, 9).window().unwrap();
        assert_eq!(
            window,
            BTreeMap::from([("recvfrom".to_string(), 1), ("sendmsg".to_string(), 1)])
        );
    }

    #[test]
    fn a_log_without_both_markers_counts_no_window() {
        let log = "2100  recvfrom(9, 0x7ffd, 4093, MSG_DONTWAIT, NULL, NULL) = -1 EAGAIN\n";
        let err = parse_strace(log, 9).window().unwrap_err();
        assert!(err.contains("1 marker calls"), "{err}");
    }

    #[test]
    fn both_tools_record_what_netcopy_trace_records() {
        let calls = traced_calls();
        for name in [
            "sendmsg", "recvfrom", "sendto", "recvmsg", "readv", "writev",
        ] {
            assert!(calls.split(',').any(|c| c == name), "{name}: {calls}");
        }
    }
}
