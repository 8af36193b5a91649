//! What each mode copied at one size, site by site, from the sweep or its verification.

use std::collections::BTreeSet;

use super::groups::{find_group, site_names, stat, Group, SiteAggregate, Stat};
use crate::{experiment::results::Results, workload::modes::Mode};

/// What each mode copied at one size, from the sweep (or from the verification run).
#[derive(Clone, Debug)]
pub(crate) struct ModeCopies {
    pub(crate) mode: Mode,
    pub(crate) size: u64,
    pub(crate) threads: usize,
    /// In [`site_names`] order.
    pub(crate) sites: Vec<SiteAggregate>,
    pub(crate) copies_per_byte: Option<Stat>,
    /// "sweep" or "verification".
    pub(crate) from: &'static str,
}

/// Copies per message per mode at `size` and `threads`; a mode without copy figures in the
/// sweep falls back to its verification ledger (observed bytes / messages).
pub(super) fn mode_copies(
    results: &Results,
    groups: &[Group],
    size: u64,
    threads: usize,
) -> Vec<ModeCopies> {
    let names = site_names(results);
    let modes: BTreeSet<Mode> = groups
        .iter()
        .map(|g| g.mode)
        .chain(results.verification.iter().map(|l| l.mode))
        .collect();
    let mut out = Vec::new();
    for mode in modes {
        if let Some(g) = find_group(groups, mode, size, threads).filter(|g| !g.sites.is_empty()) {
            out.push(ModeCopies {
                mode,
                size,
                threads,
                sites: names
                    .iter()
                    .filter_map(|n| g.sites.get(n).cloned())
                    .collect(),
                copies_per_byte: g.copies_per_byte,
                from: "sweep",
            });
        } else if let Some(l) = results.verification.iter().find(|l| l.mode == mode) {
            let msgs = l.workload.messages;
            let sites = names
                .iter()
                .filter_map(|n| {
                    let f = l.sites.get(n)?;
                    let per = f
                        .observed_bytes
                        .filter(|_| msgs > 0)
                        .map(|b| b as f64 / msgs as f64);
                    Some(SiteAggregate {
                        site: n.clone(),
                        bytes_per_message: per.and_then(|p| stat(&[p])),
                        source: f.source,
                        how: f.how.clone(),
                    })
                })
                .collect();
            out.push(ModeCopies {
                mode,
                size: l.workload.message_size,
                threads: 1,
                sites,
                copies_per_byte: None,
                from: "verification",
            });
        }
    }
    out
}
