//! A report with every kind of outcome, for the unit tests of the targets and the
//! renderers.

use super::{
    machine::MachineInfo,
    not_selected,
    overhead::{SETTLE_MS, WINDOW_MS},
    peers::PEER_SIZE,
    program_cost::{ProgramCost, ProgramFigure, FLOOR_HOOK},
    schema::{
        BenchReport, BlockOverhead, Comparison, Instrument, Outcome, OverheadSection, PairedFigure,
        PeerSection, VariantFigures,
    },
    windows::OVERHEAD_SIZE,
};
use crate::{util::stats::Summary, workload::modes::Mode};

pub(super) fn summary(values: &[f64]) -> Summary {
    Summary::of(values).unwrap()
}

/// An overhead of `median`% with the interval `lo`..`hi` over 60 blocks.
pub(super) fn paired(median: f64, lo: f64, hi: f64) -> PairedFigure {
    PairedFigure {
        median_pct: median,
        interval_pct: Some((lo, hi)),
        blocks: 60,
    }
}

fn variant(
    instrument: Instrument,
    gbps: f64,
    loss: PairedFigure,
    cpu: PairedFigure,
) -> VariantFigures {
    let compared = instrument != Instrument::None;
    VariantFigures {
        instrument,
        gbps: summary(&[gbps]),
        cpu_ns_per_byte: Some(summary(&[0.5])),
        cpu_unavailable: None,
        throughput_loss_pct: compared.then_some(loss.median_pct),
        cpu_increase_pct: compared.then_some(cpu.median_pct),
        throughput_loss: compared.then_some(loss),
        cpu_increase: compared.then_some(cpu),
        setup_seconds: None,
        switch_seconds: None,
        evidence: Vec::new(),
        program_cost: instrument.is_netcopy().then(|| {
            Outcome::Measured(ProgramCost {
                programs: vec![ProgramFigure {
                    program: "netcopy_recv_copy_tp_btf".into(),
                    hook: "tp_btf skb_copy_datagram_iovec".into(),
                    runs: 200,
                    ns_per_run: 150.0,
                    runs_per_message: 2.0,
                }],
                floor_hook: FLOOR_HOOK.into(),
                floor_ns_per_run: 70.0,
                messages: 100,
                payload_bytes: 1_600_000,
                programs_ns_per_byte: 0.01,
                drain_ns_per_byte: None,
                pct_of_base_cpu: Some(2.0),
            })
        }),
        // 60 blocks around the medians, the same pattern in every row.
        blocks: if compared {
            (0..60)
                .map(|block| {
                    let noise = f64::from(block % 5) * 0.1 - 0.2;
                    BlockOverhead {
                        block,
                        time_pct: Some(loss.median_pct + noise),
                        cpu_pct: Some(cpu.median_pct + noise),
                    }
                })
                .collect()
        } else {
            Vec::new()
        },
        peer: None,
    }
}

pub(super) fn report(ratio_single: Option<f64>) -> BenchReport {
    let comparison = |name: &str, ratio: Option<f64>| Comparison {
        name: name.to_string(),
        streams: 1,
        ours_label: "netcopy one-copy --threads 1 --size 128K".into(),
        theirs_label: "iperf3".into(),
        ours_gbps: summary(&[20.0]),
        theirs_gbps: match ratio {
            Some(_) => Outcome::Measured(summary(&[21.0])),
            None => Outcome::NotMeasured {
                reason: "iperf3 is not installed".into(),
            },
        },
        ratio,
        round_ratios: Vec::new(),
        notes: Vec::new(),
        by_placement: Vec::new(),
    };
    BenchReport {
        tool: "netcopy test".into(),
        machine: MachineInfo::collect(),
        rounds: 1,
        seconds: 1,
        peers: Outcome::Measured(PeerSection {
            iperf3: Outcome::NotMeasured {
                reason: "test".into(),
            },
            size: PEER_SIZE,
            seconds: 1,
            comparisons: vec![
                Outcome::Measured(comparison("single stream", ratio_single)),
                Outcome::Failed {
                    error: "4 streams: the client failed".into(),
                },
            ],
        }),
        bare: not_selected("bare"),
        ceiling: not_selected("ceiling"),
        overhead: Outcome::Measured(OverheadSection {
            mode: Mode::OneCopy,
            size: OVERHEAD_SIZE,
            threads: 1,
            seconds: 1,
            window_ms: WINDOW_MS,
            settle_ms: SETTLE_MS,
            blocks: 60,
            pinned_cpu: Some(1),
            pin_note: None,
            variants: vec![
                Outcome::Measured(variant(
                    Instrument::None,
                    20.0,
                    paired(0.0, 0.0, 0.0),
                    paired(0.0, 0.0, 0.0),
                )),
                Outcome::Measured(variant(
                    Instrument::CopyCounting,
                    19.8,
                    paired(1.0, -0.5, 2.5),
                    paired(4.0, 3.2, 5.0),
                )),
                Outcome::NotMeasured {
                    reason: "syscall tracing: the tracer is not available in this build".into(),
                },
                Outcome::Measured(variant(
                    Instrument::Control,
                    20.1,
                    paired(0.2, -1.9, 1.7),
                    paired(-0.1, -2.0, 1.5),
                )),
                Outcome::Measured(variant(
                    Instrument::EmptyCountingHooks,
                    19.9,
                    paired(0.8, -0.6, 2.0),
                    paired(1.5, 0.5, 2.9),
                )),
            ],
        }),
        trace_capacity: Outcome::NotMeasured {
            reason: "the tracer is not available in this build".into(),
        },
        targets: Vec::new(),
        load: Vec::new(),
        elapsed_seconds: 1.0,
    }
}
