//! Where the two ends of a verification or a sweep cell run: the sender (a `netcopy
//! server`) and the receiver (this process's client), on one kernel over loopback, in two
//! namespaces of this kernel joined by veth, or on two hosts with an agent on the
//! sender's. Each phase's sender is counted where it runs: by this host's probes and perf
//! counters on one kernel, by the agent's on two hosts.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use crate::{
    experiment::results::{AgentRecord, TopologyKind, TopologyRecord},
    kernel::{
        callers::{CallerCounts, CopyCallers},
        path::{PacketTap, PathFacts},
        perf::{CounterReadings, ProcessCounters},
        CopyCounts, CopyProbes,
    },
    ledger::{
        sides::{KernelSide, Role},
        this_host, CLIENT_SLOT, SERVER_SLOT,
    },
    remote::{auth::Token, controller::Controller, messages::PhaseRequest, phases::SenderReport},
    workload::{
        client::ReceiveMechanism,
        harness::ServerProcess,
        modes::{Mode, SenderStats},
        netns::{NetnsOptions, NetnsPair, RECEIVER_ADDR, SENDER_ADDR},
    },
};

/// Where the sender and the receiver run.
#[derive(Clone, Debug)]
pub enum Topology {
    /// Both on this kernel, over the loopback device.
    Loopback,
    /// Both on this kernel, in two namespaces netcopy makes, joined by veth.
    Netns,
    /// The sender on another host, behind `netcopy agent`.
    Remote {
        addr: String,
        token: Token,
        /// How long to keep trying while the agent is not up yet.
        wait: Duration,
    },
}

/// The MTU of the namespaces' veth devices for `--recv zerocopy`: 4148 is 4096 plus 20
/// (IPv4), 20 (TCP) and 12 (the timestamp option), so every segment carries exactly one page and
/// the sender's GSO packets (whole multiples of the MSS) arrive as whole pages the kernel
/// can map. The namespace code is IPv4 only, and the MTU alone gives this MSS: no socket
/// option on either end (TCP_MAXSEG 4108 would do the same), no IPv6 addresses to add.
/// Only devices netcopy creates are changed, never the host's loopback. What zero-copy
/// mode still gets copied here (3-10 %) is the message's separate fields' doing, not this
/// MTU's: MTU 61512 with TCP_MAXSEG 4108 measured the same (README, "--recv zerocopy").
pub const ZEROCOPY_RECEIVE_MTU: u32 = 4148;

/// The ends, set up for a verification or a sweep.
pub enum Ends {
    Loopback,
    /// The pair, and why its MTU is what it is (None: the kernel's default).
    Netns(NetnsPair, Option<&'static str>),
    Remote(Controller),
}

/// What the sender's end gave back for one phase.
pub struct SenderEnd {
    pub side: Option<KernelSide>,
    pub sender: SenderStats,
    pub path: PathFacts,
    /// The server process's perf counters over the phase, read where it ran (None from an
    /// agent that sent none).
    pub counters: Option<CounterReadings>,
    /// The sender's deferred copies by caller chain; None where its kernel cannot show
    /// them.
    pub copy_callers: Option<CopyCallers>,
}

/// One phase's sender, running.
pub enum Phase {
    Local {
        server: ServerProcess,
        counters: Box<ProcessCounters>,
        /// Boxed with the maps' copy below: a phase is moved around, and these are the
        /// largest parts of it.
        path: Box<PathFacts>,
        _tap: Option<PacketTap>,
        /// The copy-caller maps when the server started.
        callers_before: Option<Box<CallerCounts>>,
    },
    Remote {
        phase: u64,
        addr: SocketAddr,
    },
}

impl Ends {
    pub fn set_up(topology: &Topology, recv: ReceiveMechanism) -> Result<Ends> {
        Ok(match topology {
            Topology::Loopback => Ends::Loopback,
            Topology::Netns if recv == ReceiveMechanism::ZeroCopy => Ends::Netns(
                NetnsPair::create(&NetnsOptions {
                    mtu: Some(ZEROCOPY_RECEIVE_MTU),
                    tag: None,
                })?,
                Some(
                    "set by netcopy for --recv zerocopy on the veth devices it made: MSS 4096 \
                     over IPv4 with timestamps, one page per segment",
                ),
            ),
            Topology::Netns => Ends::Netns(NetnsPair::create(&NetnsOptions::default())?, None),
            Topology::Remote { addr, token, wait } => {
                Ends::Remote(connect_waiting(addr, token, *wait)?)
            }
        })
    }

    pub fn kind(&self) -> TopologyKind {
        match self {
            Ends::Loopback => TopologyKind::Loopback,
            Ends::Netns(..) => TopologyKind::Netns,
            Ends::Remote(_) => TopologyKind::Remote,
        }
    }

    /// What results.json says about where the ends ran.
    pub fn record(&self) -> TopologyRecord {
        TopologyRecord {
            kind: self.kind(),
            description: self.describe(),
            agent: match self {
                Ends::Remote(c) => Some(AgentRecord {
                    address: c.agent_addr.to_string(),
                    hostname: c.host.hostname.clone(),
                    kernel: c.host.kernel.clone(),
                    plan: c.host.plan.clone(),
                }),
                _ => None,
            },
        }
    }

    /// Ends the ends: on two hosts, the session with the agent, politely (the agent then
    /// serves its next controller); the namespaces go when dropped.
    pub fn close(self) -> Result<()> {
        match self {
            Ends::Remote(controller) => controller.bye(),
            _ => Ok(()),
        }
    }

    /// One line for the report: where the ends ran.
    pub fn describe(&self) -> String {
        match self {
            Ends::Loopback => "loopback: sender and receiver on this kernel".into(),
            Ends::Netns(pair, None) => pair.describe(),
            Ends::Netns(pair, Some(why)) => format!("{} ({why})", pair.describe()),
            Ends::Remote(c) => format!(
                "two hosts: sender on {} ({}, kernel {}) behind netcopy agent, receiver on {}",
                c.host.hostname,
                c.agent_addr,
                c.host.kernel,
                this_host()
            ),
        }
    }

    /// Ok when the sender's kernel runs `mode`, else whose kernel it is and why not: this
    /// kernel's mode table check, or on two hosts the agent's, from its Welcome.
    pub fn runs(&self, mode: Mode) -> Result<(), (&'static str, String)> {
        match self {
            Ends::Remote(c) => c.host.runs(mode).map_err(|why| ("the agent's kernel", why)),
            _ => (mode.spec().available)().map_err(|why| ("this kernel", why.to_string())),
        }
    }

    /// The agent's attach plan, for a two-host verification.
    pub fn remote_plan(&self) -> Option<serde_json::Value> {
        match self {
            Ends::Remote(c) => Some(c.host.plan.clone()),
            _ => None,
        }
    }

    /// Starts the sender of `mode`; local servers are counted in `probes`' server slot.
    pub fn start(
        &mut self,
        probes: &mut CopyProbes,
        mode: Mode,
        size: u64,
        packet_tap: bool,
    ) -> Result<Phase> {
        let max_size = ["--max-size".to_string(), size.to_string()];
        let (server, local, peer, netns) = match self {
            Ends::Remote(c) => {
                let (phase, addr) = c.start_phase(&PhaseRequest {
                    mode,
                    max_size: size,
                    packet_tap,
                })?;
                return Ok(Phase::Remote { phase, addr });
            }
            Ends::Loopback => {
                let server = ServerProcess::spawn(mode, &max_size)?;
                let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
                (server, lo, lo, None)
            }
            Ends::Netns(pair, _) => {
                let listen = SocketAddr::from((SENDER_ADDR, 0)).to_string();
                let exe = std::path::Path::new("/proc/self/exe");
                let server =
                    ServerProcess::launch(exe, mode, &listen, &max_size, Some(&pair.sender))?;
                (
                    server,
                    SENDER_ADDR.into(),
                    RECEIVER_ADDR.into(),
                    Some(&pair.sender),
                )
            }
        };
        probes.watch_process(server.pid(), SERVER_SLOT, false)?;
        // From before the client connects to after the server stopped, as the agent does.
        let mut counters = Box::new(ProcessCounters::open(server.pid(), true));
        counters.enable();
        let callers_before = probes.read_copy_callers()?.map(Box::new);
        // The path, and the tap, as the sender's namespace sees them.
        let _inside = netns.map(|ns| ns.enter()).transpose()?;
        let tap = if packet_tap {
            let facts = PathFacts::read(local, peer);
            let dev = facts
                .device
                .ok_or_else(|| anyhow!("no device holds {local}: nothing to tap"))?;
            Some(
                PacketTap::open(dev.ifindex)
                    .with_context(|| format!("opening a packet socket on {}", dev.name))?,
            )
        } else {
            None
        };
        let path = Box::new(PathFacts::read(local, peer));
        Ok(Phase::Local {
            server,
            counters,
            path,
            _tap: tap,
            callers_before,
        })
    }

    /// Runs `f` (the client) where the receiver lives.
    pub fn as_receiver<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _inside = match self {
            Ends::Netns(pair, _) => Some(pair.receiver.enter()?),
            _ => None,
        };
        Ok(f())
    }

    /// Stops the sender and returns what its end counted and reported.
    pub fn finish(&mut self, probes: &mut CopyProbes, phase: Phase) -> Result<SenderEnd> {
        match (self, phase) {
            (Ends::Remote(c), Phase::Remote { phase, .. }) => {
                let report: SenderReport = c.end_phase(phase)?;
                Ok(SenderEnd {
                    side: Some(report.side),
                    sender: report.sender,
                    path: report.path,
                    counters: report.counters,
                    copy_callers: report.copy_callers,
                })
            }
            (
                _,
                Phase::Local {
                    server,
                    mut counters,
                    path,
                    _tap,
                    callers_before,
                },
            ) => {
                let pid = server.pid();
                let totals = server.stop();
                counters.disable();
                // Read once the server has drained: its last deferred copies are in.
                let callers = probes.callers_since(callers_before.as_deref(), SERVER_SLOT);
                let _ = probes.unwatch_process(pid);
                Ok(SenderEnd {
                    side: None,
                    sender: totals?.total.sender,
                    path: *path,
                    counters: Some(counters.read()),
                    copy_callers: callers?,
                })
            }
            _ => bail!("a remote phase cannot end on a local topology"),
        }
    }

    /// The kernel sides of one phase: one side for both ends on this kernel, or the
    /// agent's and ours.
    pub fn sides(
        &self,
        probes: &CopyProbes,
        delta: &CopyCounts,
        remote: Option<KernelSide>,
    ) -> Vec<KernelSide> {
        match remote {
            Some(sender) => vec![
                sender,
                KernelSide::of(
                    &this_host(),
                    Role::Receiver,
                    probes.plan(),
                    delta,
                    &[CLIENT_SLOT],
                ),
            ],
            None => vec![KernelSide::of(
                &this_host(),
                Role::Both,
                probes.plan(),
                delta,
                &[SERVER_SLOT, CLIENT_SLOT],
            )],
        }
    }
}

impl Phase {
    /// The server's process when it runs on this host (to pin it).
    pub fn local_pid(&self) -> Option<u32> {
        match self {
            Phase::Local { server, .. } => Some(server.pid()),
            Phase::Remote { .. } => None,
        }
    }

    /// Where the client connects.
    pub fn addr(&self) -> String {
        match self {
            Phase::Local { server, .. } => server.addr.clone(),
            Phase::Remote { addr, .. } => addr.to_string(),
        }
    }
}

/// How long connecting and authenticating may take.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one reply of the agent may take once authenticated: ending a phase drains the
/// agent's server and names its caller chains, which in a guest under emulation on a busy
/// host has taken over 30 s. It stays under the agent's own idle timeout (600 s), so a
/// controller that gives up finds the agent still waiting for it, never the reverse.
const AGENT_REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Connects to the agent, retrying while it is not up (refused, unreachable) until `wait`.
fn connect_waiting(addr: &str, token: &Token, wait: Duration) -> Result<Controller> {
    let deadline = Instant::now() + wait;
    loop {
        match Controller::connect(addr, token, AGENT_CONNECT_TIMEOUT) {
            Ok(mut c) => {
                c.set_reply_timeout(AGENT_REPLY_TIMEOUT)?;
                return Ok(c);
            }
            Err(e) => {
                let retry = e
                    .chain()
                    .filter_map(|c| c.downcast_ref::<std::io::Error>())
                    .any(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::HostUnreachable
                                | std::io::ErrorKind::NetworkUnreachable
                        )
                    });
                if !retry || Instant::now() >= deadline {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}
