//! The machine's own floor: a 1-byte TCP ping-pong over loopback between two threads of
//! this process, with no mode, no message and no verification involved. Each round trip
//! hands the turn over twice, so it costs two wake-ups of a sleeping thread plus the
//! loopback path; pinned to one CPU the wake-up is a switch on that CPU, pinned to two it
//! is a cross-CPU wake-up (an inter-processor interrupt, a VM exit in a guest).
//!
//! Measured at the start of a run, after the verification, round-robin across the
//! placements like the cells' repeats.

use std::{
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;

use crate::{
    experiment::{
        placement::Placement,
        results::{FigureSummary, FloorFigures, FloorPlacement, MachineFloor},
    },
    util::affinity::PinnedThread,
};

/// Bytes each way per round trip.
const MESSAGE_BYTES: usize = 1;

/// Measures the floor for `repeats` rounds of `seconds` per placement. The two CPUs are
/// those of the run's placement when it pins server and client apart, else the first two
/// this process may use; with one CPU only, "two CPUs" is not measured and says so.
/// Stops early (with what it has) when `stop` is set.
pub(crate) fn measure_floor(
    run_placement: &Placement,
    allowed: &[usize],
    repeats: u32,
    seconds: f64,
    stop: &AtomicBool,
) -> Result<MachineFloor> {
    let (a, b) = floor_cpus(run_placement, allowed);
    let mut plan: Vec<(FloorPlacement, Vec<usize>)> = Vec::new();
    let mut not_measured = Vec::new();
    let too_few = || format!("this process may run on {} CPU(s) only", allowed.len());
    match a {
        Some(a) => plan.push((FloorPlacement::OneCpu, vec![a])),
        None => not_measured.push((FloorPlacement::OneCpu, too_few())),
    }
    match (a, b) {
        (Some(a), Some(b)) => plan.push((FloorPlacement::TwoCpus, vec![a, b])),
        _ => not_measured.push((FloorPlacement::TwoCpus, too_few())),
    }
    plan.push((FloorPlacement::Unpinned, Vec::new()));

    let duration = Duration::from_secs_f64(seconds);
    // Per placement: (round trips, p50 us, p99 us) of each repeat.
    let mut samples: Vec<Vec<(u64, f64, f64)>> = vec![Vec::new(); plan.len()];
    'repeats: for _ in 0..repeats.max(1) {
        for (i, (_, cpus)) in plan.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break 'repeats;
            }
            let (client_cpu, echo_cpu) = match cpus.as_slice() {
                [one] => (Some(*one), Some(*one)),
                [first, second] => (Some(*second), Some(*first)),
                _ => (None, None),
            };
            samples[i].push(ping_pong(duration, client_cpu, echo_cpu)?);
        }
    }
    let placements = plan
        .into_iter()
        .zip(samples)
        .filter_map(|((placement, cpus), runs)| {
            let p50: Vec<f64> = runs.iter().map(|r| r.1).collect();
            let p99: Vec<f64> = runs.iter().map(|r| r.2).collect();
            Some(FloorFigures {
                placement,
                cpus,
                round_trips: runs.iter().map(|r| r.0).collect(),
                round_trip_p50_us: FigureSummary::of(&p50)?,
                round_trip_p99_us: FigureSummary::of(&p99)?,
            })
        })
        .collect();
    Ok(MachineFloor {
        message_bytes: MESSAGE_BYTES as u64,
        seconds,
        placements,
        not_measured,
    })
}

/// The two CPUs of the floor: the run's server and client CPUs when they differ, else the
/// first two allowed.
fn floor_cpus(run: &Placement, allowed: &[usize]) -> (Option<usize>, Option<usize>) {
    match (run.server_cpus.first(), run.client_cpus.first()) {
        (Some(&s), Some(&c)) if s != c => (Some(s), Some(c)),
        _ => (allowed.first().copied(), allowed.get(1).copied()),
    }
}

/// One repeat: round trips for `duration`, the client on `client_cpu` (this thread) and
/// the echo thread on `echo_cpu`. Returns (round trips, p50 us, p99 us).
fn ping_pong(
    duration: Duration,
    client_cpu: Option<usize>,
    echo_cpu: Option<usize>,
) -> Result<(u64, f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("floor: binding on loopback")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::Builder::new()
        .name("floor-echo".to_string())
        .spawn(move || -> io::Result<()> {
            let _pinned = match echo_cpu {
                Some(cpu) => Some(PinnedThread::pin(&[cpu]).map_err(io::Error::other)?),
                None => None,
            };
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let mut byte = [0u8; MESSAGE_BYTES];
            loop {
                match stream.read(&mut byte) {
                    Ok(0) => return Ok(()),
                    Ok(_) => stream.write_all(&byte)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .context("floor: starting the echo thread")?;
    let measured = (|| -> Result<(u64, f64, f64)> {
        let _pinned = client_cpu
            .map(|cpu| PinnedThread::pin(&[cpu]))
            .transpose()?;
        let mut stream = TcpStream::connect(addr).context("floor: connecting")?;
        stream.set_nodelay(true)?;
        let mut histogram = Histogram::<u64>::new(3).map_err(|e| anyhow!("{e}"))?;
        let mut byte = [1u8; MESSAGE_BYTES];
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let start = Instant::now();
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            let nanos = start.elapsed().as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
            let _ = histogram.record(nanos);
        }
        let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Ok((histogram.len(), us(0.50), us(0.99)))
    })();
    if measured.is_err() {
        // The client may have failed before connecting: release the echo thread's accept.
        let _ = TcpStream::connect(addr);
    }
    // The echo thread ends when the client's socket closes (end of `measured`).
    let echoed = echo
        .join()
        .map_err(|_| anyhow!("floor: the echo thread panicked"))?;
    let measured = measured?;
    echoed.context("floor: the echo thread failed")?;
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_uses_the_runs_cpus_when_they_differ() {
        let apart = Placement {
            server_cpus: vec![2],
            client_cpus: vec![3],
        };
        assert_eq!(floor_cpus(&apart, &[0, 1, 2, 3]), (Some(2), Some(3)));
        assert_eq!(
            floor_cpus(&Placement::unpinned(), &[0, 1, 2]),
            (Some(0), Some(1))
        );
        assert_eq!(floor_cpus(&Placement::unpinned(), &[5]), (Some(5), None));
    }

    #[test]
    fn a_ping_pong_counts_its_round_trips() {
        // Unpinned, briefly: behaviour only, never speed.
        let stop = AtomicBool::new(false);
        let floor = measure_floor(&Placement::unpinned(), &[], 2, 0.02, &stop).unwrap();
        assert_eq!(floor.message_bytes, 1);
        // No allowed CPU given: only the unpinned placement can be measured.
        assert_eq!(floor.placements.len(), 1);
        let unpinned = &floor.placements[0];
        assert_eq!(unpinned.placement, FloorPlacement::Unpinned);
        assert_eq!(unpinned.round_trips.len(), 2);
        assert!(unpinned.round_trips.iter().all(|&n| n > 0));
        assert_eq!(unpinned.round_trip_p50_us.values.len(), 2);
        assert_eq!(floor.not_measured.len(), 2);
    }
}
