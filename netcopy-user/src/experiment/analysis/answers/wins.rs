//! Who wins where: per size, the modes ranked by their medians, and whether the repeats'
//! intervals decide the winner.

use std::{cmp::Ordering, collections::BTreeMap};

use netcopy_common::CopySite;

use super::{
    claims::{completions, site_median},
    copies_of, Answer, Inputs,
};
use crate::{
    experiment::analysis::{
        crossovers::{Better, Separation},
        format::{num, with_interval},
        groups::{find_group, sizes_of, Group, Stat, MIN_REPEATS_TO_DECIDE},
    },
    experiment::results::TopologyKind,
    util::units::format_size,
    workload::modes::{Mode, ModeSpec},
};

/// The modes at one size, best median first.
struct SizeRanking {
    size: u64,
    ranked: Vec<(Mode, Stat)>,
    /// The best mode's interval is clear of the runner-up's (and so of every other).
    decided: bool,
}

/// Per size, the modes ranked by a metric (best first); sizes with one mode only are
/// left out, since nobody can win there.
fn rankings(
    groups: &[Group],
    threads: usize,
    f: &dyn Fn(&Group) -> Option<Stat>,
    better: Better,
) -> Vec<SizeRanking> {
    let mut out = Vec::new();
    for size in sizes_of(groups, threads) {
        let mut ranked: Vec<(Mode, Stat)> = groups
            .iter()
            .filter(|g| g.threads == threads && g.size == size)
            .filter_map(|g| Some((g.mode, f(g)?)))
            .collect();
        if ranked.len() < 2 {
            continue;
        }
        ranked.sort_by(|a, b| match better {
            Better::Higher => b.1.median.total_cmp(&a.1.median),
            Better::Lower => a.1.median.total_cmp(&b.1.median),
        });
        let decided = Separation::of(&ranked[0].1, &ranked[1].1, better) == Separation::Ahead;
        out.push(SizeRanking {
            size,
            ranked,
            decided,
        });
    }
    out
}

/// `1K: two-copy 8.90 [8.50, 9.20] > one-copy 4.70 [4.50, 4.90] (decided)`.
fn ranking_line(r: &SizeRanking, better: Better, unit: &str) -> String {
    // Best first: "a 9 > b 7" for higher-is-better, "a 1 < b 2" for lower-is-better.
    let sep = match better {
        Better::Higher => " > ",
        Better::Lower => " < ",
    };
    let verdict = if r.decided {
        format!("{} decided", r.ranked[0].0)
    } else {
        format!(
            "undecided: the intervals of {} and {} overlap",
            r.ranked[0].0, r.ranked[1].0
        )
    };
    format!(
        "{}: {} {unit} ({verdict})",
        format_size(r.size),
        r.ranked
            .iter()
            .map(|(m, s)| format!("{m} {}", with_interval(s)))
            .collect::<Vec<_>>()
            .join(sep)
    )
}

/// `two-copy wins at 3 of 6 sizes, one-copy at 1; undecided at 2 (4K, 64K)`.
fn wins_text(rankings: &[SizeRanking]) -> String {
    let total = rankings.len();
    let mut wins: BTreeMap<Mode, usize> = BTreeMap::new();
    for r in rankings.iter().filter(|r| r.decided) {
        *wins.entry(r.ranked[0].0).or_default() += 1;
    }
    let undecided: Vec<String> = rankings
        .iter()
        .filter(|r| !r.decided)
        .map(|r| format_size(r.size))
        .collect();
    let mut parts: Vec<String> = wins
        .iter()
        .map(|(m, n)| format!("{m} wins (decided) at {n} of {total} sizes"))
        .collect();
    if !undecided.is_empty() {
        parts.push(format!(
            "undecided at {} of {total} ({})",
            undecided.len(),
            undecided.join(", ")
        ));
    }
    parts.join(", ")
}

/// Which mode wins where, in throughput and in CPU per byte, at `threads`.
pub(super) fn which_mode_wins(a: &Inputs<'_>, threads: usize) -> Answer {
    let cpu = a.cpu_metric;
    let throughput = rankings(a.groups, threads, &|g| g.throughput_gbps, Better::Higher);
    let cpu_ranks = rankings(a.groups, threads, &|g| cpu.of(g), Better::Lower);
    let section = |rankings: &[SizeRanking], better, unit, none: &str| {
        if rankings.is_empty() {
            return none.to_string();
        }
        format!(
            "{}. {}",
            wins_text(rankings),
            rankings
                .iter()
                .map(|r| ranking_line(r, better, unit))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Answer {
        question: "Which mode wins where?".to_string(),
        answer: format!(
            "Throughput, {threads} thread(s), median [interval] of repeats: {}. CPU per byte \
             ({}): {}.",
            section(&throughput, Better::Higher, "Gbit/s", "no data"),
            cpu.label(),
            section(&cpu_ranks, Better::Lower, "ns/B", "no CPU figures"),
        ),
        basis: format!(
            "throughput observed by the client (payload bytes verified / stream seconds); CPU \
             time measured per process (see the CPU source column of results.csv). A winner \
             is decided only where its interval is clear of the runner-up's, each with at \
             least {MIN_REPEATS_TO_DECIDE} repeats"
        ),
    }
}

/// Does a mode that claims no copy cost less CPU per byte than the modes it challenges?
pub(super) fn zero_copy_cpu_answer(
    a: &Inputs<'_>,
    spec: &ModeSpec,
    threads: usize,
    topology: TopologyKind,
) -> Answer {
    let groups = a.groups;
    let cpu = a.cpu_metric;
    let cpu_of = move |g: &Group| cpu.of(g);
    let name = spec.name;
    let question = format!("Does {name} reduce CPU per byte here?");
    let mut lines = Vec::new();
    // Per baseline: sizes decidedly lower, decidedly higher, undecided.
    let mut tally = BTreeMap::<Mode, [Vec<u64>; 3]>::new();
    for size in sizes_of(groups, threads) {
        let Some(z) = find_group(groups, spec.mode, size, threads).and_then(&cpu_of) else {
            continue;
        };
        let mut parts = vec![format!("{name} {}", with_interval(&z))];
        for &other in spec.challenges {
            if let Some(o) = find_group(groups, other, size, threads).and_then(&cpu_of) {
                let slot = match z.decided_order(&o) {
                    Some(Ordering::Less) => 0,
                    Some(_) => 1,
                    None => 2,
                };
                tally.entry(other).or_default()[slot].push(size);
                parts.push(format!("{other} {}", with_interval(&o)));
            }
        }
        lines.push(format!("{}: {} ns/B", format_size(size), parts.join(", ")));
    }
    if lines.is_empty() {
        return Answer {
            question,
            answer: format!("Cannot be answered: {name} has no CPU figures in this run."),
            basis: "unavailable".to_string(),
        };
    }
    let counts = tally
        .iter()
        .map(|(m, [lower, higher, open])| {
            let n = lower.len() + higher.len() + open.len();
            format!(
                "against {m}: decidedly lower at {} of {n} sizes, decidedly higher at {}, \
                 undecided at {}",
                lower.len(),
                higher.len(),
                open.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let copies = copies_of(a, spec.mode);
    let deferred = copies.and_then(|c| site_median(c, CopySite::DeferredCopy));
    let flagged = completions(groups, spec.mode).flagged();
    let why = match (deferred, copies) {
        (Some((d, src)), Some(c)) if d > 0.0 => format!(
            " The reason is in the copy sites: at {} the kernel copied {} B per message of \
             {} B after the send (deferred_copy, {}), and {flagged} were flagged \
             SO_EE_CODE_ZEROCOPY_COPIED: {} the copy is moved, not removed.",
            format_size(c.size),
            num(d),
            c.size,
            src.name(),
            match topology {
                TopologyKind::Loopback => "on loopback",
                TopologyKind::Netns => "across two namespaces of one kernel",
                TopologyKind::Remote => "between these two hosts",
            }
        ),
        (Some((d, src)), Some(c)) => format!(
            " At {} the deferred copy was {} B per message ({}).",
            format_size(c.size),
            num(d),
            src.name()
        ),
        _ => String::new(),
    };
    Answer {
        question,
        answer: format!(
            "{}: {name}'s CPU per byte, {counts}. {}.{why}",
            cpu.label(),
            lines.join("; ")
        ),
        basis: "CPU time measured per process, median [interval] of repeats; decided only \
                where the intervals do not overlap; deferred copy from the copy probes or, \
                where skb_copy_ubufs cannot be probed, reported by the kernel's completion \
                flags"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::analysis::groups::stat;

    #[test]
    fn a_winner_is_decided_only_clear_of_the_runner_up() {
        let s = |v: &[f64]| stat(v).unwrap();
        let clear = SizeRanking {
            size: 1024,
            ranked: vec![
                (Mode::TwoCopy, s(&[9.0, 9.1, 9.2])),
                (Mode::OneCopy, s(&[4.0, 4.1, 4.2])),
            ],
            decided: true,
        };
        assert_eq!(
            ranking_line(&clear, Better::Higher, "Gbit/s"),
            "1K: two-copy 9.10 [9.00, 9.20] > one-copy 4.10 [4.00, 4.20] Gbit/s (two-copy \
             decided)"
        );
        let open = SizeRanking {
            size: 4096,
            ranked: vec![
                (Mode::OneCopy, s(&[5.0, 5.5, 6.0])),
                (Mode::TwoCopy, s(&[4.8, 5.2, 5.3])),
            ],
            decided: false,
        };
        assert_eq!(
            wins_text(&[clear, open]),
            "two-copy wins (decided) at 1 of 2 sizes, undecided at 1 of 2 (4K)"
        );
    }
}
