//! The targets and their verdicts: met, NOT met, undecided (an interval across the limit)
//! or not measured (with why). Targets are reported, never asserted.

use super::{
    ours,
    peers::{MULTI_NAME, PEER_SIZE, PINNED_NAME, SINGLE_NAME},
    schema::{
        BareSection, BenchReport, BlockOverhead, CapacitySection, Instrument, Outcome,
        PairedFigure, PlacementFigures, Target, VariantFigures, Verdict, WorkloadRate, CONFIDENCE,
    },
};
use crate::util::{stats, units::format_size};

/// Target: the bench peer's throughput at least this fraction of iperf3's at the same
/// settings.
pub(super) const TARGET_PEER_RATIO: f64 = 0.95;
/// Target: each server's throughput at least this fraction of a bare loop's of the same
/// mechanism.
pub(super) const TARGET_BARE_RATIO: f64 = 0.9;

/// An overhead target set by another row of the same blocks: netcopy's `instrument`
/// costs at most `factor` x what `against` costs, plus `points` percentage points.
pub(super) struct RelativeLimit {
    pub(super) instrument: Instrument,
    pub(super) against: Instrument,
    pub(super) factor: f64,
    pub(super) points: f64,
}

/// The overhead targets: a user compares netcopy with the tool they would run instead on
/// the same machine (bpftrace; perf trace, strace), and with what the kernel's dispatch
/// to any program on the same hooks costs (the floor), not with zero.
pub(super) const RELATIVE_LIMITS: [RelativeLimit; 4] = [
    RelativeLimit {
        instrument: Instrument::CopyCounting,
        against: Instrument::Bpftrace,
        factor: 0.8,
        points: 0.0,
    },
    RelativeLimit {
        instrument: Instrument::CopyCounting,
        against: Instrument::EmptyCountingHooks,
        factor: 1.0,
        points: 1.0,
    },
    RelativeLimit {
        instrument: Instrument::SyscallTracing,
        against: Instrument::PerfTrace,
        factor: 1.0,
        points: 0.0,
    },
    RelativeLimit {
        instrument: Instrument::SyscallTracing,
        against: Instrument::Strace,
        factor: 0.05,
        points: 0.0,
    },
];

impl RelativeLimit {
    /// `copy counting <= 0.8 x bpftrace's`, `copy counting <= empty programs on its hooks
    /// + 1 point`, `syscall tracing <= 1/20 x strace -f's`.
    pub(super) fn describe(&self) -> String {
        let factor = if self.factor == 1.0 {
            String::new()
        } else if self.factor < 0.1 {
            format!("1/{:.0} x ", 1.0 / self.factor)
        } else {
            format!("{} x ", self.factor)
        };
        let against = if self.against.floor_of().is_some() {
            "empty programs on its hooks".to_string()
        } else {
            format!("{}'s", self.against.label())
        };
        let points = if self.points != 0.0 {
            format!(
                " + {} point{}",
                self.points,
                if self.points == 1.0 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        format!("{} <= {factor}{against}{points}", self.instrument.label())
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

/// Which overhead of a block a relative target is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    /// Wall-clock time per payload byte (throughput, without the 100% bound of a loss).
    Time,
    Cpu,
}

impl Metric {
    fn pick(self, b: &BlockOverhead) -> Option<f64> {
        match self {
            Metric::Time => b.time_pct,
            Metric::Cpu => b.cpu_pct,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::Time => "time per byte",
            Metric::Cpu => "CPU per byte",
        }
    }
}

/// netcopy's instrument against `limit`, block by block: in each block, netcopy's
/// overhead less `factor` x the other row's less `points`; the target is met when the
/// whole interval of the median difference is at or below zero, not met when it is all
/// above, undecided otherwise. A peer tool whose counts disagreed with netcopy's, or
/// that lost events, is not compared.
fn relative_target(report: &BenchReport, limit: &RelativeLimit, metric: Metric) -> Target {
    let goal = format!("{} overhead, {}", limit.describe(), metric.name());
    let not_measured = |measured: String| Target {
        goal: goal.clone(),
        measured,
        verdict: Verdict::NotMeasured,
    };
    let ours = match variant_for(report, limit.instrument) {
        Ok(v) => v,
        Err(why) => return not_measured(format!("{}: {why}", limit.instrument.label())),
    };
    let theirs = match variant_for(report, limit.against) {
        Ok(v) => v,
        Err(why) => return not_measured(format!("{}: {why}", limit.against.label())),
    };
    if let Some(peer) = &theirs.peer {
        if !peer.check.comparable {
            return not_measured(peer.check.text.clone());
        }
    }
    let mut differences = Vec::new();
    let (mut our_values, mut their_values) = (Vec::new(), Vec::new());
    for b in &ours.blocks {
        let Some(t) = theirs.blocks.iter().find(|t| t.block == b.block) else {
            continue;
        };
        if let (Some(o), Some(t)) = (metric.pick(b), metric.pick(t)) {
            differences.push(o - limit.factor * t - limit.points);
            our_values.push(o);
            their_values.push(t);
        }
    }
    let (Some(median), Some(o), Some(t)) = (
        stats::median(&differences),
        stats::median(&our_values),
        stats::median(&their_values),
    ) else {
        return not_measured("no block has both figures".into());
    };
    let interval = stats::median_interval(&differences, CONFIDENCE);
    let head = format!(
        "{} {o:+.1}%, {} {t:+.1}% (medians of {} paired blocks); the difference to the \
         limit: {median:+.1} points",
        limit.instrument.label(),
        limit.against.label(),
        differences.len()
    );
    let (measured, verdict) = match interval {
        Some((lo, hi)) => (
            format!(
                "{head} ({:.0}% interval {lo:+.1} to {hi:+.1})",
                CONFIDENCE * 100.0
            ),
            if hi <= 0.0 {
                Verdict::Met
            } else if lo > 0.0 {
                Verdict::NotMet
            } else {
                Verdict::Undecided
            },
        ),
        None => (
            format!(
                "{head} (too few blocks for a {:.0}% interval)",
                CONFIDENCE * 100.0
            ),
            Verdict::Undecided,
        ),
    };
    let floor = limit
        .instrument
        .floor()
        .filter(|f| *f != limit.against)
        .and_then(|f| variant_for(report, f).ok())
        .and_then(|f| match metric {
            Metric::Time => f.throughput_loss,
            Metric::Cpu => f.cpu_increase,
        })
        .map(|p| {
            format!(
                "; empty programs on its hooks alone: {}",
                floor_text(p, metric)
            )
        })
        .unwrap_or_default();
    Target {
        goal,
        measured: measured + &floor,
        verdict,
    }
}

/// A floor's figure: its CPU overhead as it is; its throughput loss, which is what the
/// floor's row shows, named as such.
fn floor_text(p: PairedFigure, metric: Metric) -> String {
    match metric {
        Metric::Cpu => p.text(),
        Metric::Time => format!("{} in throughput", p.text()),
    }
}

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
        // The unpinned stream is bimodal: one target per placement the scheduler chose.
        if let Ok(Outcome::Measured(c)) = &comparison {
            if !c.by_placement.is_empty() {
                out.extend(c.by_placement.iter().map(|p| placement_target(&goal, p)));
                continue;
            }
        }
        out.push(match comparison {
            Ok(Outcome::Measured(c)) => match c.ratio {
                Some(r) => ratio_target(goal, r, &c.round_ratios, TARGET_PEER_RATIO),
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
    out.extend(bare_targets(&report.bare));
    for limit in &RELATIVE_LIMITS {
        for metric in [Metric::Time, Metric::Cpu] {
            out.push(relative_target(report, limit, metric));
        }
    }
    out.push(lossless_target(&report.trace_capacity));
    out
}

/// The unpinned single stream's target, on the rounds of one placement only.
fn placement_target(goal: &str, p: &PlacementFigures) -> Target {
    let goal = format!("{goal}, {}", p.placement.describe());
    match p.ratio() {
        Some(r) => Target {
            goal,
            // The rounds of one placement are not pairs (the scheduler placed each side's
            // rounds on its own), so there is no interval: the verdict is the medians'.
            measured: format!(
                "{r:.3} x ({} and {} rounds, not paired: no interval)",
                p.ours_gbps.len(),
                p.theirs_gbps.len()
            ),
            verdict: if r >= TARGET_PEER_RATIO {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
        },
        None => Target {
            goal,
            measured: format!(
                "the scheduler placed {} of netcopy's rounds and {} of iperf3's so: not on \
                 both sides",
                p.ours_gbps.len(),
                p.theirs_gbps.len()
            ),
            verdict: Verdict::NotMeasured,
        },
    }
}

/// A throughput ratio's target, `ratio` (median of ours over median of theirs) at least
/// `limit`: judged on the ratios of the rounds, each a pair of runs next to each other, by
/// the distribution-free interval of their median (with 5 to 8 rounds, min to max, whose
/// coverage is said): met when the whole interval is at or above the limit, NOT met when
/// it is all below, undecided otherwise. The rounds' ratios wander by 10-30% on a shared
/// machine, so one median ratio on either side of the limit decides nothing.
fn ratio_target(goal: String, ratio: f64, round_ratios: &[f64], limit: f64) -> Target {
    let rounds = round_ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    match stats::median_interval_up_to(round_ratios, CONFIDENCE) {
        Some(interval) => Target {
            goal,
            measured: format!(
                "{ratio:.3} x (rounds {rounds}; {:.1}% interval of their median {:.3} to {:.3})",
                interval.coverage * 100.0,
                interval.low,
                interval.high
            ),
            verdict: if interval.low >= limit {
                Verdict::Met
            } else if interval.high < limit {
                Verdict::NotMet
            } else {
                Verdict::Undecided
            },
        },
        None => Target {
            goal,
            measured: format!(
                "{ratio:.3} x ({} paired round{}: too few for an interval, the verdict is \
                 the medians')",
                round_ratios.len(),
                if round_ratios.len() == 1 { "" } else { "s" }
            ),
            verdict: if ratio >= limit {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
        },
    }
}

/// One target per server: at least [`TARGET_BARE_RATIO`] of the bare loop's throughput.
fn bare_targets(section: &Outcome<BareSection>) -> Vec<Target> {
    let Outcome::Measured(b) = section else {
        return vec![Target {
            goal: format!("each server >= {TARGET_BARE_RATIO} x a bare loop of its mechanism"),
            measured: section.why_not().unwrap_or_default(),
            verdict: Verdict::NotMeasured,
        }];
    };
    b.comparisons
        .iter()
        .map(|c| match c {
            Outcome::Measured(c) => {
                // "one-copy vs bare sendmsg loop": "one-copy >= 0.9 x bare sendmsg loop".
                let goal = c
                    .name
                    .replacen(" vs ", &format!(" >= {TARGET_BARE_RATIO} x "), 1);
                match c.ratio {
                    Some(r) => ratio_target(goal, r, &c.round_ratios, TARGET_BARE_RATIO),
                    None => Target {
                        goal,
                        measured: "no ratio".into(),
                        verdict: Verdict::NotMeasured,
                    },
                }
            }
            other => Target {
                goal: format!("a server >= {TARGET_BARE_RATIO} x a bare loop"),
                measured: other.why_not().unwrap_or_default(),
                verdict: Verdict::NotMeasured,
            },
        })
        .collect()
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
    use crate::bench::{
        fixtures::report,
        peer_tools::{PeerCheck, PeerCounts},
        schema::PeerFigures,
    };

    fn verdicts(t: &[Target]) -> Vec<Verdict> {
        t.iter().map(|t| t.verdict).collect()
    }

    #[test]
    fn targets_are_met_missed_or_not_measured_never_faked() {
        let r = report(Some(0.96));
        let t = targets(&r);
        assert_eq!(
            verdicts(&t),
            vec![
                Verdict::Met,         // 0.96 >= 0.95
                Verdict::NotMeasured, // no pinned comparison in this report
                Verdict::NotMeasured, // the 4-stream comparison failed
                Verdict::NotMeasured, // the bare loops were not selected
                Verdict::NotMeasured, // counting vs bpftrace: no bpftrace row
                Verdict::NotMeasured,
                Verdict::Met,    // counting time: 1.0 - 0.8 - 1 point < 0 in every block
                Verdict::NotMet, // counting CPU: 4.0 - 1.5 - 1 point > 0 in every block
                Verdict::NotMeasured, // no tracer
                Verdict::NotMeasured,
                Verdict::NotMeasured,
                Verdict::NotMeasured,
                Verdict::NotMeasured, // no capacity figures
            ]
        );
        assert_eq!(
            t[6].goal,
            "copy counting <= empty programs on its hooks + 1 point overhead, time per byte"
        );
        assert!(
            t[6].measured
                .contains("the difference to the limit: -0.8 points (95% interval -0.8 to -0.8)"),
            "{}",
            t[6].measured
        );
        assert!(t[4].measured.starts_with("bpftrace: "), "{}", t[4].measured);
        assert!(
            t[8].measured.contains("tracer is not available"),
            "{}",
            t[8].measured
        );
        assert!(
            t[2].measured.contains("the client failed"),
            "{}",
            t[2].measured
        );
        assert!(r.failed(), "a failed comparison makes the run fail");

        let below = targets(&report(Some(0.90)));
        assert_eq!(below[0].verdict, Verdict::NotMet);
        let no_iperf = targets(&report(None));
        assert_eq!(no_iperf[0].verdict, Verdict::NotMeasured);
        assert!(no_iperf[0].measured.contains("iperf3 is not installed"));
    }

    #[test]
    fn a_ratio_target_is_judged_on_the_interval_of_its_rounds() {
        let judge = |rounds: &[f64]| ratio_target("g".into(), 0.9, rounds, 0.9);
        // 7 rounds: min to max, 98.4% coverage.
        let above = judge(&[0.91, 0.97, 1.15, 0.97, 1.07, 0.92, 0.97]);
        assert_eq!(above.verdict, Verdict::Met, "{}", above.measured);
        assert!(
            above
                .measured
                .contains("98.4% interval of their median 0.910 to 1.150"),
            "{}",
            above.measured
        );
        let across = judge(&[0.79, 0.84, 0.89, 0.93, 0.83, 0.88, 0.90]);
        assert_eq!(across.verdict, Verdict::Undecided, "{}", across.measured);
        let below = judge(&[0.79, 0.84, 0.89, 0.85, 0.83, 0.88, 0.80]);
        assert_eq!(below.verdict, Verdict::NotMet, "{}", below.measured);
        // One round bounds nothing: the medians decide, and the figure says so.
        let one = ratio_target("g".into(), 0.95, &[0.95], 0.9);
        assert_eq!(one.verdict, Verdict::Met);
        assert!(
            one.measured.contains("1 paired round: too few"),
            "{}",
            one.measured
        );
        let none = ratio_target("g".into(), 0.85, &[], 0.9);
        assert_eq!(none.verdict, Verdict::NotMet);
    }

    #[test]
    fn a_peer_is_compared_only_when_its_counts_agreed() {
        let mut r = report(Some(1.0));
        let Outcome::Measured(section) = &mut r.overhead else {
            unreachable!()
        };
        // bpftrace at twice the floor's overhead: 0.8 x 1.6% = 1.28% > copy counting's 1.0%.
        let mut bpftrace = section.variants[4].clone();
        if let Outcome::Measured(v) = &mut bpftrace {
            v.instrument = Instrument::Bpftrace;
            for b in &mut v.blocks {
                b.time_pct = b.time_pct.map(|p| p * 2.0);
                b.cpu_pct = b.cpu_pct.map(|p| p * 2.0);
            }
            v.peer = Some(PeerFigures {
                counts: PeerCounts::default(),
                check: PeerCheck {
                    comparable: true,
                    text: "they agree".into(),
                },
                switching: String::new(),
            });
        }
        section.variants.push(bpftrace.clone());
        let t = targets(&r);
        // Time: 1.0 +- noise against 0.8 x 1.6 +- 1.6 x noise: an interval across zero.
        assert_eq!(
            t[4].goal,
            "copy counting <= 0.8 x bpftrace's overhead, time per byte"
        );
        assert_ne!(t[4].verdict, Verdict::NotMeasured, "{}", t[4].measured);
        // CPU: 4.0 against 0.8 x 3.0 = 2.4: not met.
        assert_eq!(t[5].verdict, Verdict::NotMet, "{}", t[5].measured);
        assert!(
            t[5].measured.contains("empty programs on its hooks alone"),
            "{}",
            t[5].measured
        );

        // The same figures from a bpftrace that counted other bytes: not compared.
        let Outcome::Measured(section) = &mut r.overhead else {
            unreachable!()
        };
        if let Some(Outcome::Measured(v)) = section.variants.last_mut() {
            if let Some(peer) = &mut v.peer {
                peer.check = PeerCheck {
                    comparable: false,
                    text: "bpftrace counted 2.000 bytes ...: they DISAGREE".into(),
                };
            }
        }
        let t = targets(&r);
        assert_eq!(t[4].verdict, Verdict::NotMeasured);
        assert!(t[4].measured.contains("DISAGREE"), "{}", t[4].measured);
    }

    #[test]
    fn limits_read_as_the_issue_states_them() {
        let goals: Vec<String> = RELATIVE_LIMITS
            .iter()
            .map(RelativeLimit::describe)
            .collect();
        assert_eq!(
            goals,
            vec![
                "copy counting <= 0.8 x bpftrace's",
                "copy counting <= empty programs on its hooks + 1 point",
                "syscall tracing <= perf trace's",
                "syscall tracing <= 1/20 x strace -f's",
            ]
        );
    }
}
