//! `report.md`, `results.csv` and the plots of a run, rebuilt from `results.json` alone
//! (`netcopy report DIR`), and [`write_outputs`] for the runner.
//!
//! Every figure in the report says how it was obtained (observed, inferred, reported) or
//! that it is unavailable and why; an unavailable counter is never printed as a number.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};

use crate::{
    experiment::analysis::{
        self, num, Analysis, CrossoverMetric, CrossoverPoint, FindingKind, Group, Severity, Stat,
        HIGH_CV, NON_MONOTONIC_DROP,
    },
    experiment::output::plots,
    experiment::results::{Cell, Results, SCHEMA_VERSION},
    kernel::perf::CounterKind,
    ledger::{self, FigureSource},
    util::units::format_size,
    workload::modes::Mode,
};

pub const RESULTS_FILE: &str = "results.json";
pub const CSV_FILE: &str = "results.csv";
pub const REPORT_FILE: &str = "report.md";

/// `netcopy report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The results directory of `netcopy run` (the one holding results.json); results.csv,
    /// the SVG plots and report.md are written next to it.
    pub dir: PathBuf,
}

/// `netcopy report DIR`.
pub fn run_report(args: &ReportArgs) -> Result<ExitCode> {
    let results = load_results(&args.dir)?;
    let written = write_outputs(&args.dir, &results)?;
    if results.interrupted || !results.complete {
        eprintln!(
            "netcopy: note: the run in {} was {}: the report covers the {} cells measured",
            args.dir.display(),
            if results.interrupted {
                "interrupted"
            } else {
                "not complete"
            },
            results.cells.len()
        );
    }
    let mut out = String::new();
    for p in written {
        let _ = writeln!(out, "wrote {}", p.display());
    }
    crate::util::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads and checks `DIR/results.json`.
pub fn load_results(dir: &Path) -> Result<Results> {
    if !dir.exists() {
        bail!("results directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the results directory of `netcopy run`",
            dir.display()
        );
    }
    let path = dir.join(RESULTS_FILE);
    if !path.exists() {
        bail!(
            "{} has no {RESULTS_FILE}: is it the results directory of `netcopy run`?",
            dir.display()
        );
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_results(&text).with_context(|| format!("reading {}", path.display()))
}

/// Parses a results document, checking its schema version first so that a file from
/// another version is named as such instead of failing on some missing field.
pub fn parse_results(text: &str) -> Result<Results> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("not JSON (is the file truncated or corrupted?)")?;
    let Some(obj) = value.as_object() else {
        bail!("not a netcopy results document: the top level is not a JSON object");
    };
    let Some(version) = obj.get("schema_version") else {
        bail!("not a netcopy results document: no \"schema_version\"");
    };
    let Some(version) = version.as_u64() else {
        bail!("not a netcopy results document: \"schema_version\" is {version}, not a number");
    };
    if version != u64::from(SCHEMA_VERSION) {
        bail!(
            "unsupported schema_version {version}: this netcopy reads schema_version \
             {SCHEMA_VERSION}; rebuild the report with the netcopy that wrote the file"
        );
    }
    serde_json::from_str(text).with_context(|| {
        format!("does not match the netcopy results schema (schema_version {SCHEMA_VERSION})")
    })
}

/// Writes results.csv, the SVG plots and report.md into `dir` (results.json is the
/// runner's) and returns their paths.
pub fn write_outputs(dir: &Path, results: &Results) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let analysis = analysis::analyze(results);
    let mut written = Vec::new();
    let mut put = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        crate::util::fs::write_atomic(&path, text)?;
        written.push(path);
        Ok(())
    };
    put(CSV_FILE, &render_csv(results))?;
    for plot in plots::render_all(&analysis)? {
        put(plot.file_name, &plot.svg)?;
    }
    put(REPORT_FILE, &render_report(results, &analysis))?;
    Ok(written)
}

// ---------------------------------------------------------------------------------------
// results.csv

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV's header, in column order.
pub fn csv_header(results: &Results) -> Vec<String> {
    let mut h: Vec<String> = [
        "mode",
        "size",
        "threads",
        "repeat",
        "throughput_gbps",
        "stream_messages",
        "stream_payload_bytes",
        "stream_seconds",
        "stream_integrity_errors",
        "stream_discarded_bytes",
        "latency_kind",
        "latency_transactions",
        "latency_p50_us",
        "latency_p90_us",
        "latency_p99_us",
        "latency_p999_us",
        "latency_max_us",
        "latency_mean_us",
        "latency_samples",
        "latency_integrity_errors",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for site in analysis::site_names(results) {
        for col in ["bytes", "calls", "bytes_per_message", "source"] {
            h.push(format!("{site}_{col}"));
        }
    }
    h.extend(
        [
            "copies_per_byte",
            "zc_sends",
            "zc_notifications",
            "zc_completed_sends",
            "zc_copied_sends",
            "zc_copied_bytes",
            "zc_enobufs_retries",
            "server_cpu_ns",
            "client_cpu_ns",
            "cpu_source",
            "server_ns_per_byte",
            "total_ns_per_byte",
            "cycles_per_byte",
            "llc_misses_per_mib",
            "hw_unavailable_reason",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for who in ["server", "client"] {
        for kind in CounterKind::ALL {
            h.push(format!("{who}_{}", kind.name()));
        }
    }
    h.push("trace_sample".to_string());
    h
}

fn csv_row(results: &Results, c: &Cell) -> Vec<String> {
    let l = &c.latency.latency_us;
    let mut r = vec![
        c.mode.name().to_string(),
        c.size.to_string(),
        c.threads.to_string(),
        c.repeat.to_string(),
        c.stream.throughput_gbps.to_string(),
        c.stream.messages.to_string(),
        c.stream.payload_bytes.to_string(),
        c.stream.seconds.to_string(),
        c.stream.integrity_errors.to_string(),
        c.stream.discarded_bytes.to_string(),
        serde_json::to_value(c.latency.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        c.latency.transactions.to_string(),
    ];
    let has_latency = c.latency.transactions > 0 || l.samples > 0;
    for v in [l.p50, l.p90, l.p99, l.p999, l.max, l.mean] {
        r.push(if has_latency {
            v.to_string()
        } else {
            String::new()
        });
    }
    r.push(l.samples.to_string());
    r.push(c.latency.integrity_errors.to_string());
    for site in analysis::site_names(results) {
        match c.copies.get(&site) {
            Some(f) => {
                r.push(opt(f.bytes));
                r.push(opt(f.calls));
                r.push(opt(f.bytes_per_message));
                r.push(f.source.name().to_string());
            }
            None => {
                r.extend([String::new(), String::new(), String::new()]);
                r.push("not recorded".to_string());
            }
        }
    }
    let z = &c.zerocopy;
    r.push(opt(c.copies_per_byte));
    for v in [
        z.sends,
        z.notifications,
        z.completed_sends,
        z.copied_sends,
        z.copied_bytes,
        z.enobufs_retries,
    ] {
        r.push(v.to_string());
    }
    r.push(opt(c.cpu.server_cpu_ns));
    r.push(opt(c.cpu.client_cpu_ns));
    r.push(c.cpu.source.clone());
    r.push(opt(c.cpu.server_ns_per_byte));
    r.push(opt(c.cpu.total_ns_per_byte));
    r.push(opt(c.cpu.cycles_per_byte));
    r.push(opt(c.cpu.llc_misses_per_mib));
    r.push(c.cpu.hw_unavailable_reason.clone().unwrap_or_default());
    for readings in [&c.server_counters, &c.client_counters] {
        for kind in CounterKind::ALL {
            // Unavailable (or not read): an empty field, never 0.
            r.push(opt(readings.as_ref().and_then(|rd| rd.get(kind).value())));
        }
    }
    r.push(c.trace_sample.clone().unwrap_or_default());
    r
}

/// One row per cell, flat columns; unavailable figures are empty fields.
pub fn render_csv(results: &Results) -> String {
    let mut out = String::new();
    let line = |fields: Vec<String>| {
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    };
    out.push_str(&line(csv_header(results)));
    out.push('\n');
    for c in &results.cells {
        out.push_str(&line(csv_row(results, c)));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// report.md

/// Makes text safe for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn stat_text(s: Option<Stat>) -> String {
    match s {
        None => "n/a".to_string(),
        // One repeat, or repeats that agree exactly: the range adds nothing.
        Some(s) if s.n == 1 || s.min == s.max => num(s.median),
        Some(s) => format!(
            "{} ({}-{}{})",
            num(s.median),
            num(s.min),
            num(s.max),
            s.cv.map(|cv| format!(", CV {:.1} %", cv * 100.0))
                .unwrap_or_default()
        ),
    }
}

fn unix_time(t: u64) -> String {
    // Days from the civil-from-days algorithm (Howard Hinnant), UTC.
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn modes_in(a: &Analysis) -> Vec<Mode> {
    let s: BTreeSet<Mode> = a.groups.iter().map(|g| g.mode).collect();
    s.into_iter().collect()
}

fn sizes_in(a: &Analysis, threads: usize) -> Vec<u64> {
    let s: BTreeSet<u64> = a
        .groups
        .iter()
        .filter(|g| g.threads == threads)
        .map(|g| g.size)
        .collect();
    s.into_iter().collect()
}

/// A table of one figure: sizes down, modes across, at `threads`.
fn size_table(
    out: &mut String,
    a: &Analysis,
    threads: usize,
    unit: &str,
    f: &dyn Fn(&Group) -> Option<Stat>,
) {
    let modes = modes_in(a);
    let _ = writeln!(
        out,
        "| size (bytes) | {} |",
        modes
            .iter()
            .map(|m| format!("{m} ({unit})"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(modes.len()));
    for size in sizes_in(a, threads) {
        let cells: Vec<String> = modes
            .iter()
            .map(|m| stat_text(analysis::find_group(&a.groups, *m, size, threads).and_then(f)))
            .collect();
        let _ = writeln!(
            out,
            "| {} ({}) | {} |",
            size,
            format_size(size),
            cells.join(" | ")
        );
    }
    out.push('\n');
}

pub fn render_report(results: &Results, a: &Analysis) -> String {
    let mut o = String::new();
    let threads = a.base_threads.unwrap_or(1);
    let _ = writeln!(o, "# netcopy report\n");
    let _ = writeln!(
        o,
        "Rebuilt from `results.json` ({}, schema_version {}). Cells: {} measured of {} planned.\n",
        results.tool,
        results.schema_version,
        results.cells.len(),
        analysis::planned_cells(results)
    );
    if results.interrupted || !results.complete {
        let _ = writeln!(
            o,
            "> **The run was {}.** Only the {} cells measured before the stop are in this \
             report; sizes, modes or repeats may be missing, and every aggregate covers only \
             what was measured.\n",
            if results.interrupted {
                "interrupted"
            } else {
                "not complete"
            },
            results.cells.len()
        );
    }

    // Headline findings first: the zero-copy finding at the very top when present.
    let headline: Vec<_> = a
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Headline)
        .collect();
    if !headline.is_empty() {
        let _ = writeln!(o, "## Headline\n");
        let mut sorted = headline.clone();
        sorted.sort_by_key(|f| match f.kind {
            FindingKind::ZeroCopyCopied => 0,
            FindingKind::VerificationDegraded => 1,
            FindingKind::Interrupted => 2,
            _ => 3,
        });
        for f in sorted {
            let _ = writeln!(o, "- **{}**", f.text);
        }
        o.push('\n');
    }

    machine_section(&mut o, results);
    plan_section(&mut o, results);
    verification_section(&mut o, results);

    // Throughput.
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
    size_table(&mut o, a, threads, "Gbit/s", &|g| g.throughput_gbps);
    let all_threads: BTreeSet<usize> = a.groups.iter().map(|g| g.threads).collect();
    if all_threads.len() > 1 {
        let _ = writeln!(
            o,
            "Other thread counts are in `{}` (one row per cell).\n",
            CSV_FILE
        );
    }

    latency_section(&mut o, a);

    // CPU.
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
    size_table(&mut o, a, threads, "ns/B", &|g| a.cpu_metric.of(g));
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
        size_table(&mut o, a, threads, "cycles/B", &|g| g.cycles_per_byte);
    }

    // Cache misses.
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
        size_table(&mut o, a, threads, "misses/MiB", &|g| g.llc_misses_per_mib);
    }

    copies_section(&mut o, a);
    crossover_section(&mut o, a);

    // Findings.
    let _ = writeln!(o, "## Findings\n");
    let _ = writeln!(
        o,
        "Flagged automatically: zero-copy completions flagged copied; verification verdicts; \
         integrity errors; throughput falling by more than {:.0} % from one size to the next \
         larger one (non-monotonic); CV between repeats above {:.0} % (high variance); \
         hardware counters unavailable; kernel events not observable.\n",
        NON_MONOTONIC_DROP * 100.0,
        HIGH_CV * 100.0
    );
    if a.findings.is_empty() {
        let _ = writeln!(o, "None.\n");
    }
    for f in &a.findings {
        let tag = match f.severity {
            Severity::Headline => "important",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(o, "- [{tag}] {}", f.text);
    }
    o.push('\n');

    correlation_section(&mut o, a);

    let _ = writeln!(o, "## Answers to the study's questions\n");
    for ans in &a.answers {
        let _ = writeln!(
            o,
            "### {}\n\n{}\n\n*Basis:* {}\n",
            ans.question, ans.answer, ans.basis
        );
    }

    trace_samples_section(&mut o, results);

    provenance_section(&mut o, results, a);

    let _ = writeln!(o, "## Files\n");
    let _ = writeln!(
        o,
        "- `{RESULTS_FILE}`: everything measured (the input of this report)\n- `{CSV_FILE}`: \
         one row per cell; unavailable figures are empty fields\n- `{}`, `{}`, `{}`, `{}`, \
         `{}`: the plots",
        plots::THROUGHPUT_VS_SIZE,
        plots::LATENCY_VS_THREADS,
        plots::CPU_PER_BYTE_VS_SIZE,
        plots::CACHE_MISSES_VS_SIZE,
        plots::COPIES_PER_MESSAGE
    );
    o
}

fn machine_section(o: &mut String, r: &Results) {
    let m = &r.machine;
    let _ = writeln!(o, "## Machine and kernel\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| host | {} |", cell(&m.hostname));
    let _ = writeln!(o, "| kernel | {} |", cell(&m.kernel));
    let _ = writeln!(o, "| CPUs | {} ({}) |", m.cpus, cell(&m.cpu_model));
    let _ = writeln!(
        o,
        "| memory | {:.1} GiB |",
        m.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(
        o,
        "| hardware counters | {} |",
        if m.perf_hw_available {
            "available".to_string()
        } else {
            format!("unavailable: {}", cell(&m.perf_hw_reason))
        }
    );
    let _ = writeln!(o, "| started | {} |", unix_time(r.started_at_unix));
    let _ = writeln!(
        o,
        "| finished | {} |",
        r.finished_at_unix
            .map(unix_time)
            .unwrap_or_else(|| "not finished".to_string())
    );
    let _ = writeln!(
        o,
        "| state | {} |",
        match (r.complete, r.interrupted) {
            (true, _) => "complete",
            (false, true) => "interrupted",
            (false, false) => "not complete",
        }
    );
    let c = &r.config;
    let _ = writeln!(
        o,
        "| plan | modes {}; sizes {}; threads {}; {} repeat(s); stream {} s and \
         request/response {} s per cell{} |\n",
        c.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        c.sizes
            .iter()
            .map(|s| format_size(*s))
            .collect::<Vec<_>>()
            .join(", "),
        c.threads
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        c.repeat,
        num(c.stream_seconds),
        num(c.rr_seconds),
        if c.quick { " (quick)" } else { "" }
    );
}

fn plan_section(o: &mut String, r: &Results) {
    let _ = writeln!(
        o,
        "## Probe strategies: how each kernel event was observed\n"
    );
    if r.plan.events.is_empty() {
        let _ = writeln!(o, "No attach plan was recorded.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| event | strategy used | sites (how obtained) | better strategies rejected (why) |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    for e in &r.plan.events {
        let sources = if e.sources.is_empty() {
            "-".to_string()
        } else {
            e.sources
                .iter()
                .map(|(s, how)| format!("{s}: {how}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let rejected = if e.rejected.is_empty() {
            "-".to_string()
        } else {
            e.rejected
                .iter()
                .map(|(l, why)| format!("{l}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            cell(&e.event),
            e.strategy
                .as_deref()
                .map(cell)
                .unwrap_or_else(|| "**not observable**".to_string()),
            cell(&sources),
            cell(&rejected)
        );
    }
    o.push('\n');
}

fn verification_section(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Verification: expected vs observed copies per mode\n");
    if r.verification.is_empty() {
        let _ = writeln!(o, "No verification was recorded in this run.\n");
        return;
    }
    let _ = writeln!(
        o,
        "Expected: what the mode's claim implies (payload + protocol bytes). Observed: what \
         the kernel (or the sender) counted. A site that cannot be observed on this kernel \
         says so.\n"
    );
    for l in &r.verification {
        let _ = writeln!(
            o,
            "### {}: {}\n",
            l.mode,
            format!("{:?}", l.verdict).to_lowercase()
        );
        let w = &l.workload;
        let _ = writeln!(
            o,
            "{} messages of {} B, {} request(s).\n",
            w.messages, w.message_size, w.requests
        );
        let _ = writeln!(
            o,
            "| site | expected bytes | observed bytes | calls | source | agrees | how |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        let mut names: Vec<&String> = l.sites.keys().collect();
        names.sort_by_key(|n| {
            ledger::SITES
                .iter()
                .position(|s| s.name() == n.as_str())
                .unwrap_or(usize::MAX)
        });
        for n in names {
            let f = &l.sites[n];
            let _ = writeln!(
                o,
                "| {} | {} ({} + {}) | {} | {} | {} | {} | {} |",
                cell(n),
                f.expected_bytes,
                f.expected_payload_bytes,
                f.expected_protocol_bytes,
                f.observed_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "unavailable".to_string()),
                opt(f.calls),
                f.source.name(),
                match f.agrees() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                },
                cell(&f.how)
            );
        }
        o.push('\n');
        for f in &l.findings {
            let _ = writeln!(o, "- {}", f);
        }
        if !l.findings.is_empty() {
            o.push('\n');
        }
    }
}

fn latency_section(o: &mut String, a: &Analysis) {
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
    let modes = modes_in(a);
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
                let g = analysis::find_group(&a.groups, *m, size, t);
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

fn copies_section(o: &mut String, a: &Analysis) {
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

fn crossover_section(o: &mut String, a: &Analysis) {
    let _ = writeln!(o, "## Crossovers\n");
    let _ = writeln!(
        o,
        "Definition: at {} thread(s), for each size measured in both modes, the challenger is \
         *ahead* when its median over the repeats is strictly better than the baseline's \
         (higher throughput; lower {}). The crossover is the smallest size from which on \
         the challenger is ahead at that size **and every larger measured size**; a lead \
         that is lost again at a larger size does not count (it is listed as an earlier \
         lead). \"never\": the challenger is not ahead at the largest size measured. \
         \"ranges overlap\": the min-max ranges of the two modes' repeats overlap at that \
         size, so the order there may be noise.\n",
        a.base_threads.unwrap_or(1),
        a.cpu_metric.label()
    );
    if a.crossovers.is_empty() {
        let _ = writeln!(o, "No pair of modes was measured.\n");
        return;
    }
    let _ = writeln!(
        o,
        "| challenger | baseline | metric | threads | crossover (bytes) | earlier leads | per size (challenger vs baseline) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for x in &a.crossovers {
        let per: Vec<String> = x
            .compared
            .iter()
            .map(|c| {
                format!(
                    "{}: {} vs {}{}",
                    format_size(c.size),
                    num(c.challenger),
                    num(c.baseline),
                    match (c.ahead, c.overlap) {
                        (true, false) => " (ahead)",
                        (true, true) => " (ahead, ranges overlap)",
                        (false, true) => " (ranges overlap)",
                        (false, false) => "",
                    }
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            x.challenger,
            x.baseline,
            x.metric.key(),
            x.threads,
            x.point.bytes_text(),
            if x.earlier_leads.is_empty() {
                "-".to_string()
            } else {
                x.earlier_leads
                    .iter()
                    .map(|s| format_size(*s))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            per.join("; "),
            x.metric.unit()
        );
    }
    o.push('\n');
    let study = [
        (
            Mode::OneCopy,
            Mode::TwoCopy,
            "the study reported 4-8 KB for one-copy over two-copy",
        ),
        (
            Mode::ZeroCopy,
            Mode::TwoCopy,
            "the study reported 64 KB for zero-copy over two-copy",
        ),
    ];
    for (c, b, said) in study {
        if let Some(x) = a.crossovers.iter().find(|x| {
            x.challenger == c && x.baseline == b && x.metric == CrossoverMetric::Throughput
        }) {
            let here = match x.point {
                CrossoverPoint::At(s) => format!("from {} on", format_size(s)),
                CrossoverPoint::Never => "never".to_string(),
                CrossoverPoint::NoData => "no data".to_string(),
            };
            let _ = writeln!(o, "- {c} over {b} in throughput here: {here} ({said}).");
        }
    }
    o.push('\n');
}

fn correlation_section(o: &mut String, a: &Analysis) {
    let c = &a.correlation;
    let _ = writeln!(
        o,
        "## Correlation: bytes copied per byte delivered vs CPU per byte\n"
    );
    let _ = writeln!(
        o,
        "Pearson r between each cell's `copies_per_byte` (sum of the copy sites / payload \
         bytes) and its {}, over every cell with both figures. `copies_per_byte` takes \
         about one value per mode, so r says whether the modes that copy more also cost more \
         CPU per byte, not why.\n",
        c.cpu.label()
    );
    match c.all.r {
        Some(r) => {
            let _ = writeln!(o, "- all cells: r = {r:.3} (n = {})", c.all.n);
        }
        None => {
            let _ = writeln!(
                o,
                "- all cells: undefined (n = {}; needs at least 3 cells and both figures varying)",
                c.all.n
            );
        }
    }
    if !c.per_size.is_empty() {
        let _ = writeln!(
            o,
            "- within one size (per-byte CPU falls with size whatever the copies, so the \
             overall r mixes the two): {}",
            c.per_size
                .iter()
                .filter_map(|(s, p)| Some(format!(
                    "{}: r = {:.3} (n = {})",
                    format_size(*s),
                    p.r?,
                    p.n
                )))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    o.push('\n');
}

fn cpu_sources(r: &Results) -> String {
    let s: BTreeSet<&str> = r
        .cells
        .iter()
        .map(|c| c.cpu.source.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if s.is_empty() {
        "not recorded".to_string()
    } else {
        s.into_iter().collect::<Vec<_>>().join("; ")
    }
}

/// Where each cell's syscall trace sample is (written by `netcopy run` beside results.json).
fn trace_samples_section(o: &mut String, r: &Results) {
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

fn provenance_section(o: &mut String, r: &Results, a: &Analysis) {
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
        "| zero-copy completions, COPIED flags | reported by the kernel: error-queue \
         notifications read by the zero-copy sender (ee_info..ee_data ranges, \
         SO_EE_CODE_ZEROCOPY_COPIED) |"
    );
    let _ = writeln!(
        o,
        "| copies per byte | computed: sum of the observable copy sites / payload bytes |"
    );
    let _ = writeln!(
        o,
        "| medians, CV, crossovers, findings, correlation | computed from the figures above \
         (`netcopy report`) |\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn unix_time_is_utc_civil() {
        assert_eq!(unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn bad_documents_are_named() {
        let e = parse_results("not json").unwrap_err();
        assert!(format!("{e:#}").contains("not JSON"));
        let e = parse_results("{\"schema_version\": 999}").unwrap_err();
        assert!(format!("{e:#}").contains("unsupported schema_version 999"));
        let e = parse_results("[1]").unwrap_err();
        assert!(format!("{e:#}").contains("not a JSON object"));
        let e = parse_results("{\"schema_version\": 1}").unwrap_err();
        assert!(format!("{e:#}").contains("does not match"));
    }
}
