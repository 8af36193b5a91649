//! Per-syscall summary of a trace: counts, bytes, latency percentiles, copies per call and
//! bytes copied per byte moved.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use netcopy_common::{CopySite, TracedSyscall};
use serde_json::{json, Value};

use super::event::SyscallRecord;

/// Calls that could not be recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LostCounts {
    /// The ring of the CPU the call ended on had no room for it.
    pub ring_full: u64,
    /// The in-flight map was full when the call started.
    pub inflight_full: u64,
}

impl LostCounts {
    pub fn total(&self) -> u64 {
        self.ring_full.saturating_add(self.inflight_full)
    }

    pub(super) fn to_json(self) -> Value {
        json!({ "ring_full": self.ring_full, "inflight_full": self.inflight_full })
    }
}

/// Figures for one system call.
#[derive(Clone, Debug)]
pub struct SyscallStats {
    pub syscall: TracedSyscall,
    pub calls: u64,
    pub errors: u64,
    pub requested_bytes: u64,
    pub returned_bytes: u64,
    /// Duration of each call, ns.
    pub latency: Histogram<u64>,
    /// Copies (send and receive copies, not attaches) inside these calls.
    pub copy_events: u64,
    pub send_copy_bytes: u64,
    pub attach_bytes: u64,
    pub recv_copy_bytes: u64,
}

impl SyscallStats {
    fn new(syscall: TracedSyscall) -> Self {
        Self {
            syscall,
            calls: 0,
            errors: 0,
            requested_bytes: 0,
            returned_bytes: 0,
            // Auto-resizing, 3 significant digits: exact enough for any percentile we print.
            latency: Histogram::new(3).expect("3 significant figures is a valid histogram"),
            copy_events: 0,
            send_copy_bytes: 0,
            attach_bytes: 0,
            recv_copy_bytes: 0,
        }
    }

    /// Sums saturate: a record's figures come from the kernel's memory, and a corrupted
    /// one must not panic the trace (debug builds) or wrap its sums (release builds).
    fn add(&mut self, r: &SyscallRecord) {
        self.calls += 1;
        if r.ret < 0 {
            self.errors += 1;
        } else {
            self.returned_bytes = self.returned_bytes.saturating_add(r.returned);
        }
        self.requested_bytes = self.requested_bytes.saturating_add(r.requested);
        // Auto-resizing histograms only fail for values beyond u64 range: none here.
        let _ = self.latency.record(r.duration_ns.max(1));
        self.copy_events = self.copy_events.saturating_add(r.copy_events());
        let sum = |total: u64, site: CopySite| total.saturating_add(r.copy(site).bytes);
        self.send_copy_bytes = sum(self.send_copy_bytes, CopySite::KernelSendCopy);
        self.attach_bytes = sum(self.attach_bytes, CopySite::ZeroCopyAttach);
        self.recv_copy_bytes = sum(self.recv_copy_bytes, CopySite::KernelRecvCopy);
    }

    /// Copy events per call.
    pub(super) fn copies_per_call(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.copy_events as f64 / self.calls as f64
        }
    }

    /// Bytes the kernel copied per byte the calls moved; None when they moved nothing.
    pub fn copied_per_byte(&self) -> Option<f64> {
        (self.returned_bytes > 0).then(|| {
            (self.send_copy_bytes as f64 + self.recv_copy_bytes as f64) / self.returned_bytes as f64
        })
    }

    /// Latency percentile in ns (0 without calls).
    pub(super) fn latency_ns(&self, percentile: f64) -> u64 {
        if self.calls == 0 {
            0
        } else {
            self.latency.value_at_quantile(percentile / 100.0)
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let us = |ns: u64| ns as f64 / 1000.0;
        json!({
            "syscall": self.syscall.name(),
            "calls": self.calls,
            "errors": self.errors,
            "requested_bytes": self.requested_bytes,
            "returned_bytes": self.returned_bytes,
            "latency_us": {
                "p50": us(self.latency_ns(50.0)),
                "p90": us(self.latency_ns(90.0)),
                "p99": us(self.latency_ns(99.0)),
                "max": us(if self.calls == 0 { 0 } else { self.latency.max() }),
                "mean": if self.calls == 0 { 0.0 } else { self.latency.mean() / 1000.0 },
            },
            "copy_events": self.copy_events,
            "copies_per_call": self.copies_per_call(),
            "kernel_send_copy_bytes": self.send_copy_bytes,
            "zerocopy_attach_bytes": self.attach_bytes,
            "kernel_recv_copy_bytes": self.recv_copy_bytes,
            "copied_bytes_per_byte": self.copied_per_byte(),
        })
    }
}

/// The whole trace in figures.
#[derive(Clone, Debug)]
pub struct TraceSummary {
    /// One entry per syscall that was seen, in [`TracedSyscall`] order.
    pub syscalls: Vec<SyscallStats>,
    pub events: u64,
    pub lost: LostCounts,
    pub duration_ns: u64,
}

impl TraceSummary {
    pub(super) fn build(records: &[SyscallRecord], lost: LostCounts, duration_ns: u64) -> Self {
        let mut by_call: BTreeMap<u32, SyscallStats> = BTreeMap::new();
        for r in records {
            by_call
                .entry(r.syscall as u32)
                .or_insert_with(|| SyscallStats::new(r.syscall))
                .add(r);
        }
        Self {
            syscalls: by_call.into_values().collect(),
            events: records.len() as u64,
            lost,
            duration_ns,
        }
    }

    pub fn get(&self, syscall: TracedSyscall) -> Option<&SyscallStats> {
        self.syscalls.iter().find(|s| s.syscall == syscall)
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "lost_events": self.lost.total(),
            "lost": self.lost.to_json(),
            "duration_s": self.duration_ns as f64 / 1e9,
            "syscalls": self.syscalls.iter().map(SyscallStats::to_json).collect::<Vec<_>>(),
        })
    }

    /// The table printed at the end of `netcopy trace`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<9} {:>8} {:>6} {:>12} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12}\n",
            "syscall",
            "calls",
            "errors",
            "bytes",
            "p50 us",
            "p99 us",
            "max us",
            "copies/call",
            "copied/byte",
            "zc-attached"
        );
        for s in &self.syscalls {
            out.push_str(&format!(
                "{:<9} {:>8} {:>6} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>11.2} {:>12} {:>12}\n",
                s.syscall.name(),
                s.calls,
                s.errors,
                s.returned_bytes,
                s.latency_ns(50.0) as f64 / 1000.0,
                s.latency_ns(99.0) as f64 / 1000.0,
                s.latency.max() as f64 / 1000.0,
                s.copies_per_call(),
                s.copied_per_byte()
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".to_string()),
                s.attach_bytes,
            ));
        }
        if self.syscalls.is_empty() {
            out.push_str("(no calls recorded)\n");
        }
        out.push_str(&format!(
            "{} calls recorded, {} lost ({} ring buffer full, {} in-flight map full)\n",
            self.events,
            self.lost.total(),
            self.lost.ring_full,
            self.lost.inflight_full
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcopy_common::{SiteCounter, SyscallEvent};

    fn record(syscall: TracedSyscall, ret: i64, dur: u64, send: u64, recv: u64) -> SyscallRecord {
        let mut e = SyscallEvent {
            start_ns: 10,
            end_ns: 10 + dur,
            ret,
            returned: ret.max(0) as u64,
            requested: 100,
            syscall: syscall as u32,
            ..SyscallEvent::default()
        };
        if send > 0 {
            e.copies[CopySite::KernelSendCopy.trace_index().unwrap()] = SiteCounter {
                calls: 1,
                bytes: send,
            };
        }
        if recv > 0 {
            e.copies[CopySite::KernelRecvCopy.trace_index().unwrap()] = SiteCounter {
                calls: 2,
                bytes: recv,
            };
        }
        SyscallRecord::from_event(&e).unwrap()
    }

    #[test]
    fn sums_per_syscall() {
        let records = vec![
            record(TracedSyscall::Sendmsg, 100, 1_000, 100, 0),
            record(TracedSyscall::Sendmsg, 100, 3_000, 100, 0),
            record(TracedSyscall::Sendmsg, -11, 500, 0, 0),
            record(TracedSyscall::Read, 50, 2_000, 0, 50),
        ];
        let lost = LostCounts {
            ring_full: 3,
            inflight_full: 1,
        };
        let s = TraceSummary::build(&records, lost, 1_000_000_000);
        let send = s.get(TracedSyscall::Sendmsg).unwrap();
        assert_eq!((send.calls, send.errors), (3, 1));
        assert_eq!(send.returned_bytes, 200);
        assert_eq!(send.requested_bytes, 300);
        assert_eq!(send.send_copy_bytes, 200);
        assert_eq!(send.copied_per_byte(), Some(1.0));
        assert!((send.copies_per_call() - 2.0 / 3.0).abs() < 1e-9);
        assert!(send.latency.max() >= 3_000 && send.latency.max() < 3_010);
        let read = s.get(TracedSyscall::Read).unwrap();
        assert_eq!(read.copy_events, 2);
        assert_eq!(read.copied_per_byte(), Some(1.0));
        let j = s.to_json();
        assert_eq!(j["lost_events"], 4);
        assert_eq!(j["events"], 4);
        assert_eq!(j["syscalls"][0]["syscall"], "sendmsg");
        assert_eq!(j["syscalls"][1]["syscall"], "read");
        let table = s.table();
        assert!(table.contains("sendmsg"), "{table}");
        assert!(table.contains("4 lost"), "{table}");
    }

    /// Found by the trace_records fuzz target: two records of absurd byte counts (only a
    /// corrupted record has them) overflowed the sums.
    #[test]
    fn absurd_counts_saturate_instead_of_overflowing() {
        let huge = record(TracedSyscall::Sendmsg, i64::MAX, 1, u64::MAX, u64::MAX);
        let s = TraceSummary::build(&[huge.clone(), huge], LostCounts::default(), 1);
        let send = s.get(TracedSyscall::Sendmsg).unwrap();
        assert_eq!(send.calls, 2);
        assert_eq!(send.returned_bytes, 2 * i64::MAX as u64);
        assert_eq!(send.send_copy_bytes, u64::MAX);
        assert_eq!(send.recv_copy_bytes, u64::MAX);
        assert_eq!(send.copy_events, 6);
        let lost = LostCounts {
            ring_full: u64::MAX,
            inflight_full: 1,
        };
        assert_eq!(lost.total(), u64::MAX);
        assert_eq!(
            send.copied_per_byte(),
            Some(u64::MAX as f64 * 2.0 / send.returned_bytes as f64)
        );
        assert!(s.table().contains("sendmsg"));
        assert_eq!(
            s.to_json()["syscalls"][0]["kernel_send_copy_bytes"],
            u64::MAX
        );
    }

    #[test]
    fn empty_trace_says_so() {
        let s = TraceSummary::build(&[], LostCounts::default(), 0);
        assert!(s.table().contains("no calls recorded"));
        assert_eq!(s.to_json()["lost_events"], 0);
    }
}
