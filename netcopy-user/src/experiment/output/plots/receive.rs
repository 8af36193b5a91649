//! The receive mechanisms' plot: what receiving cost the client per payload byte against
//! message size, one series per (mode, receive mechanism): solid circles for recv(),
//! thinner lines with triangles for getsockopt(TCP_ZEROCOPY_RECEIVE), in the mode's colour.

use anyhow::Result;

use super::chart::{line_plot, mode_color, unavailable_svg, LinePlot, Marker, Pt, Series, XKind};
use crate::{
    experiment::analysis::{receive::ReceiveGroup, Analysis},
    experiment::results::INTERVAL_METHOD,
    workload::client::ReceiveMechanism,
};

fn series(a: &Analysis, threads: usize) -> Vec<Series> {
    let mut keys: Vec<_> = a
        .receive
        .iter()
        .map(|c| c.copy.mode)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .flat_map(|m| ReceiveMechanism::ALL.map(|r| (m, r)))
        .collect();
    keys.dedup();
    keys.into_iter()
        .map(|(mode, recv)| Series {
            label: format!("{mode} / recv {recv}"),
            color: mode_color(mode),
            width: if recv == ReceiveMechanism::Copy { 2 } else { 1 },
            marker: if recv == ReceiveMechanism::Copy {
                Marker::Circle
            } else {
                Marker::Triangle
            },
            points: a
                .receive_groups
                .iter()
                .filter(|g: &&ReceiveGroup| (g.mode, g.recv, g.threads) == (mode, recv, threads))
                .filter_map(|g| {
                    Some(Pt {
                        x: g.size as f64,
                        y: g.client_ns_per_byte?,
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

pub(super) fn receive_cost_vs_size(a: &Analysis) -> Result<String> {
    let title = "Receive cost vs message size, per receive mechanism";
    if a.receive.is_empty() {
        return unavailable_svg(
            &format!("{title}: not measured"),
            &[
                "No point of this run was measured with both --recv copy and --recv zerocopy \
               (netcopy run --recv copy,zerocopy)."
                    .to_string(),
            ],
        );
    }
    let t = a.base_threads.unwrap_or(1);
    line_plot(&LinePlot {
        title: format!("{title} ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "client CPU ns per payload byte".to_string(),
        x_kind: XKind::Size,
        auto_log_y: true,
        series: series(a, t),
        notes: vec![
            format!(
                "Points: median over the repeats; bars: the {INTERVAL_METHOD}. Client (receiver) \
                 CPU time of the stream phase (task-clock) / payload bytes delivered; lower is \
                 better. Circles: recv() (copy); triangles: TCP_ZEROCOPY_RECEIVE (zerocopy)."
            ),
            "What the kernel mapped and copied at each point: report.md, section Receive \
             mechanisms."
                .to_string(),
        ],
    })
}
