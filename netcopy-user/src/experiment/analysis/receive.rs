//! The receive mechanisms side by side: for each (mode, size, threads) point measured with
//! both `--recv copy` and `--recv zerocopy`, what the kernel copied on receive, what it
//! mapped instead, and what each cost (the client's CPU time per payload byte, and that of
//! server and client), every figure a median over the repeats with its interval, and whether the
//! cost difference is decided (the intervals do not overlap) or not.

use std::{cmp::Ordering, collections::BTreeMap};

use netcopy_common::CopySite;

use super::{
    findings::{Finding, FindingKind, Severity},
    groups::{collect, Stat},
};
pub(crate) use crate::ledger::receive::mapped_cause;
use crate::{
    experiment::results::Cell,
    workload::{client::ReceiveMechanism, modes::Mode},
};

/// The repeats of one (mode, receive mechanism, size, threads).
#[derive(Clone, Debug)]
pub(crate) struct ReceiveGroup {
    pub(crate) mode: Mode,
    pub(crate) recv: ReceiveMechanism,
    pub(crate) size: u64,
    pub(crate) threads: usize,
    pub(crate) repeats: usize,
    /// Bytes the kernel copied on receive (skb_copy_datagram_iovec, both ends) per payload
    /// byte delivered.
    pub(crate) recv_copy_per_byte: Option<Stat>,
    /// Bytes the kernel mapped instead (getsockopt's report) per payload byte.
    pub(crate) mapped_per_byte: Option<Stat>,
    /// Mapped share of the bytes handed to the client (zerocopy only).
    pub(crate) mapped_fraction: Option<Stat>,
    pub(crate) client_ns_per_byte: Option<Stat>,
    pub(crate) total_ns_per_byte: Option<Stat>,
    pub(crate) throughput_gbps: Option<Stat>,
}

/// One point measured both ways.
#[derive(Clone, Debug)]
pub(crate) struct ReceiveComparison {
    pub(crate) copy: ReceiveGroup,
    pub(crate) zerocopy: ReceiveGroup,
    /// zerocopy's client CPU per byte against copy's, when decided.
    pub(crate) client_cost: Option<Ordering>,
}

fn per_payload_byte(c: &Cell, bytes: Option<u64>) -> Option<f64> {
    let payload = c.stream.payload_bytes;
    bytes
        .filter(|_| payload > 0)
        .map(|b| b as f64 / payload as f64)
}

fn recv_copy(c: &Cell) -> Option<f64> {
    let bytes = c.copies.get(CopySite::KernelRecvCopy.name())?.bytes;
    per_payload_byte(c, bytes)
}

fn mapped(c: &Cell) -> Option<f64> {
    let bytes = match c.recv {
        ReceiveMechanism::Copy => Some(0),
        ReceiveMechanism::ZeroCopy => c.zerocopy_receive.map(|z| z.mapped_bytes),
    };
    per_payload_byte(c, bytes)
}

fn mapped_fraction(c: &Cell) -> Option<f64> {
    c.zerocopy_receive?.mapped_fraction()
}

fn client_ns(c: &Cell) -> Option<f64> {
    per_payload_byte(c, c.cpu.client_cpu_ns)
}

fn group(key: (Mode, ReceiveMechanism, usize, u64), cells: &[&Cell]) -> ReceiveGroup {
    let (mode, recv, threads, size) = key;
    ReceiveGroup {
        mode,
        recv,
        size,
        threads,
        repeats: cells.len(),
        recv_copy_per_byte: collect(cells, recv_copy),
        mapped_per_byte: collect(cells, mapped),
        mapped_fraction: collect(cells, mapped_fraction),
        client_ns_per_byte: collect(cells, client_ns),
        total_ns_per_byte: collect(cells, |c| c.cpu.total_ns_per_byte),
        throughput_gbps: collect(cells, |c| Some(c.stream.throughput_gbps)),
    }
}

/// Every (mode, recv, size, threads) group, sorted by mode, threads, size, recv.
pub(crate) fn receive_groups(cells: &[Cell]) -> Vec<ReceiveGroup> {
    let mut by_key: BTreeMap<(Mode, ReceiveMechanism, usize, u64), Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        by_key
            .entry((c.mode, c.recv, c.threads, c.size))
            .or_default()
            .push(c);
    }
    let mut groups: Vec<ReceiveGroup> = by_key
        .iter()
        .map(|(key, cells)| group(*key, cells))
        .collect();
    groups.sort_by_key(|g| (g.mode, g.threads, g.size, g.recv));
    groups
}

/// The points measured with both mechanisms, in mode, threads, size order.
pub(crate) fn receive_comparisons(groups: &[ReceiveGroup]) -> Vec<ReceiveComparison> {
    let find = |g: &ReceiveGroup, recv| {
        groups
            .iter()
            .find(|o| (o.mode, o.threads, o.size, o.recv) == (g.mode, g.threads, g.size, recv))
    };
    groups
        .iter()
        .filter(|g| g.recv == ReceiveMechanism::Copy)
        .filter_map(|copy| {
            let zerocopy = find(copy, ReceiveMechanism::ZeroCopy)?;
            let client_cost = match (zerocopy.client_ns_per_byte, copy.client_ns_per_byte) {
                (Some(z), Some(c)) => z.decided_order(&c),
                _ => None,
            };
            Some(ReceiveComparison {
                copy: copy.clone(),
                zerocopy: zerocopy.clone(),
                client_cost,
            })
        })
        .collect()
}

/// What the mapped share says, per mode over every zerocopy group: the finding a reader
/// of a loopback run must not miss (copying senders map nothing).
pub(crate) fn mapped_by_mode(groups: &[ReceiveGroup]) -> Vec<(Mode, f64, f64)> {
    let mut by_mode: BTreeMap<Mode, (f64, f64)> = BTreeMap::new();
    for g in groups
        .iter()
        .filter(|g| g.recv == ReceiveMechanism::ZeroCopy)
    {
        if let Some(f) = g.mapped_fraction {
            let e = by_mode
                .entry(g.mode)
                .or_insert((f64::INFINITY, f64::NEG_INFINITY));
            e.0 = e.0.min(f.min);
            e.1 = e.1.max(f.max);
        }
    }
    by_mode
        .into_iter()
        .map(|(m, (lo, hi))| (m, lo, hi))
        .collect()
}

/// One finding per sending mode measured with `--recv zerocopy`.
pub(crate) fn findings(groups: &[ReceiveGroup]) -> Vec<Finding> {
    mapped_by_mode(groups)
        .into_iter()
        .map(|(mode, low, high)| Finding {
            kind: FindingKind::ReceiveMapped,
            severity: Severity::Note,
            text: format!(
                "zero-copy receive behind {mode}: the kernel mapped {:.1}-{:.1} % of the bytes \
                 it handed over (range over every cell), copying the rest; why: {}",
                low * 100.0,
                high * 100.0,
                mapped_cause(mode, high)
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::client::ZeroCopyReceiveFigures;

    fn cell(recv: ReceiveMechanism, repeat: u32, client_ns: u64, mapped: u64) -> Cell {
        let json = serde_json::json!({
            "mode": "zero-copy", "size": 65536, "threads": 1, "repeat": repeat,
            "stream": {"messages": 16, "payload_bytes": 1048576, "seconds": 0.25,
                       "throughput_gbps": 1.0, "integrity_errors": 0, "discarded_bytes": 0},
            "latency": {"kind": "round-trip", "transactions": 1, "integrity_errors": 0,
                        "latency_us": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "p999": 1.0,
                                       "max": 1.0, "mean": 1.0, "samples": 1}},
            "copies": {"kernel_recv_copy": {"bytes": 1048576 - mapped, "calls": 1,
                        "source": "observed", "how": "t", "bytes_per_message": null}},
            "copies_per_byte": null,
            "zerocopy": {"sends": 0, "notifications": 0, "completed_sends": 0,
                         "copied_sends": 0, "copied_bytes": 0, "enobufs_retries": 0},
            "server_counters": null, "client_counters": null,
            "cpu": {"server_cpu_ns": 1, "client_cpu_ns": client_ns, "source": "t",
                    "server_ns_per_byte": null, "total_ns_per_byte": null,
                    "cycles_per_byte": null, "llc_misses_per_mib": null,
                    "hw_unavailable_reason": null},
            "trace_sample": null
        });
        let mut c: Cell = serde_json::from_value(json).unwrap();
        c.recv = recv;
        if recv == ReceiveMechanism::ZeroCopy {
            c.zerocopy_receive = Some(ZeroCopyReceiveFigures {
                mapped_bytes: mapped,
                copybuf_bytes: 1048576 - mapped,
                ..Default::default()
            });
        }
        c
    }

    #[test]
    fn both_mechanisms_of_a_point_are_compared_with_a_decided_cost() {
        use ReceiveMechanism::{Copy as C, ZeroCopy as Z};
        let cells: Vec<Cell> = (0..3)
            .flat_map(|r| {
                [
                    cell(C, r, 1_000_000 + u64::from(r), 0),
                    cell(Z, r, 500_000 + u64::from(r), 983040),
                ]
            })
            .collect();
        let groups = receive_groups(&cells);
        assert_eq!(groups.len(), 2);
        let z = &groups[1];
        assert_eq!((z.recv, z.repeats), (Z, 3));
        assert_eq!(z.mapped_per_byte.unwrap().median, 983040.0 / 1048576.0);
        assert_eq!(z.mapped_fraction.unwrap().median, 983040.0 / 1048576.0);
        assert_eq!(
            z.recv_copy_per_byte.unwrap().median,
            (1048576.0 - 983040.0) / 1048576.0
        );
        assert_eq!(groups[0].mapped_per_byte.unwrap().median, 0.0);
        let comparisons = receive_comparisons(&groups);
        assert_eq!(comparisons.len(), 1);
        assert_eq!(comparisons[0].client_cost, Some(Ordering::Less));
        assert_eq!(
            mapped_by_mode(&groups),
            vec![(Mode::ZeroCopy, 983040.0 / 1048576.0, 983040.0 / 1048576.0)]
        );
    }
}
