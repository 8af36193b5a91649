//! `netcopy trace`: per-syscall traces of any process -- every send and receive system
//! call, with its flags, sizes, result, duration and the copies the kernel made inside it.
//!
//! Library use (e.g. by the experiment runner):
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use netcopy::kernel::{CopyProbes, LoadOptions};
//! use netcopy::trace::{write_outputs, SyscallTracer};
//! let mut probes = CopyProbes::load_with(LoadOptions {
//!     trace_ring_bytes: Some(8 << 20),
//!     ..LoadOptions::default()
//! })?;
//! probes.watch_process(1234, 0, true)?;
//! let mut tracer = SyscallTracer::start(&mut probes, &[0])?;
//! tracer.poll(std::time::Duration::from_millis(100))?; // call regularly to drain
//! let output = tracer.stop(&mut probes)?;
//! write_outputs(std::path::Path::new("results/trace"), &output)?;
//! # Ok(()) }
//! ```
//!
//! How it works: see `netcopy-ebpf/src/trace.rs`. The syscall programs are on-demand
//! events of the attach plan: loaded with the copy probes but attached only between
//! [`SyscallTracer::start`] and [`SyscallTracer::stop`].

pub mod event;
pub mod launch;
mod log;
pub mod output;
pub mod summary;
pub mod tracer;

use std::{
    ffi::OsString,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};

pub use event::SyscallRecord;
pub use output::{chrome_trace, summary_json, write_chrome_trace, write_jsonl, write_outputs};
pub use summary::{LostCounts, SyscallStats, TraceSummary};
pub use tracer::{prioritize_drain_thread, SyscallTracer, TraceOutput, DRAIN_NICE};

use crate::kernel::{CopyProbes, LoadOptions};

/// Filter slot the traced processes are put in.
const TRACE_SLOT: u32 = 0;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["pid", "command"])))]
pub struct TraceArgs {
    /// Trace this running process (all its threads) until --duration, Ctrl-C/SIGTERM or
    /// its exit.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Stop tracing after this long (e.g. 10s, 500ms, 2m). With a command, netcopy then
    /// waits for the command to finish without tracing it.
    #[arg(long, value_parser = crate::util::units::duration_arg)]
    pub duration: Option<Duration>,
    /// Output directory (default: results/trace-<UTC timestamp>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Room for the calls waiting for netcopy, shared out in one ring per CPU (a power
    /// of two, e.g. 8M); calls that find their CPU's ring full are counted as lost.
    #[arg(long, value_parser = crate::util::units::size_arg, default_value = "8M")]
    pub ring_size: u64,
    /// The command to start and trace from its first instruction, with its children
    /// (after `--`). netcopy returns its exit code.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
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

pub fn run(args: &TraceArgs) -> Result<ExitCode> {
    let ring_bytes = u32::try_from(args.ring_size)
        .ok()
        .filter(|b| b.is_power_of_two())
        .ok_or_else(|| {
            anyhow!(
                "--ring-size {} must be a power of two below 4G (e.g. 1M, 8M, 64M)",
                args.ring_size
            )
        })?;
    if args.pid.is_some() && !args.command.is_empty() {
        bail!("give either --pid or a command after --, not both");
    }
    crate::util::sys::require_root("netcopy trace")?;
    if let Some(pid) = args.pid {
        if pid == 0 || !launch::process_exists(pid) {
            bail!("no such process: {pid}");
        }
    }
    if let Some(program) = args.command.first() {
        // Fail before loading anything when the command cannot be found.
        launch::resolve_command(program)?;
    }
    let out_dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("trace-{}", crate::util::time::utc_timestamp()))
    });
    let mut probes = CopyProbes::load_with(LoadOptions {
        trace_ring_bytes: Some(ring_bytes),
        ..LoadOptions::default()
    })?;
    launch::catch_stop_signals()?;

    let mut child = None;
    let target_pid = match args.pid {
        Some(pid) => {
            probes.watch_process(pid, TRACE_SLOT, false)?;
            pid
        }
        None => {
            let held = launch::HeldChild::spawn(&args.command)?;
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
    match child.as_mut() {
        Some(c) => {
            if let Err(e) = c.release() {
                let _ = tracer.stop(&mut probes);
                return Err(e);
            }
            eprintln!(
                "netcopy: tracing {} (pid {target_pid}) and its children",
                args.command[0].to_string_lossy()
            );
        }
        None => eprintln!(
            "netcopy: tracing pid {target_pid} (all threads); stop with Ctrl-C{}",
            args.duration
                .map(|d| format!(" or after {}", humanize(d)))
                .unwrap_or_default()
        ),
    }

    // After the command was started: it keeps the priority it was given.
    if let Err(e) = prioritize_drain_thread() {
        eprintln!(
            "netcopy: warning: cannot raise the trace reader's priority (nice {DRAIN_NICE}):              {e}; a busy target may fill the ring buffer"
        );
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
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break Stop::Duration;
        }
    };
    let output = tracer.stop(&mut probes)?;
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
    if args.json {
        let mut j = summary_json(&output);
        j["out_dir"] = serde_json::json!(paths.dir);
        if let Stop::CommandExited(code) = stop {
            j["exit_code"] = serde_json::json!(code);
        }
        crate::util::emit(&(serde_json::to_string(&j)? + "\n"))?;
    } else {
        crate::util::emit(&output.summary.table())?;
        crate::util::emit(&format!(
            "wrote {} and {} (open it in https://ui.perfetto.dev)\n",
            paths.jsonl.display(),
            paths.chrome_trace.display()
        ))?;
    }
    let code = match stop {
        Stop::CommandExited(code) => code,
        Stop::Duration if child.is_some() => {
            let c = child.as_mut().expect("checked");
            eprintln!("netcopy: waiting for the command to finish (no longer traced)");
            c.wait().context("waiting for the command")?
        }
        Stop::Abandoned(signal) => 128 + signal,
        _ => 0,
    };
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_needs_exactly_one_target() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: TraceArgs,
        }
        assert!(Cli::try_parse_from(["t"]).is_err());
        assert!(Cli::try_parse_from(["t", "--pid", "1", "--", "true"]).is_err());
        let cli = Cli::try_parse_from(["t", "--json", "--", "ls", "-l"]).unwrap();
        assert_eq!(
            cli.args.command,
            vec![OsString::from("ls"), OsString::from("-l")]
        );
        assert_eq!(cli.args.ring_size, 8 << 20);
        let cli = Cli::try_parse_from(["t", "--pid", "42", "--duration", "2s"]).unwrap();
        assert_eq!(cli.args.pid, Some(42));
        assert_eq!(cli.args.duration, Some(Duration::from_secs(2)));
    }
}
