//! Per-syscall summary of a trace: counts, bytes, latency percentiles, copies per call and
//! bytes copied per byte moved.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use netcopy_common::{CopySite, TracedSyscall};
use serde_json::{json, Value};

use super::{
    event::SyscallRecord,
    uring::{self, UringKind, UringRecord},
    zerocopy::{UringZeroCopyTotals, ZeroCopyAccount, ZeroCopySend, ZeroCopyTotals},
};

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

/// How close the per-CPU call logs came to full, as the reader found them: where calls
/// were lost to a full log, this says whether the reader had been away from the logs (a
/// long gap before the fullest drain) or could not keep up (short gaps, long drains).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingHeadroom {
    /// Records one CPU's log holds.
    pub records_per_cpu: u64,
    /// The most records one CPU's log held when the reader came to it.
    pub peak_waiting: u64,
    /// How long the reader had been away (since its previous drain ended) before the
    /// drain that found `peak_waiting`, ns.
    pub peak_away_ns: u64,
    /// The longest the reader was away between two drains, ns (an idle trace's reader
    /// sleeps up to its poll timeout: long gaps with few records waiting are harmless).
    pub longest_away_ns: u64,
    /// The longest one drain of all the logs took, ns.
    pub longest_drain_ns: u64,
    /// Drains of the logs (each looks at every CPU's log, whether anything waits).
    pub drains: u64,
}

impl RingHeadroom {
    pub(super) fn new(records_per_cpu: u64) -> Self {
        Self {
            records_per_cpu,
            ..Self::default()
        }
    }

    /// One CPU's log held `waiting` records when the reader came to it, `away_ns` after
    /// its previous drain ended.
    pub(super) fn found(&mut self, waiting: u64, away_ns: u64) {
        if waiting > self.peak_waiting {
            self.peak_waiting = waiting;
            self.peak_away_ns = away_ns;
        }
        if waiting > 0 {
            self.longest_away_ns = self.longest_away_ns.max(away_ns);
        }
    }

    /// A drain of every CPU's log ended after `took_ns`.
    pub(super) fn drained(&mut self, took_ns: u64) {
        self.longest_drain_ns = self.longest_drain_ns.max(took_ns);
        self.drains += 1;
    }

    /// `peak_waiting` as a share of a log.
    pub fn peak_fill(&self) -> f64 {
        if self.records_per_cpu == 0 {
            0.0
        } else {
            self.peak_waiting as f64 / self.records_per_cpu as f64
        }
    }

    pub(super) fn to_json(self) -> Value {
        json!({
            "records_per_cpu": self.records_per_cpu,
            "peak_waiting": self.peak_waiting,
            "peak_fill": self.peak_fill(),
            "peak_away_ms": self.peak_away_ns as f64 / 1e6,
            "longest_away_ms": self.longest_away_ns as f64 / 1e6,
            "longest_drain_ms": self.longest_drain_ns as f64 / 1e6,
            "drains": self.drains,
        })
    }

    /// One line: how full the fullest log was found, and after how long.
    pub fn describe(&self) -> String {
        format!(
            "fullest CPU log: {} of {} records waiting ({:.1}%), found {:.1} ms after the \
             reader's previous drain; longest drain {:.1} ms",
            self.peak_waiting,
            self.records_per_cpu,
            100.0 * self.peak_fill(),
            self.peak_away_ns as f64 / 1e6,
            self.longest_drain_ns as f64 / 1e6
        )
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
    /// MSG_ZEROCOPY sends among these calls whose completion said the kernel copied
    /// them after the call (one copy each), and their bytes (source: reported).
    pub after_call_copy_events: u64,
    pub after_call_copied_bytes: u64,
    /// MSG_ZEROCOPY sends whose completion did not arrive in the trace window.
    pub zerocopy_pending: u64,
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
            after_call_copy_events: 0,
            after_call_copied_bytes: 0,
            zerocopy_pending: 0,
        }
    }

    /// Sums saturate: a record's figures come from the kernel's memory, and a corrupted
    /// one must not panic the trace (debug builds) or wrap its sums (release builds).
    fn add(&mut self, r: &SyscallRecord, zerocopy: Option<&ZeroCopySend>) {
        if let Some(z) = zerocopy.filter(|z| z.count > 0) {
            self.after_call_copy_events = self
                .after_call_copy_events
                .saturating_add(u64::from(z.copied));
            // Bytes of the call in proportion to its numbers flagged copied (all of them
            // for a sendmsg, which takes one number).
            let copied = u128::from(r.returned) * u128::from(z.copied) / u128::from(z.count);
            self.after_call_copied_bytes = self
                .after_call_copied_bytes
                .saturating_add(u64::try_from(copied).unwrap_or(u64::MAX));
            if z.completed_copied().is_none() {
                self.zerocopy_pending += 1;
            }
        }
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

    /// Copy events per call, inside the calls and after them (zero-copy sends the
    /// kernel reported copied).
    pub fn copies_per_call(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            (self.copy_events + self.after_call_copy_events) as f64 / self.calls as f64
        }
    }

    /// Bytes the kernel copied per byte the calls moved, inside the calls and after
    /// them; None when they moved nothing.
    pub fn copied_per_byte(&self) -> Option<f64> {
        (self.returned_bytes > 0).then(|| {
            (self.send_copy_bytes as f64
                + self.recv_copy_bytes as f64
                + self.after_call_copied_bytes as f64)
                / self.returned_bytes as f64
        })
    }

    /// The same, inside the calls only.
    fn in_call_copied_per_byte(&self) -> Option<f64> {
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
            "after_call_copy_events": self.after_call_copy_events,
            "copies_per_call": self.copies_per_call(),
            "in_call_copies_per_call": if self.calls == 0 { 0.0 } else { self.copy_events as f64 / self.calls as f64 },
            "kernel_send_copy_bytes": self.send_copy_bytes,
            "zerocopy_attach_bytes": self.attach_bytes,
            "kernel_recv_copy_bytes": self.recv_copy_bytes,
            "after_call_copied_bytes": self.after_call_copied_bytes,
            "after_call_source": "reported",
            "copied_bytes_per_byte": self.copied_per_byte(),
            "in_call_copied_bytes_per_byte": self.in_call_copied_per_byte(),
            "zerocopy_never_completed_in_trace": self.zerocopy_pending,
        })
    }
}

/// Figures for one io_uring opcode.
#[derive(Clone, Debug, Default)]
pub struct UringStats {
    pub opcode: u32,
    pub submitted: u64,
    /// Result CQEs (notifications not included).
    pub completed: u64,
    pub errors: u64,
    /// Bytes the results reported (opcodes that move data).
    pub bytes: u64,
    /// Zero-copy sends: notifications attributed, flagged copied, and the bytes of the
    /// sends flagged copied; sends whose notification never came in the trace window.
    pub notifications: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub pending: u64,
}

impl UringStats {
    /// Copies per completed request: the notifications flagged copied (io_uring's
    /// in-call copies are not booked to a request).
    pub fn copies_per_call(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.copied as f64 / self.completed as f64
        }
    }

    pub fn copied_per_byte(&self) -> Option<f64> {
        (self.bytes > 0).then(|| self.copied_bytes as f64 / self.bytes as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "opcode": self.opcode,
            "opcode_name": uring::opcode_name(self.opcode),
            "submitted": self.submitted,
            "completed": self.completed,
            "errors": self.errors,
            "bytes": self.bytes,
            "zerocopy_notifications": self.notifications,
            "after_call_copy_events": self.copied,
            "after_call_copied_bytes": self.copied_bytes,
            "copies_per_call": self.copies_per_call(),
            "copied_bytes_per_byte": self.copied_per_byte(),
            "zerocopy_never_completed_in_trace": self.pending,
            "after_call_source": "reported",
            "in_call_copies": "not booked to io_uring requests",
        })
    }
}

/// The whole trace in figures.
#[derive(Clone, Debug)]
pub struct TraceSummary {
    /// One entry per syscall that was seen, in [`TracedSyscall`] order.
    pub syscalls: Vec<SyscallStats>,
    /// One entry per io_uring opcode that was seen, by opcode.
    pub io_uring: Vec<UringStats>,
    /// io_uring events (submits and completions) recorded.
    pub io_uring_events: u64,
    pub zerocopy: ZeroCopyTotals,
    pub io_uring_zerocopy: UringZeroCopyTotals,
    pub events: u64,
    pub lost: LostCounts,
    /// How close the logs came to full (set by the tracer after [`TraceSummary::build`]).
    pub ring: RingHeadroom,
    pub duration_ns: u64,
}

impl TraceSummary {
    pub(super) fn build(
        records: &[SyscallRecord],
        uring: &[UringRecord],
        zerocopy: &ZeroCopyAccount,
        lost: LostCounts,
        duration_ns: u64,
    ) -> Self {
        let mut by_call: BTreeMap<u32, SyscallStats> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            by_call
                .entry(r.syscall as u32)
                .or_insert_with(|| SyscallStats::new(r.syscall))
                .add(r, zerocopy.sends.get(&i));
        }
        let mut by_opcode: BTreeMap<u32, UringStats> = BTreeMap::new();
        fn stats(by_opcode: &mut BTreeMap<u32, UringStats>, opcode: u32) -> &mut UringStats {
            by_opcode.entry(opcode).or_insert_with(|| UringStats {
                opcode,
                ..UringStats::default()
            })
        }
        for (i, r) in uring.iter().enumerate() {
            match r.kind {
                UringKind::Submit => {
                    let s = stats(&mut by_opcode, r.opcode);
                    s.submitted += 1;
                    if let Some(zc) = zerocopy.uring_sends.get(&i) {
                        if zc.notified {
                            s.notifications += 1;
                        } else if !zc.no_notification {
                            s.pending += 1;
                        }
                        if zc.copied == Some(true) {
                            s.copied += 1;
                            s.copied_bytes += zc.sent.unwrap_or(0);
                        }
                    }
                }
                UringKind::Complete if r.is_notification() => {}
                UringKind::Complete => {
                    // A completion of a request submitted before the trace: its opcode
                    // is unknown and it is left out.
                    let Some(&opcode) = zerocopy.uring_opcodes.get(&i) else {
                        continue;
                    };
                    let s = stats(&mut by_opcode, opcode);
                    s.completed += 1;
                    if r.res < 0 {
                        s.errors += 1;
                    } else if uring::moves_bytes(opcode) {
                        s.bytes += u64::try_from(r.res).unwrap_or(0);
                    }
                }
            }
        }
        Self {
            syscalls: by_call.into_values().collect(),
            io_uring: by_opcode.into_values().collect(),
            io_uring_events: uring.len() as u64,
            zerocopy: zerocopy.totals(),
            io_uring_zerocopy: zerocopy.uring_totals(),
            events: records.len() as u64,
            lost,
            ring: RingHeadroom::default(),
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
            "ring": self.ring.to_json(),
            "duration_s": self.duration_ns as f64 / 1e9,
            "syscalls": self.syscalls.iter().map(SyscallStats::to_json).collect::<Vec<_>>(),
            "io_uring_events": self.io_uring_events,
            "io_uring": self.io_uring.iter().map(UringStats::to_json).collect::<Vec<_>>(),
            "zerocopy": self.zerocopy.to_json(),
            "io_uring_zerocopy": self.io_uring_zerocopy.to_json(),
        })
    }

    /// The table printed at the end of `netcopy trace`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<9} {:>8} {:>6} {:>12} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12} {:>12}\n",
            "syscall",
            "calls",
            "errors",
            "bytes",
            "p50 us",
            "p99 us",
            "max us",
            "copies/call",
            "copied/byte",
            "zc-attached",
            "copied-after"
        );
        for s in &self.syscalls {
            out.push_str(&format!(
                "{:<9} {:>8} {:>6} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>11.2} {:>12} {:>12} {:>12}\n",
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
                s.after_call_copied_bytes,
            ));
        }
        if self.syscalls.is_empty() {
            out.push_str("(no calls recorded)\n");
        }
        if !self.io_uring.is_empty() {
            out.push_str(&format!(
                "{:<14} {:>9} {:>9} {:>6} {:>12} {:>8} {:>11} {:>12} {:>8}\n",
                "io_uring op",
                "submitted",
                "completed",
                "errors",
                "bytes",
                "zc-notif",
                "copies/call",
                "copied/byte",
                "pending"
            ));
            for s in &self.io_uring {
                out.push_str(&format!(
                    "{:<14} {:>9} {:>9} {:>6} {:>12} {:>8} {:>11.2} {:>12} {:>8}\n",
                    uring::opcode_name(s.opcode),
                    s.submitted,
                    s.completed,
                    s.errors,
                    s.bytes,
                    s.notifications,
                    s.copies_per_call(),
                    s.copied_per_byte()
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or_else(|| "-".to_string()),
                    s.pending,
                ));
            }
        }
        let z = self.zerocopy;
        if z.sends + z.without_number > 0 {
            out.push_str(&format!(
                "MSG_ZEROCOPY: {} sends; completions (reported by the kernel, {} notifications):                  {} copied after the call, {} not copied, {} never completed in the trace{}\n",
                z.sends,
                z.notifications,
                z.completed_copied,
                z.completed_not_copied,
                z.pending,
                if z.without_number > 0 {
                    format!("; {} sends took no zero-copy number", z.without_number)
                } else {
                    String::new()
                }
            ));
        }
        let u = self.io_uring_zerocopy;
        if u.sends > 0 {
            out.push_str(&format!(
                "io_uring zero-copy: {} sends; notifications (reported): {} copied after the                  call, {} not copied, {} without usage report, {} never completed in the trace,                  {} failed\n",
                u.sends, u.copied, u.not_copied, u.not_reported, u.pending, u.failed
            ));
        }
        if z.sends + u.sends > 0 {
            out.push_str(
                "copies/call and copied/byte include the copies the kernel reported making                  after the call\n",
            );
        }
        out.push_str(&format!(
            "{} calls recorded, {} lost ({} ring buffer full, {} in-flight map full)\n",
            self.events,
            self.lost.total(),
            self.lost.ring_full,
            self.lost.inflight_full
        ));
        if self.ring.records_per_cpu > 0 {
            out.push_str(&self.ring.describe());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_keeps_the_fullest_log_with_the_absence_before_it() {
        let mut ring = RingHeadroom::new(1000);
        ring.found(10, 20_000_000); // an idle poll timeout: long, nearly empty
        ring.found(900, 3_000_000);
        ring.found(0, 90_000_000); // nothing waiting: not an absence that mattered
        ring.found(400, 1_000_000);
        ring.drained(2_000_000);
        ring.drained(500_000);
        assert_eq!(ring.peak_waiting, 900);
        assert_eq!(ring.peak_away_ns, 3_000_000);
        assert_eq!(ring.longest_away_ns, 20_000_000);
        assert_eq!(ring.longest_drain_ns, 2_000_000);
        assert_eq!(ring.drains, 2);
        assert!((ring.peak_fill() - 0.9).abs() < 1e-12);
        let j = ring.to_json();
        assert_eq!(j["peak_waiting"], 900);
        assert_eq!(j["peak_away_ms"], 3.0);
        assert!(ring.describe().starts_with(
            "fullest CPU log: 900 of 1000 records waiting (90.0%), found 3.0 ms after"
        ));
        assert_eq!(RingHeadroom::default().peak_fill(), 0.0);
    }
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
        let s = TraceSummary::build(
            &records,
            &[],
            &ZeroCopyAccount::default(),
            lost,
            1_000_000_000,
        );
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
        let s = TraceSummary::build(
            &[huge.clone(), huge],
            &[],
            &ZeroCopyAccount::default(),
            LostCounts::default(),
            1,
        );
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
    fn copies_after_the_call_count_in_copies_per_call_and_copied_per_byte() {
        use crate::trace::event::ExtendedErr;
        let mut sends: Vec<SyscallRecord> = (0..3)
            .map(|n| {
                let mut r = record(TracedSyscall::Sendmsg, 1000, 10, 0, 0);
                r.start_ns = n;
                r.flags = netcopy_common::MSG_ZEROCOPY;
                r.sock = Some(1);
                r.zckey = Some((n as u32, n as u32 + 1));
                r
            })
            .collect();
        let mut done = record(TracedSyscall::Recvmsg, 0, 10, 0, 0);
        done.start_ns = 5;
        done.sock = Some(1);
        done.ext_err = Some(ExtendedErr {
            errno: 0,
            origin: 5,
            kind: 0,
            code: 1,
            info: 0,
            data: 1,
        });
        sends.push(done);
        let account = ZeroCopyAccount::build(&sends, &[]);
        let s = TraceSummary::build(&sends, &[], &account, LostCounts::default(), 1);
        let send = s.get(TracedSyscall::Sendmsg).unwrap();
        assert_eq!(
            (send.after_call_copy_events, send.after_call_copied_bytes),
            (2, 2000)
        );
        assert_eq!(send.zerocopy_pending, 1);
        assert!((send.copies_per_call() - 2.0 / 3.0).abs() < 1e-9);
        assert!((send.copied_per_byte().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(send.to_json()["in_call_copies_per_call"], 0.0);
        assert_eq!(s.zerocopy.pending, 1);
        let table = s.table();
        assert!(
            table.contains("MSG_ZEROCOPY: 3 sends") && table.contains("2 copied after the call"),
            "{table}"
        );
        assert!(table.contains("1 never completed"), "{table}");
    }

    #[test]
    fn empty_trace_says_so() {
        let s = TraceSummary::build(
            &[],
            &[],
            &ZeroCopyAccount::default(),
            LostCounts::default(),
            0,
        );
        assert!(s.table().contains("no calls recorded"));
        assert_eq!(s.to_json()["lost_events"], 0);
    }
}
