//! Where everything came from: the trace samples beside the results, how each figure was
//! obtained, and the files of a results directory.

use std::{collections::BTreeSet, fmt::Write as _};

use super::text::{cell, completion_mode_names, cpu_sources};
use crate::{
    experiment::analysis::Analysis,
    experiment::output::{csv::CSV_FILE, html::HTML_FILE, plots},
    experiment::results::{Results, INTERVAL_METHOD, RESULTS_FILE},
    ledger::FigureSource,
    workload::modes::Completions,
};

/// Where each cell's syscall trace sample is (written by `netcopy run` beside results.json).
pub(super) fn trace_samples_section(o: &mut String, r: &Results) {
    let samples: Vec<&str> = r
        .cells
        .iter()
        .filter_map(|c| c.trace_sample.as_deref())
        .collect();
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Syscall trace samples
"
    );
    let _ = writeln!(
        o,
        "Each cell has a short traced stream of its own (not the measured phases): every send \
         and receive call of server and client with the copies the kernel made inside it. \
         `syscalls.jsonl` has one call per line, `trace.json` opens in the Perfetto UI, \
         `summary.json` has the per-syscall table. {} samples, e.g. `{}/`.\n",
        samples.len(),
        samples[0]
    );
}

pub(super) fn provenance_section(o: &mut String, r: &Results, a: &Analysis) {
    let _ = writeln!(o, "## How each figure was obtained\n");
    let _ = writeln!(o, "| figure | how obtained |\n|---|---|");
    let _ = writeln!(
        o,
        "| throughput | observed: the client counts verified payload bytes over the stream \
         phase's duration |"
    );
    let _ = writeln!(
        o,
        "| latency | observed: the client times each request until its whole message is \
         verified (request/response phase, HDR histogram) |"
    );
    let _ = writeln!(
        o,
        "| CPU ns per byte | observed CPU time of the server and client processes ({}) / \
         payload bytes |",
        cell(&cpu_sources(r))
    );
    let hw = if a.hw.none_available() {
        format!("**unavailable**: {}", cell(&a.hw.reason_text()))
    } else {
        format!(
            "observed by perf_event_open hardware counters (cycles in {} of {} cells, cache \
             misses in {} of {}); {}",
            a.hw.cycles_cells,
            a.hw.cells,
            a.hw.cache_cells,
            a.hw.cells,
            if a.hw.reasons.is_empty() {
                String::new()
            } else {
                format!("missing elsewhere: {}", cell(&a.hw.reason_text()))
            }
        )
    };
    let _ = writeln!(o, "| cycles per byte, cache misses | {hw} |");
    // Copy sites: every (site, source, how) seen in the cells.
    let mut seen: BTreeSet<(String, &'static str, String)> = BTreeSet::new();
    for c in &r.cells {
        for (site, f) in &c.copies {
            seen.insert((site.clone(), f.source.name(), f.how.clone()));
        }
    }
    for l in &r.verification {
        for (site, f) in &l.sites {
            if !r.cells.iter().any(|c| c.copies.contains_key(site)) {
                seen.insert((site.clone(), f.source.name(), f.how.clone()));
            }
        }
    }
    for (site, source, how) in seen {
        let _ = writeln!(
            o,
            "| copy site {} | {}{} |",
            cell(&site),
            if source == FigureSource::Unavailable.name() {
                "**unavailable**"
            } else {
                source
            },
            if how.is_empty() {
                String::new()
            } else {
                format!(": {}", cell(&how))
            }
        );
    }
    let _ = writeln!(
        o,
        "| {modes} completions, COPIED flags | reported by the kernel: error-queue \
         notifications read by the {modes} sender (ee_info..ee_data ranges, \
         SO_EE_CODE_ZEROCOPY_COPIED) |",
        modes = completion_mode_names(r, Some(Completions::ErrorQueue))
    );
    if r.config
        .modes
        .iter()
        .any(|m| m.spec().claim.completions == Some(Completions::Ring))
    {
        let _ = writeln!(
            o,
            "| {modes} completions, COPIED flags | reported by the kernel: io_uring \
             notification CQEs (IORING_CQE_F_NOTIF, one per operation, \
             IORING_NOTIF_USAGE_ZC_COPIED) read by the {modes} sender |",
            modes = completion_mode_names(r, Some(Completions::Ring))
        );
    }
    let _ = writeln!(
        o,
        "| copies per byte | computed: sum of the observable copy sites / payload bytes |"
    );
    let _ = writeln!(
        o,
        "| medians, intervals, CV, crossovers, decided/undecided, findings, correlation | \
         computed from the figures above (`netcopy report`); intervals: {} |\n",
        cell(INTERVAL_METHOD)
    );
}

pub(super) fn files_section(o: &mut String) {
    let _ = writeln!(o, "## Files\n");
    let _ = writeln!(
        o,
        "- `{RESULTS_FILE}`: everything measured (the input of this report), with every \
         figure summarised over its repeats\n- `{CSV_FILE}`: one row per cell; unavailable \
         figures are empty fields\n- `{HTML_FILE}`: this report as one page with the plots \
         inline\n- `{}`, `{}`, `{}`, `{}`, `{}`, `{}`: the plots",
        plots::THROUGHPUT_VS_SIZE,
        plots::LATENCY_VS_THREADS,
        plots::CPU_PER_BYTE_VS_SIZE,
        plots::CACHE_MISSES_VS_SIZE,
        plots::COPIES_PER_MESSAGE,
        plots::RECEIVE_COST_VS_SIZE
    );
}
