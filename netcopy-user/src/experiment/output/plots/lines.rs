//! The line plots: throughput, CPU per byte and cache misses against message size, and
//! latency against client threads, one series per mode in the mode's colour.

use anyhow::Result;

use super::chart::{line_plot, mode_color, unavailable_svg, LinePlot, Marker, Pt, Series, XKind};
use crate::{
    experiment::analysis::{
        groups::{modes_of, Group, Stat},
        Analysis, REFERENCE_SIZE,
    },
    experiment::results::INTERVAL_METHOD,
    util::units::format_size,
};

fn size_series(a: &Analysis, f: &dyn Fn(&Group) -> Option<Stat>) -> Vec<Series> {
    let Some(t) = a.base_threads else {
        return Vec::new();
    };
    modes_of(&a.groups)
        .into_iter()
        .map(|m| Series {
            label: m.name().to_string(),
            color: mode_color(m),
            width: 2,
            marker: Marker::Circle,
            points: a
                .groups
                .iter()
                .filter(|g| g.mode == m && g.threads == t)
                .filter_map(|g| {
                    Some(Pt {
                        x: g.size as f64,
                        y: f(g)?,
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn repeats_note(a: &Analysis) -> String {
    let reps: Vec<usize> = a.groups.iter().map(|g| g.repeats).collect();
    let lo = reps.iter().min().copied().unwrap_or(0);
    let hi = reps.iter().max().copied().unwrap_or(0);
    let n = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    };
    format!(
        "Points: median of {n} repeats; bars: the {INTERVAL_METHOD}. Where bars of two modes \
         overlap, their order there is undecided."
    )
}

pub(super) fn throughput_vs_size(a: &Analysis) -> Result<String> {
    let t = a.base_threads.unwrap_or(1);
    line_plot(&LinePlot {
        title: format!("Throughput vs message size ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "throughput (Gbit/s)".to_string(),
        x_kind: XKind::Size,
        auto_log_y: false,
        series: size_series(a, &|g| g.throughput_gbps),
        notes: vec![
            repeats_note(a),
            "Observed by the client: verified payload bits of the stream phase / its duration \
             (loopback TCP)."
                .to_string(),
        ],
    })
}

pub(super) fn cpu_per_byte_vs_size(a: &Analysis) -> Result<String> {
    let t = a.base_threads.unwrap_or(1);
    let cpu = a.cpu_metric;
    let mut notes = vec![
        repeats_note(a),
        format!(
            "{}: CPU time of the stream phase / payload bytes delivered (source per cell in \
             results.csv); lower is better.",
            cpu.label()
        ),
    ];
    if a.hw.cycles_cells == 0 {
        notes.push(format!(
            "Cycles per byte: unavailable in every cell ({}), so CPU time is shown instead.",
            a.hw.reason_text()
        ));
    }
    line_plot(&LinePlot {
        title: format!("CPU per byte vs message size ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "CPU ns per payload byte".to_string(),
        x_kind: XKind::Size,
        auto_log_y: true,
        series: size_series(a, &|g| cpu.of(g)),
        notes,
    })
}

pub(super) fn cache_misses_vs_size(a: &Analysis) -> Result<String> {
    let title = "LLC cache misses vs message size";
    if a.hw.cache_cells == 0 {
        return unavailable_svg(
            &format!("{title}: unavailable"),
            &[
                format!(
                    "The hardware cache-miss counter was unavailable in all {} cells of this run, \
                     so there is nothing to plot.",
                    a.hw.cells
                ),
                format!("Why: {}", a.hw.reason_text()),
                "No value is drawn: a counter that could not be read is unavailable, not zero."
                    .to_string(),
            ],
        );
    }
    let t = a.base_threads.unwrap_or(1);
    let mut notes = vec![
        repeats_note(a),
        "Server process LLC load misses (else cache misses) per MiB of payload, from \
         perf_event_open hardware counters (scaled when multiplexed)."
            .to_string(),
    ];
    if a.hw.cache_cells < a.hw.cells {
        notes.push(format!(
            "Unavailable in {} of {} cells ({}); those cells are left out, not drawn as zero.",
            a.hw.cells - a.hw.cache_cells,
            a.hw.cells,
            a.hw.reason_text()
        ));
    }
    line_plot(&LinePlot {
        title: format!("{title} ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "LLC misses per MiB delivered".to_string(),
        x_kind: XKind::Size,
        auto_log_y: true,
        series: size_series(a, &|g| g.llc_misses_per_mib),
        notes,
    })
}

pub(super) fn latency_vs_threads(a: &Analysis) -> Result<String> {
    let Some(size) = a.reference_size else {
        return unavailable_svg(
            "Latency vs threads: unavailable",
            &["No cell was measured.".to_string()],
        );
    };
    let mut series = Vec::new();
    for m in modes_of(&a.groups) {
        let groups: Vec<&Group> = a
            .groups
            .iter()
            .filter(|g| g.mode == m && g.size == size)
            .collect();
        for (label, f, marker, width) in [
            (
                "p50",
                (|g: &Group| g.latency_p50_us) as fn(&Group) -> Option<Stat>,
                Marker::Circle,
                2,
            ),
            ("p99", |g: &Group| g.latency_p99_us, Marker::Triangle, 1),
        ] {
            let points: Vec<Pt> = groups
                .iter()
                .filter_map(|g| {
                    Some(Pt {
                        x: g.threads as f64,
                        y: f(g)?,
                    })
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    label: format!("{} {label}", m.name()),
                    color: mode_color(m),
                    width,
                    marker,
                    points,
                });
            }
        }
    }
    if series.is_empty() {
        return unavailable_svg(
            &format!("Latency vs threads at {}: unavailable", format_size(size)),
            &["No cell at this size has request/response latency samples.".to_string()],
        );
    }
    let mut notes = vec![
        repeats_note(a),
        "Observed by the client: round-trip time of one request and its message (rr phase), \
         per thread; p50 circles and thick lines, p99 triangles and thin lines."
            .to_string(),
    ];
    if size != REFERENCE_SIZE {
        notes.push(format!(
            "256K was not measured; {} is the nearest measured size.",
            format_size(size)
        ));
    }
    line_plot(&LinePlot {
        title: format!("Latency vs client threads ({} messages)", format_size(size)),
        x_desc: "client threads (log2 scale)".to_string(),
        y_desc: "latency (us)".to_string(),
        x_kind: XKind::Threads,
        auto_log_y: true,
        series,
        notes,
    })
}
