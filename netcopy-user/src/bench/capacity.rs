//! Part 4: how many events per second the syscall trace carries without loss. A
//! generator of cheap failing calls at rising rates, then the densest cells of `netcopy
//! run`'s default sweep, each under the trace as `netcopy trace` runs it.

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use super::{
    progress::progress,
    schema::{CapacitySection, CapacityStep, Outcome, WorkloadRate},
    tracing::{TraceHost, Tracer},
};
use crate::{
    ledger::{CLIENT_SLOT, SERVER_SLOT},
    trace::RingHeadroom,
    util::units::format_size,
    workload::{
        client::{run_client, ClientConfig, RunLimit},
        harness::ServerProcess,
        modes::{Mode, ModeSpec, MODES},
    },
};

/// Steps of the capacity sweep: calls per second in total (`None`: as fast as the
/// threads can make them) and generator threads; [`PER_CPU`] threads means one per CPU,
/// and [`TWICE_PER_CPU`] two per CPU.
const SWEEP: [(Option<f64>, usize); 8] = [
    (Some(10e3), 1),
    (Some(30e3), 1),
    (Some(100e3), 1),
    (Some(300e3), 1),
    (Some(600e3), 2),
    (None, 1),
    (None, PER_CPU),
    (None, TWICE_PER_CPU),
];
const PER_CPU: usize = 0;
const TWICE_PER_CPU: usize = usize::MAX;
/// The densest cells of `netcopy run`'s default sweep (sizes 1K..1M, threads 1..8): the
/// smallest message size gives the most system calls per second.
const DENSE_SIZE: u64 = 1 << 10;
const DENSE_THREADS: [usize; 2] = [1, 8];

/// The modes of the densest cells: those `netcopy run` sweeps by default.
pub(super) fn dense_modes() -> impl Iterator<Item = &'static ModeSpec> {
    MODES.iter().filter(|s| s.in_default_sweep)
}

pub(super) const GENERATOR: &str = "threads of the benchmark process calling \
recvfrom(MSG_DONTWAIT) on an empty UDP socket each (every call fails at once with EAGAIN and \
is one traced event), paced to the target rate or unpaced, while a thread of the same \
process drains the per-CPU rings as `netcopy trace` does";

/// `threads` generator threads making `rate` calls per second together (None: unpaced)
/// for `duration`; returns the calls made.
fn generate(rate: Option<f64>, threads: usize, duration: Duration) -> Result<u64> {
    let sockets: Vec<UdpSocket> = (0..threads)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .context("binding UDP sockets for the generator")?;
    let per_thread = rate.map(|r| r / threads as f64);
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .iter()
            .map(|socket| scope.spawn(move || generate_one(socket, per_thread, duration)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    }))
}

fn generate_one(socket: &UdpSocket, rate: Option<f64>, duration: Duration) -> u64 {
    let fd = socket.as_raw_fd();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        if let Some(rate) = rate {
            let due = (elapsed.as_secs_f64() * rate) as u64;
            if calls >= due {
                let ahead = (calls - due) as f64 / rate;
                if ahead > 0.001 {
                    std::thread::sleep(Duration::from_secs_f64(ahead / 2.0));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        for _ in 0..16 {
            // SAFETY: a valid fd and buffer; a null address is allowed by recvfrom.
            unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        calls += 16;
    }
    calls
}

/// Runs the sweep and the dense cells on one set of probes loaded with a trace ring.
pub(super) fn measure(tracer: &Tracer, seconds: u32) -> Result<CapacitySection> {
    let host = TraceHost::load(tracer.ring_bytes)?;
    let own = std::process::id();
    host.watch(own, CLIENT_SLOT)?;
    let duration = Duration::from_secs(u64::from(seconds));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The same generator, untraced (the probes loaded and the process watched, the trace
    // programs not attached): the baseline of the per-call cost.
    let untraced = generate(None, 1, duration)?;
    let untraced_calls_per_s = Some(untraced as f64 / duration.as_secs_f64());
    let mut steps = Vec::new();
    for (rate, threads) in SWEEP {
        let threads = match threads {
            PER_CPU => cpus,
            TWICE_PER_CPU => 2 * cpus,
            n => n,
        };
        host.start(vec![CLIENT_SLOT])?;
        let started = Instant::now();
        let calls = generate(rate, threads, duration);
        let elapsed = started.elapsed().as_secs_f64();
        let calls = match calls {
            Ok(c) => c,
            Err(e) => {
                let _ = host.stop_trace();
                return Err(e);
            }
        };
        let mut stats = host.stop_trace()?;
        // Rates per second of generation, not of the (slightly longer) trace.
        stats.seconds = elapsed;
        let step = CapacityStep {
            target_per_s: rate,
            threads,
            calls_per_s: calls as f64 / elapsed,
            calls,
            stats,
        };
        progress(&format!(
            "trace capacity: {} thread(s), target {}: {:.0} calls/s, {:.0} events/s delivered, {} lost",
            threads,
            rate.map_or("unpaced".into(), |r| format!("{r:.0}/s")),
            step.calls_per_s,
            step.delivered_per_s(),
            step.stats.lost()
        ));
        steps.push(step);
    }
    host.unwatch(own)?;
    let mut workloads = Vec::new();
    for mode in dense_modes().map(|s| s.mode) {
        for threads in DENSE_THREADS {
            let outcome = match workload_rate(&host, mode, threads) {
                Ok(w) => {
                    progress(&format!(
                        "trace capacity: {}: {:.0} events/s, {} lost",
                        w.label,
                        w.stats.events_per_second(),
                        w.stats.lost()
                    ));
                    Outcome::Measured(w)
                }
                Err(e) => Outcome::Failed {
                    error: format!("{mode} {threads} threads: {e:#}"),
                },
            };
            workloads.push(outcome);
        }
    }
    drop(host);
    let lossless = steps
        .iter()
        .filter(|s| s.stats.lost() == 0)
        .map(CapacityStep::delivered_per_s)
        .fold(None, |acc: Option<f64>, r| {
            Some(acc.map_or(r, |a| a.max(r)))
        });
    let lowest_lossy = steps
        .iter()
        .filter(|s| s.stats.lost() > 0)
        .map(|s| s.calls_per_s)
        .fold(None, |acc: Option<f64>, r| {
            Some(acc.map_or(r, |a| a.min(r)))
        });
    let busiest_unpaced = steps
        .iter()
        .filter(|s| s.target_per_s.is_none())
        .max_by(|a, b| a.stats.events.cmp(&b.stats.events));
    Ok(CapacitySection {
        drain_ceiling_events_per_s: busiest_unpaced
            .and_then(|s| s.stats.drain_events_per_cpu_second()),
        untraced_calls_per_s,
        ring_records: u64::from(
            crate::kernel::maps::LogLayout::new(
                tracer.ring_bytes,
                crate::kernel::attach::possible_cpus(),
            )
            .entries(),
        ),
        ring_bytes: tracer.ring_bytes,
        generator: GENERATOR.to_string(),
        steps,
        lossless_events_per_s: lossless,
        lowest_lossy_calls_per_s: lowest_lossy,
        workloads,
    })
}

/// A capacity step's figures, as text, in the order both renderers show them: generator
/// threads, target calls/s, calls/s made, events/s delivered, lost, the fullest CPU log.
pub(super) fn step_cells(s: &CapacityStep) -> [String; 6] {
    [
        s.threads.to_string(),
        s.target_per_s
            .map_or("unpaced".into(), |r| format!("{r:.0}")),
        format!("{:.0}", s.calls_per_s),
        format!("{:.0}", s.delivered_per_s()),
        s.stats.lost().to_string(),
        fullest_log(&s.stats.ring),
    ]
}

/// The fullest a CPU's log was found, and how long the reader had been away then:
/// `12.5% after 1.9 ms`; empty where no figures were kept (a report from before them).
pub(super) fn fullest_log(ring: &RingHeadroom) -> String {
    if ring.records_per_cpu == 0 {
        return String::new();
    }
    format!(
        "{:.1}% after {:.1} ms",
        100.0 * ring.peak_fill(),
        ring.peak_away_ns as f64 / 1e6
    )
}

/// A traced dense cell's figures, as text: label, calls/s, delivered/s, lost in all, lost
/// to a full ring, lost to a full in-flight map.
pub(super) fn workload_cells(w: &WorkloadRate) -> [String; 6] {
    [
        w.label.clone(),
        format!("{:.0}", w.stats.offered_per_second()),
        format!("{:.0}", w.stats.events_per_second()),
        w.stats.lost().to_string(),
        w.stats.lost_ring_full.to_string(),
        w.stats.lost_inflight_full.to_string(),
    ]
}

/// The highest rate carried without loss and the lowest that lost events, as text.
pub(super) fn loss_bounds(c: &CapacitySection) -> (String, String) {
    (
        c.lossless_events_per_s
            .map_or("no lossless step".into(), |r| format!("{r:.0} events/s")),
        c.lowest_lossy_calls_per_s
            .map_or("no loss at any rate the generator reached".into(), |r| {
                format!("{r:.0} calls/s")
            }),
    )
}

/// What a traced call costs the thread that makes it, all in (the programs, the kernel's
/// dispatch to them, the cache lines they take): one generator thread's time per call
/// traced, less untraced.
pub(super) fn per_call_cost_sentence(c: &CapacitySection) -> String {
    let traced = c
        .steps
        .iter()
        .find(|s| s.target_per_s.is_none() && s.threads == 1)
        .map(|s| s.calls_per_s);
    match (c.untraced_calls_per_s, traced) {
        (Some(u), Some(t)) if u > 0.0 && t > 0.0 => format!(
            "a traced call costs the calling thread {:.0} ns more than an untraced one, all \
             in ({:.0} ns per recvfrom untraced, {:.0} ns traced, one unpaced thread; the \
             kernel's accounting of the programs' run time is in the probe overhead part)",
            1e9 / t - 1e9 / u,
            1e9 / u,
            1e9 / t
        ),
        _ => "the cost of a traced call was not measured".to_string(),
    }
}

/// Where the trace starts to lose, from the drain's own cost.
pub(super) fn drain_ceiling_sentence(c: &CapacitySection) -> String {
    match c.drain_ceiling_events_per_s {
        Some(rate) => format!(
            "the draining thread ({}) needs {:.3} us of CPU per event: with a CPU to \
             itself it carries about {:.0} events/s; a faster stream loses events once the \
             rings' {} records (all CPUs) are full{}",
            crate::trace::DrainPriority::Deadline.describe(),
            1e6 / rate,
            rate,
            c.ring_records,
            if c.lowest_lossy_calls_per_s.is_none() {
                " (the generator could not reach that rate on this machine)"
            } else {
                ""
            }
        ),
        None => "the draining thread's CPU time was not measured".to_string(),
    }
}

/// For every step that lost events, what the logs' figures say of why: the fullest CPU
/// log against how long the reader had been away before it found it, and how long one
/// CPU's log lasts at the step's rate.
pub(super) fn loss_causes(c: &CapacitySection) -> Vec<String> {
    c.steps
        .iter()
        .filter(|s| s.stats.lost() > 0 && s.stats.ring.records_per_cpu > 0)
        .map(|s| {
            let ring = &s.stats.ring;
            // The logs of all CPUs over one CPU's: the CPUs of the run.
            let cpus = (c.ring_records / ring.records_per_cpu).max(1);
            // Calls spread over the CPUs the generator threads ran on.
            let per_cpu_rate = s.calls_per_s / s.threads.min(cpus as usize).max(1) as f64;
            let lasts_ms = 1e3 * ring.records_per_cpu as f64 / per_cpu_rate.max(1.0);
            let away_ms = ring.peak_away_ns as f64 / 1e6;
            // Inferred from the two times, not observed: the log's fill level is only
            // seen when the reader comes back, so an absence of half a log's lifetime or
            // more is taken as the cause (the calls may come unevenly over the CPUs).
            let verdict = if away_ms >= 0.5 * lasts_ms {
                "the reader's absence was at least half of that, so most likely a log \
                 filled while it was away (inferred from the two times)"
            } else {
                "the reader was away for less than half of that, so most likely it \
                 drained more slowly than the logs filled (inferred from the two times)"
            };
            format!(
                "{} generator thread(s) at {:.0} calls/s lost {}: a CPU's log ({} \
                 records) lasts about {:.1} ms at this rate; {}; {verdict}",
                s.threads,
                s.calls_per_s,
                s.stats.lost(),
                ring.records_per_cpu,
                lasts_ms,
                ring.describe(),
            )
        })
        .collect()
}

/// One second of a dense cell (1K messages) under the trace.
fn workload_rate(host: &TraceHost, mode: Mode, threads: usize) -> Result<WorkloadRate> {
    let server = ServerProcess::spawn(mode, &[])?;
    let server_pid = server.pid();
    let own = std::process::id();
    host.watch(server_pid, SERVER_SLOT)?;
    host.watch(own, CLIENT_SLOT)?;
    host.start(vec![SERVER_SLOT, CLIENT_SLOT])?;
    let config = ClientConfig::new(
        &server.addr,
        DENSE_SIZE,
        threads,
        RunLimit::Duration(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let client = run_client(&config);
    let elapsed = started.elapsed().as_secs_f64();
    let stats = host.stop_trace();
    let totals = server.stop();
    let _ = host.unwatch(own);
    let _ = host.unwatch(server_pid);
    let report = client.map_err(|f| anyhow!("netcopy client: {f}"))?;
    totals?;
    let mut stats = stats?;
    stats.seconds = elapsed;
    if report.messages == 0 {
        bail!("no message arrived");
    }
    Ok(WorkloadRate {
        label: format!(
            "{mode} {} x {threads} thread{}",
            format_size(DENSE_SIZE),
            if threads == 1 { "" } else { "s" }
        ),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tracing::TraceStats;

    fn section(untraced: Option<f64>, steps: &[(Option<f64>, usize, f64)]) -> CapacitySection {
        CapacitySection {
            ring_bytes: 1 << 20,
            generator: GENERATOR.to_string(),
            steps: steps
                .iter()
                .map(|&(target_per_s, threads, calls_per_s)| CapacityStep {
                    target_per_s,
                    threads,
                    calls_per_s,
                    calls: 0,
                    stats: TraceStats::default(),
                })
                .collect(),
            lossless_events_per_s: None,
            lowest_lossy_calls_per_s: None,
            drain_ceiling_events_per_s: None,
            untraced_calls_per_s: untraced,
            ring_records: 0,
            workloads: Vec::new(),
        }
    }

    #[test]
    fn a_traced_call_costs_the_difference_of_one_thread_unpaced() {
        // 2M calls/s untraced (500 ns), 1M traced (1000 ns): 500 ns more. The paced step
        // and the two-thread step are not the comparison.
        let c = section(
            Some(2e6),
            &[(Some(1e5), 1, 1e5), (None, 1, 1e6), (None, 2, 1.5e6)],
        );
        let text = per_call_cost_sentence(&c);
        assert!(
            text.starts_with("a traced call costs the calling thread 500 ns more"),
            "{text}"
        );
        assert!(
            text.contains("(500 ns per recvfrom untraced, 1000 ns traced"),
            "{text}"
        );
        assert_eq!(
            per_call_cost_sentence(&section(None, &[(None, 1, 1e6)])),
            "the cost of a traced call was not measured"
        );
        assert_eq!(
            per_call_cost_sentence(&section(Some(2e6), &[(None, 2, 1e6)])),
            "the cost of a traced call was not measured"
        );
    }
}
