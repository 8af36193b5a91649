//! What a run writes from its results, one module per format: `csv` (results.csv),
//! `markdown` (report.md), `html` (report.html: report.md with the plots inline, one
//! self-contained page) and [`plots`] (the SVG plots). `netcopy run` writes them at the
//! end of a sweep, `netcopy report DIR` rebuilds them from results.json alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::experiment::{analysis, results::Results};

mod csv;
mod html;
mod markdown;
pub mod plots;

/// Writes results.csv, the SVG plots, report.md and report.html into `dir` (results.json
/// is the runner's) and returns their paths.
pub fn write_outputs(dir: &Path, results: &Results) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let analysis = analysis::analyze(results);
    let mut written = Vec::new();
    let mut put = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        crate::util::fs::write_atomic(&path, text)?;
        written.push(path);
        Ok(())
    };
    put(csv::CSV_FILE, &csv::render_csv(results))?;
    let plots = plots::render_all(&analysis)?;
    for plot in &plots {
        put(plot.file_name, &plot.svg)?;
    }
    let report = markdown::render_report(results, &analysis);
    put(markdown::REPORT_FILE, &report)?;
    put(html::HTML_FILE, &html::render_html(&report, &plots))?;
    Ok(written)
}
