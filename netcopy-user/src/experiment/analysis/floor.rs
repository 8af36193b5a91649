//! The machine's floor read against the cells: which floor matches the cells' placement,
//! and whether the 1-thread latency is mostly that floor (two wake-ups per round trip)
//! rather than the modes' work.

use std::cmp::Ordering;

use super::{
    format::{num, with_interval},
    groups::{find_group, modes_of, stat, Group, Stat},
};
use crate::{
    experiment::results::{FloorPlacement, Results},
    util::units::format_size,
};

/// A 1-thread round trip at most this many times the floor is said to be dominated by it.
pub(crate) const WAKE_UP_DOMINATED: u32 = 2;

/// One measured placement of the floor.
#[derive(Clone, Debug)]
pub(crate) struct FloorRow {
    pub(crate) placement: FloorPlacement,
    pub(crate) cpus: Vec<usize>,
    pub(crate) p50_us: Option<Stat>,
    pub(crate) p99_us: Option<Stat>,
    pub(crate) round_trips: u64,
}

/// The floor of a run and what it says about the cells' latency.
#[derive(Clone, Debug, Default)]
pub(crate) struct FloorReading {
    pub(crate) seconds: f64,
    pub(crate) rows: Vec<FloorRow>,
    pub(crate) not_measured: Vec<(FloorPlacement, String)>,
    /// The floor placement that matches where the cells ran.
    pub(crate) matching: Option<FloorPlacement>,
    /// Sentences for the report: the floor against the 1-thread latency.
    pub(crate) notes: Vec<String>,
}

/// Where the cells ran, as a floor placement: server and client apart, together on one
/// CPU, or unpinned (also for cells that recorded no placement).
fn matching_placement(results: &Results) -> Option<FloorPlacement> {
    let placement = results.cells.iter().find_map(|c| c.placement.as_ref());
    Some(match placement {
        Some(p) if p.is_pinned() => {
            let apart = p.server_cpus.iter().all(|c| !p.client_cpus.contains(c));
            if apart {
                FloorPlacement::TwoCpus
            } else {
                FloorPlacement::OneCpu
            }
        }
        _ => FloorPlacement::Unpinned,
    })
}

pub(super) fn floor_reading(results: &Results, groups: &[Group]) -> FloorReading {
    let Some(floor) = &results.machine_floor else {
        return FloorReading::default();
    };
    let rows: Vec<FloorRow> = floor
        .placements
        .iter()
        .map(|f| FloorRow {
            placement: f.placement,
            cpus: f.cpus.clone(),
            p50_us: stat(&f.round_trip_p50_us.values),
            p99_us: stat(&f.round_trip_p99_us.values),
            round_trips: f.round_trips.iter().sum(),
        })
        .collect();
    let matching = matching_placement(results);
    let mut reading = FloorReading {
        seconds: floor.seconds,
        notes: Vec::new(),
        not_measured: floor.not_measured.clone(),
        matching,
        rows,
    };
    reading.notes = notes(&reading, groups);
    reading
}

fn p50_of(reading: &FloorReading, placement: FloorPlacement) -> Option<Stat> {
    reading
        .rows
        .iter()
        .find(|r| r.placement == placement)
        .and_then(|r| r.p50_us)
}

/// The floor against the 1-thread latency at the smallest size, and 1 against 2 threads.
fn notes(reading: &FloorReading, groups: &[Group]) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(one), Some(two)) = (
        p50_of(reading, FloorPlacement::OneCpu),
        p50_of(reading, FloorPlacement::TwoCpus),
    ) {
        out.push(format!(
            "A 1-byte round trip costs {} us with both threads on one CPU and {} us with one \
             thread per CPU: each round trip hands the turn over twice, and a hand-over to \
             another CPU has to wake it (an inter-processor interrupt; a VM exit in a guest)",
            with_interval(&one),
            with_interval(&two)
        ));
    }
    let Some(placement) = reading.matching else {
        return out;
    };
    let Some(floor) = p50_of(reading, placement) else {
        return out;
    };
    let smallest = groups
        .iter()
        .filter(|g| g.threads == 1 && g.latency_p50_us.is_some())
        .map(|g| g.size)
        .min();
    let Some(size) = smallest else {
        return out;
    };
    let one_thread: Vec<(String, Stat)> = modes_of(groups)
        .into_iter()
        .filter_map(|m| {
            Some((
                m.to_string(),
                find_group(groups, m, size, 1)?.latency_p50_us?,
            ))
        })
        .collect();
    if one_thread.is_empty() {
        return out;
    }
    let figures = one_thread
        .iter()
        .map(|(m, s)| format!("{m} {} us", with_interval(s)))
        .collect::<Vec<_>>()
        .join(", ");
    let worst = one_thread
        .iter()
        .map(|(_, s)| s.median / floor.median)
        .fold(0.0, f64::max);
    out.push(if worst <= f64::from(WAKE_UP_DOMINATED) {
        format!(
            "At 1 thread and {}, the round trip ({figures}) is at most {WAKE_UP_DOMINATED} \
             times the floor with the cells' placement ({}, {} us): most of it is the two \
             wake-ups every round trip needs, not the modes' work, so 1-thread latency there \
             says little about the modes",
            format_size(size),
            placement.label(),
            with_interval(&floor)
        )
    } else {
        format!(
            "At 1 thread and {}, the round trip ({figures}) is up to {} times the floor with \
             the cells' placement ({}, {} us): the modes' own work dominates",
            format_size(size),
            num(worst),
            placement.label(),
            with_interval(&floor)
        )
    });
    // Fewer threads, slower round trips: only waiting for wake-ups explains that.
    let faster_with_two: Vec<String> = modes_of(groups)
        .into_iter()
        .filter_map(|m| {
            let one = find_group(groups, m, size, 1)?.latency_p50_us?;
            let two = find_group(groups, m, size, 2)?.latency_p50_us?;
            (one.decided_order(&two) == Some(Ordering::Greater)).then(|| {
                format!(
                    "{m} {} us at 1 thread vs {} us at 2",
                    with_interval(&one),
                    with_interval(&two)
                )
            })
        })
        .collect();
    if !faster_with_two.is_empty() {
        out.push(format!(
            "At {} the round trip is decidedly slower with 1 thread than with 2 ({}): with \
             one transaction in flight each side sleeps while the other works, so every \
             round trip pays both wake-ups; with two, a CPU more often has the other \
             connection's work at hand and does not go idle",
            format_size(size),
            faster_with_two.join("; ")
        ));
    }
    out
}
