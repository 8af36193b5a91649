//! The ends a ledger's figures come from. On one host (loopback, namespaces) one kernel
//! counts both ends; across two hosts each end's kernel counts its own processes, with its
//! own attach plan, and the ledger adds them up site by site. Each figure then says which
//! host(s) it was counted on.

use std::collections::BTreeMap;

use netcopy_common::CopySite;
use serde::{Deserialize, Serialize};

use super::FigureSource;
use crate::kernel::{
    plan::{AttachPlan, KernelEvent},
    CopyCounts,
};

/// Which end(s) of the connection one kernel's counts cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The server that sends the payload.
    Sender,
    /// The client that receives it.
    Receiver,
    /// Both: one kernel saw both ends.
    Both,
}

impl Role {
    /// Whether this end can have bytes at `site`. The payload is sent by the sender only,
    /// but both ends send (requests, replies) and receive, so send and receive copies are
    /// counted on both.
    fn counts(self, site: CopySite) -> bool {
        match site {
            CopySite::KernelSendCopy | CopySite::KernelRecvCopy => true,
            // Only the client receives the payload stream, and maps it.
            CopySite::RecvMapped => self != Role::Sender,
            _ => self != Role::Receiver,
        }
    }
}

/// What one probe counted at one site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCount {
    pub bytes: u64,
    pub calls: u64,
    pub source: FigureSource,
    /// The strategy's label.
    pub how: String,
}

/// One kernel's counts for the processes of its end(s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSide {
    /// The host, as figures name it.
    pub host: String,
    pub role: Role,
    /// Keyed by [`CopySite::name`]: the sites this kernel's plan observes.
    pub probes: BTreeMap<String, ProbeCount>,
}

/// The events whose probes can count `site`; the first whose chosen strategy counts it
/// wins: pages referenced by splice/sendfile reach `do_tcp_sendpages` on Linux < 6.5 and
/// the send path after.
fn events_of(site: CopySite) -> &'static [KernelEvent] {
    match site {
        CopySite::KernelSendCopy | CopySite::ZeroCopyAttach => &[KernelEvent::SendPath],
        CopySite::PageReference => &[KernelEvent::SendPages, KernelEvent::SendPath],
        CopySite::DeferredCopy => &[KernelEvent::DeferredCopy],
        CopySite::ZeroCopyCompletion | CopySite::ZeroCopyCompletionCopied => {
            &[KernelEvent::Completion]
        }
        CopySite::KernelRecvCopy => &[KernelEvent::RecvCopy],
        CopySite::RecvMapped => &[KernelEvent::RecvMapped],
        CopySite::UserCopy => &[],
    }
}

impl KernelSide {
    /// The counts of `slots` (summed) under `plan`.
    pub fn of(
        host: &str,
        role: Role,
        plan: &AttachPlan,
        counts: &CopyCounts,
        slots: &[u32],
    ) -> KernelSide {
        let mut probes = BTreeMap::new();
        for site in CopySite::ALL {
            let found = events_of(site).iter().find_map(|event| {
                let chosen = plan.get(*event)?.chosen.as_ref()?;
                Some((chosen, chosen.source_of(site)?))
            });
            let Some((chosen, source)) = found else {
                continue;
            };
            let (mut bytes, mut calls) = (0, 0);
            for slot in slots {
                let c = counts.get(*slot, site);
                bytes += c.bytes;
                calls += c.calls;
            }
            probes.insert(
                site.name().to_string(),
                ProbeCount {
                    bytes,
                    calls,
                    source: source.into(),
                    how: chosen.label.to_string(),
                },
            );
        }
        KernelSide {
            host: host.to_string(),
            role,
            probes,
        }
    }
}

/// A site's figure from the sides that can have bytes there: summed, with the hosts
/// named; None when one of them has no probe for it.
pub(super) fn probed(
    sides: &[KernelSide],
    site: CopySite,
) -> Option<(u64, u64, FigureSource, String, Vec<String>)> {
    let relevant: Vec<&KernelSide> = sides.iter().filter(|s| s.role.counts(site)).collect();
    if relevant.is_empty() {
        return None;
    }
    let (mut bytes, mut calls) = (0, 0);
    let mut hows: Vec<String> = Vec::new();
    let mut hosts = Vec::new();
    let mut source = None;
    for side in &relevant {
        let p = side.probes.get(site.name())?;
        bytes += p.bytes;
        calls += p.calls;
        // The weakest source of the parts is the figure's.
        source = Some(match source {
            None => p.source,
            Some(s) if rank(p.source) > rank(s) => p.source,
            Some(s) => s,
        });
        hosts.push(side.host.clone());
        let how = if relevant.len() > 1 {
            format!("{} on {}", p.how, side.host)
        } else {
            p.how.clone()
        };
        if !hows.contains(&how) {
            hows.push(how);
        }
    }
    Some((bytes, calls, source?, hows.join("; "), hosts))
}

fn rank(s: FigureSource) -> u8 {
    match s {
        FigureSource::Observed => 0,
        FigureSource::Reported => 1,
        FigureSource::Inferred => 2,
        FigureSource::Unavailable => 3,
    }
}

/// The hosts of the sides that can have bytes at `site`.
pub(super) fn hosts_of(sides: &[KernelSide], site: CopySite) -> Vec<String> {
    sides
        .iter()
        .filter(|s| s.role.counts(site))
        .map(|s| s.host.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(host: &str, role: Role, sites: &[(CopySite, u64)]) -> KernelSide {
        KernelSide {
            host: host.into(),
            role,
            probes: sites
                .iter()
                .map(|(s, bytes)| {
                    (
                        s.name().to_string(),
                        ProbeCount {
                            bytes: *bytes,
                            calls: 1,
                            source: FigureSource::Observed,
                            how: format!("probe {}", s.name()),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn two_hosts_add_up_where_both_can_have_bytes_and_each_names_itself() {
        let a = side(
            "a",
            Role::Sender,
            &[(CopySite::KernelSendCopy, 100), (CopySite::DeferredCopy, 7)],
        );
        let b = side(
            "b",
            Role::Receiver,
            &[
                (CopySite::KernelSendCopy, 20),
                (CopySite::KernelRecvCopy, 5),
            ],
        );
        let sides = [a.clone(), b.clone()];
        let (bytes, calls, _, how, hosts) = probed(&sides, CopySite::KernelSendCopy).unwrap();
        assert_eq!(
            (bytes, calls, hosts),
            (120, 2, vec!["a".to_string(), "b".to_string()])
        );
        assert!(how.contains("on a") && how.contains("on b"), "{how}");
        // Only the sender can copy pages later: the receiver's missing probe does not matter.
        let (bytes, _, _, how, hosts) = probed(&sides, CopySite::DeferredCopy).unwrap();
        assert_eq!((bytes, hosts), (7, vec!["a".to_string()]));
        assert_eq!(how, "probe deferred_copy");
        // The sender has no receive probe: the site is not observable, not half counted.
        assert!(probed(&sides, CopySite::KernelRecvCopy).is_none());
        assert_eq!(hosts_of(&sides, CopySite::UserCopy), ["a"]);
        let one = [side("h", Role::Both, &[(CopySite::KernelRecvCopy, 9)])];
        assert_eq!(probed(&one, CopySite::KernelRecvCopy).unwrap().0, 9);
    }
}
