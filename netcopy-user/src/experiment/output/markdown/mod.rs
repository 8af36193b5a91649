//! `report.md`: the run explained for a reader, one section per figure, each saying how its
//! numbers were obtained (observed, inferred, reported) or that they are unavailable and
//! why; an unavailable counter is never printed as a number.
//!
//! The sections, in report order: [`setup`] (machine, phases, placement, probe
//! strategies, verification), [`figures`] (throughput, latency, the machine's floor, CPU,
//! cache misses, copies, each with its plot), [`comparisons`] (crossovers, the study side
//! by side, findings, correlation, answers) and [`provenance`] (trace samples, how each
//! figure was obtained, files).

use std::fmt::Write as _;

use crate::{
    experiment::analysis::{
        findings::{FindingKind, Severity},
        groups::planned_cells,
        Analysis,
    },
    experiment::results::Results,
};

mod comparisons;
mod figures;
mod provenance;
mod receive;
mod setup;
mod text;

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
    figures::floor_section(&mut o, results, a);
    figures::cpu_section(&mut o, results, a);
    figures::cache_misses_section(&mut o, a);
    figures::copies_section(&mut o, a);
    receive::receive_section(&mut o, results, a);
    comparisons::crossover_section(&mut o, a);
    comparisons::study_comparison_section(&mut o, a);
    comparisons::findings_section(&mut o, results, a);
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
