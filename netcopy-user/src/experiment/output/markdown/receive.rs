//! The receive mechanisms section: per mode and size, what the kernel copied on receive,
//! what it mapped instead, and what receiving cost, for recv() and for
//! getsockopt(TCP_ZEROCOPY_RECEIVE), with whether the cost difference is decided.

use std::{cmp::Ordering, fmt::Write as _};

use super::text::stat_text;
use crate::{
    experiment::analysis::{
        receive::{mapped_by_mode, mapped_cause, ReceiveGroup},
        Analysis,
    },
    experiment::output::plots,
    experiment::results::Results,
    util::units::format_size,
};

fn row(o: &mut String, g: &ReceiveGroup, verdict: &str) {
    let share = match g.mapped_fraction {
        Some(f) => stat_text(Some(crate::experiment::analysis::groups::Stat {
            median: f.median * 100.0,
            min: f.min * 100.0,
            max: f.max * 100.0,
            mean: f.mean * 100.0,
            interval: f.interval.map(|i| crate::util::stats::MedianInterval {
                low: i.low * 100.0,
                high: i.high * 100.0,
                ..i
            }),
            ..f
        })),
        None => "-".to_string(),
    };
    let _ = writeln!(
        o,
        "| {} | {} ({}) | {} (n={}) | {} | {} | {} | {} | {} | {} | {verdict} |",
        g.mode,
        g.size,
        format_size(g.size),
        g.recv,
        g.repeats,
        stat_text(g.recv_copy_per_byte),
        stat_text(g.mapped_per_byte),
        share,
        stat_text(g.client_ns_per_byte),
        stat_text(g.total_ns_per_byte),
        stat_text(g.throughput_gbps),
    );
}

pub(super) fn receive_section(o: &mut String, r: &Results, a: &Analysis) {
    let _ = writeln!(
        o,
        "## Receive mechanisms: what the kernel copied and what it cost (`{}`)\n",
        plots::RECEIVE_COST_VS_SIZE
    );
    let swept: Vec<String> = r.config.recv.iter().map(|m| m.to_string()).collect();
    if a.receive.is_empty() {
        let _ = writeln!(
            o,
            "Not measured: this run received with {} only (`netcopy run --recv copy,zerocopy` \
             sets the two side by side).\n",
            swept.join(", ")
        );
        return;
    }
    let _ = writeln!(
        o,
        "![Receive cost vs message size]({})\n",
        plots::RECEIVE_COST_VS_SIZE
    );
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "{threads} thread(s). `copy`: the client reads with recv(). `zerocopy`: \
         getsockopt(TCP_ZEROCOPY_RECEIVE) on a read-only mapping of the socket; the kernel maps \
         the pages it can and copies the rest. *Copied on receive*: bytes tracepoint \
         skb_copy_datagram_iovec saw (observed, both ends, so the server's requests too) per \
         payload byte delivered. *Mapped*: bytes the kernel reported mapped (getsockopt's \
         `length`, reported) per payload byte; *mapped share*: of every byte handed to the \
         client. *Cost*: CPU time of the stream phase per payload byte, the client's alone and \
         server + client (task-clock). Median [interval] over the repeats; the last column says \
         whether zerocopy's client cost is lower or higher than copy's, decided when the \
         intervals do not overlap. The modes' other sections use the copy cells only.\n"
    );
    let _ = writeln!(
        o,
        "| mode | size (bytes) | receive | copied on receive (B/B) | mapped (B/B) | mapped share \
         (%) | client CPU (ns/B) | server + client CPU (ns/B) | throughput (Gbit/s) | \
         zerocopy's client cost |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for c in a.receive.iter().filter(|c| c.copy.threads == threads) {
        row(o, &c.copy, "");
        let verdict = match c.client_cost {
            Some(Ordering::Less) => "lower (decided)",
            Some(Ordering::Greater) => "higher (decided)",
            _ => "undecided",
        };
        row(o, &c.zerocopy, verdict);
    }
    o.push('\n');
    for (mode, low, high) in mapped_by_mode(&a.receive_groups) {
        let _ = writeln!(
            o,
            "- Behind {mode}, zero-copy receive mapped {:.1}-{:.1} % (every cell): {}.",
            low * 100.0,
            high * 100.0,
            mapped_cause(mode, high)
        );
    }
    o.push('\n');
}
