//! Probe overhead by interleaved windows: one workload (server, connection, client thread)
//! runs from start to end, and the instruments take turns on it, a fraction of a second
//! each.
//!
//! Why not separate runs per instrument: on a shared virtual machine loopback throughput
//! wanders by 10-30% from one run to the next and within a run, which drowns a 3%
//! overhead. The wander is slow, though: 100 ms windows of one run correlate at 0.7-0.8
//! with their neighbours. Windows of a few hundred milliseconds, each instrument's next
//! to a no-probe window in every block (see [`block_order`]), and overheads taken block
//! by block against the no-probe window of the same block, cancel most of it; the median of the blocks and
//! its distribution-free confidence interval then say whether a target is met, missed,
//! or not decidable on this machine.
//!
//! Switching is cheap because the probes are loaded once and only detached and attached
//! again (`CopyProbes::suspend`, `resume`): a few milliseconds, outside every window.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{affinity, ours, schema::Instrument, tracing};
use crate::{
    kernel::{plan::AttachPoint, runstats::EmptyHooks, CopyCounts, CopyProbes},
    ledger::{CLIENT_SLOT, SERVER_SLOT},
    workload::client::{run_client, ClientConfig, RunLimit},
    workload::harness::ServerProcess,
};
use netcopy_common::CopySite;

/// Message size of the probe-overhead workload.
pub(super) const OVERHEAD_SIZE: u64 = 64 << 10;

/// How long each instrument measures in a block, and how long the workload runs after a
/// switch before its window opens (the first calls after an attach warm the programs up).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct WindowPlan {
    pub window_ms: u64,
    pub settle_ms: u64,
    pub blocks: u32,
}

/// One instrument's turn in one block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowSample {
    pub block: u32,
    pub instrument: Instrument,
    pub seconds: f64,
    pub payload_bytes: u64,
    /// CPU time of the server process plus the benchmark process (the client thread, and
    /// the trace-draining thread when tracing is loaded) over the window.
    pub cpu_seconds: Option<f64>,
}

impl WindowSample {
    pub fn gbps(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.payload_bytes > 0)
            .then(|| self.payload_bytes as f64 * 8.0 / self.seconds / 1e9)
    }

    pub(super) fn cpu_ns_per_byte(&self) -> Option<f64> {
        let cpu = self.cpu_seconds?;
        (self.payload_bytes > 0).then(|| cpu * 1e9 / self.payload_bytes as f64)
    }
}

/// What the interleaved run measured.
pub struct WindowRun {
    pub samples: Vec<WindowSample>,
    /// Instruments that could not be set up, with why; the others ran without them.
    pub failed: Vec<(Instrument, String)>,
    /// Seconds to load (and first attach) each instrument, once.
    pub setup_seconds: Vec<(Instrument, f64)>,
    /// Seconds each switch to an instrument took (detaching the previous one included).
    pub switch_seconds: Vec<(Instrument, f64)>,
    /// Copy counting: what the probes counted while attached, per payload byte moved then.
    pub counted: Option<(f64, f64)>,
    /// Syscall tracing: what the trace recorded over all its windows.
    pub trace: Option<Result<tracing::TraceStats>>,
    /// The hooks each set of empty programs was on.
    pub empty_hooks: Vec<(Instrument, Vec<AttachPoint>)>,
}

/// An instrument that can be switched on and off on the running workload.
enum Switchable {
    None,
    Counting(Box<Counting>),
    Tracing(tracing::TraceHost),
    Empty(EmptyHooks),
}

struct Counting {
    probes: CopyProbes,
    /// The counters when the current window opened.
    at_open: Option<CopyCounts>,
    /// Over the windows: bytes the client's receives copied, bytes the server's sends
    /// copied, payload bytes the client verified.
    totals: (u64, u64, u64),
}

impl Switchable {
    fn on(&mut self) -> Result<()> {
        match self {
            Switchable::None => Ok(()),
            Switchable::Counting(c) => c.probes.resume(),
            Switchable::Tracing(host) => host.resume(),
            Switchable::Empty(programs) => programs.attach(),
        }
    }

    fn off(&mut self) -> Result<()> {
        match self {
            Switchable::None => Ok(()),
            Switchable::Counting(c) => c.probes.suspend(),
            Switchable::Tracing(host) => host.suspend(),
            Switchable::Empty(programs) => {
                programs.detach();
                Ok(())
            }
        }
    }

    /// Just before a window opens: copy counting reads its counters.
    fn window_opens(&mut self) -> Result<()> {
        if let Switchable::Counting(c) = self {
            c.at_open = Some(c.probes.read_counters()?);
        }
        Ok(())
    }

    /// Just after a window closed with `payload` bytes: copy counting books what its
    /// probes counted in it.
    fn window_closed(&mut self, payload: u64) -> Result<()> {
        if let Switchable::Counting(c) = self {
            if let Some(before) = c.at_open.take() {
                let delta = c.probes.read_counters()?.since(&before);
                c.totals.0 += delta.get(CLIENT_SLOT, CopySite::KernelRecvCopy).bytes;
                c.totals.1 += delta.get(SERVER_SLOT, CopySite::KernelSendCopy).bytes;
                c.totals.2 += payload;
            }
        }
        Ok(())
    }
}

/// CPU seconds of process `pid` (all its threads, live and exited), from its CPU clock.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: valid out-pointer; a pid that is gone yields an error code.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec and a clock id the kernel handed out.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// The order of the instruments in every block: the control window (no probes, compared
/// with the no-probe window like an instrument: the method's own error), the empty
/// programs on copy counting's hooks, copy counting, no probes, syscall tracing, the
/// empty programs on syscall tracing's hooks. netcopy's two instruments then sit next to
/// the no-probe window they are compared with, with a fast switch between them:
/// attaching takes ~15 ms and detaching copy counting ~60 ms, but detaching the trace
/// takes the better part of a second (the kernel waits for an RCU grace period for each
/// of its classic tracepoints, under one lock), and so does detaching the empty programs
/// on the same tracepoints. The one slow switch inside a block is therefore between
/// syscall tracing and its empty programs, whose comparison with the no-probe window is
/// the only one that spans a slow switch; the other falls between blocks. The floors and
/// the control are further from their no-probe window than netcopy's instruments: if
/// anything their figures are the noisier.
pub fn block_order(instruments: &[Instrument]) -> Vec<Instrument> {
    [
        Instrument::Control,
        Instrument::EmptyCountingHooks,
        Instrument::CopyCounting,
        Instrument::None,
        Instrument::SyscallTracing,
        Instrument::EmptyTracingHooks,
    ]
    .into_iter()
    .filter(|i| instruments.contains(i))
    .collect()
}

/// Runs the overhead workload (the bench peer mode, [`OVERHEAD_SIZE`] messages, one
/// connection; the server: `server_exe server ...`, a netcopy binary) with server and
/// client on `pinned_cpu`, and switches `instruments` window by window.
pub fn run(
    server_exe: &std::path::Path,
    plan: WindowPlan,
    instruments: &[Instrument],
    tracer: Option<&tracing::Tracer>,
    pinned_cpu: Option<usize>,
    progress_line: &dyn Fn(&str),
) -> Result<WindowRun> {
    let server = ServerProcess::spawn_with(server_exe, ours::peer().mode, &[])?;
    let own = std::process::id();
    if let Some(cpu) = pinned_cpu {
        affinity::pin_process(server.pid(), &[cpu])?;
    }
    // The instruments that could be set up, each with its switch.
    let mut switchable: Vec<(Instrument, Switchable)> = Vec::new();
    let mut setup_seconds = Vec::new();
    let mut failed = Vec::new();
    // The hooks of each of netcopy's instruments loaded so far: where the empty programs
    // that stand for it go.
    let mut hooks_of: Vec<(Instrument, Vec<AttachPoint>)> = Vec::new();
    for &instrument in instruments {
        let started = Instant::now();
        let mut set_up = || -> Result<Switchable> {
            Ok(match instrument {
                Instrument::None | Instrument::Control => Switchable::None,
                Instrument::CopyCounting => {
                    let mut probes = CopyProbes::load()?;
                    probes.watch_process(server.pid(), SERVER_SLOT, false)?;
                    probes.watch_process(own, CLIENT_SLOT, false)?;
                    probes.suspend()?;
                    hooks_of.push((instrument, probes.attach_points()));
                    Switchable::Counting(Box::new(Counting {
                        probes,
                        at_open: None,
                        totals: (0, 0, 0),
                    }))
                }
                Instrument::SyscallTracing => {
                    let tracer = tracer.ok_or_else(|| anyhow!("the tracer is not available"))?;
                    let host = tracer.start(&[(server.pid(), SERVER_SLOT), (own, CLIENT_SLOT)])?;
                    hooks_of.push((instrument, host.attach_points()?));
                    host.suspend()?;
                    Switchable::Tracing(host)
                }
                Instrument::EmptyCountingHooks | Instrument::EmptyTracingHooks => {
                    let of = instrument
                        .floor_of()
                        .ok_or_else(|| anyhow!("{} stand for no instrument", instrument.label()))?;
                    let hooks = match hooks_of.iter().find(|(i, _)| *i == of) {
                        Some((_, hooks)) if !hooks.is_empty() => hooks,
                        Some(_) => bail!("{} attaches to no hook here", of.label()),
                        None => bail!("{} did not load, so its hooks are unknown", of.label()),
                    };
                    Switchable::Empty(EmptyHooks::load(hooks)?)
                }
            })
        };
        match set_up() {
            Ok(s) => {
                if instrument.has_probes() {
                    setup_seconds.push((instrument, started.elapsed().as_secs_f64()));
                }
                switchable.push((instrument, s));
            }
            Err(e) => failed.push((instrument, format!("{e:#}"))),
        }
    }
    let instruments: Vec<Instrument> = switchable.iter().map(|(i, _)| *i).collect();

    // The client runs until it is told to stop, after the last window; its duration limit
    // is only a backstop (switches take milliseconds to a few tenths of a second).
    let slot = Duration::from_millis(plan.window_ms + plan.settle_ms);
    let backstop = (slot + Duration::from_secs(1)) * (plan.blocks * instruments.len() as u32)
        + Duration::from_secs(30);
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut config =
        ClientConfig::new(&server.addr, OVERHEAD_SIZE, 1, RunLimit::Duration(backstop));
    config.progress = Some(Arc::clone(&progress));
    config.stop = Some(Arc::clone(&stop));
    let client = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            // The client thread inherits this thread's CPU.
            let _pin = match pinned_cpu {
                Some(cpu) => Some(affinity::PinnedThread::pin(&[cpu])?),
                None => None,
            };
            run_client(&config).map_err(|f| anyhow!("netcopy client: {f}"))
        })
        .context("starting the client thread")?;

    let mut samples = Vec::new();
    let mut switch_seconds = Vec::new();
    let mut current: Option<usize> = None;
    let mut failure = None;
    let sample = |progress: &AtomicU64| {
        let cpu = process_cpu_seconds(server.pid())
            .zip(process_cpu_seconds(own))
            .map(|(s, c)| s + c);
        (Instant::now(), progress.load(Ordering::Relaxed), cpu)
    };
    // Wait for the stream to flow before the first window.
    let started = Instant::now();
    while progress.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    'blocks: for block in 0..plan.blocks {
        for instrument in block_order(&instruments) {
            if client.is_finished() {
                failure.get_or_insert(anyhow!(
                    "the client stopped before the last window (backstop of {backstop:?})"
                ));
                break 'blocks;
            }
            let index = instruments
                .iter()
                .position(|&i| i == instrument)
                .unwrap_or(0);
            let switch_started = Instant::now();
            let switched = (|| -> Result<()> {
                if current == Some(index) {
                    return Ok(());
                }
                if let Some(previous) = current.take() {
                    switchable[previous].1.off()?;
                }
                switchable[index].1.on()?;
                current = Some(index);
                Ok(())
            })();
            if let Err(e) = switched {
                failure = Some(e.context(format!("switching to {}", instrument.label())));
                break 'blocks;
            }
            if instrument.has_probes() {
                switch_seconds.push((instrument, switch_started.elapsed().as_secs_f64()));
            }
            std::thread::sleep(Duration::from_millis(plan.settle_ms));
            // The counters' reading brackets the window's (a few microseconds wider).
            let opened = switchable[index].1.window_opens();
            let (t0, b0, c0) = sample(&progress);
            std::thread::sleep(Duration::from_millis(plan.window_ms));
            let (t1, b1, c1) = sample(&progress);
            if let Err(e) = opened.and_then(|()| switchable[index].1.window_closed(b1 - b0)) {
                failure = Some(e.context("reading the copy counters around a window"));
                break 'blocks;
            }
            samples.push(WindowSample {
                block,
                instrument,
                seconds: (t1 - t0).as_secs_f64(),
                payload_bytes: b1.saturating_sub(b0),
                cpu_seconds: c0.zip(c1).map(|(a, b)| b - a),
            });
        }
        if (block + 1) % 10 == 0 || block + 1 == plan.blocks {
            progress_line(&format!(
                "probe overhead: block {}/{} of interleaved windows",
                block + 1,
                plan.blocks
            ));
        }
    }
    if let Some(previous) = current.take() {
        if let Err(e) = switchable[previous].1.off() {
            failure.get_or_insert(e.context("switching the last instrument off"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let client = client
        .join()
        .map_err(|_| anyhow!("the client thread panicked"))
        .and_then(|r| r);
    let mut counted = None;
    let mut trace = None;
    let mut empty_hooks = Vec::new();
    for (instrument, s) in switchable {
        match s {
            Switchable::None => {}
            Switchable::Counting(c) => {
                let totals = c.totals;
                if totals.2 > 0 {
                    counted = Some((
                        totals.0 as f64 / totals.2 as f64,
                        totals.1 as f64 / totals.2 as f64,
                    ));
                }
            }
            Switchable::Tracing(host) => trace = Some(host.stop()),
            Switchable::Empty(programs) => empty_hooks.push((instrument, programs.points())),
        }
    }
    let totals = server.stop();
    if let Some(e) = failure {
        return Err(e);
    }
    client?;
    totals?;
    Ok(WindowRun {
        samples,
        failed,
        setup_seconds,
        switch_seconds,
        counted,
        trace,
        empty_hooks,
    })
}

/// Block by block, `compare(base, with)` of `metric` between the no-probe window and
/// `instrument`'s window of the same block (blocks missing either are left out).
pub fn paired(
    samples: &[WindowSample],
    instrument: Instrument,
    metric: impl Fn(&WindowSample) -> Option<f64>,
    compare: impl Fn(f64, f64) -> Option<f64>,
) -> Vec<f64> {
    let find = |block: u32, which: Instrument| {
        samples
            .iter()
            .find(|s| s.block == block && s.instrument == which)
            .and_then(&metric)
    };
    let mut blocks: Vec<u32> = samples.iter().map(|s| s.block).collect();
    blocks.dedup();
    blocks
        .into_iter()
        .filter_map(|b| compare(find(b, Instrument::None)?, find(b, instrument)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(block: u32, instrument: Instrument, bytes: u64) -> WindowSample {
        WindowSample {
            block,
            instrument,
            seconds: 1.0,
            payload_bytes: bytes,
            cpu_seconds: Some(1.0),
        }
    }

    #[test]
    fn overheads_pair_windows_of_the_same_block() {
        let samples = vec![
            window(0, Instrument::None, 1000),
            window(0, Instrument::CopyCounting, 980),
            window(1, Instrument::CopyCounting, 450),
            window(1, Instrument::None, 500),
            // Block 2 has no no-probe window: left out.
            window(2, Instrument::CopyCounting, 10),
        ];
        let losses = paired(
            &samples,
            Instrument::CopyCounting,
            WindowSample::gbps,
            crate::util::stats::throughput_loss_pct,
        );
        assert_eq!(losses.len(), 2);
        assert!((losses[0] - 2.0).abs() < 1e-9, "{losses:?}");
        assert!((losses[1] - 10.0).abs() < 1e-9, "{losses:?}");
        let cpu = paired(
            &samples,
            Instrument::CopyCounting,
            WindowSample::cpu_ns_per_byte,
            crate::util::stats::cost_increase_pct,
        );
        // 1 CPU-s for 980 bytes against 1 CPU-s for 1000 bytes.
        assert!((cpu[0] - (1000.0 / 980.0 - 1.0) * 100.0).abs() < 1e-9);
    }

    #[test]
    fn every_compared_window_is_next_to_a_no_probe_window() {
        let order = block_order(&Instrument::ALL);
        assert_eq!(
            order,
            vec![
                Instrument::Control,
                Instrument::EmptyCountingHooks,
                Instrument::CopyCounting,
                Instrument::None,
                Instrument::SyscallTracing,
                Instrument::EmptyTracingHooks,
            ]
        );
        let at = |i: Instrument| order.iter().position(|o| *o == i).unwrap();
        for neighbour in [Instrument::CopyCounting, Instrument::SyscallTracing] {
            assert_eq!(
                at(Instrument::None).abs_diff(at(neighbour)),
                1,
                "{neighbour:?} next to no probes"
            );
        }
        // The slow switches (the classic tracepoints off) are after syscall tracing,
        // whose comparison does not span one, and between blocks.
        assert_eq!(
            at(Instrument::EmptyTracingHooks),
            at(Instrument::SyscallTracing) + 1
        );
        assert_eq!(order.last(), Some(&Instrument::EmptyTracingHooks));
        assert_eq!(
            block_order(&[Instrument::None, Instrument::CopyCounting]),
            vec![Instrument::CopyCounting, Instrument::None]
        );
    }
}
