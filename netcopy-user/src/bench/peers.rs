//! Part 1: netcopy against iperf3, the tool users would pick instead. Each comparison runs
//! both sides in one invocation, alternating them round by round.

use anyhow::{anyhow, Result};

use super::{
    affinity,
    iperf::{self, Iperf3, Iperf3Options},
    ours,
    progress::progress,
    schema::{Comparison, Outcome, PeerSection},
};
use crate::{
    util::{stats, stats::Summary, units::format_size},
    workload::{client::Verification, modes::Mode},
};

/// Message size of the comparisons with iperf3 (`iperf3 -l 128K`).
pub(super) const PEER_SIZE: u64 = 128 << 10;
/// Streams of the multi-stream comparison (`-P 4` / `--threads 4`).
pub(super) const PEER_STREAMS: u32 = 4;

/// Name of the single-stream comparison, neither side pinned.
pub(super) const SINGLE_NAME: &str = "single stream";
/// Name of the single-stream comparison with both sides pinned to one CPU, netcopy's
/// client checking framing only: the same receive work as iperf3's.
pub(super) const PINNED_NAME: &str = "single stream, one CPU";
/// The same with netcopy's full verification (CRC32C of every payload): what the
/// checksum costs when nothing runs in parallel.
const PINNED_CRC_NAME: &str = "single stream, one CPU, netcopy with CRC32C";
/// Name of the comparison with [`PEER_STREAMS`] streams on each side.
pub(super) const MULTI_NAME: &str = "4 streams";

/// Why `iperf3 -Z` and MSG_ZEROCOPY are not the same thing.
pub(super) const ZERO_COPY_MECHANISMS: &str = "iperf3 -Z is a different mechanism: it sends with \
sendfile(2) from a file, so the socket takes page-cache pages by reference, with no user \
buffer and no completion notifications; netcopy's zero-copy is sendmsg(MSG_ZEROCOPY) on \
pinned user memory, completed through the socket error queue, and on loopback the kernel \
copies those pages before a local receiver may see them. The ratio compares what each \
delivers, not the same code path.";

/// One comparison to run: our side's mode and settings, and iperf3's options.
struct PeerPlan {
    name: String,
    mode: Mode,
    threads: u32,
    verification: Verification,
    options: Iperf3Options,
}

/// The comparisons, in the report's order: the bench peer single-stream (free, then
/// pinned to the last CPU we may use with and without the checksum), with
/// [`PEER_STREAMS`] streams, then every zero-copy mode against `iperf3 -Z`.
fn plans(seconds: u32) -> Vec<PeerPlan> {
    let peer = ours::peer().mode;
    let options = |streams: u32, zerocopy: bool, cpu: Option<usize>| Iperf3Options {
        streams,
        block: PEER_SIZE,
        seconds,
        zerocopy,
        cpu,
    };
    let last_cpu = affinity::allowed_cpus()
        .ok()
        .and_then(|c| c.last().copied());
    let mut plans = vec![PeerPlan {
        name: SINGLE_NAME.to_string(),
        mode: peer,
        threads: 1,
        verification: Verification::Full,
        options: options(1, false, None),
    }];
    if let Some(cpu) = last_cpu {
        for (name, verification) in [
            (PINNED_NAME, Verification::Framing),
            (PINNED_CRC_NAME, Verification::Full),
        ] {
            plans.push(PeerPlan {
                name: name.to_string(),
                mode: peer,
                threads: 1,
                verification,
                options: options(1, false, Some(cpu)),
            });
        }
    }
    plans.push(PeerPlan {
        name: MULTI_NAME.to_string(),
        mode: peer,
        threads: PEER_STREAMS,
        verification: Verification::Full,
        options: options(PEER_STREAMS, false, None),
    });
    plans.extend(ours::zero_copy_modes().map(|spec| PeerPlan {
        name: format!("{}, single stream", spec.name),
        mode: spec.mode,
        threads: 1,
        verification: Verification::Full,
        options: options(1, true, None),
    }));
    plans
}

/// Runs every comparison, `rounds` rounds of `seconds` per side; iperf3 missing or its
/// server failing leaves our side measured and theirs explained.
pub(super) fn section(rounds: u32, seconds: u32) -> PeerSection {
    let iperf3 = match Iperf3::find() {
        Ok(i) => {
            progress(&format!("iperf3: {} ({})", i.path.display(), i.version));
            Outcome::Measured(i)
        }
        Err(reason) => {
            progress(&format!("iperf3: {reason}; iperf3 comparisons skipped"));
            Outcome::NotMeasured { reason }
        }
    };
    let server = match &iperf3 {
        Outcome::Measured(i) => Some(iperf::Iperf3Server::start(i)),
        _ => None,
    };
    let mut comparisons = Vec::new();
    for plan in &plans(seconds) {
        let theirs = match (&iperf3, &server) {
            (Outcome::Measured(i), Some(Ok(s))) => Ok((i, s.port)),
            (_, Some(Err(e))) => Err(Outcome::Failed {
                error: format!("the iperf3 server did not start: {e:#}"),
            }),
            (_, _) => Err(Outcome::NotMeasured {
                reason: "iperf3 is not installed (see the iperf3 line)".to_string(),
            }),
        };
        let outcome = match compare_with_iperf3(plan, theirs, rounds) {
            Ok(c) => Outcome::Measured(c),
            Err(e) => {
                progress(&format!("{}: FAILED: {e:#}", plan.name));
                Outcome::Failed {
                    error: format!("{}: {e:#}", plan.name),
                }
            }
        };
        comparisons.push(outcome);
    }
    if let Some(Ok(server)) = server {
        server.stop();
    }
    PeerSection {
        iperf3,
        size: PEER_SIZE,
        seconds,
        comparisons,
    }
}

fn compare_with_iperf3(
    plan: &PeerPlan,
    theirs: std::result::Result<(&Iperf3, u16), Outcome<Summary>>,
    rounds: u32,
) -> Result<Comparison> {
    let mut ours = Vec::new();
    let mut their_samples = Vec::new();
    let mut round_ratios = Vec::new();
    let (mut completed, mut copied) = (0u64, 0u64);
    for round in 1..=rounds {
        let run = ours::stream(
            plan.mode,
            PEER_SIZE,
            plan.threads as usize,
            plan.options.seconds,
            plan.options.cpu,
            plan.verification,
        )?;
        completed += run.completed_bytes;
        copied += run.copied_bytes;
        ours.push(run.gbps);
        let mut line = format!(
            "{} round {round}/{rounds}: netcopy {} {:.2} Gbit/s",
            plan.name, plan.mode, run.gbps
        );
        if let Ok((iperf3, port)) = &theirs {
            let result = iperf::run_client(iperf3, *port, &plan.options)?;
            let gbps = result.receiver_gbps();
            their_samples.push(gbps);
            if let Some(r) = stats::ratio(run.gbps, gbps) {
                round_ratios.push(r);
            }
            line.push_str(&format!(", iperf3 {gbps:.2} Gbit/s"));
        }
        progress(&line);
    }
    let ours_gbps = Summary::of(&ours).ok_or_else(|| anyhow!("no valid figure of ours"))?;
    let theirs_gbps = match theirs {
        Ok(_) => Outcome::Measured(
            Summary::of(&their_samples).ok_or_else(|| anyhow!("no valid iperf3 figure"))?,
        ),
        Err(outcome) => outcome,
    };
    let ratio = theirs_gbps
        .measured()
        .and_then(|t| stats::ratio(ours_gbps.median, t.median));
    Ok(Comparison {
        name: plan.name.clone(),
        streams: plan.threads,
        ours_label: format!(
            "netcopy {} --threads {} --size {}{}{}",
            plan.mode,
            plan.threads,
            format_size(PEER_SIZE),
            match plan.verification {
                Verification::Full => "",
                Verification::Framing => " --verify framing",
            },
            plan.options
                .cpu
                .map_or(String::new(), |cpu| format!(" on CPU {cpu}"))
        ),
        theirs_label: plan.options.command_line(),
        ours_gbps,
        theirs_gbps,
        ratio,
        round_ratios,
        notes: notes(plan, completed, copied),
    })
}

/// Facts about our side of one comparison worth knowing beside its figures.
fn notes(plan: &PeerPlan, completed: u64, copied: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if plan.mode.spec().claim.completions.is_some() && completed > 0 {
        notes.push(format!(
            "netcopy {}: {:.1}% of the completed bytes were flagged \
             SO_EE_CODE_ZEROCOPY_COPIED (the kernel copied the pages after all)",
            plan.mode,
            copied as f64 * 100.0 / completed as f64
        ));
    }
    if plan.options.zerocopy {
        notes.push(ZERO_COPY_MECHANISMS.to_string());
    }
    if let Some(cpu) = plan.options.cpu {
        notes.push(format!(
            "both sides on CPU {cpu} (netcopy: server and client threads pinned; iperf3: -A \
             {cpu},{cpu}): no parallelism between sender and receiver, so this compares the CPU \
             cost per byte; {}",
            match plan.verification {
                Verification::Framing => {
                    "netcopy's client checks sequence numbers, lengths and field stamps \
                     (--verify framing) and no payload checksum, as iperf3's receiver \
                     discards the data: the same receive work"
                }
                Verification::Full => {
                    "netcopy's client also computes the CRC32C of every payload, which \
                     iperf3's receiver does not: the difference to the framing-only row is \
                     the checksum's cost"
                }
            }
        ));
    }
    if plan.threads > 1 {
        notes.push(format!(
            "iperf3 {} runs all -P streams in one thread per side (iperf3 >= 3.16 uses a \
             thread per stream); netcopy uses a thread per connection on both sides",
            "3.12 and older"
        ));
    }
    notes
}
