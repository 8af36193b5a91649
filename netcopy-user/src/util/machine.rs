//! The facts about this machine that every output records: host, CPU, memory, kernel.

use std::fs;

/// Read once per run from /proc; a fact that cannot be read says "unknown" (or None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical CPUs this process may run on.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// MemTotal of /proc/meminfo.
    pub memory_bytes: Option<u64>,
    /// The `hypervisor` flag in /proc/cpuinfo: a virtual machine.
    pub virtualized: bool,
}

impl HostFacts {
    pub fn collect() -> HostFacts {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        HostFacts {
            hostname: fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpu_model: cpuinfo_field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: super::sys::kernel_release(),
            memory_bytes: fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| meminfo_field(&m, "MemTotal")),
            virtualized: cpuinfo_field(&cpuinfo, "flags")
                .is_some_and(|f| f.split_whitespace().any(|w| w == "hypervisor")),
        }
    }
}

/// The value of the first `name : value` line of /proc/cpuinfo.
pub fn cpuinfo_field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// A `Name: N kB` line of /proc/meminfo, in bytes.
pub fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu hypervisor\n";
        assert_eq!(
            cpuinfo_field(cpuinfo, "model name").as_deref(),
            Some("AMD EPYC")
        );
        assert_eq!(cpuinfo_field(cpuinfo, "missing"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(meminfo_field(meminfo, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_field(meminfo, "Mem"), None);
    }

    #[test]
    fn cpuinfo_fields() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu hypervisor avx\n";
        assert_eq!(
            cpuinfo_field(text, "model name").as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            cpuinfo_field(text, "flags").as_deref(),
            Some("fpu hypervisor avx")
        );
        assert_eq!(cpuinfo_field(text, "bogomips"), None);
    }
}
