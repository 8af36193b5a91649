//! CPU time of a whole process from the coarser sources: /proc/PID/stat and the rusage
//! of a finished child.

use std::{
    fs, io,
    os::unix::process::ExitStatusExt,
    process::{Child, ExitStatus},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where a [`CpuTime`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuTimeSource {
    /// utime + stime in /proc/PID/stat: clock ticks (USER_HZ, usually 10 ms).
    #[serde(rename = "proc_pid_stat")]
    ProcPidStat,
    /// ru_utime + ru_stime from wait4 on a finished child: microseconds.
    #[serde(rename = "wait4_rusage")]
    Wait4Rusage,
}

/// User and system CPU time of a whole process (all threads, living and exited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTime {
    pub user_ns: u64,
    pub system_ns: u64,
    pub source: CpuTimeSource,
    /// The unit the source counts in: a figure is only good to about this much.
    pub resolution_ns: u64,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.user_ns.saturating_add(self.system_ns))
    }
}

/// Total CPU time (user + system) process `pid` has used since it started, from
/// /proc/PID/stat. Coarse: clock-tick resolution.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    Ok(proc_stat_cpu_time(pid)?.total())
}

/// User and system CPU time of process `pid` from /proc/PID/stat.
fn proc_stat_cpu_time(pid: u32) -> Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (utime_ticks, stime_ticks) =
        parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    let ns_per_tick = ns_per_clock_tick()?;
    Ok(CpuTime {
        user_ns: utime_ticks.saturating_mul(ns_per_tick),
        system_ns: stime_ticks.saturating_mul(ns_per_tick),
        source: CpuTimeSource::ProcPidStat,
        resolution_ns: ns_per_tick,
    })
}

/// utime and stime (fields 14 and 15, in clock ticks) of a /proc/PID/stat line. The
/// command name (field 2) is in parentheses and may itself contain spaces and ')', so the
/// fields are counted from the last ')'.
fn parse_stat_cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' closing the command name");
    };
    // Fields after the command name start at field 3 (state): utime is field 14.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |number: usize| -> Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("field {number} missing"))?;
        text.parse()
            .with_context(|| format!("field {number} is not a number: {text:?}"))
    };
    Ok((field(14)?, field(15)?))
}

fn ns_per_clock_tick() -> Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) returned {ticks_per_second}");
    }
    Ok(1_000_000_000 / ticks_per_second as u64)
}

/// Waits for `child` to exit and returns its exit status and the CPU time it and its own
/// waited-for children used, from wait4's rusage.
///
/// Takes the `Child` by value: once wait4 has reaped it, `Child::wait` would fail.
pub fn wait_child_cpu_time(child: Child) -> Result<(ExitStatus, CpuTime)> {
    let pid = libc::pid_t::try_from(child.id())
        .with_context(|| format!("child id {} is not a pid_t", child.id()))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, writable and live for the call.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(err).with_context(|| format!("wait4({pid})"));
    }
    Ok((
        ExitStatus::from_raw(status),
        CpuTime {
            user_ns: timeval_ns(usage.ru_utime),
            system_ns: timeval_ns(usage.ru_stime),
            source: CpuTimeSource::Wait4Rusage,
            resolution_ns: 1_000,
        },
    ))
}

fn timeval_ns(tv: libc::timeval) -> u64 {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000)
        .saturating_add(micros.saturating_mul(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_paren() {
        // A command name with spaces and a ')' in it; utime=1234, stime=56.
        let line = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 \
                    99 1000 10 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), (1234, 56));
    }

    #[test]
    fn truncated_stat_is_an_error_not_a_panic() {
        assert!(parse_stat_cpu_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_cpu_ticks("no paren at all").is_err());
        assert!(parse_stat_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5").is_err());
    }
}
