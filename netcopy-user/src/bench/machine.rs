//! Where the figures came from: the machine, the kernel, the date and the source tree.

use std::{process::Command, time::SystemTime};

use serde::{Deserialize, Serialize};

use super::memcpy;
use crate::util::machine::HostFacts;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct MachineInfo {
    hostname: String,
    /// `model name` of /proc/cpuinfo.
    pub(super) cpu_model: String,
    /// Logical CPUs this process may run on.
    pub(super) cpus: usize,
    pub(super) kernel: String,
    pub(super) memory_bytes: Option<u64>,
    pub(super) llc_bytes: Option<u64>,
    /// `hypervisor` flag in /proc/cpuinfo: a virtual machine.
    pub(super) virtualized: bool,
    /// UTC, RFC 3339, when the benchmark started.
    pub(super) date: String,
    /// The source tree the benchmark ran from.
    pub(super) source: SourceTree,
    /// What the kernel says about each CPU vulnerability and its mitigation
    /// (/sys/devices/system/cpu/vulnerabilities), by name. The mitigations that make an
    /// indirect call or a return expensive (retbleed, spec_rstack_overflow, spectre_v2)
    /// set the cost of dispatching to any eBPF program: they tell a costly machine from a
    /// costly tool.
    #[serde(default)]
    pub(super) cpu_vulnerabilities: Vec<(String, String)>,
}

/// The vulnerabilities whose mitigations make indirect calls and returns expensive: the
/// kernel's dispatch to a program is an indirect call, and each program returns.
const DISPATCH_MITIGATIONS: [&str; 3] = ["retbleed", "spec_rstack_overflow", "spectre_v2"];

/// Every file of /sys/devices/system/cpu/vulnerabilities, by name, in name order.
fn cpu_vulnerabilities() -> Vec<(String, String)> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/vulnerabilities");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                text.trim().to_string(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The git commit of the working directory, and whether files differ from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct SourceTree {
    commit: Option<String>,
    /// Tracked files with uncommitted changes (other work in progress may be built in).
    modified_files: Option<usize>,
    /// Why the commit is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl SourceTree {
    pub(super) fn describe(&self) -> String {
        match (&self.commit, self.modified_files) {
            (Some(c), Some(0)) => format!("commit {c}"),
            (Some(c), Some(n)) => format!(
                "commit {c} with uncommitted changes in {n} tracked file{}",
                if n == 1 { "" } else { "s" }
            ),
            (Some(c), None) => format!("commit {c}"),
            (None, _) => format!(
                "commit unknown ({})",
                self.note.as_deref().unwrap_or("not a git checkout")
            ),
        }
    }
}

impl MachineInfo {
    pub(super) fn collect() -> MachineInfo {
        let host = HostFacts::collect();
        MachineInfo {
            hostname: host.hostname,
            cpu_model: host.cpu_model,
            cpus: host.cpus,
            kernel: host.kernel,
            memory_bytes: host.memory_bytes,
            llc_bytes: memcpy::last_level_cache_bytes(),
            virtualized: host.virtualized,
            date: crate::util::time::rfc3339(SystemTime::now()),
            source: source_tree(),
            cpu_vulnerabilities: cpu_vulnerabilities(),
        }
    }

    /// `retbleed: Not affected; spec_rstack_overflow: ...; spectre_v2: Mitigation: ...`
    /// first, then `the rest: NAME: TEXT; ...`.
    pub(super) fn mitigations_sentence(&self) -> String {
        if self.cpu_vulnerabilities.is_empty() {
            return "the kernel reports no CPU vulnerabilities \
                    (/sys/devices/system/cpu/vulnerabilities is absent)"
                .into();
        }
        let join = |first: bool| {
            self.cpu_vulnerabilities
                .iter()
                .filter(|(name, _)| DISPATCH_MITIGATIONS.contains(&name.as_str()) == first)
                .map(|(name, text)| format!("{name}: {text}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "what the kernel reports in /sys/devices/system/cpu/vulnerabilities: {} (these \
             make the indirect call to each program and its return costly); the rest: {}",
            join(true),
            join(false)
        )
    }

    /// One line: `Intel(R) Xeon(R) Processor, 2 CPUs, kernel 6.18.44, 2026-11-25T06:00:00Z`.
    pub(super) fn describe(&self) -> String {
        format!(
            "{}, {} CPUs{}, {} GiB, LLC {}, kernel {}, {}",
            self.cpu_model,
            self.cpus,
            if self.virtualized {
                " (virtual machine)"
            } else {
                ""
            },
            self.memory_bytes.map_or("?".into(), |m| format!(
                "{:.0}",
                m as f64 / (1u64 << 30) as f64
            )),
            self.llc_bytes
                .map_or("unknown".into(), |l| format!("{} MiB", l >> 20)),
            self.kernel,
            self.date
        )
    }
}

fn source_tree() -> SourceTree {
    let git = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("git")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Ok(commit) => SourceTree {
            commit: Some(commit.trim().to_string()),
            modified_files: git(&["status", "--porcelain", "--untracked-files=no"])
                .ok()
                .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count()),
            note: None,
        },
        Err(note) => SourceTree {
            commit: None,
            modified_files: None,
            note: Some(note),
        },
    }
}

/// CPU time of the whole machine and of this process tree at one moment: two snapshots
/// tell how much CPU other processes took while a part of the benchmark ran (on a
/// shared 2-CPU machine, the main source of noise).
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuSnapshot {
    /// user + nice + system of all CPUs, clock ticks.
    task_ticks: u64,
    steal_ticks: u64,
    /// This process and its waited-for children, user + system, ns.
    ours_ns: u64,
    at: std::time::Instant,
}

/// What other processes (and the hypervisor) took between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ForeignLoad {
    /// CPU-seconds of user and kernel time not spent by netcopy, its servers or iperf3.
    other_cpu_seconds: f64,
    /// The same as a share of all CPUs over the interval, percent.
    pub(super) other_pct: f64,
    /// Time the hypervisor gave our CPUs to someone else, percent of all CPUs.
    pub(super) steal_pct: f64,
    pub(super) seconds: f64,
}

impl ForeignLoad {
    pub(super) fn describe(&self) -> String {
        format!(
            "other processes used {:.1}% of the CPUs ({:.1} CPU-s in {:.0} s), steal {:.1}%",
            self.other_pct, self.other_cpu_seconds, self.seconds, self.steal_pct
        )
    }

    /// Above this, figures are likely disturbed.
    pub(super) fn is_busy(&self) -> bool {
        self.other_pct > 5.0 || self.steal_pct > 5.0
    }
}

impl CpuSnapshot {
    pub(super) fn take() -> Option<CpuSnapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (task_ticks, steal_ticks) = parse_proc_stat_cpu(&stat)?;
        Some(CpuSnapshot {
            task_ticks,
            steal_ticks,
            ours_ns: rusage_ns(libc::RUSAGE_SELF)? + rusage_ns(libc::RUSAGE_CHILDREN)?,
            at: std::time::Instant::now(),
        })
    }

    pub(super) fn since(&self, earlier: &CpuSnapshot, cpus: usize) -> ForeignLoad {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        let all = self.task_ticks.saturating_sub(earlier.task_ticks) as f64 / hz;
        let ours = self.ours_ns.saturating_sub(earlier.ours_ns) as f64 / 1e9;
        let steal = self.steal_ticks.saturating_sub(earlier.steal_ticks) as f64 / hz;
        let capacity = seconds * cpus.max(1) as f64;
        let other = (all - ours).max(0.0);
        ForeignLoad {
            other_cpu_seconds: other,
            other_pct: if capacity > 0.0 {
                other / capacity * 100.0
            } else {
                0.0
            },
            steal_pct: if capacity > 0.0 {
                steal / capacity * 100.0
            } else {
                0.0
            },
            seconds,
        }
    }
}

/// (user + nice + system, steal) of the `cpu` line of /proc/stat, in clock ticks.
/// irq and softirq time are left out: the kernel charges them to no task, so they would
/// count our own loopback traffic as someone else's.
fn parse_proc_stat_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some((
        v.first()? + v.get(1)? + v.get(2)?,
        v.get(7).copied().unwrap_or(0),
    ))
}

fn rusage_ns(who: libc::c_int) -> Option<u64> {
    // SAFETY: rusage is plain old data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return None;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Some(ns(usage.ru_utime) + ns(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_line() {
        let stat = "cpu  102580 5 22391 413544 1918 0 2985 37 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat_cpu(stat), Some((102580 + 5 + 22391, 37)));
        assert_eq!(parse_proc_stat_cpu("cpu0 1 2 3\n"), None);
        assert_eq!(parse_proc_stat_cpu("cpu  x 2 3 4\n"), None);
    }

    #[test]
    fn the_dispatch_mitigations_come_first() {
        let mut m = MachineInfo::collect();
        m.cpu_vulnerabilities = vec![
            ("mds".into(), "Not affected".into()),
            (
                "retbleed".into(),
                "Mitigation: untrained return thunk".into(),
            ),
            ("spectre_v2".into(), "Mitigation: Retpolines".into()),
        ];
        assert_eq!(
            m.mitigations_sentence(),
            "what the kernel reports in /sys/devices/system/cpu/vulnerabilities: retbleed: \
             Mitigation: untrained return thunk; spectre_v2: Mitigation: Retpolines (these make \
             the indirect call to each program and its return costly); the rest: mds: Not \
             affected"
        );
        m.cpu_vulnerabilities.clear();
        assert!(m.mitigations_sentence().contains("absent"));
    }

    #[test]
    fn source_tree_descriptions() {
        let clean = SourceTree {
            commit: Some("abc".into()),
            modified_files: Some(0),
            note: None,
        };
        assert_eq!(clean.describe(), "commit abc");
        let dirty = SourceTree {
            modified_files: Some(3),
            ..clean
        };
        assert!(dirty.describe().contains("3 tracked files"));
    }
}
