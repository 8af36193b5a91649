//! The measured figures: throughput, latency, CPU and cache misses per byte, and the
//! copies per message, each beside the plot that draws it.

use std::{collections::BTreeSet, fmt::Write as _};

use super::text::{cell, cpu_sources, size_table, stat_text};
use crate::{
    experiment::analysis::{
        self,
        groups::{find_group, modes_of},
        num, Analysis,
    },
    experiment::output::{csv::CSV_FILE, plots},
    experiment::placement::cpu_list_text,
    experiment::results::{Results, TopologyKind},
    util::units::format_size,
};

pub(super) fn throughput_section(o: &mut String, a: &Analysis) {
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "## Throughput vs message size (`{}`)\n",
        plots::THROUGHPUT_VS_SIZE
    );
    plot(o, "Throughput vs message size", plots::THROUGHPUT_VS_SIZE);
    let _ = writeln!(
        o,
        "{threads} thread(s). Median [interval] of repeats. Observed by the client: \
         verified payload bits of the stream phase / its duration.\n"
    );
    size_table(o, a, threads, "Gbit/s", &|g| g.throughput_gbps);
    let all_threads: BTreeSet<usize> = a.groups.iter().map(|g| g.threads).collect();
    if all_threads.len() > 1 {
        let _ = writeln!(
            o,
            "Other thread counts are in `{}` (one row per cell).\n",
            CSV_FILE
        );
    }
}

pub(super) fn latency_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(
        o,
        "## Latency vs threads (`{}`)\n",
        plots::LATENCY_VS_THREADS
    );
    plot(o, "Latency vs threads", plots::LATENCY_VS_THREADS);
    let Some(size) = a.reference_size else {
        let _ = writeln!(o, "No cell was measured.\n");
        return;
    };
    let _ = writeln!(
        o,
        "{} messages{}. Round-trip latency of one request and its message, observed by the \
         client (request/response phase); median [interval] of repeats, microseconds. Read \
         it against the machine's floor below.\n",
        format_size(size),
        if size == analysis::REFERENCE_SIZE {
            String::new()
        } else {
            " (256K was not measured: the nearest measured size)".to_string()
        }
    );
    let modes = modes_of(&a.groups);
    let _ = writeln!(
        o,
        "| threads | {} |",
        modes
            .iter()
            .map(|m| format!("{m} p50 (us) | {m} p99 (us)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(o, "|---|{}", "---|---|".repeat(modes.len()));
    let threads: BTreeSet<usize> = a.groups.iter().map(|g| g.threads).collect();
    for t in threads {
        let cells: Vec<String> = modes
            .iter()
            .map(|m| {
                let g = find_group(&a.groups, *m, size, t);
                format!(
                    "{} | {}",
                    stat_text(g.and_then(|g| g.latency_p50_us)),
                    stat_text(g.and_then(|g| g.latency_p99_us))
                )
            })
            .collect();
        let _ = writeln!(o, "| {t} | {} |", cells.join(" | "));
    }
    o.push('\n');
}

/// The machine's own round-trip floor, and what it says about the latencies above.
pub(super) fn floor_section(o: &mut String, r: &Results, a: &Analysis) {
    let _ = writeln!(
        o,
        "## The machine's floor: a round trip with no mode involved\n"
    );
    let f = &a.floor;
    if f.rows.is_empty() {
        let _ = writeln!(
            o,
            "Not measured in this run (results.json before schema 2).\n"
        );
        return;
    }
    let _ = writeln!(
        o,
        "A 1-byte TCP ping-pong over loopback between two threads of netcopy, {} s per \
         placement and repeat, the repeats round-robin across the placements; median \
         [interval] of the repeats' p50 and p99, microseconds. No mode, message or \
         verification is involved: what it costs, no mode can remove from a round trip.\n",
        num(f.seconds)
    );
    if r.topology.kind != TopologyKind::Loopback {
        let _ = writeln!(
            o,
            "The floor is this host's loopback, not the path between the ends of this run's \
             cells ({}): it bounds what this machine adds, not what that path costs.\n",
            cell(&r.topology.text())
        );
    }
    let _ = writeln!(
        o,
        "| placement | CPUs | round trips | p50 (us) | p99 (us) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for r in &f.rows {
        let _ = writeln!(
            o,
            "| {}{} | {} | {} | {} | {} |",
            r.placement.label(),
            if f.matching == Some(r.placement) {
                " (as the cells)"
            } else {
                ""
            },
            if r.cpus.is_empty() {
                "any".to_string()
            } else {
                cpu_list_text(&r.cpus)
            },
            r.round_trips,
            stat_text(r.p50_us),
            stat_text(r.p99_us)
        );
    }
    for (placement, why) in &f.not_measured {
        let _ = writeln!(
            o,
            "| {} | - | not measured: {} | | |",
            placement.label(),
            cell(why)
        );
    }
    o.push('\n');
    for note in &f.notes {
        let _ = writeln!(o, "- {note}.");
    }
    if !f.notes.is_empty() {
        o.push('\n');
    }
}

/// An image of a plot (rendered inline in report.html, beside the file in report.md).
fn plot(o: &mut String, alt: &str, file: &str) {
    let _ = writeln!(o, "![{alt}]({file})\n");
}

pub(super) fn cpu_section(o: &mut String, results: &Results, a: &Analysis) {
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "## CPU per byte vs message size (`{}`)\n",
        plots::CPU_PER_BYTE_VS_SIZE
    );
    plot(
        o,
        "CPU per byte vs message size",
        plots::CPU_PER_BYTE_VS_SIZE,
    );
    let _ = writeln!(
        o,
        "{threads} thread(s). {}: CPU time over the stream phase / payload bytes delivered \
         (lower is better); CPU time source: {}.\n",
        a.cpu_metric.label(),
        cpu_sources(results)
    );
    size_table(o, a, threads, "ns/B", &|g| a.cpu_metric.of(g));
    if a.hw.cycles_cells == 0 {
        let _ = writeln!(
            o,
            "Cycles per byte: **unavailable** in every cell ({}).\n",
            a.hw.reason_text()
        );
    } else {
        let _ = writeln!(
            o,
            "Cycles per byte (server, perf hardware counter; available in {} of {} cells):\n",
            a.hw.cycles_cells, a.hw.cells
        );
        size_table(o, a, threads, "cycles/B", &|g| g.cycles_per_byte);
    }
}

pub(super) fn cache_misses_section(o: &mut String, a: &Analysis) {
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "## LLC cache misses vs message size (`{}`)\n",
        plots::CACHE_MISSES_VS_SIZE
    );
    plot(
        o,
        "LLC cache misses vs message size",
        plots::CACHE_MISSES_VS_SIZE,
    );
    if a.hw.cache_cells == 0 {
        let _ = writeln!(
            o,
            "**Unavailable**: the hardware cache-miss counters could not be read in any of the \
             {} cells ({}). The plot says so instead of drawing zeros.\n",
            a.hw.cells,
            a.hw.reason_text()
        );
    } else {
        let _ = writeln!(
            o,
            "Server LLC load misses (else cache misses) per MiB delivered, perf hardware \
             counters; available in {} of {} cells.\n",
            a.hw.cache_cells, a.hw.cells
        );
        size_table(o, a, threads, "misses/MiB", &|g| g.llc_misses_per_mib);
    }
}

pub(super) fn copies_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(
        o,
        "## Copies per message (`{}`)\n",
        plots::COPIES_PER_MESSAGE
    );
    plot(o, "Copies per message", plots::COPIES_PER_MESSAGE);
    if a.copies.is_empty() {
        let _ = writeln!(o, "No copy-site figures were recorded.\n");
        return;
    }
    let _ = writeln!(
        o,
        "Median bytes per delivered message (payload + 16-byte message header) at each site. \
         zerocopy_attach (pages pinned) and zerocopy_completions (bytes whose completion \
         arrived) are not copies.\n"
    );
    let _ = writeln!(
        o,
        "| mode | size | threads | from | site | bytes per message | source | how |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for c in &a.copies {
        for s in &c.sites {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.mode,
                c.size,
                c.threads,
                c.from,
                s.site,
                match s.bytes_per_message {
                    Some(b) => stat_text(Some(b)),
                    None => "not observable".to_string(),
                },
                s.source.name(),
                cell(&s.how)
            );
        }
        if let Some(cpb) = c.copies_per_byte {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | bytes copied per byte delivered | {} | computed | sum of the copy sites / payload |",
                c.mode,
                c.size,
                c.threads,
                c.from,
                stat_text(Some(cpb))
            );
        }
    }
    o.push('\n');
}
