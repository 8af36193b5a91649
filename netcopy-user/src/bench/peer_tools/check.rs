//! Whether a peer counted what netcopy counted: an overhead is only compared between tools
//! that saw the same thing and lost nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PeerCounts;
use super::PeerTool;

/// Bytes per payload byte two counters may differ by and still agree: a window's ends are
/// read a few microseconds apart by the two, and the socket buffers hold dozens of
/// messages that need not be the same at both ends of a 200 ms window.
const BYTES_TOLERANCE: f64 = 0.03;
/// Relative difference of calls per message two tracers may show and still agree: the
/// receiver's calls per message depend a little on how often it finds a partial message.
const CALLS_TOLERANCE: f64 = 0.05;

/// The outcome of the check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerCheck {
    /// The counts agreed and the peer lost nothing: its overhead can be compared.
    pub comparable: bool,
    /// The counts of both, and the verdict, in one sentence.
    pub text: String,
}

fn common_faults(label: &str, peer: &PeerCounts) -> Option<String> {
    if peer.windows == 0 {
        return Some(format!("{label} counted no complete window"));
    }
    (peer.lost > 0).then(|| format!("{label} lost {} events", peer.lost))
}

/// bpftrace's bytes against copy counting's (`netcopy`: bytes copied on receive and on
/// send per payload byte, as copy counting saw them in its windows).
pub(crate) fn check_bytes(
    tool: PeerTool,
    peer: &PeerCounts,
    netcopy: Option<(f64, f64)>,
) -> PeerCheck {
    let label = tool.label();
    if let Some(fault) = common_faults(label, peer) {
        return not_comparable(fault);
    }
    let payload = peer.payload_bytes.max(1) as f64;
    let (recv, send) = (
        peer.recv_bytes as f64 / payload,
        peer.send_bytes as f64 / payload,
    );
    let seen = format!(
        "{label} counted {recv:.3} bytes copied on receive and {send:.3} on send per payload \
         byte in its {} windows",
        peer.windows
    );
    let Some((n_recv, n_send)) = netcopy else {
        return not_comparable(format!(
            "{seen}; copy counting has no figures to check them against"
        ));
    };
    let agree =
        (recv - n_recv).abs() <= BYTES_TOLERANCE && (send - n_send).abs() <= BYTES_TOLERANCE;
    PeerCheck {
        comparable: agree,
        text: format!(
            "{seen}, copy counting {n_recv:.3} and {n_send:.3}: {}",
            if agree {
                format!("they agree (within {BYTES_TOLERANCE})")
            } else {
                format!(
                    "they DISAGREE (by more than {BYTES_TOLERANCE}), so {label} is not compared"
                )
            }
        ),
    }
}

/// A tracer's calls per message against netcopy's trace (`netcopy`: its calls by name and
/// the payload bytes moved while it was attached); `size`: bytes per message.
pub(crate) fn check_calls(
    tool: PeerTool,
    peer: &PeerCounts,
    netcopy: Option<(&BTreeMap<String, u64>, u64)>,
    size: u64,
) -> PeerCheck {
    let label = tool.label();
    if let Some(fault) = common_faults(label, peer) {
        return not_comparable(fault);
    }
    let (peer_total, peer_text) = per_message(&peer.calls, peer.payload_bytes, size);
    let seen = format!(
        "{label} recorded {peer_total:.2} calls per message ({peer_text}) in its {} windows",
        peer.windows
    );
    let Some((calls, payload)) = netcopy.filter(|(_, payload)| *payload > 0) else {
        return not_comparable(format!(
            "{seen}; syscall tracing has no figures to check them against"
        ));
    };
    let (total, text) = per_message(calls, payload, size);
    let agree = total > 0.0 && ((peer_total - total) / total).abs() <= CALLS_TOLERANCE;
    PeerCheck {
        comparable: agree,
        text: format!(
            "{seen}, syscall tracing {total:.2} ({text}): {}",
            if agree {
                format!("they agree (within {:.0}%)", CALLS_TOLERANCE * 100.0)
            } else {
                format!(
                    "they DISAGREE (by more than {:.0}%), so {label} is not compared",
                    CALLS_TOLERANCE * 100.0
                )
            }
        ),
    }
}

/// Calls per message in all, and by name (`recvfrom 2.00, sendmsg 1.00`).
fn per_message(calls: &BTreeMap<String, u64>, payload: u64, size: u64) -> (f64, String) {
    let messages = payload as f64 / size.max(1) as f64;
    if messages <= 0.0 {
        return (0.0, "no message".into());
    }
    let total = calls.values().sum::<u64>() as f64 / messages;
    let text = calls
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / messages))
        .collect::<Vec<_>>()
        .join(", ");
    (total, if text.is_empty() { "none".into() } else { text })
}

fn not_comparable(text: String) -> PeerCheck {
    PeerCheck {
        comparable: false,
        text: format!("{text}: not compared"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(recv: u64, send: u64, payload: u64) -> PeerCounts {
        PeerCounts {
            windows: 3,
            payload_bytes: payload,
            recv_bytes: recv,
            send_bytes: send,
            ..PeerCounts::default()
        }
    }

    #[test]
    fn bytes_agree_within_the_tolerance_only() {
        let ok = check_bytes(
            PeerTool::Bpftrace,
            &counts(1010, 995, 1000),
            Some((1.0, 1.0)),
        );
        assert!(ok.comparable, "{}", ok.text);
        assert!(
            ok.text.contains("1.010 bytes copied on receive and 0.995"),
            "{}",
            ok.text
        );
        let off = check_bytes(
            PeerTool::Bpftrace,
            &counts(500, 1000, 1000),
            Some((1.0, 1.0)),
        );
        assert!(!off.comparable);
        assert!(off.text.contains("DISAGREE"), "{}", off.text);
        let lost = PeerCounts {
            lost: 4,
            ..counts(1000, 1000, 1000)
        };
        let lost = check_bytes(PeerTool::Bpftrace, &lost, Some((1.0, 1.0)));
        assert!(!lost.comparable);
        assert!(lost.text.contains("lost 4 events"), "{}", lost.text);
        assert!(!check_bytes(PeerTool::Bpftrace, &counts(1, 1, 1), None).comparable);
    }

    #[test]
    fn calls_per_message_agree_within_five_percent() {
        let netcopy = BTreeMap::from([("recvfrom".to_string(), 200), ("sendmsg".to_string(), 100)]);
        let peer = PeerCounts {
            windows: 2,
            payload_bytes: 50 * 1024,
            calls: BTreeMap::from([("recvfrom".to_string(), 102), ("sendmsg".to_string(), 50)]),
            ..PeerCounts::default()
        };
        let c = check_calls(PeerTool::Strace, &peer, Some((&netcopy, 100 * 1024)), 1024);
        assert!(c.comparable, "{}", c.text);
        assert!(
            c.text
                .contains("3.04 calls per message (recvfrom 2.04, sendmsg 1.00)"),
            "{}",
            c.text
        );
        let fewer = PeerCounts {
            calls: BTreeMap::from([("sendmsg".to_string(), 50)]),
            ..peer
        };
        let c = check_calls(PeerTool::Strace, &fewer, Some((&netcopy, 100 * 1024)), 1024);
        assert!(!c.comparable && c.text.contains("DISAGREE"), "{}", c.text);
        let none = check_calls(PeerTool::PerfTrace, &PeerCounts::default(), None, 1024);
        assert!(
            none.text.contains("counted no complete window"),
            "{}",
            none.text
        );
    }
}
