//! Why a zero-copy send was copied after all, from evidence. The kernel says *that* it
//! copied (the completion's SO_EE_CODE_ZEROCOPY_COPIED, or a probe on the copy); the path
//! it sent on says *why* (shared/PLATFORM.md, "MSG_ZEROCOPY here", and net/core/skbuff.c):
//! - no scatter-gather on the device: `tcp_sendmsg_locked` copies at once (zc is off);
//! - a receiver on this kernel (loopback, veth into a local namespace): the pages are
//!   copied on local delivery (`skb_orphan_frags_rx`);
//! - an ETH_P_ALL packet socket on the device: `deliver_skb` copies them for the tap;
//! - a tun device: `tun_net_xmit` copies them.
//!
//! Without a probe on the copy's caller these causes are inferred from the path and say
//! so; a copy the path does not explain is reported as unexplained, never guessed.

use serde::{Deserialize, Serialize};

use crate::kernel::path::{PacketSocket, PathFacts};

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

/// The causes the path's facts give for the copies in `evidence`; empty when nothing was
/// copied.
pub fn explain(path: &PathFacts, evidence: &CopyEvidence) -> Vec<CopyCause> {
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

    fn kinds(causes: &[CopyCause]) -> Vec<&'static str> {
        causes
            .iter()
            .map(|c| match c {
                CopyCause::NoScatterGather { .. } => "no_scatter_gather",
                CopyCause::LocalDelivery { .. } => "local_delivery",
                CopyCause::PacketSocket { .. } => "packet_socket",
                CopyCause::TunDevice { .. } => "tun_device",
                CopyCause::Unexplained { .. } => "unexplained",
            })
            .collect()
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
}
