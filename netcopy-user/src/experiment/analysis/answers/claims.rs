//! What the kernel copied per mode, and the study's two claims about copies checked
//! against it: sendmsg() with an iovec avoids the kernel copy, MSG_ZEROCOPY to a local
//! socket avoids the copy.

use netcopy_common::CopySite;

use super::{Answer, Inputs};
use crate::{
    experiment::analysis::{
        copies::ModeCopies,
        format::num,
        groups::{Group, SiteAggregate},
    },
    experiment::results::{Results, TopologyKind},
    ledger::FigureSource,
    workload::modes::Mode,
};

/// What the kernel copied per mode, site by site.
pub(super) fn copies_answer(results: &Results, a: &Inputs<'_>) -> Answer {
    if a.copies.is_empty() {
        return Answer {
            question: "What did the kernel copy per mode?".to_string(),
            answer: "Cannot be answered: no copy-site figures in the sweep or the verification."
                .to_string(),
            basis: "unavailable".to_string(),
        };
    }
    let lines: Vec<String> = a
        .copies
        .iter()
        .map(|c| {
            let verdict = results
                .verification
                .iter()
                .find(|l| l.mode == c.mode)
                .map(|l| format!(", verification verdict {:?}", l.verdict).to_lowercase())
                .unwrap_or_default();
            format!(
                "{} ({} B messages, {}{}): {}{}",
                c.mode,
                c.size,
                c.from,
                verdict,
                c.sites.iter().map(site_text).collect::<Vec<_>>().join(", "),
                c.copies_per_byte
                    .map(|s| format!("; {} bytes copied per byte delivered", num(s.median)))
                    .unwrap_or_default()
            )
        })
        .collect();
    Answer {
        question: "What did the kernel copy per mode?".to_string(),
        answer: format!(
            "Bytes per delivered message at each copy site: {}.",
            lines.join(". ")
        ),
        basis: "each site says how it was obtained: observed (probe on the copy routine or \
                the sender's own memcpy), inferred (from the kernel's inputs around the \
                copy), reported (completion notifications), or not observable"
            .to_string(),
    }
}

fn site_text(s: &SiteAggregate) -> String {
    match s.bytes_per_message {
        Some(b) => format!("{} {} B ({})", s.site, num(b.median), s.source.name()),
        None => format!("{} not observable ({})", s.site, s.how),
    }
}

pub(super) fn site_median(c: &ModeCopies, site: CopySite) -> Option<(f64, FigureSource)> {
    c.sites
        .iter()
        .find(|s| s.site == site.name())
        .and_then(|s| Some((s.bytes_per_message?.median, s.source)))
}

/// Sends whose completion the kernel reported, over the sweep's groups of one mode.
pub(super) struct Completions {
    pub(super) completed: u64,
    /// Of those, flagged SO_EE_CODE_ZEROCOPY_COPIED.
    pub(super) copied: u64,
    /// Of those, sends that never left the socket (freed unsent when the client closed),
    /// and of these, the ones flagged copied anyway (a range shared with sent ones).
    pub(super) unsent: u64,
    pub(super) unsent_copied: u64,
}

impl Completions {
    /// "C of N completions", of the sends that left the socket when some never did:
    /// their completions say nothing of the path, so they are counted apart.
    pub(super) fn flagged(&self) -> String {
        if self.unsent == 0 {
            return format!("{} of {} completions", self.copied, self.completed);
        }
        format!(
            "{} of the {} completions of sends that left the socket ({} more were of sends \
             the kernel freed unsent when the client stopped reading and closed, {} of those \
             in ranges flagged with sent ones)",
            self.copied - self.unsent_copied,
            self.completed - self.unsent,
            self.unsent,
            self.unsent_copied
        )
    }
}

pub(super) fn completions(groups: &[Group], mode: Mode) -> Completions {
    let of_mode = || groups.iter().filter(move |g| g.mode == mode);
    Completions {
        completed: of_mode().map(|g| g.zerocopy.completed_sends).sum(),
        copied: of_mode().map(|g| g.zerocopy.copied_sends).sum(),
        unsent: of_mode().map(|g| g.zerocopy.unsent_sends).sum(),
        unsent_copied: of_mode().map(|g| g.zerocopy.unsent_copied_sends).sum(),
    }
}

/// The study's claim that sendmsg() with an iovec avoids the kernel copy, against what the
/// kernel copied for `one`, a mode that claims exactly that.
pub(super) fn iovec_claim_answer(one: &ModeCopies) -> Answer {
    let answer = match site_median(one, CopySite::KernelSendCopy) {
        Some((b, src)) => format!(
            "No. With sendmsg() and an iovec the kernel still copied {} B per message of {} B \
             into socket buffers on send (kernel_send_copy, {}); what {} removes is \
             the user-space serialization (user_copy {} B per message).",
            num(b),
            one.size,
            src.name(),
            one.mode,
            site_median(one, CopySite::UserCopy)
                .map(|(u, _)| num(u))
                .unwrap_or_else(|| "not observable".to_string())
        ),
        None => "Not observable on this kernel: no send-path probe.".to_string(),
    };
    Answer {
        question: "Does sendmsg() with an iovec avoid the kernel copy (the study's claim)?"
            .to_string(),
        answer,
        basis: format!("send-path copy site of the {} mode", one.mode),
    }
}

/// The study's claim that MSG_ZEROCOPY to a local socket avoids the copy, against what the
/// kernel copied and reported for `zc`, a mode that claims exactly that.
pub(super) fn zero_copy_claim_answer(
    zc: &ModeCopies,
    completions: &Completions,
    topology: TopologyKind,
) -> Answer {
    let copied = completions.copied;
    let flagged = completions.flagged();
    let here = match topology {
        TopologyKind::Loopback => "On this loopback",
        TopologyKind::Netns => "Across these two namespaces of one kernel",
        TopologyKind::Remote => "Between these two hosts",
    };
    let answer = match site_median(zc, CopySite::DeferredCopy) {
        Some((d, src)) if d > 0.0 || copied > 0 => format!(
            "No. {here} the kernel copied the pinned pages after the send: {} B \
             per message of {} B (deferred_copy, {}), and {flagged} were flagged \
             SO_EE_CODE_ZEROCOPY_COPIED. The receive copy remains as well{}.",
            num(d),
            zc.size,
            src.name(),
            site_median(zc, CopySite::KernelRecvCopy)
                .map(|(r, s)| format!(" ({} B per message, {})", num(r), s.name()))
                .unwrap_or_default()
        ),
        Some((d, src)) => format!(
            "Here, yes: the deferred copy was {} B per message ({}) and {flagged} were \
             flagged copied.",
            num(d),
            src.name()
        ),
        None => format!(
            "The deferred copy was not observable; {flagged} were flagged \
             SO_EE_CODE_ZEROCOPY_COPIED."
        ),
    };
    Answer {
        question: "Does MSG_ZEROCOPY to a local socket avoid the copy (the study's claim)?"
            .to_string(),
        answer,
        basis: "deferred copy from the copy probes or the kernel's completion flags \
                (reported); completion counts reported by the kernel on the error queue"
            .to_string(),
    }
}
