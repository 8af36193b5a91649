//! Part 2: netcopy's servers against the mechanism's own limit. A bare loop written here
//! sends one buffer over and over with nothing else to do (no message structure, no
//! sequence numbers, no field stamps, no slots): a plain `sendmsg` loop against `netcopy
//! server --mode` of the bench peer, and a `sendmsg(MSG_ZEROCOPY)` loop that drains its
//! completions as the kernel's msg_zerocopy selftest does against `netcopy server --mode`
//! of each zero-copy mode. Both sides send to the same receiver (a thread that reads and
//! discards), on the same path (loopback TCP), the same size, pinned to the same CPU, for
//! the same time, rounds alternating. The ratio says whether a server leaves speed on
//! the table that the mechanism itself would give.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use super::{
    affinity, ours,
    peers::PEER_SIZE,
    progress::progress,
    schema::{BareSection, Comparison, Outcome},
};
use crate::{
    util::{stats, stats::Summary, units::format_size},
    workload::{
        harness::ServerProcess,
        modes::Mode,
        protocol::{Request, MESSAGE_HEADER_LEN, REPLY_HEADER_LEN},
        sockets::{self, read_notification, Notification},
    },
};

/// Sends between two drains of the error queue: the selftest's default notification
/// limit (`-l`), so completions never pile up to the socket's optmem limit.
const SENDS_PER_DRAIN: u32 = 32;

/// One of the bare loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BareLoop {
    /// `sendmsg(fd, [buf], 0)` until the time is up.
    Sendmsg,
    /// `sendmsg(fd, [buf], MSG_ZEROCOPY)` after SO_ZEROCOPY, completions drained.
    Zerocopy,
}

impl BareLoop {
    fn label(self) -> &'static str {
        match self {
            BareLoop::Sendmsg => "bare sendmsg loop",
            BareLoop::Zerocopy => "bare MSG_ZEROCOPY loop",
        }
    }
}

/// One comparison: a server mode against the bare loop of its mechanism.
struct BarePlan {
    mode: Mode,
    bare: BareLoop,
    /// Extra `netcopy server` arguments.
    server_args: &'static [&'static str],
}

/// The zero-copy servers' slot limit in the second comparison of each: the bare loop
/// sends one buffer over and over, so every send it has in flight reads the same pages,
/// where a server's in-flight messages are separate slots (up to 64 at the default: 8 MiB
/// at 128K) that the kernel's copy on loopback reads from further out in the cache. With 4
/// (512 KiB at 128K) the two touch memory of the same order, and the difference left is
/// the server's own work. Measured at 128K on the 2-CPU Xeon guest, as ratios to the loop
/// at the default and with 4: 0.93 and 1.02 (15 rounds of 1 s), 0.92 and 0.96, 1.14 and
/// 1.02 (7 rounds of 2 s each). The small pool never fell below 0.96, but the default's
/// rounds spread too widely (0.68-1.28) to call the footprint the cause of its gap.
const SMALL_POOL_IN_FLIGHT: &str = "4";

fn plans() -> Vec<BarePlan> {
    let mut plans = vec![BarePlan {
        mode: ours::peer().mode,
        bare: BareLoop::Sendmsg,
        server_args: &[],
    }];
    for spec in ours::msg_zerocopy_modes() {
        for server_args in [&[][..], &["--zc-max-in-flight", SMALL_POOL_IN_FLIGHT][..]] {
            plans.push(BarePlan {
                mode: spec.mode,
                bare: BareLoop::Zerocopy,
                server_args,
            });
        }
    }
    plans
}

impl BarePlan {
    /// ` --zc-max-in-flight 4`, or nothing.
    fn args_label(&self) -> String {
        self.server_args.iter().map(|a| format!(" {a}")).collect()
    }

    /// `zero-copy --zc-max-in-flight 4 vs bare MSG_ZEROCOPY loop`.
    fn name(&self) -> String {
        format!(
            "{}{} vs {}",
            self.mode,
            self.args_label(),
            self.bare.label()
        )
    }
}

/// What one run delivered.
struct Run {
    gbps: f64,
    /// Zero-copy sends completed, and those the kernel flagged as copied.
    completed: u64,
    copied: u64,
}

/// Runs every comparison, `rounds` rounds of `seconds` per side.
pub(super) fn section(rounds: u32, seconds: u32) -> BareSection {
    let cpu = affinity::allowed_cpus()
        .ok()
        .and_then(|c| c.last().copied());
    let comparisons = plans()
        .iter()
        .map(|plan| match compare(plan, rounds, seconds, cpu) {
            Ok(c) => Outcome::Measured(c),
            Err(e) => {
                progress(&format!("{}: FAILED: {e:#}", plan.name()));
                Outcome::Failed {
                    error: format!("{}{}: {e:#}", plan.mode, plan.args_label()),
                }
            }
        })
        .collect();
    BareSection {
        size: PEER_SIZE,
        seconds,
        pinned_cpu: cpu,
        comparisons,
    }
}

fn compare(plan: &BarePlan, rounds: u32, seconds: u32, cpu: Option<usize>) -> Result<Comparison> {
    let duration = Duration::from_secs(u64::from(seconds));
    let (mut ours, mut theirs, mut round_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut completed, mut copied) = ([0u64; 2], [0u64; 2]);
    for round in 1..=rounds {
        let server = server_run(plan, PEER_SIZE, duration, cpu)?;
        let bare = bare_run(plan.bare, PEER_SIZE, duration, cpu)?;
        for (i, r) in [&server, &bare].into_iter().enumerate() {
            completed[i] += r.completed;
            copied[i] += r.copied;
        }
        progress(&format!(
            "{} round {round}/{rounds}: {:.2} vs {:.2} Gbit/s",
            plan.name(),
            server.gbps,
            bare.gbps
        ));
        ours.push(server.gbps);
        theirs.push(bare.gbps);
        if let Some(r) = stats::ratio(server.gbps, bare.gbps) {
            round_ratios.push(r);
        }
    }
    let ours_gbps = Summary::of(&ours).ok_or_else(|| anyhow!("no figure of the server"))?;
    let theirs_gbps = Summary::of(&theirs).ok_or_else(|| anyhow!("no figure of the loop"))?;
    let ratio = stats::ratio(ours_gbps.median, theirs_gbps.median);
    let on_cpu = cpu.map_or(String::new(), |c| format!(" on CPU {c}"));
    let mut notes = Vec::new();
    for (who, (done, flagged)) in [
        (
            format!("netcopy {}{}", plan.mode, plan.args_label()),
            (completed[0], copied[0]),
        ),
        (plan.bare.label().to_string(), (completed[1], copied[1])),
    ] {
        if done > 0 {
            notes.push(format!(
                "{who}: {:.1}% of the completed zero-copy sends were flagged \
                 SO_EE_CODE_ZEROCOPY_COPIED (the kernel copied the pages after all)",
                flagged as f64 * 100.0 / done as f64
            ));
        }
    }
    Ok(Comparison {
        name: plan.name(),
        streams: 1,
        ours_label: format!(
            "netcopy server --mode {}{} --size {}{on_cpu}",
            plan.mode,
            plan.args_label(),
            format_size(PEER_SIZE)
        ),
        theirs_label: format!("{}, {}{on_cpu}", plan.bare.label(), format_size(PEER_SIZE)),
        ours_gbps,
        theirs_gbps: Outcome::Measured(theirs_gbps),
        ratio,
        round_ratios,
        notes,
        by_placement: Vec::new(),
    })
}

/// `netcopy server --mode MODE` (a child process) streaming `size` messages to the
/// discarding receiver; the payload rate.
fn server_run(plan: &BarePlan, size: u64, duration: Duration, cpu: Option<usize>) -> Result<Run> {
    let extra: Vec<String> = plan.server_args.iter().map(|a| a.to_string()).collect();
    let server = ServerProcess::spawn(plan.mode, &extra)?;
    if let Some(cpu) = cpu {
        affinity::pin_process(server.pid(), &[cpu])?;
    }
    let request = Request { size, count: 0 }.encode();
    let received = receive(&server.addr, Some(&request), duration, cpu);
    let totals = server.stop();
    let (bytes, seconds) = received?;
    let totals = totals?;
    // The wire carries a reply header, then a 16-byte header per message.
    let payload = bytes.saturating_sub(REPLY_HEADER_LEN as u64) as f64 * size as f64
        / (size + MESSAGE_HEADER_LEN as u64) as f64;
    let sender = &totals.total.sender;
    Ok(Run {
        gbps: payload * 8.0 / seconds / 1e9,
        completed: sender.completed_bytes / size.max(1),
        copied: sender.copied_bytes / size.max(1),
    })
}

/// The bare loop in a thread of this process, streaming to the discarding receiver.
fn bare_run(bare: BareLoop, size: u64, duration: Duration, cpu: Option<usize>) -> Result<Run> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the bare sender")?;
    let addr = listener.local_addr()?.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let sender_stop = Arc::clone(&stop);
    let sender = std::thread::Builder::new()
        .name("bench-bare".into())
        .spawn(move || -> Result<(u64, u64)> {
            let _pin = match cpu {
                Some(cpu) => Some(affinity::PinnedThread::pin(&[cpu])?),
                None => None,
            };
            let (stream, _) = listener.accept().context("accepting the receiver")?;
            send_loop(bare, &stream, size as usize, &sender_stop)
        })
        .context("starting the bare sender")?;
    let received = receive(&addr, None, duration, cpu);
    stop.store(true, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow!("the bare sender panicked"))?;
    let (bytes, seconds) = received?;
    let (completed, copied) = sent?;
    Ok(Run {
        gbps: bytes as f64 * 8.0 / seconds / 1e9,
        completed,
        copied,
    })
}

/// Sends one buffer of `size` bytes again and again until `stop` or the receiver is
/// gone; (zero-copy sends completed, of them flagged copied).
fn send_loop(
    bare: BareLoop,
    stream: &TcpStream,
    size: usize,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    let fd = stream.as_raw_fd();
    let buf = vec![0xA5u8; size];
    let flags = match bare {
        BareLoop::Sendmsg => libc::MSG_NOSIGNAL,
        BareLoop::Zerocopy => {
            sockets::enable_zerocopy(fd).context("setsockopt(SO_ZEROCOPY)")?;
            libc::MSG_NOSIGNAL | libc::MSG_ZEROCOPY
        }
    };
    let mut completions = Completions::default();
    let mut since_drain = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: msg points at one live iovec over `buf`, which outlives the call (and,
        // for MSG_ZEROCOPY, the completions: it is dropped after the last drain).
        let sent = unsafe { libc::sendmsg(fd, &msg, flags) };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                // Out of optmem for notifications: wait for completions, as the selftest
                // does when the socket is not writable.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) if bare == BareLoop::Zerocopy => {
                    sockets::poll_one(fd, libc::POLLERR, Duration::from_millis(100))?;
                    completions.drain(fd)?;
                    continue;
                }
                Some(libc::EINTR) => continue,
                _ if sockets::is_peer_gone(&err) => break,
                _ => return Err(anyhow!(err).context("sendmsg")),
            }
        }
        if bare == BareLoop::Zerocopy {
            completions.sent += 1;
            since_drain += 1;
            if since_drain >= SENDS_PER_DRAIN {
                completions.drain(fd)?;
                since_drain = 0;
            }
        }
    }
    if bare == BareLoop::Zerocopy {
        // The rest, as the selftest's do_recv_remaining_completions.
        let deadline = Instant::now() + Duration::from_secs(2);
        while completions.completed < completions.sent && Instant::now() < deadline {
            sockets::poll_one(fd, libc::POLLERR, Duration::from_millis(50))?;
            completions.drain(fd)?;
        }
    }
    Ok((completions.completed, completions.copied))
}

#[derive(Default)]
struct Completions {
    sent: u64,
    completed: u64,
    copied: u64,
}

impl Completions {
    /// Reads every notification queued now (one range of send ids each).
    fn drain(&mut self, fd: i32) -> Result<()> {
        while let Some(n) = read_notification(fd).context("reading the error queue")? {
            if let Notification::Zerocopy { lo, hi, copied } = n {
                let count = u64::from(hi.wrapping_sub(lo)) + 1;
                self.completed += count;
                if copied {
                    self.copied += count;
                }
            }
        }
        Ok(())
    }
}

/// The receiver both sides send to: connects to `addr` (sending `request` first, for a
/// netcopy server), reads and discards for `duration` from its first byte on; (bytes
/// read, seconds).
fn receive(
    addr: &str,
    request: Option<&[u8]>,
    duration: Duration,
    cpu: Option<usize>,
) -> Result<(u64, f64)> {
    let _pin = match cpu {
        Some(cpu) => Some(affinity::PinnedThread::pin(&[cpu])?),
        None => None,
    };
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    if let Some(request) = request {
        stream.write_all(request).context("sending the request")?;
    }
    let mut buf = vec![0u8; 256 << 10];
    let mut bytes = 0u64;
    let mut started = None;
    loop {
        let n = stream.read(&mut buf).context("receiving")?;
        if n == 0 {
            bail!("the sender closed the connection after {bytes} bytes");
        }
        let t0 = *started.get_or_insert_with(Instant::now);
        bytes += n as u64;
        let elapsed = t0.elapsed();
        if elapsed >= duration {
            return Ok((bytes, elapsed.as_secs_f64()));
        }
    }
}
