//! Why a zero-copy send was copied after all, from evidence. The kernel says *that* it
//! copied (the completion's SO_EE_CODE_ZEROCOPY_COPIED, or a probe on the copy); the path
//! it sent on says *why* (shared/PLATFORM.md, "MSG_ZEROCOPY here", and net/core/skbuff.c):
//! - no scatter-gather on the device: `tcp_sendmsg_locked` copies at once (zc is off);
//! - a receiver on this kernel (loopback, veth into a local namespace): the pages are
//!   copied on local delivery (`skb_orphan_frags_rx`);
//! - an ETH_P_ALL packet socket on the device: `deliver_skb` copies them for the tap;
//! - a tun device: `tun_net_xmit` copies them.
//!
//! Where fentry or kprobe reaches `skb_copy_ubufs` (a distribution kernel, the 6.1 guest
//! of `cargo xtask vm-test`), the copy-caller probe shows which kernel path asked for each
//! deferred copy, and the cause is *observed*: its caller chains, with the copies and
//! bytes of each, are classified by the functions in them ([`classify`]). Where it does
//! not (this project's 6.18 machines), the causes are *inferred* from the path and say
//! so. A copy neither explains is reported as unexplained (with its top frames when they
//! were seen), never guessed.

use serde::{Deserialize, Serialize};

use crate::kernel::{
    callers::{CallerChain, CopyCallers},
    path::{PacketSocket, PathFacts},
};

/// One reason the kernel copied zero-copy pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CopyCause {
    /// Copied at send: the device cannot take pages by reference.
    NoScatterGather { device: String, how: String },
    /// Copied on delivery to a receiver on the same kernel.
    LocalDelivery { device: String, how: String },
    /// Copied for packet sockets that tap the device's outgoing frames.
    PacketSocket {
        device: String,
        sockets: Vec<PacketSocket>,
        how: String,
    },
    /// Copied by the tun driver on transmit.
    TunDevice { device: String, how: String },
    /// The kernel copied, and nothing on the path explains it.
    Unexplained { how: String },
}

impl CopyCause {
    /// One sentence for verify's table and the report.
    pub fn text(&self) -> String {
        match self {
            CopyCause::NoScatterGather { device, how } => {
                format!("{device} has no scatter-gather, so the kernel copied at send ({how})")
            }
            CopyCause::LocalDelivery { device, how } => {
                format!(
                    "the receiver is on this kernel ({device}): copied on local delivery ({how})"
                )
            }
            CopyCause::PacketSocket {
                device,
                sockets,
                how,
            } => {
                let owners: Vec<String> = sockets
                    .iter()
                    .map(|s| {
                        if s.owners.is_empty() {
                            format!("socket inode {} (owner not found)", s.inode)
                        } else {
                            format!("inode {} held by {}", s.inode, s.owners.join(", "))
                        }
                    })
                    .collect();
                format!(
                    "{} packet socket(s) tap {device}'s outgoing frames ({}): copied for the tap ({how})",
                    sockets.len(),
                    owners.join("; ")
                )
            }
            CopyCause::TunDevice { device, how } => {
                format!("{device} is a tun device: copied on transmit ({how})")
            }
            CopyCause::Unexplained { how } => format!("unexplained: {how}"),
        }
    }

    /// Its `kind` in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            CopyCause::NoScatterGather { .. } => "no_scatter_gather",
            CopyCause::LocalDelivery { .. } => "local_delivery",
            CopyCause::PacketSocket { .. } => "packet_socket",
            CopyCause::TunDevice { .. } => "tun_device",
            CopyCause::Unexplained { .. } => "unexplained",
        }
    }
}

/// How a cause is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseSource {
    /// Seen at the copy: the kernel stacks that reached `skb_copy_ubufs` name the caller.
    Observed,
    /// From the path's facts: this kernel cannot show the copy's caller (or the copy
    /// happened where there is no caller to see, at send).
    #[default]
    Inferred,
}

impl CauseSource {
    pub fn name(self) -> &'static str {
        match self {
            CauseSource::Observed => "observed",
            CauseSource::Inferred => "inferred",
        }
    }
}

/// One cause with its evidence: how it is known and, when observed, the caller chains
/// of the copies it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub cause: CopyCause,
    #[serde(default)]
    pub source: CauseSource,
    /// The caller chains behind an observed cause, most bytes first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerChain>,
}

impl Explanation {
    fn inferred(cause: CopyCause) -> Explanation {
        Explanation {
            cause,
            source: CauseSource::Inferred,
            callers: Vec::new(),
        }
    }

    /// One sentence for verify's findings and the report.
    pub fn text(&self) -> String {
        self.cause.text()
    }

    /// `packet_socket (observed)`: for the verdict's line.
    pub fn label(&self) -> String {
        format!("{} ({})", self.cause.kind(), self.source.name())
    }
}

/// `: cause packet_socket (observed)`, for a verdict's line; empty without causes.
pub fn beside_verdict(causes: &[Explanation]) -> String {
    if causes.is_empty() {
        return String::new();
    }
    let labels: Vec<String> = causes.iter().map(Explanation::label).collect();
    format!(
        ": cause{} {}",
        if causes.len() > 1 { "s" } else { "" },
        labels.join(", ")
    )
}

/// What the kernel reported or was seen doing with one run's zero-copy sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyEvidence {
    /// Sends completed with the copied flag (from the error queue).
    pub copied_sends: u64,
    /// Bytes the send path pinned and attached (None: not observable here).
    pub attached_bytes: Option<u64>,
    /// Payload bytes of zero-copy sends that the send path copied instead.
    pub copied_at_send_bytes: Option<u64>,
    /// Bytes copied after the send (a probe on skb_copy_ubufs, or the flagged sends).
    pub deferred_bytes: Option<u64>,
}

impl CopyEvidence {
    /// Whether the kernel copied any zero-copy page, by any evidence.
    pub fn copied(&self) -> bool {
        self.copied_sends > 0
            || self.deferred_bytes.is_some_and(|b| b > 0)
            || self.copied_at_send_bytes.is_some_and(|b| b > 0)
    }
}

const INFERRED: &str = "inferred from the path: no probe on the copy's caller here";

/// Why the kernel copied the zero-copy pages in `evidence`: from the caller chains of the
/// deferred copies where `callers` were observed (None: this kernel cannot show them),
/// from the path for what they do not cover; empty when nothing was copied.
pub fn explain(
    path: &PathFacts,
    evidence: &CopyEvidence,
    callers: Option<&CopyCallers>,
) -> Vec<Explanation> {
    if !evidence.copied() {
        return Vec::new();
    }
    let inferred = explain_from_path(path, evidence);
    let Some(observed) = callers else {
        return inferred.into_iter().map(Explanation::inferred).collect();
    };
    let mut out = from_callers(path, observed);
    if out.is_empty() {
        // The kernel copied, and no deferred copy reached skb_copy_ubufs: the copy was
        // made at send (no scatter-gather), where there is no caller to observe.
        return inferred
            .into_iter()
            .map(|cause| {
                Explanation::inferred(with_how(
                    cause,
                    "the copy-caller probe saw no deferred copy (skb_copy_ubufs), so the \
                     copy happened at send, where there is no caller to observe",
                ))
            })
            .collect();
    }
    // A device without scatter-gather copies at send, before any caller could be seen:
    // that part stays inferred beside the observed deferred copies.
    for cause in inferred {
        if matches!(cause, CopyCause::NoScatterGather { .. })
            && !out.iter().any(|e| e.cause.kind() == cause.kind())
        {
            out.insert(0, Explanation::inferred(cause));
        }
    }
    out
}

/// `cause` with `note` added to its `how`.
fn with_how(cause: CopyCause, note: &str) -> CopyCause {
    let add = |how: String| format!("{how}; {note}");
    match cause {
        CopyCause::NoScatterGather { device, how } => CopyCause::NoScatterGather {
            device,
            how: add(how),
        },
        CopyCause::LocalDelivery { device, how } => CopyCause::LocalDelivery {
            device,
            how: add(how),
        },
        CopyCause::PacketSocket {
            device,
            sockets,
            how,
        } => CopyCause::PacketSocket {
            device,
            sockets,
            how: add(how),
        },
        CopyCause::TunDevice { device, how } => CopyCause::TunDevice {
            device,
            how: add(how),
        },
        CopyCause::Unexplained { how } => CopyCause::Unexplained { how: add(how) },
    }
}

/// What asked for a deferred copy, read from the functions of its caller chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerClass {
    NoScatterGather,
    LocalDelivery,
    PacketSocket,
    TunDevice,
    Unexplained,
}

/// The functions that decide a chain's class (checked against Debian's 6.1 kallsyms;
/// `deliver_skb`, `skb_orphan_frags_rx` and `skb_linearize` are inline there, so their
/// callers are what a stack shows). The innermost caller that is in one of these lists
/// decides: a packet tap's copy happens in `dev_queue_xmit_nit` (through `deliver_skb`)
/// before the skb ever reaches a local receiver.
const PACKET_SOCKET: &[&str] = &[
    "dev_queue_xmit_nit",
    "deliver_skb",
    "packet_rcv",
    "tpacket_rcv",
    "packet_rcv_spkt",
    "packet_rcv_fanout",
];
const LOCAL_DELIVERY: &[&str] = &[
    "__netif_receive_skb_core",
    "__netif_receive_skb_one_core",
    "__netif_receive_skb_list_core",
    "ip_local_deliver_finish",
    "ip6_input_finish",
    "tcp_v4_rcv",
    "tcp_v6_rcv",
    "loopback_xmit",
    "veth_xmit",
    "veth_forward_skb",
    "__dev_forward_skb",
    "__dev_forward_skb2",
    "dev_forward_skb",
    "process_backlog",
];
const NO_SCATTER_GATHER: &[&str] = &[
    "validate_xmit_skb",
    "validate_xmit_skb_list",
    "skb_linearize",
];
const TUN_DEVICE: &[&str] = &["tun_net_xmit"];

/// The class of one caller chain.
pub fn classify(chain: &CallerChain) -> CallerClass {
    for function in chain.functions() {
        for (list, class) in [
            (PACKET_SOCKET, CallerClass::PacketSocket),
            (TUN_DEVICE, CallerClass::TunDevice),
            (NO_SCATTER_GATHER, CallerClass::NoScatterGather),
            (LOCAL_DELIVERY, CallerClass::LocalDelivery),
        ] {
            if list.contains(&function) {
                return class;
            }
        }
    }
    CallerClass::Unexplained
}

/// The observed causes of `observed`'s deferred copies, one per class seen, in a fixed
/// order; the path gives the device and the packet sockets' owners.
fn from_callers(path: &PathFacts, observed: &CopyCallers) -> Vec<Explanation> {
    let device = path
        .device
        .as_ref()
        .map_or_else(|| "the device".to_string(), |d| d.name.clone());
    let mut out = Vec::new();
    for class in [
        CallerClass::NoScatterGather,
        CallerClass::LocalDelivery,
        CallerClass::PacketSocket,
        CallerClass::TunDevice,
        CallerClass::Unexplained,
    ] {
        let chains: Vec<CallerChain> = observed
            .chains
            .iter()
            .filter(|c| classify(c) == class)
            .cloned()
            .collect();
        if chains.is_empty() {
            continue;
        }
        let copies: u64 = chains.iter().map(|c| c.copies).sum();
        let bytes: u64 = chains.iter().map(|c| c.bytes).sum();
        let how = format!(
            "observed: {copies} deferred copies ({bytes} bytes) at skb_copy_ubufs, called \
             from {}{}{}",
            chains[0].short(4),
            if chains.len() > 1 {
                format!(" and {} other chain(s)", chains.len() - 1)
            } else {
                String::new()
            },
            if observed.symbols_hidden {
                " (/proc/kallsyms gave no kernel addresses here, so frames are addresses)"
            } else {
                ""
            }
        );
        let cause = match class {
            CallerClass::NoScatterGather => CopyCause::NoScatterGather {
                device: device.clone(),
                how,
            },
            CallerClass::LocalDelivery => CopyCause::LocalDelivery {
                device: device.clone(),
                how,
            },
            CallerClass::PacketSocket => CopyCause::PacketSocket {
                device: device.clone(),
                sockets: path.taps.clone(),
                how,
            },
            CallerClass::TunDevice => CopyCause::TunDevice {
                device: device.clone(),
                how,
            },
            CallerClass::Unexplained => CopyCause::Unexplained {
                how: format!("no known path asked for the copy; {how}"),
            },
        };
        out.push(Explanation {
            cause,
            source: CauseSource::Observed,
            callers: chains,
        });
    }
    if observed.unrecorded_copies > 0 {
        out.push(Explanation {
            cause: CopyCause::Unexplained {
                how: format!(
                    "observed: {} deferred copies ({} bytes) at skb_copy_ubufs whose kernel \
                     stack could not be kept",
                    observed.unrecorded_copies, observed.unrecorded_bytes
                ),
            },
            source: CauseSource::Observed,
            callers: Vec::new(),
        });
    }
    out
}

/// The causes the path's facts give for the copies in `evidence`; empty when nothing was
/// copied.
fn explain_from_path(path: &PathFacts, evidence: &CopyEvidence) -> Vec<CopyCause> {
    if !evidence.copied() {
        return Vec::new();
    }
    let Some(dev) = &path.device else {
        return vec![CopyCause::Unexplained {
            how: format!(
                "the kernel copied, and no device on this host holds the local address {}",
                path.local
            ),
        }];
    };
    let device = dev.name.clone();
    let how = INFERRED.to_string();
    let mut causes = Vec::new();
    let at_send =
        evidence.attached_bytes == Some(0) && evidence.copied_at_send_bytes.is_some_and(|b| b > 0);
    if dev.scatter_gather == Some(false) {
        causes.push(CopyCause::NoScatterGather {
            device: device.clone(),
            how: if at_send {
                "the send path attached no page and copied the payload; the device reports sg off"
                    .into()
            } else {
                "the device reports sg off".into()
            },
        });
    }
    if dev.loopback || path.peer_is_local {
        causes.push(CopyCause::LocalDelivery {
            device: device.clone(),
            how: format!("{} is an address of this host; {how}", path.peer),
        });
    } else if dev.driver.as_deref() == Some("veth") {
        causes.push(CopyCause::LocalDelivery {
            device: device.clone(),
            how: format!("a veth's peer is a namespace on this kernel; {how}"),
        });
    }
    if !path.taps.is_empty() {
        causes.push(CopyCause::PacketSocket {
            device: device.clone(),
            sockets: path.taps.clone(),
            how: how.clone(),
        });
    }
    if dev.driver.as_deref() == Some("tun") {
        causes.push(CopyCause::TunDevice {
            device: device.clone(),
            how: how.clone(),
        });
    }
    if causes.is_empty() {
        causes.push(CopyCause::Unexplained {
            how: format!(
                "{device} (driver {}) has scatter-gather, the receiver is not local and no \
                 packet socket taps it; left: software TX timestamps without OPT_TSONLY, or a \
                 qdisc or driver that clones frames",
                dev.driver.as_deref().unwrap_or("unknown")
            ),
        });
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::path::Device;

    fn path(driver: Option<&str>, sg: Option<bool>, loopback: bool, local: bool) -> PathFacts {
        PathFacts {
            local: "169.254.1.1".parse().unwrap(),
            peer: "169.254.1.2".parse().unwrap(),
            device: Some(Device {
                name: "eth0".into(),
                ifindex: 2,
                driver: driver.map(str::to_string),
                scatter_gather: sg,
                loopback,
            }),
            peer_is_local: local,
            taps: Vec::new(),
        }
    }

    fn copied() -> CopyEvidence {
        CopyEvidence {
            copied_sends: 10,
            attached_bytes: Some(655_360),
            copied_at_send_bytes: Some(0),
            deferred_bytes: Some(655_360),
        }
    }

    fn kinds(causes: &[Explanation]) -> Vec<&'static str> {
        causes.iter().map(|c| c.cause.kind()).collect()
    }

    fn explain(path: &PathFacts, evidence: &CopyEvidence) -> Vec<Explanation> {
        let causes = super::explain(path, evidence, None);
        assert!(causes
            .iter()
            .all(|c| c.source == CauseSource::Inferred && c.callers.is_empty()));
        causes
    }

    #[test]
    fn nothing_copied_needs_no_cause() {
        let p = path(Some("virtio_net"), Some(true), false, false);
        assert!(explain(&p, &CopyEvidence::default()).is_empty());
    }

    #[test]
    fn each_path_gives_its_cause() {
        let lo = path(None, Some(true), true, true);
        assert_eq!(kinds(&explain(&lo, &copied())), ["local_delivery"]);
        let veth = path(Some("veth"), Some(true), false, false);
        assert_eq!(kinds(&explain(&veth, &copied())), ["local_delivery"]);
        let mut tapped = path(Some("virtio_net"), Some(true), false, false);
        tapped.taps.push(PacketSocket {
            ifindex: 2,
            protocol: 3,
            inode: 99,
            owners: vec!["7 (tcpdump)".into()],
        });
        let causes = explain(&tapped, &copied());
        assert_eq!(kinds(&causes), ["packet_socket"]);
        assert!(
            causes[0].text().contains("7 (tcpdump)"),
            "{}",
            causes[0].text()
        );
        let no_sg = path(Some("virtio_net"), Some(false), false, false);
        let at_send = CopyEvidence {
            copied_sends: 5,
            attached_bytes: Some(0),
            copied_at_send_bytes: Some(1000),
            deferred_bytes: Some(0),
        };
        assert_eq!(kinds(&explain(&no_sg, &at_send)), ["no_scatter_gather"]);
        let tun = path(Some("tun"), Some(true), false, false);
        assert_eq!(kinds(&explain(&tun, &copied())), ["tun_device"]);
        let plain = path(Some("virtio_net"), Some(true), false, false);
        let causes = explain(&plain, &copied());
        assert_eq!(kinds(&causes), ["unexplained"]);
        assert!(causes[0].text().contains("timestamps"));
        let type_json = serde_json::to_value(&causes[0]).unwrap();
        assert_eq!(type_json["kind"], "unexplained");
    }

    fn chain(callers: &[&str], copies: u64, bytes: u64) -> CallerChain {
        CallerChain {
            callers: callers.iter().map(|s| s.to_string()).collect(),
            copies,
            bytes,
        }
    }

    /// Chains as the 6.1 guest's stacks give them (callers of skb_copy_ubufs).
    fn packet_tap_chain() -> CallerChain {
        chain(
            &[
                "dev_queue_xmit_nit+0x2a5",
                "dev_hard_start_xmit+0x8f",
                "sch_direct_xmit+0x9c",
                "__dev_queue_xmit+0x5a8",
                "ip_finish_output2+0x29d",
            ],
            109,
            7_143_424,
        )
    }

    fn loopback_chain() -> CallerChain {
        chain(
            &[
                "__netif_receive_skb_core.constprop.0+0x6f",
                "__netif_receive_skb_one_core+0x3c",
                "process_backlog+0x81",
                "__napi_poll+0x28",
            ],
            10,
            655_360,
        )
    }

    #[test]
    fn each_caller_chain_has_its_class() {
        assert_eq!(classify(&packet_tap_chain()), CallerClass::PacketSocket);
        assert_eq!(classify(&loopback_chain()), CallerClass::LocalDelivery);
        let veth = chain(&["veth_xmit+0x1a [veth]", "dev_hard_start_xmit+0x8f"], 1, 1);
        assert_eq!(classify(&veth), CallerClass::LocalDelivery);
        let tcp = chain(&["tcp_v4_rcv+0xd3c", "ip_protocol_deliver_rcu+0x32"], 1, 1);
        assert_eq!(classify(&tcp), CallerClass::LocalDelivery);
        let tun = chain(
            &["tun_net_xmit+0x1f0 [tun]", "dev_hard_start_xmit+0x8f"],
            1,
            1,
        );
        assert_eq!(classify(&tun), CallerClass::TunDevice);
        // A generic helper first: the path further out decides.
        let no_sg = chain(
            &[
                "pskb_expand_head+0x9a",
                "__pskb_pull_tail+0x5b",
                "validate_xmit_skb+0x2c4",
                "validate_xmit_skb_list+0x48",
            ],
            1,
            1,
        );
        assert_eq!(classify(&no_sg), CallerClass::NoScatterGather);
        let stamp = chain(&["__skb_tstamp_tx+0x12e", "tcp_write_xmit+0x30"], 1, 1);
        assert_eq!(classify(&stamp), CallerClass::Unexplained);
        assert_eq!(classify(&chain(&[], 1, 1)), CallerClass::Unexplained);
    }

    #[test]
    fn observed_callers_decide_the_cause_and_carry_their_chains() {
        let mut tapped = path(Some("virtio_net"), Some(true), false, false);
        tapped.taps.push(PacketSocket {
            ifindex: 2,
            protocol: 3,
            inode: 99,
            owners: vec!["41 (netcopy)".into()],
        });
        let observed = CopyCallers {
            chains: vec![packet_tap_chain()],
            ..CopyCallers::default()
        };
        let causes = super::explain(&tapped, &copied(), Some(&observed));
        assert_eq!(kinds(&causes), ["packet_socket"]);
        assert_eq!(causes[0].source, CauseSource::Observed);
        assert_eq!(causes[0].callers, [packet_tap_chain()]);
        let text = causes[0].text();
        assert!(text.contains("41 (netcopy)"), "{text}");
        assert!(
            text.contains(
                "observed: 109 deferred copies (7143424 bytes) at skb_copy_ubufs, \
                 called from dev_queue_xmit_nit+0x2a5 <- dev_hard_start_xmit+0x8f <- \
                 sch_direct_xmit+0x9c <- __dev_queue_xmit+0x5a8 <- ..."
            ),
            "{text}"
        );
        assert_eq!(causes[0].label(), "packet_socket (observed)");
        let json = serde_json::to_value(&causes[0]).unwrap();
        assert_eq!(json["kind"], "packet_socket");
        assert_eq!(json["source"], "observed");
        assert_eq!(json["callers"][0]["copies"], 109);
        assert_eq!(json["callers"][0]["callers"][0], "dev_queue_xmit_nit+0x2a5");
        let back: Explanation = serde_json::from_value(json).unwrap();
        assert_eq!(back, causes[0]);

        // Loopback: observed local delivery, where the path would say the same.
        let lo = path(None, Some(true), true, true);
        let observed = CopyCallers {
            chains: vec![loopback_chain()],
            unrecorded_copies: 2,
            unrecorded_bytes: 128,
            symbols_hidden: false,
        };
        let causes = super::explain(&lo, &copied(), Some(&observed));
        assert_eq!(kinds(&causes), ["local_delivery", "unexplained"]);
        assert!(causes.iter().all(|c| c.source == CauseSource::Observed));
        assert!(causes[1].text().contains("2 deferred copies (128 bytes)"));
        assert!(super::explain(&lo, &CopyEvidence::default(), Some(&observed)).is_empty());
    }

    #[test]
    fn a_copy_at_send_stays_inferred_where_callers_can_be_observed() {
        let no_sg = path(Some("virtio_net"), Some(false), false, false);
        let at_send = CopyEvidence {
            copied_sends: 5,
            attached_bytes: Some(0),
            copied_at_send_bytes: Some(1000),
            deferred_bytes: Some(0),
        };
        let causes = super::explain(&no_sg, &at_send, Some(&CopyCallers::default()));
        assert_eq!(kinds(&causes), ["no_scatter_gather"]);
        assert_eq!(causes[0].source, CauseSource::Inferred);
        assert!(
            causes[0].text().contains("no caller to observe"),
            "{}",
            causes[0].text()
        );
        // Beside observed deferred copies, the copy at send is still named.
        let mut both = at_send;
        both.deferred_bytes = Some(655_360);
        let observed = CopyCallers {
            chains: vec![loopback_chain()],
            ..CopyCallers::default()
        };
        let lo_no_sg = path(None, Some(false), true, true);
        let causes = super::explain(&lo_no_sg, &both, Some(&observed));
        assert_eq!(kinds(&causes), ["no_scatter_gather", "local_delivery"]);
        assert_eq!(
            causes.iter().map(|c| c.source).collect::<Vec<_>>(),
            [CauseSource::Inferred, CauseSource::Observed]
        );
    }

    #[test]
    fn an_explanation_without_a_source_reads_as_inferred() {
        let old = serde_json::json!({"kind": "local_delivery", "device": "lo", "how": "x"});
        let e: Explanation = serde_json::from_value(old).unwrap();
        assert_eq!(e.source, CauseSource::Inferred);
        assert!(e.callers.is_empty());
    }
}
