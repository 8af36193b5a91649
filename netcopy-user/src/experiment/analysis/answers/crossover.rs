//! "At what message size does one mode outperform another?", from the crossovers, each
//! said decided or undecided with the figures that make it so.

use super::Answer;
use crate::{
    experiment::analysis::{
        crossovers::{Compared, Crossover, CrossoverPoint, Separation},
        format::with_interval,
        groups::MIN_REPEATS_TO_DECIDE,
    },
    util::units::format_size,
    workload::modes::Mode,
};

/// The answer for one (challenger, baseline) pair, over every metric measured.
pub(super) fn crossover_answer(crossovers: &[Crossover], pair: (Mode, Mode)) -> Answer {
    let xs: Vec<String> = crossovers
        .iter()
        .filter(|x| (x.challenger, x.baseline) == pair)
        .map(crossover_text)
        .collect();
    Answer {
        question: format!(
            "At what message size does {} outperform {}?",
            pair.0, pair.1
        ),
        answer: if xs.is_empty() {
            "Cannot be answered: one of the two modes was not measured.".to_string()
        } else {
            format!("{}.", xs.join(". "))
        },
        basis: format!(
            "medians [intervals] of repeats; crossover = the smallest size from which on the \
             challenger is ahead at every larger measured size; decided = the intervals are \
             clear of each other at that size, every larger one and the one below (or, for \
             never, at the largest size), each side with at least {MIN_REPEATS_TO_DECIDE} \
             repeats"
        ),
    }
}

/// The sizes whose overlapping intervals keep a crossover undecided.
fn undecided_at(x: &Crossover) -> Vec<&Compared> {
    match x.point {
        CrossoverPoint::NoData => Vec::new(),
        CrossoverPoint::Never => x
            .compared
            .last()
            .filter(|c| c.separation != Separation::Behind)
            .into_iter()
            .collect(),
        CrossoverPoint::At(s) => {
            let from = x.compared.partition_point(|c| c.size < s);
            let below = from
                .checked_sub(1)
                .map(|i| &x.compared[i])
                .filter(|c| c.separation != Separation::Behind);
            below
                .into_iter()
                .chain(
                    x.compared[from..]
                        .iter()
                        .filter(|c| c.separation != Separation::Ahead),
                )
                .collect()
        }
    }
}

pub(super) fn crossover_text(x: &Crossover) -> String {
    // "one-copy 8.69 [8.50, 8.90] vs two-copy 7.70 [7.50, 7.90] Gbit/s"
    let versus = |c: &Compared| {
        format!(
            "{} {} vs {} {} {}",
            x.challenger,
            with_interval(&c.challenger),
            x.baseline,
            with_interval(&c.baseline),
            x.metric.unit()
        )
    };
    // "; it also led at 4K, 16K but fell behind again", or nothing.
    let leads = |before: &str, after: &str| {
        if x.earlier_leads.is_empty() {
            return String::new();
        }
        let sizes: Vec<String> = x.earlier_leads.iter().map(|s| format_size(*s)).collect();
        format!("; {before} {} {after}", sizes.join(", "))
    };
    let head = match x.point {
        CrossoverPoint::At(s) => {
            let from = x.compared.partition_point(|c| c.size < s);
            let below = from
                .checked_sub(1)
                .map(|i| {
                    let c = &x.compared[i];
                    format!("; below it, at {}: {}", format_size(c.size), versus(c))
                })
                .unwrap_or_else(|| "; ahead at every measured size".to_string());
            format!(
                "from {} on ({} at that size{below}{})",
                format_size(s),
                x.compared.get(from).map(versus).unwrap_or_default(),
                leads("it also led at", "but fell behind again")
            )
        }
        CrossoverPoint::Never => format!(
            "never{}{}",
            x.compared
                .last()
                .map(|c| format!(
                    " (at the largest size, {}: {})",
                    format_size(c.size),
                    versus(c)
                ))
                .unwrap_or_default(),
            leads("it led at", "but not for good")
        ),
        CrossoverPoint::NoData => "no size has figures for both modes".to_string(),
    };
    let verdict = if x.decided {
        "decided".to_string()
    } else if x.point == CrossoverPoint::NoData {
        "undecided".to_string()
    } else {
        let open = undecided_at(x);
        let few = open.iter().any(|c| {
            c.challenger.n < MIN_REPEATS_TO_DECIDE || c.baseline.n < MIN_REPEATS_TO_DECIDE
        });
        let sizes: Vec<String> = open.iter().map(|c| format_size(c.size)).collect();
        format!(
            "undecided ({} at {})",
            if few {
                format!("fewer than {MIN_REPEATS_TO_DECIDE} repeats, or intervals that overlap,")
            } else {
                "the intervals overlap".to_string()
            },
            sizes.join(", ")
        )
    };
    format!(
        "{} over {} in {} ({} thread(s)): {verdict}: {head}",
        x.challenger,
        x.baseline,
        x.metric.key(),
        x.threads
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::analysis::{
        crossovers::{Better, CrossoverMetric},
        groups::stat,
    };

    fn compared(size: u64, a: &[f64], b: &[f64]) -> Compared {
        let (a, b) = (stat(a).unwrap(), stat(b).unwrap());
        Compared {
            size,
            challenger: a,
            baseline: b,
            ahead: a.median > b.median,
            separation: Separation::of(&a, &b, Better::Higher),
        }
    }

    fn crossover(point: CrossoverPoint, compared: Vec<Compared>, decided: bool) -> Crossover {
        Crossover {
            challenger: Mode::OneCopy,
            baseline: Mode::TwoCopy,
            metric: CrossoverMetric::Throughput,
            threads: 1,
            point,
            compared,
            earlier_leads: Vec::new(),
            decided,
        }
    }

    #[test]
    fn the_text_says_decided_or_undecided_with_the_figures() {
        let behind = compared(1024, &[1.0, 1.1, 1.2], &[2.0, 2.1, 2.2]);
        let ahead = compared(4096, &[3.0, 3.1, 3.2], &[2.0, 2.1, 2.2]);
        let x = crossover(CrossoverPoint::At(4096), vec![behind, ahead], true);
        assert_eq!(
            crossover_text(&x),
            "one-copy over two-copy in throughput (1 thread(s)): decided: from 4K on \
             (one-copy 3.10 [3.00, 3.20] vs two-copy 2.10 [2.00, 2.20] Gbit/s at that size; \
             below it, at 1K: one-copy 1.10 [1.00, 1.20] vs two-copy 2.10 [2.00, 2.20] Gbit/s)"
        );
        let close = compared(1024, &[1.9, 2.0, 2.3], &[2.0, 2.1, 2.2]);
        let x = crossover(CrossoverPoint::At(4096), vec![close, ahead], false);
        assert!(
            crossover_text(&x).contains("undecided (the intervals overlap at 1K): from 4K on"),
            "{}",
            crossover_text(&x)
        );
        let single = compared(4096, &[3.0], &[2.0]);
        let x = crossover(CrossoverPoint::At(4096), vec![single], false);
        assert!(
            crossover_text(&x).contains("fewer than 3 repeats"),
            "{}",
            crossover_text(&x)
        );
    }
}
