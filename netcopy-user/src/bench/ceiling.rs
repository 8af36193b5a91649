//! Part 2: the machine's limit. memcpy bandwidth, the loopback TCP ceiling it implies, and
//! how close part 1's best figures came to it.

use super::{
    memcpy::{self, MemcpyFigures},
    progress::progress,
    schema::{BestFigure, CeilingSection, Outcome, PeerSection},
};

/// memcpy passes measured (after one warm-up).
const MEMCPY_PASSES: u32 = 5;

/// Measures memcpy and sets part 1's best figures against the ceilings of one stream and
/// of `cpus` CPUs.
pub(super) fn section(peers: &Outcome<PeerSection>, cpus: usize) -> Outcome<CeilingSection> {
    progress("memcpy bandwidth (single thread)");
    match memcpy::measure(MEMCPY_PASSES) {
        Ok(m) => Outcome::Measured(against(m, peers, cpus)),
        Err(e) => Outcome::Failed {
            error: format!("{e:#}"),
        },
    }
}

fn against(memcpy: MemcpyFigures, peers: &Outcome<PeerSection>, cpus: usize) -> CeilingSection {
    let per_stream = memcpy::tcp_ceiling_gbps(memcpy.gbytes_per_s.median);
    let machine_gbps = per_stream * cpus as f64;
    let mut single: Option<(String, f64)> = None;
    let mut multi: Option<(String, f64)> = None;
    if let Some(p) = peers.measured() {
        for c in p.comparisons.iter().filter_map(Outcome::measured) {
            let slot = if c.streams == 1 {
                &mut single
            } else {
                &mut multi
            };
            if slot.as_ref().is_none_or(|(_, g)| c.ours_gbps.median > *g) {
                *slot = Some((c.ours_label.clone(), c.ours_gbps.median));
            }
        }
    }
    let best = |b: Option<(String, f64)>, ceiling: f64| {
        b.map(|(what, gbps)| BestFigure {
            what,
            gbps,
            fraction_of_ceiling: gbps / ceiling,
        })
    };
    CeilingSection {
        per_stream_gbps: per_stream,
        machine_gbps,
        best_single_stream: best(single, per_stream),
        best_multi_stream: best(multi, machine_gbps),
        memcpy,
    }
}
