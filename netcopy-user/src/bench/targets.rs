//! The targets and their verdicts: met, NOT met, undecided (an interval across the limit)
//! or not measured (with why). Targets are reported, never asserted.

use super::{
    ours,
    peers::{MULTI_NAME, PEER_SIZE, PINNED_NAME, SINGLE_NAME},
    schema::{
        BenchReport, CapacitySection, Instrument, Outcome, PairedFigure, Target, VariantFigures,
        Verdict, WorkloadRate, CONFIDENCE,
    },
};
use crate::util::units::format_size;

/// Target: the bench peer's throughput at least this fraction of iperf3's at the same
/// settings.
pub(super) const TARGET_PEER_RATIO: f64 = 0.95;
/// Target: copy counting costs at most this much throughput and CPU, percent.
pub(super) const TARGET_COUNTING_PCT: f64 = 3.0;
/// Target: syscall tracing costs at most this much throughput and CPU, percent.
pub(super) const TARGET_TRACING_PCT: f64 = 10.0;

/// A target on a figure with no interval (the kernel's accounting: exact, not sampled).
fn pct_target(
    goal: String,
    variant: std::result::Result<&VariantFigures, String>,
    pick: impl Fn(&VariantFigures) -> Option<f64>,
    limit: f64,
    what: &str,
) -> Target {
    match variant {
        Ok(v) => match pick(v) {
            Some(p) => Target {
                goal,
                measured: format!("{p:+.1}% {what}"),
                verdict: if p <= limit {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            },
            None => Target {
                goal,
                measured: v
                    .cpu_unavailable
                    .clone()
                    .unwrap_or_else(|| "no figure".into()),
                verdict: Verdict::NotMeasured,
            },
        },
        Err(measured) => Target {
            goal,
            measured,
            verdict: Verdict::NotMeasured,
        },
    }
}

/// A target on an overhead measured block by block: met when the whole confidence
/// interval of the median is within the limit, not met when it is all beyond it,
/// undecided when it straddles the limit (the machine is too noisy to tell).
fn interval_target(
    goal: String,
    variant: std::result::Result<&VariantFigures, String>,
    pick: impl Fn(&VariantFigures) -> Option<PairedFigure>,
    limit: f64,
    what: &str,
) -> Target {
    let variant = match variant {
        Ok(v) => v,
        Err(measured) => {
            return Target {
                goal,
                measured,
                verdict: Verdict::NotMeasured,
            }
        }
    };
    let Some(figure) = pick(variant) else {
        return Target {
            goal,
            measured: variant
                .cpu_unavailable
                .clone()
                .unwrap_or_else(|| "no figure".into()),
            verdict: Verdict::NotMeasured,
        };
    };
    let median = figure.median_pct;
    let (measured, verdict) = match figure.interval_pct {
        Some((lo, hi)) => (
            format!(
                "{median:+.1}% {what} ({:.0}% interval {lo:+.1}% to {hi:+.1}%, {} blocks)",
                CONFIDENCE * 100.0,
                figure.blocks
            ),
            if hi <= limit {
                Verdict::Met
            } else if lo > limit {
                Verdict::NotMet
            } else {
                Verdict::Undecided
            },
        ),
        None => (
            format!(
                "{median:+.1}% {what} (only {} blocks: too few for a {:.0}% interval)",
                figure.blocks,
                CONFIDENCE * 100.0
            ),
            Verdict::Undecided,
        ),
    };
    Target {
        goal,
        measured,
        verdict,
    }
}

/// The figures of one instrument, or why there are none.
fn variant_for(
    report: &BenchReport,
    instrument: Instrument,
) -> std::result::Result<&VariantFigures, String> {
    let section = match &report.overhead {
        Outcome::Measured(s) => s,
        other => return Err(other.why_not().unwrap_or_default()),
    };
    let position = Instrument::ALL
        .iter()
        .position(|i| *i == instrument)
        .unwrap_or(0);
    match section.variants.get(position) {
        Some(Outcome::Measured(v)) if v.instrument == instrument => Ok(v),
        Some(Outcome::Measured(_)) | None => section
            .variants
            .iter()
            .find_map(|o| o.measured().filter(|v| v.instrument == instrument))
            .ok_or_else(|| "not measured".into()),
        Some(other) => Err(other.why_not().unwrap_or_default()),
    }
}

/// Which paired figure of an instrument a target is on.
type PickPaired = fn(&VariantFigures) -> Option<PairedFigure>;

/// Every target of the report, in its order.
pub(super) fn targets(report: &BenchReport) -> Vec<Target> {
    let mut out = Vec::new();
    for name in [SINGLE_NAME, PINNED_NAME, MULTI_NAME] {
        let goal = format!(
            "{} >= {TARGET_PEER_RATIO:.2} x iperf3, {name}, {}",
            ours::peer().name,
            format_size(PEER_SIZE)
        );
        let comparison = match &report.peers {
            Outcome::Measured(p) => p
                .comparisons
                .iter()
                .find(|c| match c {
                    Outcome::Measured(c) => c.name == name,
                    Outcome::Failed { error } => error.starts_with(&format!("{name}: ")),
                    Outcome::NotMeasured { .. } => false,
                })
                .ok_or_else(|| "not measured".to_string()),
            other => Err(other.why_not().unwrap_or_default()),
        };
        out.push(match comparison {
            Ok(Outcome::Measured(c)) => match c.ratio {
                Some(r) => Target {
                    goal,
                    measured: format!("{r:.3} x"),
                    verdict: if r >= TARGET_PEER_RATIO {
                        Verdict::Met
                    } else {
                        Verdict::NotMet
                    },
                },
                None => Target {
                    goal,
                    measured: c.theirs_gbps.why_not().unwrap_or_default(),
                    verdict: Verdict::NotMeasured,
                },
            },
            Ok(other) => Target {
                goal,
                measured: other.why_not().unwrap_or_default(),
                verdict: Verdict::NotMeasured,
            },
            Err(measured) => Target {
                goal,
                measured,
                verdict: Verdict::NotMeasured,
            },
        });
    }
    for (instrument, limit) in [
        (Instrument::CopyCounting, TARGET_COUNTING_PCT),
        (Instrument::SyscallTracing, TARGET_TRACING_PCT),
    ] {
        // The same figure for empty programs on the instrument's hooks: how much of the
        // limit the kernel's dispatch alone already takes.
        let floor = |pick: PickPaired| {
            let floor = variant_for(report, instrument.floor()?).ok()?;
            Some(format!(
                "; empty programs on its hooks alone: {}",
                pick(floor)?.text()
            ))
        };
        let pickers: [(&str, &str, PickPaired); 2] = [
            ("throughput", "throughput", |v| v.throughput_loss),
            ("CPU", "CPU per byte", |v| v.cpu_increase),
        ];
        for (name, what, pick) in pickers {
            let mut target = interval_target(
                format!("{} {name} overhead <= {limit:.0}%", instrument.label()),
                variant_for(report, instrument),
                pick,
                limit,
                what,
            );
            if target.verdict != Verdict::NotMeasured {
                target.measured.push_str(&floor(pick).unwrap_or_default());
            }
            out.push(target);
        }
        let accounted = variant_for(report, instrument).and_then(|v| match &v.program_cost {
            Some(Outcome::Measured(_)) => Ok(v),
            Some(other) => Err(other.why_not().unwrap_or_default()),
            None => Err("not measured".into()),
        });
        out.push(pct_target(
            format!(
                "{} CPU overhead <= {limit:.0}%, by the kernel's accounting",
                instrument.label()
            ),
            accounted,
            |v| v.program_cost.as_ref()?.measured()?.pct_of_base_cpu,
            limit,
            if instrument == Instrument::SyscallTracing {
                "CPU per byte (the programs' run time less the accounting's floor, and the \
                 draining thread while the workload ran; the kernel's dispatch to the \
                 programs is not in it)"
            } else {
                "CPU per byte (the programs' run time less the accounting's floor; the \
                 kernel's dispatch to the programs is not in it)"
            },
        ));
    }
    out.push(lossless_target(&report.trace_capacity));
    out
}

/// "No lost events at the default sweep's event rate".
fn lossless_target(section: &Outcome<CapacitySection>) -> Target {
    let goal = "no lost trace events at the default sweep's densest cells".to_string();
    let Outcome::Measured(c) = section else {
        return Target {
            goal,
            measured: section.why_not().unwrap_or_default(),
            verdict: Verdict::NotMeasured,
        };
    };
    let measured: Vec<&WorkloadRate> = c.workloads.iter().filter_map(Outcome::measured).collect();
    if measured.is_empty() {
        return Target {
            goal,
            measured: "no dense cell could be traced".into(),
            verdict: Verdict::NotMeasured,
        };
    }
    let lost: u64 = measured.iter().map(|w| w.stats.lost()).sum();
    let peak = measured
        .iter()
        .map(|w| w.stats.offered_per_second())
        .fold(0.0, f64::max);
    Target {
        goal,
        measured: format!("{lost} lost, at up to {peak:.0} calls/s"),
        verdict: if lost == 0 {
            Verdict::Met
        } else {
            Verdict::NotMet
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixtures::{paired, report};

    #[test]
    fn targets_are_met_missed_or_not_measured_never_faked() {
        let r = report(Some(0.96));
        let t = targets(&r);
        let verdicts: Vec<Verdict> = t.iter().map(|t| t.verdict).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Met,         // 0.96 >= 0.95
                Verdict::NotMeasured, // no pinned comparison in this report
                Verdict::NotMeasured, // the 4-stream comparison failed
                Verdict::Met,         // counting throughput: all of -0.5%..+2.5% <= 3%
                Verdict::NotMet,      // counting CPU: all of +3.2%..+5.0% > 3%
                Verdict::Met,         // counting by the kernel's accounting: +2% <= 3%
                Verdict::NotMeasured, // no tracer
                Verdict::NotMeasured,
                Verdict::NotMeasured,
                Verdict::NotMeasured, // no capacity figures
            ]
        );
        assert!(t[5].goal.contains("kernel's accounting"), "{}", t[5].goal);
        assert!(
            t[5].measured.starts_with("+2.0% CPU per byte"),
            "{}",
            t[5].measured
        );
        assert!(
            t[2].measured.contains("the client failed"),
            "{}",
            t[2].measured
        );
        assert!(t[6].measured.contains("tracer is not available"));
        assert!(t[8].measured.contains("tracer is not available"));
        assert!(r.failed(), "a failed comparison makes the run fail");

        assert!(
            t[3].measured
                .contains("95% interval -0.5% to +2.5%, 60 blocks"),
            "{}",
            t[3].measured
        );
        // Each interval target says what empty programs on the same hooks cost.
        assert!(
            t[3].measured.ends_with(
                "; empty programs on its hooks alone: +0.8% (95% interval -0.6% to +2.0%)"
            ),
            "{}",
            t[3].measured
        );
        assert!(
            t[4].measured.ends_with(
                "; empty programs on its hooks alone: +1.5% (95% interval +0.5% to +2.9%)"
            ),
            "{}",
            t[4].measured
        );
        // Not for the kernel's accounting (the empty programs have none), nor for an
        // instrument that was not measured.
        assert!(
            !t[5].measured.contains("empty programs"),
            "{}",
            t[5].measured
        );
        assert!(
            !t[6].measured.contains("empty programs"),
            "{}",
            t[6].measured
        );
        // An interval across the limit decides nothing; neither do too few blocks.
        let r = report(Some(1.0));
        let counting = variant_for(&r, Instrument::CopyCounting);
        let straddling = interval_target(
            "g".into(),
            counting.clone(),
            |_| Some(paired(2.5, 1.0, 4.0)),
            3.0,
            "throughput",
        );
        assert_eq!(straddling.verdict, Verdict::Undecided);
        let few = interval_target(
            "g".into(),
            counting,
            |_| {
                Some(PairedFigure {
                    median_pct: 0.5,
                    interval_pct: None,
                    blocks: 4,
                })
            },
            3.0,
            "throughput",
        );
        assert_eq!(few.verdict, Verdict::Undecided);
        assert!(few.measured.contains("only 4 blocks"), "{}", few.measured);
        // The control is found by instrument, not position.
        assert_eq!(
            variant_for(&r, Instrument::Control).map(|v| v.gbps.median),
            Ok(20.1)
        );

        let below = targets(&report(Some(0.90)));
        assert_eq!(below[0].verdict, Verdict::NotMet);
        let no_iperf = targets(&report(None));
        assert_eq!(no_iperf[0].verdict, Verdict::NotMeasured);
        assert!(no_iperf[0].measured.contains("iperf3 is not installed"));
    }
}
