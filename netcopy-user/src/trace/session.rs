//! One `netcopy trace`: load the probes with room for a trace, start or watch the target,
//! trace it until it exits, the duration passes or a stop signal arrives, and write the
//! outputs. The command line around it is `cli::trace`.

use std::{
    ffi::OsString,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    launch,
    output::{self, write_outputs, OutputPaths},
    priority::{end_drain_priority, prioritize_drain_thread, DrainPriority, DRAIN_NICE},
    tracer::{SyscallTracer, TraceOutput},
};
use crate::kernel::{CopyProbes, LoadOptions};

/// Filter slot the traced processes are put in.
const TRACE_SLOT: u32 = 0;

/// What to trace.
#[derive(Debug, Clone)]
pub enum Target {
    /// A running process, all its threads, until it exits.
    Pid(u32),
    /// A command (program and arguments) started traced from its first instruction, with
    /// its children.
    Command(Vec<OsString>),
}

/// What a trace session is asked to do.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub target: Target,
    /// Stop tracing after this long; a command is then waited for untraced.
    pub duration: Option<Duration>,
    /// Output directory; None: `results/trace-<UTC timestamp>/`.
    pub out_dir: Option<PathBuf>,
    /// Room for the calls waiting to be drained, all CPUs' rings together (a power of two).
    pub ring_bytes: u32,
}

/// Why the trace loop ended.
enum Stop {
    CommandExited(i32),
    ProcessExited,
    Duration,
    Signal(libc::c_int),
    /// A second stop signal while waiting for the command: leave it running.
    Abandoned(libc::c_int),
}

/// A finished trace, its outputs written; a traced command may still run (after a
/// `--duration`), which [`Session::finish`] waits for.
pub struct Session {
    pub output: TraceOutput,
    pub paths: OutputPaths,
    stop: Stop,
    child: Option<launch::HeldChild>,
}

impl Session {
    /// The traced command's exit code, when it exited while traced.
    pub fn command_exit_code(&self) -> Option<i32> {
        match self.stop {
            Stop::CommandExited(code) => Some(code),
            _ => None,
        }
    }

    /// The exit code netcopy returns: the command's (waiting for it when the trace ended
    /// first), 128 + the signal that abandoned it or stopped a `--pid` trace (as a shell
    /// reports a process a signal ended: 130 for SIGINT, 143 for SIGTERM), else 0.
    pub fn finish(mut self) -> Result<i32> {
        Ok(match self.stop {
            Stop::CommandExited(code) => code,
            Stop::Duration if self.child.is_some() => {
                let c = self.child.as_mut().expect("checked");
                eprintln!("netcopy: waiting for the command to finish (no longer traced)");
                c.wait().context("waiting for the command")?
            }
            Stop::Abandoned(signal) | Stop::Signal(signal) => 128 + signal,
            _ => 0,
        })
    }
}

/// Traces `config.target` until it exits, the duration passes or a stop signal arrives,
/// writes the outputs and reports on standard error how the trace ended and what it could
/// not record.
pub fn run(config: &SessionConfig) -> Result<Session> {
    crate::util::sys::require_root("netcopy trace")?;
    match &config.target {
        Target::Pid(pid) => {
            if *pid == 0 || !launch::process_exists(*pid) {
                bail!("no such process: {pid}");
            }
        }
        Target::Command(command) => {
            if let Some(program) = command.first() {
                // Fail before loading anything when the command cannot be found.
                launch::resolve_command(program)?;
            }
        }
    }
    let out_dir = config.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("trace-{}", crate::util::time::utc_timestamp()))
    });
    // Before anything runs: a trace that cannot be written is not worth recording.
    output::prepare_dir(&out_dir)?;
    let mut probes = CopyProbes::load_with(LoadOptions {
        trace_ring_bytes: Some(config.ring_bytes),
        ..LoadOptions::default()
    })?;
    launch::catch_stop_signals()?;

    let mut child = None;
    let target_pid = match &config.target {
        Target::Pid(pid) => {
            probes.watch_process(*pid, TRACE_SLOT, false)?;
            *pid
        }
        Target::Command(command) => {
            let held = launch::HeldChild::spawn(command)?;
            let pid = held.pid();
            child = Some(held);
            probes.watch_process(pid, TRACE_SLOT, true)?;
            pid
        }
    };
    let mut tracer = SyscallTracer::start(&mut probes, &[TRACE_SLOT])?;
    let pidfd = match &child {
        Some(c) => c.pidfd(),
        None => None,
    };
    let watched_pidfd = if child.is_none() {
        launch::pidfd_open(target_pid).ok()
    } else {
        None
    };
    match (child.as_mut(), &config.target) {
        (Some(c), Target::Command(command)) => {
            if let Err(e) = c.release() {
                let _ = tracer.stop(&mut probes);
                return Err(e);
            }
            eprintln!(
                "netcopy: tracing {} (pid {target_pid}) and its children",
                command[0].to_string_lossy()
            );
        }
        _ => eprintln!(
            "netcopy: tracing pid {target_pid} (all threads); stop with Ctrl-C{}",
            config
                .duration
                .map(|d| format!(" or after {}", humanize(d)))
                .unwrap_or_default()
        ),
    }

    // After the command was started: it keeps the priority it was given.
    match prioritize_drain_thread() {
        Ok(DrainPriority::Deadline | DrainPriority::RealTime) => {}
        Ok(DrainPriority::Nice) => eprintln!(
            "netcopy: warning: the trace reader runs at nice {DRAIN_NICE}, not real-time \
             (SCHED_DEADLINE and SCHED_FIFO were refused); a target that keeps every CPU busy \
             may fill the rings"
        ),
        Err(e) => eprintln!(
            "netcopy: warning: cannot raise the trace reader's priority (SCHED_DEADLINE, \
             SCHED_FIFO, nor nice {DRAIN_NICE}): {e}; a busy target may fill the ring buffer"
        ),
    }
    let started = Instant::now();
    let mut signals_seen = 0;
    let exit_fd = pidfd.or_else(|| watched_pidfd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
    let stop = loop {
        wait_readable(&tracer, exit_fd, Duration::from_millis(100));
        tracer.drain();
        if let Some((signal, from_process)) = launch::take_signal() {
            signals_seen += 1;
            match child.as_mut() {
                // The terminal already sent it to the command; pass on what was sent to
                // us alone, then wait for the command to finish. A second one ends the
                // trace without waiting.
                Some(_) if signals_seen > 1 => break Stop::Abandoned(signal),
                Some(c) => {
                    if from_process {
                        c.signal(signal);
                    }
                    eprintln!(
                        "netcopy: waiting for the command to exit (signal again to stop \
                         tracing without waiting)"
                    );
                }
                None => break Stop::Signal(signal),
            }
        }
        match child.as_mut() {
            Some(c) => {
                if let Some(code) = c.try_wait()? {
                    break Stop::CommandExited(code);
                }
            }
            None => {
                if !launch::process_exists(target_pid) {
                    break Stop::ProcessExited;
                }
            }
        }
        if config.duration.is_some_and(|d| started.elapsed() >= d) {
            break Stop::Duration;
        }
    };
    let output = tracer.stop(&mut probes);
    // The logs are drained: decoding and writing the trace run as a normal thread.
    end_drain_priority();
    let output = output?;
    let _ = probes.unwatch_process(target_pid);
    drop(probes);

    let paths = write_outputs(&out_dir, &output)?;
    match &stop {
        Stop::CommandExited(code) => eprintln!("netcopy: the command exited with code {code}"),
        Stop::ProcessExited => eprintln!("netcopy: process {target_pid} exited"),
        Stop::Duration => eprintln!("netcopy: stopped after {}", humanize(started.elapsed())),
        Stop::Signal(signal) => eprintln!("netcopy: stopped by signal {signal}"),
        Stop::Abandoned(signal) => eprintln!(
            "netcopy: stopped by signal {signal}; the command (pid {target_pid}) still runs, \
             untraced"
        ),
    }
    for note in &output.notes {
        eprintln!("netcopy: note: {note}");
    }
    if output.lost.total() > 0 {
        eprintln!(
            "netcopy: warning: {} calls were not recorded ({} ring buffer full, {} in-flight \
             map full); a larger --ring-size helps with the first",
            output.lost.total(),
            output.lost.ring_full,
            output.lost.inflight_full
        );
    }
    Ok(Session {
        output,
        paths,
        stop,
        child,
    })
}

/// Polls the ring buffer and the exit fd (if any) for up to `timeout`.
fn wait_readable(tracer: &SyscallTracer, exit_fd: Option<i32>, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = vec![libc::pollfd {
        fd: tracer.ring_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(fd) = exit_fd {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: valid pollfd array; EINTR (a stop signal) simply ends the wait.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

fn humanize(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
