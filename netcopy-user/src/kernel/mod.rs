//! Kernel observation: netcopy's eBPF programs on the user side (the embedded object, the
//! attach plan, run-time discovery of kernel layouts from tracefs and BTF, loading and
//! attaching, the copy probes), what the running kernel offers, and perf counters.
//!
//! Layer: above `util` and `workload`; `ledger`, `trace`, `experiment` and `bench` build on it.

pub mod attach;
pub mod btf;
pub mod callers;
pub mod capabilities;
mod copy_layout;
pub mod host;
pub mod maps;
pub mod object;
pub mod path;
pub mod perf;
pub mod plan;
pub mod probes;
pub mod runstats;
pub mod trace_layout;
pub mod tracefs;

pub use probes::{CopyCounts, CopyProbes, LoadOptions};

/// One line for an aya error chain, with the errno named and, for the failures this tool
/// meets on real kernels, what they mean.
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut errno = None;
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        source = s.source();
    }
    if let Some(errno) = errno {
        text.push_str(&format!(" [{}]", crate::util::errno::errno_name(errno)));
    }
    if text.contains("devices/kprobe/type") {
        text.push_str(
            " (no kprobe PMU: this kernel was built without CONFIG_KPROBES, or kprobes are disabled)",
        );
    } else if text.contains("BPF_PROG_LOAD") && text.contains("not permitted") {
        text.push_str(
            " (as root this means the kernel refuses this program type, e.g. ftrace-based \
             fentry/fexit attachment is blocked on this kernel)",
        );
    }
    text
}
