//! Text that several sections print: table cells, a figure with its spread, the table of
//! one figure by size and mode, the CPU time sources, the names of the completion modes.

use std::{collections::BTreeSet, fmt::Write as _};

use crate::{
    experiment::analysis::{
        findings::completion_modes,
        format::with_interval,
        groups::{find_group, modes_of, sizes_of, Group, Stat},
        num, Analysis,
    },
    experiment::results::Results,
    util::units::format_size,
    workload::modes::Completions,
};

/// Makes text safe for a Markdown table cell.
pub(super) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `8.69 [8.50, 8.90]`: median and interval of the repeats; `n/a` without a figure.
pub(super) fn stat_text(s: Option<Stat>) -> String {
    match s {
        None => "n/a".to_string(),
        // Repeats that agree exactly: the interval adds nothing.
        Some(s) if s.min == s.max => num(s.median),
        Some(s) => with_interval(&s),
    }
}

/// A table of one figure: sizes down, modes across, at `threads`.
pub(super) fn size_table(
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

/// The modes of this run whose kernel reports completions through `channel` (through any,
/// when None), as the report names them; their mechanism's name when the run has none.
pub(super) fn completion_mode_names(r: &Results, channel: Option<Completions>) -> String {
    let names: Vec<&str> = completion_modes()
        .filter(|s| r.config.modes.contains(&s.mode))
        .filter(|s| channel.is_none() || s.claim.completions == channel)
        .map(|s| s.name)
        .collect();
    if names.is_empty() {
        "MSG_ZEROCOPY".to_string()
    } else {
        names.join(", ")
    }
}

/// The sources of the cells' CPU times, joined for one line.
pub(super) fn cpu_sources(r: &Results) -> String {
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
