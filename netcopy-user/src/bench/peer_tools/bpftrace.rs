//! bpftrace counting the bytes copied on send and receive for the watched processes
//! (`copy_bytes.bt`), its counters read by SIGUSR1 (bpftrace then prints every map).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Stdio,
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};

use super::{process::ToolProcess, Stopped};

/// The bpftrace program, kept beside this file.
pub(super) const SCRIPT: &str = include_str!("copy_bytes.bt");

/// How long a map dump may take to arrive after SIGUSR1.
const DUMP_LIMIT: Duration = Duration::from_secs(2);

/// The script's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reading {
    pub(super) recv: u64,
    pub(super) send: u64,
}

impl Reading {
    pub(super) fn since(&self, earlier: &Reading) -> Reading {
        Reading {
            recv: self.recv.saturating_sub(earlier.recv),
            send: self.send.saturating_sub(earlier.send),
        }
    }
}

/// A running `bpftrace -f json -e SCRIPT PID PID`.
pub(super) struct Session {
    process: ToolProcess,
    /// Every `@bytes` map bpftrace printed, in order.
    dumps: Receiver<Reading>,
}

impl Session {
    /// Starts bpftrace on `script` for `pids` and waits until both of its probes have
    /// counted (a probe that has not fired since the start is not known to be attached).
    pub(super) fn start(exe: &Path, pids: [u32; 2], script: &str) -> Result<Session> {
        let args = vec![
            "-f".to_string(),
            "json".to_string(),
            "-e".to_string(),
            script.to_string(),
            pids[0].to_string(),
            pids[1].to_string(),
        ];
        let mut process = ToolProcess::spawn(exe, &args, Stdio::piped())?;
        let stdout = process
            .child
            .stdout
            .take()
            .context("bpftrace's standard output")?;
        let (tx, dumps) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-bpftrace".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(reading) = parse_dump(&line) {
                        if tx.send(reading).is_err() {
                            break;
                        }
                    }
                }
            })
            .context("starting the thread that reads bpftrace's output")?;
        let mut session = Session { process, dumps };
        // SIGUSR1 before bpftrace has its handler would end it.
        session
            .process
            .wait_until("install its SIGUSR1 handler", |p| {
                Ok(p.catches(libc::SIGUSR1))
            })?;
        let dumps = &session.dumps;
        session.process.wait_until("count on both probes", |p| {
            let reading = read(p, dumps)?;
            Ok(reading.recv > 0 && reading.send > 0)
        })?;
        Ok(session)
    }

    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The counters now: SIGUSR1, then the dump it prints.
    pub(super) fn read(&mut self) -> Result<Reading> {
        read(&mut self.process, &self.dumps)
    }

    /// SIGINT (bpftrace detaches and prints its maps once more), and what it warned of.
    pub(super) fn stop(mut self) -> Result<Stopped> {
        let status = self.process.interrupt()?;
        let stderr = self.process.stderr.text();
        if !ToolProcess::stopped_cleanly(status) {
            bail!("bpftrace exited ({status}): {}", self.process.last_words());
        }
        Ok(stopped(&stderr))
    }
}

fn read(process: &mut ToolProcess, dumps: &Receiver<Reading>) -> Result<Reading> {
    // A dump left from an earlier signal is not this one.
    while dumps.try_recv().is_ok() {}
    process.signal(libc::SIGUSR1);
    match dumps.recv_timeout(DUMP_LIMIT) {
        Ok(reading) => Ok(reading),
        Err(RecvTimeoutError::Timeout) => {
            process.check_running()?;
            Err(anyhow!(
                "bpftrace printed no map within {DUMP_LIMIT:?} of SIGUSR1"
            ))
        }
        Err(RecvTimeoutError::Disconnected) => {
            process.check_running()?;
            Err(anyhow!("bpftrace closed its output"))
        }
    }
}

/// `{"type": "map", "data": {"@bytes": {"send": 1, "recv": 2}}}`: the counters (a key the
/// script has not counted yet is absent, and 0).
fn parse_dump(line: &str) -> Option<Reading> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("type")?.as_str()? != "map" {
        return None;
    }
    let bytes = value.pointer("/data/@bytes")?.as_object()?;
    let key = |k: &str| {
        bytes
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Some(Reading {
        recv: key("recv"),
        send: key("send"),
    })
}

/// bpftrace's warnings: lost events (of printf and friends, which the script does not
/// use, but said so if they happen) and anything else it printed.
fn stopped(stderr: &str) -> Stopped {
    let mut lost = 0;
    let mut notes = Vec::new();
    for line in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // "Lost 123 events"
        if let Some(n) = line
            .strip_prefix("Lost ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            lost += n;
        } else if line.contains("RLIMIT_MEMLOCK") {
            // bpftrace cannot raise the memlock limit here; kernels >= 5.11 charge BPF
            // memory to the cgroup instead, so the programs load anyway.
            notes.push(
                "bpftrace could not raise RLIMIT_MEMLOCK (harmless on this kernel, which \
                 charges BPF memory to the cgroup)"
                    .to_string(),
            );
        } else {
            notes.push(format!("bpftrace: {line}"));
        }
    }
    Stopped { lost, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_dumps_are_the_counters() {
        assert_eq!(
            parse_dump(r#"{"type": "map", "data": {"@bytes": {"send": 25, "recv": 7}}}"#),
            Some(Reading { recv: 7, send: 25 })
        );
        assert_eq!(
            parse_dump(r#"{"type": "map", "data": {"@bytes": {"send": 25}}}"#),
            Some(Reading { recv: 0, send: 25 })
        );
        assert_eq!(
            parse_dump(r#"{"type": "attached_probes", "data": {"probes": 2}}"#),
            None
        );
        assert_eq!(parse_dump("Attaching 2 probes..."), None);
        assert_eq!(parse_dump(""), None);
    }

    #[test]
    fn lost_events_and_warnings_are_kept() {
        let s = stopped(
            "ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.\n\
             Lost 12 events\nLost 3 events\nWARNING: something\n",
        );
        assert_eq!(s.lost, 15);
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
        assert!(s.notes[0].contains("harmless"));
        assert_eq!(s.notes[1], "bpftrace: WARNING: something");
    }

    #[test]
    fn the_script_counts_both_directions_for_two_pids() {
        for needle in [
            "tracepoint:sock:sock_send_length",
            "tracepoint:skb:skb_copy_datagram_iovec",
            "@bytes[\"send\"]",
            "@bytes[\"recv\"]",
            "$1",
            "$2",
        ] {
            assert!(SCRIPT.contains(needle), "{needle}");
        }
    }
}
