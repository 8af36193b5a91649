//! The receive side of the ledger under each receive mechanism: with `--recv copy` the
//! kernel copies every byte of the server's stream to the client (skb_copy_datagram_iovec);
//! with `--recv zerocopy` it maps what it can (`recv_mapped`, as getsockopt reported it)
//! and copies only the rest, so the receive copy site must see exactly the bytes the
//! client was told were copied, and mapped + copied must be every byte of the stream.

use serde::{Deserialize, Serialize};

use super::{FigureSource, SiteFigure, Workload};
use crate::{
    kernel::plan::reported_site,
    workload::client::{ClientReport, ReceiveMechanism, ZeroCopyReceiveFigures},
    workload::modes::Mode,
};
use netcopy_common::CopySite;

/// How the finding begins that makes a zero-copy receive degraded (the kernel mapped
/// nothing): the report ranks it by this.
pub const NOTHING_MAPPED: &str = "zero-copy receive did NOT avoid the copy";

/// How the receiver took the bytes, with what the kernel reported to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStats {
    pub mechanism: ReceiveMechanism,
    /// `--recv zerocopy`: the kernel's getsockopt results, summed over the connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerocopy: Option<ZeroCopyReceiveFigures>,
}

impl ReceiverStats {
    /// What a client run's report says about its receive side.
    pub fn of(report: &ClientReport) -> ReceiverStats {
        ReceiverStats {
            mechanism: report.recv,
            zerocopy: report.zerocopy_receive.as_ref().map(|z| z.total),
        }
    }

    /// Bytes of the server's stream the kernel copied to the client, when it mapped some:
    /// None for `--recv copy` (every byte is copied).
    fn copied(&self) -> Option<u64> {
        self.zerocopy.map(|z| z.copied_bytes())
    }
}

/// Bytes the server's stream brings the client: message headers and payloads, and one
/// reply header per request.
fn stream_bytes(w: &Workload) -> u64 {
    w.payload_bytes() + w.message_header_bytes() + w.reply_header_bytes()
}

/// Expected (payload, protocol) at the receive sites. Under `--recv zerocopy` the kernel
/// maps by page, not by field, so the client's share is not split: its column is the
/// stream's bytes the kernel copied (receive copy) or mapped (recv_mapped), and the
/// protocol column holds the requests the server receives, always copied.
pub(super) fn expected(site: CopySite, w: &Workload, receiver: &ReceiverStats) -> (u64, u64) {
    let requests = w.request_bytes();
    match (site, receiver.copied()) {
        (CopySite::KernelRecvCopy, None) => (
            w.payload_bytes(),
            w.message_header_bytes() + w.reply_header_bytes() + requests,
        ),
        (CopySite::KernelRecvCopy, Some(copied)) => (copied, requests),
        (CopySite::RecvMapped, None) => (0, 0),
        (CopySite::RecvMapped, Some(copied)) => (stream_bytes(w).saturating_sub(copied), 0),
        _ => (0, 0),
    }
}

/// What the receiver reports at `recv_mapped`: (bytes, calls, source, how).
pub(super) fn observed_mapped(receiver: &ReceiverStats) -> (u64, u64, FigureSource, String) {
    let label = reported_site(CopySite::RecvMapped).map_or("reported by the receiver", |r| r.label);
    match receiver.zerocopy {
        Some(z) => (
            z.mapped_bytes,
            z.getsockopt_calls,
            FigureSource::Reported,
            format!(
                "{label}; copied instead: {} into the copy buffer, {} read after skip hints",
                z.copybuf_bytes, z.skip_hint_bytes
            ),
        ),
        None => (
            0,
            0,
            FigureSource::Reported,
            "the receiver read with recv() (--recv copy): nothing mapped".to_string(),
        ),
    }
}

/// How the probe's `recv_mapped` figure was obtained (`probe`, the strategy), with what
/// the receiver was told beside it.
pub(super) fn probed_how(probe: &str, receiver: &ReceiverStats) -> String {
    match receiver.zerocopy {
        Some(z) => format!(
            "{probe}; the receiver's getsockopt results: {} bytes mapped in {} calls",
            z.mapped_bytes, z.getsockopt_calls
        ),
        None => format!("{probe}; the receiver read with recv() (--recv copy)"),
    }
}

/// Where the probe observed `recv_mapped` (`figure`), the bytes it saw mapped must be
/// exactly those getsockopt told the receiver it mapped (none, for `--recv copy`): what
/// differs, None when they agree or when the figure is the receiver's own report.
pub(super) fn disagreement(figure: &SiteFigure, receiver: &ReceiverStats) -> Option<String> {
    if figure.source != FigureSource::Observed {
        return None;
    }
    let observed = figure.observed_bytes?;
    let reported = receiver.zerocopy.map_or(0, |z| z.mapped_bytes);
    (observed != reported).then(|| {
        format!(
            "recv_mapped: the probe saw {observed} bytes mapped, getsockopt(TCP_ZEROCOPY_RECEIVE) \
             told the receiver {reported} ({})",
            figure.how
        )
    })
}

/// The receive mechanism's findings, and whether zero-copy receive avoided no copy at all
/// (the kernel mapped nothing: degraded, and it said so call by call).
pub(super) fn findings(mode: Mode, w: &Workload, receiver: &ReceiverStats) -> (bool, Vec<String>) {
    let Some(z) = receiver.zerocopy else {
        return (false, Vec::new());
    };
    let total = stream_bytes(w);
    let share = |bytes: u64| {
        if total == 0 {
            "-".to_string()
        } else {
            format!("{:.3}%", bytes as f64 * 100.0 / total as f64)
        }
    };
    let split = format!(
        "{} bytes of the {total} the server's stream brought ({}) were mapped, {} copied \
         ({} into the copy buffer, {} read after skip hints), in {} getsockopt and {} recv calls",
        z.mapped_bytes,
        share(z.mapped_bytes),
        z.copied_bytes(),
        z.copybuf_bytes,
        z.skip_hint_bytes,
        z.getsockopt_calls,
        z.recv_calls
    );
    if z.mapped_bytes == 0 && total > 0 {
        let cause = mapped_cause(mode, 0.0);
        return (
            true,
            vec![format!("{NOTHING_MAPPED}: {split}. Cause: {cause}")],
        );
    }
    let mut out = vec![format!("zero-copy receive: {split}")];
    if z.copied_bytes() > 0 {
        out.push(
            "zero-copy receive copied what it could not map: the part of each segment beyond \
             its whole pages, each burst's last partial page, and the protocol's small writes \
             (reply headers)"
                .to_string(),
        );
    }
    (false, out)
}

/// Why zero-copy receive mapped what it did behind `mode`'s sender, from the mode's claim
/// and the highest share mapped (the kernel maps only frags that are exactly one 4096-byte
/// page at offset 0, not part of a compound page).
pub fn mapped_cause(mode: Mode, highest: f64) -> &'static str {
    let claim = mode.spec().claim;
    if claim.zerocopy_attach {
        if highest < 0.999 {
            "on local delivery (loopback, veth) the kernel copies MSG_ZEROCOPY pages into \
             fresh single pages, which it can map, but each segment's bytes beyond its whole \
             pages are copied: on loopback's MTU 65536 the MSS is 65483 = 15 pages + 4043 \
             bytes (at MTU 4148, as `verify --topology netns --recv zerocopy` sets, the MSS \
             is one page, and what is still copied is the partial last page of send skbs \
             that the message's separately allocated fields end at arbitrary lengths); the \
             pages were copied once in the kernel all the same, where \
             skb_copy_datagram_iovec does not see it"
        } else {
            "on local delivery the kernel copies MSG_ZEROCOPY pages into fresh single pages \
             and the segments are whole pages: nearly all is mapped (the data was still \
             copied once, in the kernel, where skb_copy_datagram_iovec does not see it)"
        }
    } else if claim.page_reference && highest > 0.0 {
        "the sender's pages are referenced, not copied, and local delivery copies only \
         MSG_ZEROCOPY pages: where the referenced pages are single whole pages (a memfd's \
         page cache) the kernel maps them as they are, so those bytes were copied neither on \
         send nor on receive; the rest (pages that are not whole single pages, such as larger \
         page-cache folios, and the protocol's small writes) is copied"
    } else if claim.page_reference {
        "the referenced pages reach the socket as frags that are not whole single pages at \
         offset 0 (the user buffers' pages at the fields' offsets), which the kernel never \
         maps: everything is copied (recv_skip_hint)"
    } else {
        "this sender's data reaches the socket copied into compound pages of up to 32 KiB, \
         which the kernel never maps: everything is copied (recv_skip_hint)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Workload = Workload {
        messages: 10,
        message_size: 4095,
        requests: 1,
    };

    fn zerocopy(mapped: u64, copybuf: u64, skip: u64) -> ReceiverStats {
        ReceiverStats {
            mechanism: ReceiveMechanism::ZeroCopy,
            zerocopy: Some(ZeroCopyReceiveFigures {
                mapped_bytes: mapped,
                copybuf_bytes: copybuf,
                skip_hint_bytes: skip,
                getsockopt_calls: 3,
                recv_calls: 1,
            }),
        }
    }

    #[test]
    fn a_copying_receiver_expects_every_byte_copied_and_none_mapped() {
        let copy = ReceiverStats::default();
        assert_eq!(
            expected(CopySite::KernelRecvCopy, &W, &copy),
            (40950, 160 + 16 + 24)
        );
        assert_eq!(expected(CopySite::RecvMapped, &W, &copy), (0, 0));
        assert_eq!(observed_mapped(&copy).0, 0);
        assert_eq!(findings(Mode::OneCopy, &W, &copy), (false, vec![]));
    }

    #[test]
    fn a_zerocopy_receiver_expects_its_copies_at_the_copy_site_and_the_rest_mapped() {
        // 41126 stream bytes (payload, 10 message headers of 16, a reply header of 16):
        // 12288 mapped, 28838 copied; the server's 24 request bytes are copied too.
        let rx = zerocopy(12288, 838, 28000);
        assert_eq!(expected(CopySite::KernelRecvCopy, &W, &rx), (28838, 24));
        assert_eq!(expected(CopySite::RecvMapped, &W, &rx), (12288, 0));
        let (bytes, calls, source, how) = observed_mapped(&rx);
        assert_eq!((bytes, calls, source), (12288, 3, FigureSource::Reported));
        assert!(how.contains("838 into the copy buffer"), "{how}");
        let (degraded, notes) = findings(Mode::ZeroCopy, &W, &rx);
        assert!(!degraded);
        assert!(notes[0].contains("12288 bytes of the 41126"), "{notes:?}");
    }

    #[test]
    fn a_zerocopy_receiver_that_mapped_nothing_is_degraded_with_the_cause() {
        let rx = zerocopy(0, 4095, 41126 - 4095);
        let (degraded, notes) = findings(Mode::OneCopy, &W, &rx);
        assert!(degraded);
        assert!(notes[0].contains("did NOT avoid the copy"), "{notes:?}");
        assert!(notes[0].contains("compound pages"), "{notes:?}");
    }
}
