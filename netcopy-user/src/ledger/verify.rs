//! `netcopy verify`: runs each mode over loopback and checks, site by site, that the
//! kernel copied exactly what the mode claims -- or says what it did instead.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::{
    kernel::{plan::AttachPlan, CopyProbes, LoadOptions},
    ledger::{self, ModeLedger, Verdict, Workload, CLIENT_SLOT, SERVER_SLOT, SITES},
    util::sys,
    util::units::format_size,
    workload::client::{run_client, ClientConfig, RunLimit},
    workload::harness::ServerProcess,
    workload::modes::Mode,
};

/// The whole verification.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub kernel: String,
    pub plan: AttachPlan,
    pub modes: Vec<ModeLedger>,
}

impl Verification {
    /// Exit 0 when every mode matches or is degraded in a way the kernel reported.
    pub fn passed(&self) -> bool {
        self.modes.iter().all(|m| m.verdict != Verdict::Mismatch)
    }
}

/// Loads the copy probes with `options` and verifies each of `modes` (every mode of the
/// mode table when empty) with `messages` messages of `size` bytes.
pub fn verify(
    modes: &[Mode],
    size: u64,
    messages: u64,
    options: LoadOptions,
) -> Result<Verification> {
    sys::require_root("netcopy verify")?;
    let modes = if modes.is_empty() {
        &Mode::ALL[..]
    } else {
        modes
    };
    let mut probes = CopyProbes::load_with(options)?;
    let mut ledgers = Vec::new();
    for &mode in modes {
        ledgers.push(
            verify_mode(&mut probes, mode, size, messages)
                .with_context(|| format!("verifying {mode}"))?,
        );
    }
    Ok(Verification {
        kernel: sys::kernel_release(),
        plan: probes.plan().clone(),
        modes: ledgers,
    })
}

/// One mode: server child in the server slot, this process's client in the client slot.
pub fn verify_mode(
    probes: &mut CopyProbes,
    mode: Mode,
    size: u64,
    messages: u64,
) -> Result<ModeLedger> {
    // The server's default size limit (64M) must not make a larger verification fail.
    let server = ServerProcess::spawn(mode, &["--max-size".to_string(), size.to_string()])?;
    let own_pid = std::process::id();
    probes.watch_process(server.pid(), SERVER_SLOT, false)?;
    probes.watch_process(own_pid, CLIENT_SLOT, false)?;
    let before = probes.read_counters()?;
    let config = ClientConfig::new(&server.addr, size, 1, RunLimit::Messages(messages));
    let client = run_client(&config);
    // Stop the server whatever the client did: its totals close the books on zero-copy
    // completions, and counters are read only after it has drained them.
    let totals = server.stop();
    let after = probes.read_counters();
    probes.unwatch_process(own_pid)?;
    let report = client.map_err(|f| anyhow!("client failed: {f}"))?;
    let totals = totals?;
    let delta = after?.since(&before);
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
    Ok(ledger::build(
        mode,
        workload,
        &delta,
        probes.plan(),
        &totals.total.sender,
    ))
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Match => "MATCH",
        Verdict::Degraded => "DEGRADED",
        Verdict::Mismatch => "MISMATCH",
    }
}

/// The human-readable verification table.
pub fn render(v: &Verification) -> String {
    let mut out = format!("kernel {}\n", v.kernel);
    for m in &v.modes {
        out.push_str(&format!(
            "\n{} -- {} ({} messages of {} = {} payload bytes; {} requests)\n",
            m.mode,
            verdict_word(m.verdict),
            m.workload.messages,
            format_size(m.workload.message_size),
            m.workload.payload_bytes(),
            m.workload.requests
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
