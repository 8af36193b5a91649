//! The measured figures: throughput, latency, CPU and cache misses per byte, and the
//! copies per message, each beside the plot that draws it.

use std::{collections::BTreeSet, fmt::Write as _};

use super::text::{cell, cpu_sources, size_table, stat_text};
use crate::{
    experiment::analysis::{
        self,
        groups::{find_group, modes_of},
        Analysis,
    },
    experiment::output::{csv::CSV_FILE, plots},
    experiment::results::Results,
    util::units::format_size,
};

pub(super) fn throughput_section(o: &mut String, a: &Analysis) {
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "## Throughput vs message size (`{}`)\n",
        plots::THROUGHPUT_VS_SIZE
    );
    let _ = writeln!(
        o,
        "{threads} thread(s). Median of repeats (min-max, CV). Observed by the client: \
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
    let Some(size) = a.reference_size else {
        let _ = writeln!(o, "No cell was measured.\n");
        return;
    };
    let _ = writeln!(
        o,
        "{} messages{}. Round-trip latency of one request and its message, observed by the \
         client (request/response phase); median of repeats (min-max, CV), microseconds.\n",
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

pub(super) fn cpu_section(o: &mut String, results: &Results, a: &Analysis) {
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(
        o,
        "## CPU per byte vs message size (`{}`)\n",
        plots::CPU_PER_BYTE_VS_SIZE
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
