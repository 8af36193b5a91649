//! The syscall tracer (`crate::trace`) as the benchmarks use it: a thread that owns the
//! probes and the trace and drains the ring buffer while the workload runs in the
//! calling thread, exactly as `netcopy trace` would; and the trace-capacity sweep.

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{progress, Outcome, Target, Verdict};
use crate::{
    kernel::{plan::AttachPoint, runstats::LoadedProgram, CopyProbes, LoadOptions},
    ledger::{CLIENT_SLOT, SERVER_SLOT},
    trace::tracer::SyscallTracer,
    util::sys,
    util::units::format_size,
    workload::client::{run_client, ClientConfig, RunLimit},
    workload::harness::ServerProcess,
    workload::modes::Mode,
};

/// Ring buffer of the benchmark's traces: `netcopy trace`'s default.
pub const RING_BYTES: u32 = crate::kernel::maps::DEFAULT_RING_BYTES;
/// Steps of the capacity sweep: calls per second in total (`None`: as fast as the
/// threads can make them) and generator threads; 0 threads means one per CPU, and
/// u32::MAX two per CPU.
pub const SWEEP: [(Option<f64>, usize); 8] = [
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
pub const DENSE_SIZE: u64 = 1 << 10;
pub const DENSE_THREADS: [usize; 2] = [1, 8];

/// The tracer is usable in this build and on this machine (checked cheaply; a load
/// failure shows up as a failed measurement).
pub struct Tracer {
    pub ring_bytes: u32,
}

impl Tracer {
    pub fn find() -> std::result::Result<Tracer, String> {
        if !sys::is_root() {
            return Err("the syscall tracer loads eBPF programs and needs root".into());
        }
        Ok(Tracer {
            ring_bytes: RING_BYTES,
        })
    }

    /// Loads the probes with room for a trace, watches `pids` (pid, slot) and starts
    /// tracing their slots.
    pub fn start(&self, watch: &[(u32, u32)]) -> Result<TraceHost> {
        let host = TraceHost::load(self.ring_bytes)?;
        for &(pid, slot) in watch {
            host.watch(pid, slot)?;
        }
        let mut slots: Vec<u32> = watch.iter().map(|&(_, s)| s).collect();
        slots.sort_unstable();
        slots.dedup();
        host.start(slots)?;
        Ok(host)
    }
}

/// What one trace recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TraceStats {
    pub events: u64,
    pub lost_ring_full: u64,
    pub lost_inflight_full: u64,
    /// From start to stop.
    pub seconds: f64,
    /// CPU time of the thread that drained the per-CPU rings while the traced workload
    /// ran (user space's share of what tracing costs it): from the start to the drain
    /// that empties the rings at the stop.
    pub drain_cpu_seconds: f64,
    /// CPU time of the same thread stopping the trace after the workload: detaching the
    /// programs, decoding the records and building the summary. Reported, not counted as
    /// overhead: it runs once, after the workload is done.
    #[serde(default)]
    pub finish_cpu_seconds: f64,
    pub notes: Vec<String>,
}

impl TraceStats {
    /// Events the draining thread handles per second of its own CPU time: the rate it
    /// could carry with a CPU to itself.
    pub fn drain_events_per_cpu_second(&self) -> Option<f64> {
        (self.drain_cpu_seconds > 0.0 && self.events > 0)
            .then(|| self.events as f64 / self.drain_cpu_seconds)
    }

    pub fn lost(&self) -> u64 {
        self.lost_ring_full + self.lost_inflight_full
    }

    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Calls made per second: recorded and lost.
    pub fn offered_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.events + self.lost()) as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// [`TraceStats::describe`] for a trace that was attached only part of the time (the
    /// benchmark's windows): totals, no rates.
    pub fn describe_windows(&self) -> String {
        self.describe_as("in its windows".into(), "over the whole run")
    }

    pub fn describe(&self) -> String {
        self.describe_as(
            format!("({:.0} per second)", self.events_per_second()),
            "while the workload ran",
        )
    }

    fn describe_as(&self, calls_note: String, drain_span: &str) -> String {
        format!(
            "the trace recorded {} calls {calls_note}, lost {} (ring full {}, in-flight map \
             full {}); the draining thread used {:.3} CPU-s ({:.2} us per call) {drain_span}, \
             and {:.3} CPU-s after it to stop the trace and decode and summarize the calls",
            self.events,
            self.lost(),
            self.lost_ring_full,
            self.lost_inflight_full,
            self.drain_cpu_seconds,
            if self.events > 0 {
                self.drain_cpu_seconds * 1e6 / self.events as f64
            } else {
                0.0
            },
            self.finish_cpu_seconds,
        )
    }
}

enum Command {
    Watch(u32, u32, Sender<Result<()>>),
    Unwatch(u32, Sender<Result<()>>),
    Start(Vec<u32>, Sender<Result<()>>),
    Stop(Sender<Result<TraceStats>>),
    Programs(Sender<Result<Vec<LoadedProgram>>>),
    AttachPoints(Sender<Result<Vec<AttachPoint>>>),
    /// Detach (true) or attach again (false) every program; the trace keeps running.
    Suspend(bool, Sender<Result<()>>),
}

/// A thread that owns loaded probes and, while a trace runs, drains its ring buffer.
/// Dropping it stops everything and unloads the probes.
pub struct TraceHost {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl TraceHost {
    pub fn load(ring_bytes: u32) -> Result<TraceHost> {
        let (commands, inbox) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bench-trace".into())
            .spawn(move || host_thread(ring_bytes, inbox, ready_tx))
            .context("starting the trace thread")?;
        let host = TraceHost {
            commands: Some(commands),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(result) => result.map(|()| host),
            Err(_) => Err(anyhow!("the trace thread ended while loading the probes")),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .as_ref()
            .ok_or_else(|| anyhow!("the trace thread is gone"))?
            .send(make(tx))
            .map_err(|_| anyhow!("the trace thread is gone"))?;
        rx.recv()
            .map_err(|_| anyhow!("the trace thread ended without answering"))?
    }

    pub fn watch(&self, pid: u32, slot: u32) -> Result<()> {
        self.ask(|tx| Command::Watch(pid, slot, tx))
    }

    pub fn unwatch(&self, pid: u32) -> Result<()> {
        self.ask(|tx| Command::Unwatch(pid, tx))
    }

    pub fn start(&self, slots: Vec<u32>) -> Result<()> {
        self.ask(|tx| Command::Start(slots, tx))
    }

    /// The programs the host has loaded, with their kernel ids.
    pub fn loaded_programs(&self) -> Result<Vec<LoadedProgram>> {
        self.ask(Command::Programs)
    }

    /// Every hook the host's programs are on (or will be again, while suspended): copy
    /// counting's, and while a trace runs, the trace's.
    pub fn attach_points(&self) -> Result<Vec<AttachPoint>> {
        self.ask(Command::AttachPoints)
    }

    /// Detaches every program (they stay loaded; the trace goes on with nothing to
    /// record) until [`TraceHost::resume`].
    pub fn suspend(&self) -> Result<()> {
        self.ask(|tx| Command::Suspend(true, tx))
    }

    /// Attaches again what [`TraceHost::suspend`] detached.
    pub fn resume(&self) -> Result<()> {
        self.ask(|tx| Command::Suspend(false, tx))
    }

    /// Stops the trace (the probes stay loaded) and returns what it recorded.
    pub fn stop_trace(&self) -> Result<TraceStats> {
        self.ask(Command::Stop)
    }

    /// Stops the trace and unloads everything.
    pub fn stop(mut self) -> Result<TraceStats> {
        let stats = self.stop_trace();
        self.shutdown();
        stats
    }

    fn shutdown(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TraceHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn host_thread(ring_bytes: u32, inbox: Receiver<Command>, ready: Sender<Result<()>>) {
    let mut probes = match CopyProbes::load_with(LoadOptions {
        trace_ring_bytes: Some(ring_bytes),
        ..LoadOptions::default()
    }) {
        Ok(p) => {
            let _ = ready.send(Ok(()));
            p
        }
        Err(e) => {
            let _ = ready.send(Err(e.context("loading the probes with a trace ring buffer")));
            return;
        }
    };
    // As `netcopy trace` does: this thread is the drain.
    let priority_note = crate::trace::prioritize_drain_thread().err().map(|e| {
        format!(
            "the draining thread runs at normal priority (raising it to nice {} failed: {e})",
            crate::trace::DRAIN_NICE
        )
    });
    // (tracer, started, thread CPU at start, first drain error)
    let mut running: Option<(SyscallTracer, Instant, f64, Option<anyhow::Error>)> = None;
    loop {
        let command = match running.as_mut() {
            Some((tracer, _, _, poll_error)) => {
                if let Err(e) = tracer.poll(Duration::from_millis(20)) {
                    poll_error.get_or_insert(e);
                    std::thread::sleep(Duration::from_millis(20));
                }
                match inbox.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            None => match inbox.recv_timeout(Duration::from_secs(3600)) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        match command {
            Command::Watch(pid, slot, reply) => {
                let _ = reply.send(probes.watch_process(pid, slot, false));
            }
            Command::Programs(reply) => {
                let _ = reply.send(Ok(probes.loaded_programs()));
            }
            Command::AttachPoints(reply) => {
                let _ = reply.send(Ok(probes.attach_points()));
            }
            Command::Unwatch(pid, reply) => {
                let _ = reply.send(probes.unwatch_process(pid));
            }
            Command::Suspend(suspend, reply) => {
                let _ = reply.send(if suspend {
                    probes.suspend()
                } else {
                    probes.resume()
                });
            }
            Command::Start(slots, reply) => {
                if running.is_some() {
                    let _ = reply.send(Err(anyhow!("a trace is already running")));
                    continue;
                }
                match SyscallTracer::start(&mut probes, &slots) {
                    Ok(t) => {
                        running = Some((t, Instant::now(), thread_cpu_seconds(), None));
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Stop(reply) => {
                let Some((mut tracer, started, cpu_start, poll_error)) = running.take() else {
                    let _ = reply.send(Err(anyhow!("no trace is running")));
                    continue;
                };
                let seconds = started.elapsed().as_secs_f64();
                // What the workload left in the rings, drained as during the run.
                tracer.drain();
                let drain_cpu_seconds = thread_cpu_seconds() - cpu_start;
                let finish_start = thread_cpu_seconds();
                let result = match poll_error {
                    Some(e) => {
                        let _ = tracer.stop(&mut probes);
                        Err(e.context("draining the trace ring buffer"))
                    }
                    None => tracer.stop(&mut probes).map(|out| TraceStats {
                        events: out.events.len() as u64,
                        lost_ring_full: out.lost.ring_full,
                        lost_inflight_full: out.lost.inflight_full,
                        seconds,
                        drain_cpu_seconds,
                        finish_cpu_seconds: thread_cpu_seconds() - finish_start,
                        notes: out.notes.into_iter().chain(priority_note.clone()).collect(),
                    }),
                };
                let _ = reply.send(result);
            }
        }
    }
    if let Some((tracer, _, _, _)) = running.take() {
        let _ = tracer.stop(&mut probes);
    }
}

/// CPU time of the calling thread, seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

// ---- Capacity ----

/// One step of the sweep: a paced stream of failing `recvfrom` calls.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityStep {
    /// Calls per second asked for (all threads together); None: as fast as they can.
    pub target_per_s: Option<f64>,
    /// Generator threads.
    pub threads: usize,
    /// Calls the generator made, per second.
    pub calls_per_s: f64,
    pub calls: u64,
    pub stats: TraceStats,
}

impl CapacityStep {
    /// Events delivered per second of generation.
    pub fn delivered_per_s(&self) -> f64 {
        self.stats.events_per_second()
    }
}

/// The event rate of a real workload under the trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadRate {
    pub label: String,
    pub stats: TraceStats,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacitySection {
    pub ring_bytes: u32,
    pub generator: String,
    pub steps: Vec<CapacityStep>,
    /// The highest delivered rate of a step with no loss.
    pub lossless_events_per_s: Option<f64>,
    /// The lowest call rate of a step that lost events.
    pub lowest_lossy_calls_per_s: Option<f64>,
    /// What the draining thread can carry on a CPU of its own: events per second of its
    /// CPU time in the busiest unpaced step (beyond it the ring fills; how fast depends
    /// on its size).
    #[serde(default)]
    pub drain_ceiling_events_per_s: Option<f64>,
    /// Calls per second of one unpaced generator thread with no trace running: with the
    /// sweep's traced one-thread unpaced step, what a traced call costs all in.
    #[serde(default)]
    pub untraced_calls_per_s: Option<f64>,
    /// Records the per-CPU rings hold, all CPUs together.
    #[serde(default)]
    pub ring_records: u64,
    /// The densest cells of the default `netcopy run` sweep.
    pub workloads: Vec<Outcome<WorkloadRate>>,
}

pub const GENERATOR: &str = "threads of the benchmark process calling \
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

pub fn capacity(tracer: &Tracer, seconds: u32) -> Result<CapacitySection> {
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
    for mode in [Mode::TwoCopy, Mode::OneCopy, Mode::ZeroCopy] {
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

/// What a traced call costs the thread that makes it, all in (the programs, the kernel's
/// dispatch to them, the cache lines they take): one generator thread's time per call
/// traced, less untraced.
pub fn per_call_cost_sentence(c: &CapacitySection) -> String {
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
pub fn drain_ceiling_sentence(c: &CapacitySection) -> String {
    match c.drain_ceiling_events_per_s {
        Some(rate) => format!(
            "the draining thread (nice {}) needs {:.3} us of CPU per event: with a CPU to \
             itself it carries about {:.0} events/s; a faster stream loses events once the \
             rings' {} records (all CPUs) are full{}",
            crate::trace::DRAIN_NICE,
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

/// "No lost events at the default sweep's event rate".
pub fn lossless_target(section: &Outcome<CapacitySection>) -> Target {
    let goal = "no lost trace events at the default sweep's densest cells".to_string();
    let Outcome::Measured(c) = section else {
        return Target {
            goal,
            measured: section.why_not().unwrap_or_default(),
            verdict: Verdict::NotMeasured,
        };
    };
    let measured: Vec<&WorkloadRate> = c.workloads.iter().filter_map(Outcome::measured).collect();
    if measured.is_empty() {
        return Target {
            goal,
            measured: "no dense cell could be traced".into(),
            verdict: Verdict::NotMeasured,
        };
    }
    let lost: u64 = measured.iter().map(|w| w.stats.lost()).sum();
    let peak = measured
        .iter()
        .map(|w| w.stats.offered_per_second())
        .fold(0.0, f64::max);
    Target {
        goal,
        measured: format!("{lost} lost, at up to {peak:.0} calls/s"),
        verdict: if lost == 0 {
            Verdict::Met
        } else {
            Verdict::NotMet
        },
    }
}

pub fn render_capacity(section: &Outcome<CapacitySection>) -> String {
    let c = match section {
        Outcome::Measured(c) => c,
        other => {
            let why = other.why_not().unwrap_or_default();
            return if why.contains("tracer is not available") {
                format!("   tracing: {why}\n")
            } else {
                format!("   {why}\n")
            };
        }
    };
    let mut out = format!(
        "   ring buffer {} MiB; generator: {}\n",
        c.ring_bytes >> 20,
        c.generator
    );
    out.push_str(&format!(
        "   {:>8} {:>12} {:>14} {:>16} {:>10}\n",
        "threads", "target/s", "calls/s", "delivered/s", "lost"
    ));
    for s in &c.steps {
        out.push_str(&format!(
            "   {:>8} {:>12} {:>14.0} {:>16.0} {:>10}\n",
            s.threads,
            s.target_per_s
                .map_or("unpaced".into(), |r| format!("{r:.0}")),
            s.calls_per_s,
            s.delivered_per_s(),
            s.stats.lost()
        ));
    }
    out.push_str(&format!(
        "   highest rate carried without loss: {}; lowest rate that lost events: {}\n",
        c.lossless_events_per_s
            .map_or("no lossless step".into(), |r| format!("{r:.0} events/s")),
        c.lowest_lossy_calls_per_s.map_or(
            "no loss at any rate the generator reached".into(),
            |r| format!("{r:.0} calls/s")
        )
    ));
    out.push_str(&format!("   {}\n", drain_ceiling_sentence(c)));
    out.push_str(&format!("   {}\n", per_call_cost_sentence(c)));
    out.push_str("   densest cells of the default `netcopy run` sweep, traced:\n");
    for w in &c.workloads {
        match w {
            Outcome::Measured(w) => out.push_str(&format!(
                "     {:<28} {:>10.0} calls/s, {:>10.0} delivered/s, {} lost (ring full {}, in-flight map full {})\n",
                w.label,
                w.stats.offered_per_second(),
                w.stats.events_per_second(),
                w.stats.lost(),
                w.stats.lost_ring_full,
                w.stats.lost_inflight_full
            )),
            other => out.push_str(&format!("     {}\n", other.why_not().unwrap_or_default())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
