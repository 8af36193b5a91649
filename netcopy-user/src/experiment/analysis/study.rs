//! The study netcopy checks, tied to the modes by their claims in the mode table, never by
//! name: its "sendmsg() with an iovec" is whichever mode claims to drop the user-space copy
//! and keep the kernel's (one-copy today), its "MSG_ZEROCOPY" whichever has the kernel
//! attach the user pages instead of copying (zero-copy today), and the baseline of its
//! comparisons whichever mode challenges no other (two-copy today). A new mode with one of
//! those claims is asked the same questions without a line changed here. What the study
//! published, beside this run's figures, is in [`study_comparison`](super::study_comparison).

use crate::workload::modes::{Claim, Mode, ModeSpec, MODES};

/// A baseline of the study's comparisons: a mode that challenges no other.
pub(super) fn is_reference(mode: Mode) -> bool {
    mode.spec().challenges.is_empty()
}

/// The study's "sendmsg() with an iovec": no user-space copy, the kernel's copy kept.
pub(super) fn drops_user_copy_only(claim: &Claim) -> bool {
    claim.kernel_send_copy && !claim.user_copy
}

/// The study's "MSG_ZEROCOPY": the kernel attaches the user pages instead of copying them.
pub(super) fn attaches_pages(claim: &Claim) -> bool {
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
