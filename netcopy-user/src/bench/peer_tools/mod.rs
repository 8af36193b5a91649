//! The tools a user would run instead of netcopy's tools, as windows of the probe
//! overhead's interleaved run on the same workload: bpftrace counting the same copied
//! bytes (against copy counting), `perf trace` and `strace -f` recording the same send and
//! receive calls (against syscall tracing).
//!
//! None of them can be detached and attached again like netcopy's programs: each peer
//! window starts its tool before the window (waiting until it demonstrably records) and
//! stops it after, so its "switch" is a process start and stop, outside the window. The
//! window's own counts are bracketed by the tool itself: bpftrace prints its maps on
//! SIGUSR1 at each end of the window; `perf trace` and strace record a marker call that
//! the benchmark makes at each end, and only the calls between the two markers count.
//!
//! Each peer's counts are checked against netcopy's before any overhead is compared: a
//! peer that counted something else, or lost events, is reported as such.

mod bpftrace;
mod check;
mod process;
mod syscall_log;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub(super) use check::{check_bytes, check_calls, PeerCheck};

use crate::util::sys::find_on_path;

/// A tool other than netcopy that a peer window runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerTool {
    Bpftrace,
    PerfTrace,
    Strace,
}

impl PeerTool {
    pub(crate) fn label(self) -> &'static str {
        match self {
            PeerTool::Bpftrace => "bpftrace",
            PeerTool::PerfTrace => "perf trace",
            PeerTool::Strace => "strace -f",
        }
    }

    /// The program it runs, and the Debian package that has it.
    fn program(self) -> (&'static str, &'static str) {
        match self {
            PeerTool::Bpftrace => ("bpftrace", "bpftrace"),
            PeerTool::PerfTrace => ("perf", "linux-perf"),
            PeerTool::Strace => ("strace", "strace"),
        }
    }
}

/// The peer's executable, or why it cannot run here (with how to install it).
pub(super) fn find(tool: PeerTool) -> std::result::Result<PathBuf, String> {
    let (name, package) = tool.program();
    let path = find_on_path(name).ok_or_else(|| {
        format!(
            "{name} is not installed (not on PATH); install it with `apt-get install -y \
             {package}` or `cargo xtask setup`"
        )
    })?;
    if tool == PeerTool::PerfTrace {
        // Debian's /usr/bin/perf is a wrapper that fails when no perf matches the running
        // kernel's version; `perf trace -h` shows whether this one can trace.
        syscall_log::check_perf_trace(&path)?;
    }
    Ok(path)
}

/// What a peer counted over all its windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerCounts {
    pub windows: u32,
    /// Payload bytes the client verified in those windows.
    pub payload_bytes: u64,
    /// bpftrace: bytes copied on receive and on send.
    #[serde(default)]
    pub recv_bytes: u64,
    #[serde(default)]
    pub send_bytes: u64,
    /// perf trace, strace: calls by system call name.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// Events the tool says it lost.
    pub lost: u64,
    /// What the tool printed that a reader should see (warnings, lost-event lines).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl PeerCounts {
    fn add_note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// A peer tool run window by window on the workload: started by [`PeerWindow::start`],
/// bracketing one window with [`PeerWindow::open`] and [`PeerWindow::close`], stopped by
/// [`PeerWindow::stop`].
pub(super) struct PeerWindow {
    tool: PeerTool,
    exe: PathBuf,
    /// The processes it watches: the server and the benchmark process (the client).
    pids: [u32; 2],
    running: Option<Running>,
    /// Over the completed windows.
    pub(super) counts: PeerCounts,
    /// The window in progress: bpftrace's readings at its ends, and its payload once
    /// closed.
    opening: Option<bpftrace::Reading>,
    closing: Option<bpftrace::Reading>,
    closed_payload: Option<u64>,
}

enum Running {
    Bpftrace(bpftrace::Session),
    Log(syscall_log::Session),
}

impl PeerWindow {
    pub(super) fn new(tool: PeerTool, exe: PathBuf, pids: [u32; 2]) -> PeerWindow {
        PeerWindow {
            tool,
            exe,
            pids,
            running: None,
            counts: PeerCounts::default(),
            opening: None,
            closing: None,
            closed_payload: None,
        }
    }

    /// Starts the tool and waits until it records the workload.
    pub(super) fn start(&mut self) -> Result<()> {
        self.running = Some(match self.tool {
            PeerTool::Bpftrace => Running::Bpftrace(bpftrace::Session::start(
                &self.exe,
                self.pids,
                bpftrace::SCRIPT,
            )?),
            tool => Running::Log(syscall_log::Session::start(tool, &self.exe, self.pids)?),
        });
        Ok(())
    }

    /// The tool's process while it runs (its CPU time is part of its cost).
    pub(super) fn pid(&self) -> Option<u32> {
        match self.running.as_ref()? {
            Running::Bpftrace(s) => Some(s.pid()),
            Running::Log(s) => Some(s.pid()),
        }
    }

    /// Just before the window's first sample.
    pub(super) fn open(&mut self) -> Result<()> {
        match self.running.as_mut() {
            Some(Running::Bpftrace(s)) => self.opening = Some(s.read()?),
            Some(Running::Log(s)) => s.mark(),
            None => anyhow::bail!("{} is not running", self.tool.label()),
        }
        Ok(())
    }

    /// Just before the window's last sample. bpftrace answers SIGUSR1 only when its
    /// wait for events ends, up to 100 ms later: both of its readings are taken before
    /// the sample at their end of the window, so the window is as long as the reading.
    pub(super) fn closing(&mut self) -> Result<()> {
        if let Some(Running::Bpftrace(s)) = self.running.as_mut() {
            self.closing = Some(s.read()?);
        }
        Ok(())
    }

    /// Just after the window's last sample, which saw `payload` bytes.
    pub(super) fn close(&mut self, payload: u64) -> Result<()> {
        match self.running.as_mut() {
            Some(Running::Bpftrace(_)) => {
                if let (Some(opening), Some(closing)) = (self.opening.take(), self.closing.take()) {
                    let delta = closing.since(&opening);
                    self.counts.recv_bytes += delta.recv;
                    self.counts.send_bytes += delta.send;
                    self.counts.payload_bytes += payload;
                    self.counts.windows += 1;
                }
            }
            Some(Running::Log(s)) => {
                s.mark();
                self.closed_payload = Some(payload);
            }
            None => anyhow::bail!("{} is not running", self.tool.label()),
        }
        Ok(())
    }

    /// Stops the tool; a log-writing tool's window is counted from its log now.
    pub(super) fn stop(&mut self) -> Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let stopped = match running {
            Running::Bpftrace(s) => s.stop(),
            Running::Log(s) => s.stop().map(|(window, stopped)| {
                if let (Some(calls), Some(payload)) = (window, self.closed_payload.take()) {
                    for (name, n) in calls {
                        *self.counts.calls.entry(name).or_default() += n;
                    }
                    self.counts.payload_bytes += payload;
                    self.counts.windows += 1;
                }
                stopped
            }),
        }?;
        self.counts.lost += stopped.lost;
        for note in stopped.notes {
            self.counts.add_note(note);
        }
        Ok(())
    }
}

impl Drop for PeerWindow {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// What a tool left behind when it stopped.
struct Stopped {
    lost: u64,
    notes: Vec<String>,
}
