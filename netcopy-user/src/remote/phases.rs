//! What a phase is on the agent's host: a `netcopy server` of the requested mode, its
//! copies counted by this host's probes (its process alone, in the server slot), its CPU
//! time and perf counters counted by this host's perf events, the path its data leaves
//! by, and on request a packet tap on that path's device.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::{
    agent::Phases,
    messages::{HostInfo, ModeSupport, PhaseRequest},
};
use crate::{
    kernel::{
        callers::{CallerCounts, CopyCallers},
        path::{PacketTap, PathFacts},
        perf::{CounterReadings, ProcessCounters},
        CopyCounts, CopyProbes,
    },
    ledger::{
        sides::{KernelSide, Role},
        this_host, SERVER_SLOT,
    },
    workload::{harness::ServerProcess, modes::SenderStats},
};

/// What the agent reports at the end of a phase.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SenderReport {
    /// The agent's kernel's counts of its server, with the strategies behind them.
    pub side: KernelSide,
    /// The server's own bookkeeping (memcpy, sends, completions).
    pub sender: SenderStats,
    /// The path the data left by, read while the phase ran.
    pub path: PathFacts,
    /// The server process's perf counters (task-clock, and hardware counters where this
    /// host has a PMU) from its start to its stop: the sender's CPU time per byte of a
    /// two-host sweep cell. Absent from an agent before this field (None).
    #[serde(default)]
    pub counters: Option<CounterReadings>,
    /// The server's deferred copies by the kernel stack that asked for them; None where
    /// this host's kernel cannot show them (an older agent sends none).
    #[serde(default)]
    pub copy_callers: Option<CopyCallers>,
}

struct Running {
    server: ServerProcess,
    counters: ProcessCounters,
    before: CopyCounts,
    callers_before: Option<CallerCounts>,
    path: PathFacts,
    _tap: Option<PacketTap>,
}

/// The agent's phases: servers of its own, never anyone else's processes.
pub struct AgentPhases {
    probes: CopyProbes,
    exe: PathBuf,
    host: HostInfo,
    running: Option<Running>,
}

impl AgentPhases {
    pub fn new(probes: CopyProbes) -> Result<AgentPhases> {
        let host = HostInfo {
            hostname: this_host(),
            kernel: crate::util::sys::kernel_release(),
            plan: serde_json::to_value(probes.plan()).context("encoding the attach plan")?,
            modes: ModeSupport::of_this_kernel(),
        };
        Ok(AgentPhases {
            probes,
            // /proc/self/exe: the servers are this very binary, even if it was replaced.
            exe: PathBuf::from("/proc/self/exe"),
            host,
            running: None,
        })
    }

    fn stop_running(&mut self) -> Option<Running> {
        let running = self.running.take()?;
        let _ = self.probes.unwatch_process(running.server.pid());
        Some(running)
    }
}

impl Phases for AgentPhases {
    type Report = SenderReport;

    fn host(&self) -> HostInfo {
        self.host.clone()
    }

    fn start(&mut self, request: &PhaseRequest, local: IpAddr, peer: IpAddr) -> Result<SocketAddr> {
        if self.running.is_some() {
            return Err(anyhow!("a phase is already running"));
        }
        // The server listens where the controller reached us, so the data takes the
        // control connection's path, the one the path facts describe.
        let listen = SocketAddr::new(local, 0).to_string();
        let server = ServerProcess::launch(
            &self.exe,
            request.mode,
            &listen,
            &["--max-size".to_string(), request.max_size.to_string()],
            None,
        )?;
        let addr: SocketAddr = server
            .addr
            .parse()
            .with_context(|| format!("the server's address {:?}", server.addr))?;
        self.probes
            .watch_process(server.pid(), SERVER_SLOT, false)?;
        let mut counters = ProcessCounters::open(server.pid(), true);
        counters.enable();
        let read = self
            .probes
            .read_counters()
            .and_then(|c| Ok((c, self.probes.read_copy_callers()?)));
        let (before, callers_before) = match read {
            Ok(both) => both,
            Err(e) => {
                let _ = self.probes.unwatch_process(server.pid());
                return Err(e);
            }
        };
        let mut path = PathFacts::read(local, peer);
        let tap = if request.packet_tap {
            let dev = path
                .device
                .as_ref()
                .ok_or_else(|| anyhow!("no device holds {local}: nothing to tap"))?;
            let tap = PacketTap::open(dev.ifindex)
                .with_context(|| format!("opening a packet socket on {}", dev.name))?;
            // Read again, so that the facts list the tap just opened.
            path = PathFacts::read(local, peer);
            Some(tap)
        } else {
            None
        };
        self.running = Some(Running {
            server,
            counters,
            before,
            callers_before,
            path,
            _tap: tap,
        });
        Ok(addr)
    }

    fn end(&mut self) -> Result<SenderReport> {
        let mut running = self
            .running
            .take()
            .ok_or_else(|| anyhow!("no phase is running"))?;
        let pid = running.server.pid();
        // Stop first: the server drains its completions, and only then are its counts whole.
        let totals = running.server.stop();
        running.counters.disable();
        let after = self.probes.read_counters();
        let callers = self
            .probes
            .callers_since(running.callers_before.as_ref(), SERVER_SLOT);
        let _ = self.probes.unwatch_process(pid);
        let totals = totals?;
        let delta = after?.since(&running.before);
        Ok(SenderReport {
            side: KernelSide::of(
                &self.host.hostname,
                Role::Sender,
                self.probes.plan(),
                &delta,
                &[SERVER_SLOT],
            ),
            sender: totals.total.sender,
            path: running.path,
            counters: Some(running.counters.read()),
            copy_callers: callers?,
        })
    }

    fn abort(&mut self) {
        // Dropping the server process kills it.
        drop(self.stop_running());
    }
}
