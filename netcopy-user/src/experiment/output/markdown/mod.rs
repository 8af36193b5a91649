//! `report.md`: the run explained for a reader, one section per figure, each saying how its
//! numbers were obtained (observed, inferred, reported) or that they are unavailable and
//! why; an unavailable counter is never printed as a number.
//!
//! The sections, in report order: [`setup`] (machine, probe strategies, verification),
//! [`figures`] (throughput, latency, CPU, cache misses, copies), [`comparisons`]
//! (crossovers, findings, correlation, answers) and [`provenance`] (trace samples, how each
//! figure was obtained, files).

use std::{collections::BTreeSet, fmt::Write as _};

use crate::{
    experiment::analysis::{
        findings::{completion_modes, FindingKind, Severity},
        groups::{find_group, modes_of, planned_cells, sizes_of, Group, Stat},
        num, Analysis,
    },
    experiment::results::Results,
    util::units::format_size,
};

mod comparisons;
mod figures;
mod provenance;
mod setup;

/// The report file in a results directory.
pub(super) const REPORT_FILE: &str = "report.md";

/// The whole report.
pub(super) fn render_report(results: &Results, a: &Analysis) -> String {
    let mut o = String::new();
    title(&mut o, results);
    headline(&mut o, a);
    setup::machine_section(&mut o, results);
    setup::plan_section(&mut o, results);
    setup::verification_section(&mut o, results);
    figures::throughput_section(&mut o, a);
    figures::latency_section(&mut o, a);
    figures::cpu_section(&mut o, results, a);
    figures::cache_misses_section(&mut o, a);
    figures::copies_section(&mut o, a);
    comparisons::crossover_section(&mut o, a);
    comparisons::findings_section(&mut o, a);
    comparisons::correlation_section(&mut o, a);
    comparisons::answers_section(&mut o, a);
    provenance::trace_samples_section(&mut o, results);
    provenance::provenance_section(&mut o, results, a);
    provenance::files_section(&mut o);
    o
}

fn title(o: &mut String, results: &Results) {
    let _ = writeln!(o, "# netcopy report\n");
    let _ = writeln!(
        o,
        "Rebuilt from `results.json` ({}, schema_version {}). Cells: {} measured of {} planned.\n",
        results.tool,
        results.schema_version,
        results.cells.len(),
        planned_cells(results)
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
}

/// Headline findings first: the zero-copy finding at the very top when present.
fn headline(o: &mut String, a: &Analysis) {
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
}

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

/// A table of one figure: sizes down, modes across, at `threads`.
fn size_table(
    o: &mut String,
    a: &Analysis,
    threads: usize,
    unit: &str,
    f: &dyn Fn(&Group) -> Option<Stat>,
) {
    let modes = modes_of(&a.groups);
    let _ = writeln!(
        o,
        "| size (bytes) | {} |",
        modes
            .iter()
            .map(|m| format!("{m} ({unit})"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(o, "|---|{}", "---|".repeat(modes.len()));
    for size in sizes_of(&a.groups, threads) {
        let cells: Vec<String> = modes
            .iter()
            .map(|m| stat_text(find_group(&a.groups, *m, size, threads).and_then(f)))
            .collect();
        let _ = writeln!(
            o,
            "| {} ({}) | {} |",
            size,
            format_size(size),
            cells.join(" | ")
        );
    }
    o.push('\n');
}

/// The modes whose kernel reports completions (`zero-copy` today), as the report names
/// them; their mechanism's name when the table has none.
fn completion_mode_names() -> String {
    let names: Vec<&str> = completion_modes().map(|s| s.name).collect();
    if names.is_empty() {
        "MSG_ZEROCOPY".to_string()
    } else {
        names.join(", ")
    }
}

/// The sources of the cells' CPU times, joined for one line.
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
