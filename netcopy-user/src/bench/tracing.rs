//! The syscall tracer (`crate::trace`) as the benchmarks use it: a thread that owns the
//! probes and the trace and drains the ring buffer while the workload runs in the
//! calling thread, exactly as `netcopy trace` would. Parts 3 (probe overhead) and 4
//! (trace capacity) use it.

use std::{
    collections::BTreeMap,
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{plan::AttachPoint, runstats::LoadedProgram, CopyProbes, LoadOptions},
    trace::{tracer::SyscallTracer, RingHeadroom},
    util::sys,
};

/// Ring buffer of the benchmark's traces: `netcopy trace`'s default.
const RING_BYTES: u32 = crate::kernel::maps::DEFAULT_RING_BYTES;

/// The tracer is usable in this build and on this machine (checked cheaply; a load
/// failure shows up as a failed measurement).
pub struct Tracer {
    pub(super) ring_bytes: u32,
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
    pub(super) fn start(&self, watch: &[(u32, u32)]) -> Result<TraceHost> {
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
    pub(super) lost_ring_full: u64,
    pub(super) lost_inflight_full: u64,
    /// From start to stop.
    pub(super) seconds: f64,
    /// CPU time of the thread that drained the per-CPU rings while the traced workload
    /// ran (user space's share of what tracing costs it): from the start to the drain
    /// that empties the rings at the stop.
    pub(super) drain_cpu_seconds: f64,
    /// CPU time of the same thread stopping the trace after the workload: detaching the
    /// programs, decoding the records and building the summary. Reported, not counted as
    /// overhead: it runs once, after the workload is done.
    #[serde(default)]
    finish_cpu_seconds: f64,
    pub(super) notes: Vec<String>,
    /// The recorded calls by system call name: all of them, or those that started in
    /// the windows the trace was stopped with ([`TraceHost::stop_counting_in`]).
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// How close the per-CPU logs came to full, and after how long an absence of the
    /// draining thread.
    #[serde(default)]
    pub(super) ring: RingHeadroom,
}

impl TraceStats {
    /// Events the draining thread handles per second of its own CPU time: the rate it
    /// could carry with a CPU to itself.
    pub(super) fn drain_events_per_cpu_second(&self) -> Option<f64> {
        (self.drain_cpu_seconds > 0.0 && self.events > 0)
            .then(|| self.events as f64 / self.drain_cpu_seconds)
    }

    pub fn lost(&self) -> u64 {
        self.lost_ring_full + self.lost_inflight_full
    }

    pub(super) fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Calls made per second: recorded and lost.
    pub(super) fn offered_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.events + self.lost()) as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// One sentence for a trace that was attached only part of the time (the benchmark's
    /// windows): totals, no rates.
    pub fn describe_windows(&self) -> String {
        format!(
            "the trace recorded {} calls in its windows, lost {} (ring full {}, in-flight map \
             full {}); the draining thread used {:.3} CPU-s ({:.2} us per call) over the whole \
             run, and {:.3} CPU-s after it to stop the trace and decode and summarize the calls",
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
    /// Stop, counting the calls by name in these CLOCK_MONOTONIC intervals (ns; none:
    /// all calls).
    Stop(Vec<(u64, u64)>, Sender<Result<TraceStats>>),
    Programs(Sender<Result<Vec<LoadedProgram>>>),
    AttachPoints(Sender<Result<Vec<AttachPoint>>>),
    /// Detach (true) or attach again (false) every program; the trace keeps running.
    Suspend(bool, Sender<Result<()>>),
}

/// A thread that owns loaded probes and, while a trace runs, drains its ring buffer.
/// Dropping it stops everything and unloads the probes.
pub(super) struct TraceHost {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl TraceHost {
    pub(super) fn load(ring_bytes: u32) -> Result<TraceHost> {
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

    pub(super) fn watch(&self, pid: u32, slot: u32) -> Result<()> {
        self.ask(|tx| Command::Watch(pid, slot, tx))
    }

    pub(super) fn unwatch(&self, pid: u32) -> Result<()> {
        self.ask(|tx| Command::Unwatch(pid, tx))
    }

    pub(super) fn start(&self, slots: Vec<u32>) -> Result<()> {
        self.ask(|tx| Command::Start(slots, tx))
    }

    /// The programs the host has loaded, with their kernel ids.
    pub(super) fn loaded_programs(&self) -> Result<Vec<LoadedProgram>> {
        self.ask(Command::Programs)
    }

    /// Every hook the host's programs are on (or will be again, while suspended): copy
    /// counting's, and while a trace runs, the trace's.
    pub(super) fn attach_points(&self) -> Result<Vec<AttachPoint>> {
        self.ask(Command::AttachPoints)
    }

    /// Detaches every program (they stay loaded; the trace goes on with nothing to
    /// record) until [`TraceHost::resume`].
    pub(super) fn suspend(&self) -> Result<()> {
        self.ask(|tx| Command::Suspend(true, tx))
    }

    /// Attaches again what [`TraceHost::suspend`] detached.
    pub(super) fn resume(&self) -> Result<()> {
        self.ask(|tx| Command::Suspend(false, tx))
    }

    /// Stops the trace (the probes stay loaded) and returns what it recorded.
    pub(super) fn stop_trace(&self) -> Result<TraceStats> {
        self.ask(|tx| Command::Stop(Vec::new(), tx))
    }

    /// Stops the trace and unloads everything; [`TraceStats::calls`] counts the calls
    /// that started in `windows` (CLOCK_MONOTONIC ns, start and end).
    pub(super) fn stop_counting_in(mut self, windows: Vec<(u64, u64)>) -> Result<TraceStats> {
        let stats = self.ask(|tx| Command::Stop(windows, tx));
        self.shutdown();
        stats
    }

    /// Stops the trace and unloads everything.
    pub(super) fn stop(mut self) -> Result<TraceStats> {
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
    let mut priority_note = None;
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
                        // As `netcopy trace` does: this thread is the drain while the
                        // trace runs (stopping it makes the thread a normal one again).
                        priority_note = drain_priority_note();
                        running = Some((t, Instant::now(), thread_cpu_seconds(), None));
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Stop(windows, reply) => {
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
                        calls: out
                            .events
                            .iter()
                            .filter(|e| {
                                windows.is_empty()
                                    || windows.iter().any(|&(a, b)| (a..b).contains(&e.start_ns))
                            })
                            .fold(BTreeMap::new(), |mut calls, e| {
                                *calls.entry(e.syscall.name().to_string()).or_insert(0) += 1;
                                calls
                            }),
                        events: out.events.len() as u64,
                        lost_ring_full: out.lost.ring_full,
                        lost_inflight_full: out.lost.inflight_full,
                        seconds,
                        drain_cpu_seconds,
                        finish_cpu_seconds: thread_cpu_seconds() - finish_start,
                        ring: out.summary.ring,
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

/// Raises the calling thread to the drain's priority; a note where it got less than
/// `netcopy trace`'s first choice.
fn drain_priority_note() -> Option<String> {
    match crate::trace::prioritize_drain_thread() {
        Ok(crate::trace::DrainPriority::Deadline) => None,
        Ok(other) => Some(format!("the draining thread runs at {}", other.describe())),
        Err(e) => Some(format!(
            "the draining thread runs at normal priority (SCHED_DEADLINE, SCHED_FIFO and nice {} \
             refused: {e})",
            crate::trace::DRAIN_NICE
        )),
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
