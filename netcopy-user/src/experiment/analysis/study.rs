//! The study netcopy checks, tied to the modes by their claims in the mode table, never by
//! name: its "sendmsg() with an iovec" is whichever mode claims to drop the user-space copy
//! and keep the kernel's (one-copy today), its "MSG_ZEROCOPY" whichever has the kernel
//! attach the user pages instead of copying (zero-copy today), and the baseline of its
//! comparisons whichever mode challenges no other (two-copy today). A new mode with one of
//! those claims is asked the same questions without a line changed here.

use super::crossovers::{Crossover, CrossoverMetric};
use crate::workload::modes::{Claim, Mode, ModeSpec, MODES};

/// A baseline of the study's comparisons: a mode that challenges no other.
pub(super) fn is_reference(mode: Mode) -> bool {
    mode.spec().challenges.is_empty()
}

/// The study's "sendmsg() with an iovec": no user-space copy, the kernel's copy kept.
fn drops_user_copy_only(claim: &Claim) -> bool {
    claim.kernel_send_copy && !claim.user_copy
}

/// The study's "MSG_ZEROCOPY": the kernel attaches the user pages instead of copying them.
fn attaches_pages(claim: &Claim) -> bool {
    claim.zerocopy_attach
}

/// The rows of the modes that the study's iovec claim is about.
pub(super) fn iovec_modes() -> impl Iterator<Item = &'static ModeSpec> {
    MODES.iter().filter(|s| drops_user_copy_only(&s.claim))
}

/// The rows of the modes that the study's zero-copy claim is about.
pub(super) fn zero_copy_modes() -> impl Iterator<Item = &'static ModeSpec> {
    MODES.iter().filter(|s| attaches_pages(&s.claim))
}

/// A throughput crossover the study reported: where the mode with this claim overtook the
/// baseline.
struct ReportedCrossover {
    challenger_claims: fn(&Claim) -> bool,
    at: &'static str,
}

const REPORTED_CROSSOVERS: [ReportedCrossover; 2] = [
    ReportedCrossover {
        challenger_claims: drops_user_copy_only,
        at: "4-8 KB",
    },
    ReportedCrossover {
        challenger_claims: attaches_pages,
        at: "64 KB",
    },
];

/// Each measured throughput crossover over a baseline that the study also reported, with
/// what it reported (`the study reported 64 KB for zero-copy over two-copy`), in the
/// study's order.
pub(crate) fn reported_crossovers(crossovers: &[Crossover]) -> Vec<(&Crossover, String)> {
    REPORTED_CROSSOVERS
        .iter()
        .flat_map(|reported| {
            crossovers
                .iter()
                .filter(move |x| {
                    x.metric == CrossoverMetric::Throughput
                        && (reported.challenger_claims)(&x.challenger.spec().claim)
                        && is_reference(x.baseline)
                })
                .map(move |x| {
                    let said = format!(
                        "the study reported {} for {} over {}",
                        reported.at, x.challenger, x.baseline
                    );
                    (x, said)
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_modes_are_those_with_its_claims() {
        let names = |it: &mut dyn Iterator<Item = &'static ModeSpec>| {
            it.map(|s| s.name).collect::<Vec<_>>()
        };
        assert_eq!(names(&mut iovec_modes()), ["one-copy", "io-uring"]);
        assert_eq!(names(&mut zero_copy_modes()), ["zero-copy", "io-uring-zc"]);
        let references: Vec<Mode> = Mode::ALL.into_iter().filter(|m| is_reference(*m)).collect();
        assert_eq!(references, [Mode::TwoCopy]);
    }
}
