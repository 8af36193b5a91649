//! Our side of the bench: which mode it runs (read from the mode table, never named
//! here) and one stream run of it, a `netcopy server` child with the client in this
//! process.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::{affinity, placement::PlacementSampler};
use crate::workload::{
    client::{run_client, ClientConfig, RunLimit, Verification},
    harness::ServerProcess,
    modes::{Completions, Mode, ModeSpec, MODES},
};

/// The mode compared with iperf3, and the workload of the probe overhead: the table's
/// bench peer, whose work is closest to iperf3's (no user-space copy, no completions),
/// so that the instruments' cost is measured on the figures part 1 compares.
pub(super) fn peer() -> &'static ModeSpec {
    MODES
        .iter()
        .find(|s| s.bench_peer)
        .expect("the mode table has exactly one bench peer (a unit test checks it)")
}

/// The modes that attach the user's pages instead of copying them (MSG_ZEROCOPY): the
/// ones compared with `iperf3 -Z`.
pub(super) fn zero_copy_modes() -> impl Iterator<Item = &'static ModeSpec> {
    MODES.iter().filter(|s| s.claim.zerocopy_attach)
}

/// The zero-copy modes that send with sendmsg(MSG_ZEROCOPY) and read their completions
/// from the socket's error queue: those a bare MSG_ZEROCOPY loop is the limit of.
pub(super) fn msg_zerocopy_modes() -> impl Iterator<Item = &'static ModeSpec> {
    zero_copy_modes().filter(|s| s.claim.completions == Some(Completions::ErrorQueue))
}

/// One stream run of ours.
pub(super) struct OurRun {
    pub(super) gbps: f64,
    /// Modes with completions: completed bytes and those flagged COPIED.
    pub(super) completed_bytes: u64,
    pub(super) copied_bytes: u64,
    /// Unpinned runs: the share of samples with the server's and the client's busiest
    /// threads on one CPU.
    pub(super) same_cpu_share: Option<f64>,
}

/// Runs a `netcopy server` child in `mode` and the client in this process for `seconds`,
/// both pinned to `cpu` when given.
pub(super) fn stream(
    mode: Mode,
    size: u64,
    threads: usize,
    seconds: u32,
    cpu: Option<usize>,
    verification: Verification,
) -> Result<OurRun> {
    let server = ServerProcess::spawn(mode, &[])?;
    let mut config = ClientConfig::new(
        &server.addr,
        size,
        threads,
        RunLimit::Duration(Duration::from_secs(u64::from(seconds))),
    );
    config.verification = verification;
    let pin = match cpu {
        Some(cpu) => {
            affinity::pin_process(server.pid(), &[cpu])?;
            Some(affinity::PinnedThread::pin(&[cpu])?)
        }
        None => None,
    };
    // Where the scheduler puts an unpinned stream's two threads.
    let placement = cpu
        .is_none()
        .then(|| PlacementSampler::start(server.pid(), std::process::id()));
    let client = run_client(&config);
    let same_cpu_share = placement.and_then(PlacementSampler::finish);
    drop(pin);
    let totals = server.stop();
    let report = client.map_err(|f| anyhow!("netcopy client ({mode}): {f}"))?;
    let totals = totals?;
    if report.messages == 0 {
        bail!("netcopy client ({mode}) received no complete message");
    }
    Ok(OurRun {
        gbps: report.throughput_gbps,
        completed_bytes: totals.total.sender.completed_bytes,
        copied_bytes: totals.total.sender.copied_bytes,
        same_cpu_share,
    })
}
