//! `netcopy verify`: runs each mode and checks, site by site, that the kernel copied
//! exactly what the mode claims -- or says what it did instead, and why. The ends run
//! over loopback, in two namespaces of this kernel, or on two hosts (`experiment::ends`).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use netcopy_common::CopySite;

use crate::{
    experiment::ends::{Ends, Topology},
    kernel::{callers::CopyCallers, path::PathFacts, plan::AttachPlan, CopyProbes, LoadOptions},
    ledger::{
        self,
        causes::{explain, CopyEvidence, Explanation},
        ModeLedger, ReceiverStats, Verdict, Workload, CLIENT_SLOT, SITES,
    },
    util::sys,
    util::units::format_size,
    workload::client::{run_client, ClientConfig, ReceiveMechanism, RunLimit},
    workload::modes::Mode,
    workload::server::{stop_flag_on_signals, Interrupted},
};

/// The whole verification.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub kernel: String,
    /// Where the ends ran.
    pub topology: String,
    /// How the client received.
    pub recv: ReceiveMechanism,
    /// This host's attach plan (the receiver's, on two hosts).
    pub plan: AttachPlan,
    /// The sender's host's attach plan, on two hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_plan: Option<serde_json::Value>,
    pub modes: Vec<ModeLedger>,
}

/// What to verify, and where.
#[derive(Clone, Debug)]
pub struct VerifyPlan {
    /// Every mode of the mode table when empty.
    pub modes: Vec<Mode>,
    pub size: u64,
    pub messages: u64,
    pub load: LoadOptions,
    pub topology: Topology,
    /// Hold a packet socket open on the sender's device during each mode.
    pub packet_tap: bool,
    /// How the client receives.
    pub recv: ReceiveMechanism,
}

impl Verification {
    /// Exit 0 when every mode matches, is degraded in a way the kernel reported, or cannot
    /// run on this kernel.
    pub fn passed(&self) -> bool {
        self.modes.iter().all(|m| m.verdict != Verdict::Mismatch)
    }
}

/// Loads the copy probes and verifies each mode of the plan where it says. SIGINT or
/// SIGTERM stops it cleanly (servers stopped, probes detached) with [`Interrupted`].
pub fn verify(plan: &VerifyPlan) -> Result<Verification> {
    sys::require_root("netcopy verify")?;
    let stop = stop_flag_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    let modes = if plan.modes.is_empty() {
        &Mode::ALL[..]
    } else {
        &plan.modes[..]
    };
    let mut probes = CopyProbes::load_with(plan.load)?;
    let mut ends = Ends::set_up(&plan.topology, plan.recv)?;
    let mut ledgers = Vec::new();
    for &mode in modes {
        let ledger = verify_on(
            &mut probes,
            &mut ends,
            mode,
            plan.size,
            plan.messages,
            plan.packet_tap,
            plan.recv,
            Some(&stop),
        );
        if stop.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        ledgers.push(ledger.with_context(|| format!("verifying {mode}"))?);
    }
    if !compared_anything(&ledgers) {
        anyhow::bail!(
            "nothing was compared: neither {} nor {} was observable in any mode (are the \
             hooks that see them --avoid-ed?), so no claim was checked",
            CopySite::KernelSendCopy.name(),
            CopySite::KernelRecvCopy.name()
        );
    }
    let verification = Verification {
        kernel: sys::kernel_release(),
        topology: ends.describe(),
        recv: plan.recv,
        plan: probes.plan().clone(),
        sender_plan: ends.remote_plan(),
        modes: ledgers,
    };
    ends.close()?;
    Ok(verification)
}

/// Whether some mode that ran had its send or receive copy observed: a verification that
/// saw neither checked no claim, and must not pass as a MATCH.
fn compared_anything(ledgers: &[ModeLedger]) -> bool {
    ledgers.iter().any(|ledger| {
        ledger.verdict != Verdict::Unsupported
            && [CopySite::KernelSendCopy, CopySite::KernelRecvCopy]
                .iter()
                .any(|site| {
                    ledger
                        .sites
                        .get(site.name())
                        .is_some_and(|f| f.observed_bytes.is_some())
                })
    })
}

/// One mode where `ends` puts the sender, received as `recv` says (the sweep's opening
/// check).
pub fn verify_mode(
    probes: &mut CopyProbes,
    ends: &mut Ends,
    mode: Mode,
    recv: ReceiveMechanism,
    size: u64,
    messages: u64,
) -> Result<ModeLedger> {
    verify_on(probes, ends, mode, size, messages, false, recv, None)
}

/// One mode: the sender where `ends` puts it, this process's client in the client slot.
/// Setting `stop` ends the client early (the result is then an error).
#[allow(clippy::too_many_arguments)]
fn verify_on(
    probes: &mut CopyProbes,
    ends: &mut Ends,
    mode: Mode,
    size: u64,
    messages: u64,
    packet_tap: bool,
    recv: ReceiveMechanism,
    stop: Option<&Arc<AtomicBool>>,
) -> Result<ModeLedger> {
    // A mode the sender's kernel cannot run is a ledger saying so, not an error.
    if let Err((kernel, why)) = ends.runs(mode) {
        return Ok(ModeLedger::unsupported(mode, kernel, &why));
    }
    // The client is on this host whatever the topology: its kernel decides.
    if let Err(why) = recv.available() {
        let mut ledger =
            ModeLedger::unsupported(mode, "this kernel", &format!("--recv {recv}: {why}"));
        ledger.receiver.mechanism = recv;
        return Ok(ledger);
    }
    let own_pid = std::process::id();
    let phase = ends.start(probes, mode, size, packet_tap)?;
    probes.watch_process(own_pid, CLIENT_SLOT, false)?;
    let before = probes.read_counters()?;
    let mut config = ClientConfig::new(&phase.addr(), size, 1, RunLimit::Messages(messages));
    config.stop = stop.cloned();
    config.recv = recv;
    let client = ends.as_receiver(|| run_client(&config));
    // The client's counts are whole now; on two hosts, what follows (ending the phase
    // over the control connection) is this process's traffic too, and no part of the run.
    let after_client = probes.read_counters();
    // Stop the sender whatever the client did: its totals close the books on zero-copy
    // completions, and counters are read only after it has drained them.
    let sender = ends.finish(probes, phase);
    let after = probes.read_counters();
    probes.unwatch_process(own_pid)?;
    let report = client?.map_err(|f| anyhow!("client failed: {f}"))?;
    let sender = sender?;
    let delta = match &sender.side {
        Some(_) => after_client?.since(&before),
        None => after?.since(&before),
    };
    let workload = Workload {
        messages: report.messages,
        message_size: size,
        requests: report.requests_sent,
    };
    if report.messages != messages {
        return Err(anyhow!(
            "the client received {} of {messages} messages",
            report.messages
        ));
    }
    let sides = ends.sides(probes, &delta, sender.side);
    let receiver = ReceiverStats::of(&report);
    let mut ledger = ledger::build_from_sides(mode, workload, &sides, &sender.sender, &receiver);
    ledger.causes = causes_of(&ledger, &sender.path, sender.copy_callers.as_ref());
    for cause in &ledger.causes {
        ledger.findings.push(format!("cause: {}", cause.text()));
    }
    Ok(ledger)
}

/// For a mode that claims to avoid the copy: why the kernel copied anyway, from the
/// deferred copies' callers where the sender's kernel shows them, else from the path.
fn causes_of(
    ledger: &ModeLedger,
    path: &PathFacts,
    callers: Option<&CopyCallers>,
) -> Vec<Explanation> {
    if !ledger.mode.spec().claim.zerocopy_attach {
        return Vec::new();
    }
    let observed = |site: CopySite| ledger.sites.get(site.name()).and_then(|f| f.observed_bytes);
    let send = ledger.sites.get(CopySite::KernelSendCopy.name());
    let evidence = CopyEvidence {
        copied_sends: ledger.completions.map_or(0, |c| c.copied_sends),
        attached_bytes: observed(CopySite::ZeroCopyAttach),
        // What the send path copied beyond the protocol bytes it always copies.
        copied_at_send_bytes: send.and_then(|f| {
            f.observed_bytes
                .map(|o| o.saturating_sub(f.expected_protocol_bytes))
        }),
        deferred_bytes: observed(CopySite::DeferredCopy),
    };
    explain(path, &evidence, callers)
}

/// Caller frames of a chain the verify table prints (JSON has them all).
const CHAIN_FRAMES_SHOWN: usize = 8;

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Match => "MATCH",
        Verdict::Degraded => "DEGRADED",
        Verdict::Mismatch => "MISMATCH",
        Verdict::Unsupported => "NOT SUPPORTED BY THIS KERNEL",
    }
}

/// The human-readable verification table.
pub fn render(v: &Verification) -> String {
    let mut out = format!("kernel {}; {}\n", v.kernel, v.topology);
    for m in &v.modes {
        if m.verdict == Verdict::Unsupported {
            out.push_str(&format!(
                "\n{} -- {}\n",
                m.mode,
                m.findings.first().map_or("not supported", |f| f.as_str())
            ));
            continue;
        }
        out.push_str(&format!(
            "\n{} -- {}{} ({} messages of {} = {} payload bytes; {} requests; receive {})\n",
            m.mode,
            verdict_word(m.verdict),
            ledger::causes::beside_verdict(&m.causes),
            m.workload.messages,
            format_size(m.workload.message_size),
            m.workload.payload_bytes(),
            m.workload.requests,
            m.receiver.mechanism
        ));
        out.push_str(&format!(
            "  {:<22} {:>14} {:>14} {:>14} {:>9}  {}\n",
            "site", "expected", "(payload)", "observed", "calls", "source"
        ));
        for site in SITES {
            let f = &m.sites[site.name()];
            let observed = f
                .observed_bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "n/a".into());
            let calls = f.calls.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            let mark = match f.agrees() {
                Some(true) => " ",
                Some(false) => "!",
                None => "?",
            };
            out.push_str(&format!(
                "{mark} {:<22} {:>14} {:>14} {:>14} {:>9}  {}: {}\n",
                site.name(),
                f.expected_bytes,
                f.expected_payload_bytes,
                observed,
                calls,
                f.source.name(),
                f.how
            ));
        }
        for finding in &m.findings {
            out.push_str(&format!("  * {finding}\n"));
        }
        for cause in m.causes.iter().filter(|c| !c.callers.is_empty()) {
            out.push_str(&format!(
                "  callers of skb_copy_ubufs behind {}:\n",
                cause.cause.kind()
            ));
            for chain in &cause.callers {
                out.push_str(&format!(
                    "    {} copies, {} bytes: {}\n",
                    chain.copies,
                    chain.bytes,
                    chain.short(CHAIN_FRAMES_SHOWN)
                ));
            }
        }
    }
    out.push_str(&format!(
        "\nverify: {}\n",
        if v.passed() {
            "every mode matches or differs only as the kernel itself reported"
        } else {
            "UNEXPLAINED MISMATCH"
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_this_kernel_cannot_run_is_reported_and_does_not_fail_the_verification() {
        let why = std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this kernel's io_uring has no IORING_OP_SENDMSG_ZC",
        );
        let v = Verification {
            kernel: "6.0-test".to_string(),
            topology: "loopback".to_string(),
            recv: ReceiveMechanism::Copy,
            plan: AttachPlan { events: Vec::new() },
            sender_plan: None,
            modes: vec![ModeLedger::unsupported(
                Mode::IoUringZc,
                "this kernel",
                &why.to_string(),
            )],
        };
        assert!(v.passed());
        let text = render(&v);
        assert!(
            text.contains(
                "io-uring-zc -- not supported by this kernel: this kernel's io_uring has no \
                 IORING_OP_SENDMSG_ZC"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["modes"][0]["verdict"], "unsupported");
    }

    #[test]
    fn causes_stand_beside_the_verdict_with_their_caller_chains() {
        use crate::kernel::{callers::CallerChain, path::PacketSocket};
        use crate::ledger::causes::{CauseSource, CopyCause};
        let mode = *Mode::ALL
            .iter()
            .find(|m| m.spec().claim.zerocopy_attach)
            .expect("a zero-copy mode");
        let workload = Workload {
            messages: 1,
            message_size: 64,
            requests: 1,
        };
        let mut ledger = ledger::build(
            mode,
            workload,
            &crate::kernel::CopyCounts::default(),
            &AttachPlan::default(),
            &Default::default(),
            &Default::default(),
        );
        let chain = CallerChain {
            callers: vec![
                "dev_queue_xmit_nit+0x28a".into(),
                "dev_hard_start_xmit+0x3c".into(),
            ],
            copies: 3,
            bytes: 196_608,
        };
        ledger.causes = vec![Explanation {
            cause: CopyCause::PacketSocket {
                device: "eth0".into(),
                sockets: vec![PacketSocket {
                    ifindex: 2,
                    protocol: 3,
                    inode: 7,
                    owners: vec![],
                }],
                how: "observed".into(),
            },
            source: CauseSource::Observed,
            callers: vec![chain],
        }];
        let v = Verification {
            kernel: "6.1-test".to_string(),
            topology: "two hosts".to_string(),
            recv: ReceiveMechanism::Copy,
            plan: AttachPlan::default(),
            sender_plan: None,
            modes: vec![ledger],
        };
        let text = render(&v);
        let verdict_line = text
            .lines()
            .find(|l| l.starts_with(&format!("{mode} -- ")))
            .expect("the mode's verdict line");
        assert!(
            verdict_line.contains(": cause packet_socket (observed) ("),
            "{verdict_line}"
        );
        assert!(
            text.contains(
                "  callers of skb_copy_ubufs behind packet_socket:\n    3 copies, 196608 \
                 bytes: dev_queue_xmit_nit+0x28a <- dev_hard_start_xmit+0x3c\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&v).unwrap();
        let cause = &json["modes"][0]["causes"][0];
        assert_eq!(cause["kind"], "packet_socket");
        assert_eq!(cause["source"], "observed");
        assert_eq!(cause["callers"][0]["bytes"], 196_608);
    }
}
