//! The tap stage of `cargo xtask vm-test`: two hosts, and a zero-copy that really avoids
//! the copy. The 6.1 guest is host A, running `netcopy agent` behind a virtio-net NIC that
//! a tap device backs with `vnet_hdr=on` (so the guest's NIC has scatter-gather and the
//! guest kernel can send MSG_ZEROCOPY pages by reference); this machine, inside a network
//! namespace made for the stage, is host B, running `netcopy verify --remote`.
//!
//! The modes verified are those whose row of `netcopy modes --json` claims pinned pages
//! and completion reports (MSG_ZEROCOPY's error queue, io_uring's notification ring): the
//! mode table names them, this stage never does. Expected for each (shared/PLATFORM.md,
//! "MSG_ZEROCOPY here"): `match`, no completion flagged copied; with a packet socket on
//! the guest's NIC (`--packet-tap`), `degraded`, with the packet socket as the cause, and
//! that cause *observed* (the 6.1 guest has fentry and kprobes, so the copy-caller probe
//! sees `skb_copy_ubufs` called from the tap's path). Then the guest traces a
//! MSG_ZEROCOPY server that this host pulls from, plain and with a packet socket, and
//! the trace's own outputs must say what the kernel did (`tap_trace`). The namespace,
//! and the tap in it, are removed whatever happens; nothing is made in the host's own
//! namespace.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    thread,
};

use anyhow::{bail, Context, Result};

use super::{
    guest::GUEST_NETCOPY,
    run_in_guest,
    tap_trace::{self, Figures, Pass, Sender},
    GuestCommand, GuestOutcome, VmOptions,
};

/// Host B's and the guest's addresses: IPv4 link-local, on the tap inside our namespace.
const HOST_ADDR: &str = "169.254.202.1";
const GUEST_ADDR: &str = "169.254.202.2";
const AGENT_PORT: u16 = 7878;
const TAP: &str = "nctap0";
const GUEST_TOKEN: &str = "/ncvm/token";
/// Messages of each verify: a few seconds of sending under TCG.
const MESSAGES: u64 = 200;
const SIZE: &str = "64K";

/// The namespace of one stage; deleted on drop, with the tap in it.
struct StageNetns {
    name: String,
}

impl StageNetns {
    fn create() -> Result<StageNetns> {
        if !Path::new("/dev/net/tun").exists() {
            bail!("/dev/net/tun does not exist: this kernel has no tun/tap (CONFIG_TUN)");
        }
        let ns = StageNetns {
            name: format!("netcopy-vmtap-{}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name])?;
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{HOST_ADDR}/30"),
            "dev",
            TAP,
        ])?;
        ip(&["-n", n, "link", "set", TAP, "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NS PROGRAM ARGS`.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for StageNetns {
    fn drop(&mut self) {
        // The tap is persistent (made by `ip tuntap`): delete it first, then its namespace.
        let _ = ip(&["-n", &self.name, "link", "del", TAP]);
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "vm-test: tap stage: removing namespace {}: {e:#}",
                self.name
            );
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom for the stage's token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What one controller-side verify said.
struct RemoteVerify {
    output: Output,
    json: serde_json::Value,
}

impl RemoteVerify {
    /// The ledger of `mode`.
    fn ledger(&self, mode: &str) -> Result<&serde_json::Value> {
        self.json["modes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mode"] == mode)
            .with_context(|| format!("the remote verify reported no {mode} mode"))
    }
}

/// The modes the stage verifies: those that claim to attach pinned pages and get
/// completion reports saying whether the kernel copied them.
fn zero_copy_modes(netcopy: &Path) -> Result<Vec<String>> {
    let modes = super::modes_where(netcopy, |m| {
        m["zerocopy_attach"] == true && !m["completions"].is_null()
    })?;
    if modes.is_empty() {
        bail!("the mode table has no mode that attaches pinned pages and reports completions");
    }
    Ok(modes)
}

fn remote_verify(
    ns: &StageNetns,
    netcopy: &Path,
    token: &Path,
    modes: &[String],
    tap: bool,
) -> Result<RemoteVerify> {
    let mut c = ns.command(netcopy);
    c.args(["verify", "--remote", &format!("{GUEST_ADDR}:{AGENT_PORT}")])
        .arg("--token-file")
        .arg(token)
        // The guest boots while we start (twice when the first boot stalls): wait for its agent.
        .args(["--remote-wait", "240s", "--size", SIZE])
        .args(["--messages", &MESSAGES.to_string(), "--json"]);
    for mode in modes {
        c.args(["--mode", mode]);
    }
    if tap {
        c.arg("--packet-tap");
    }
    let output = c.output().context("running netcopy verify --remote")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "`netcopy verify --remote{}` printed no JSON (exit {}): {}",
            if tap { " --packet-tap" } else { "" },
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    Ok(RemoteVerify { output, json })
}

/// Runs the stage: boots the guest with its agent, verifies the zero-copy modes from this
/// host twice (without and with a packet tap on the guest's NIC), and checks the verdicts.
pub fn tap_stage(netcopy: &Path, base: &VmOptions) -> Result<()> {
    let modes = zero_copy_modes(netcopy)?;
    let senders: Vec<(Sender, String)> = Sender::ALL
        .into_iter()
        .map(|s| tap_trace::sender_mode(netcopy, s).map(|mode| (s, mode)))
        .collect::<Result<_>>()?;
    let ns = StageNetns::create()?;
    let token = random_token()?;
    let dir = base.work_dir.join("tap");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let token_path = dir.join(format!("token-{}", std::process::id()));
    fs::write(&token_path, &token)?;
    fs::set_permissions(&token_path, fs::Permissions::from_mode(0o600))?;

    let mut opts = base.clone();
    opts.netns = Some(ns.name.clone());
    opts.modules = vec!["virtio_net".into(), "virtio_pci".into()];
    opts.qemu_args = vec![
        "-netdev".into(),
        format!("tap,id=n0,ifname={TAP},script=no,downscript=no,vnet_hdr=on"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ];
    opts.files = vec![(GUEST_TOKEN.into(), 0o600, token.clone().into_bytes())];
    let commands = vec![
        // A static address: a DHCP client would hold a packet socket open on eth0.
        GuestCommand::shell(format!(
            "ip addr add {GUEST_ADDR}/30 dev eth0 && ip link set eth0 up && ip -o link show eth0"
        )),
        GuestCommand::Netcopy(vec![
            "agent".into(),
            "--listen".into(),
            format!("{GUEST_ADDR}:{AGENT_PORT}"),
            "--token-file".into(),
            GUEST_TOKEN.into(),
            "--max-sessions".into(),
            "2".into(),
        ]),
    ];
    // Then, the agent gone, a traced zero-copy server per sender and pass (see
    // tap_trace), one after the other on the same port.
    let traced: Vec<(Sender, Pass, GuestCommand)> = senders
        .iter()
        .flat_map(|(sender, mode)| {
            Pass::ALL.into_iter().map(move |p| {
                let command = tap_trace::guest_command(mode, GUEST_ADDR, *sender, p);
                (*sender, p, command)
            })
        })
        .collect();
    let mut commands = commands;
    commands.extend(traced.iter().map(|(_, _, c)| c.clone()));
    let guest_netcopy = netcopy.to_path_buf();
    let guest = thread::spawn(move || run_in_guest(&guest_netcopy, &commands, &opts));

    let plain = remote_verify(&ns, netcopy, &token_path, &modes, false);
    let tapped = match &plain {
        Ok(_) => remote_verify(&ns, netcopy, &token_path, &modes, true),
        Err(_) => Err(anyhow::anyhow!("not run: the first remote verify failed")),
    };
    // The agent ends after its two sessions; the traced servers come next in the guest.
    let pulls: Vec<Result<serde_json::Value>> = traced
        .iter()
        .map(|(sender, p, _)| match &tapped {
            Ok(_) => tap_trace::pull(|| ns.command(netcopy), GUEST_ADDR, *sender, *p),
            Err(_) => Err(anyhow::anyhow!(
                "not run: the remote verifies did not both run"
            )),
        })
        .collect();
    let outcome = guest
        .join()
        .map_err(|_| anyhow::anyhow!("the guest thread panicked"))?;
    let _ = fs::remove_file(&token_path);
    drop(ns);
    let traced = TracedPasses {
        commands: traced,
        pulls,
    };
    judge(&modes, plain, tapped, traced, outcome)
}

/// The traced zero-copy passes: each pass's guest command and this host's client run.
struct TracedPasses {
    commands: Vec<(Sender, Pass, GuestCommand)>,
    pulls: Vec<Result<serde_json::Value>>,
}

impl TracedPasses {
    /// Prints each pass's figures, then checks them (after the verifies: a failed verify
    /// is the first thing to know).
    fn figures(&self, outcome: &GuestOutcome) -> Vec<(Sender, Pass, Result<Figures>)> {
        let passes = self.commands.iter().zip(&self.pulls);
        passes
            .map(|((sender, pass, command), pull)| {
                let figures = traced_figures(*sender, command, pull, outcome);
                match &figures {
                    Ok(f) => println!(
                        "vm-test: tap stage: traced {} {}: {}",
                        sender.label(),
                        pass.label(),
                        f.line()
                    ),
                    Err(e) => println!(
                        "vm-test: tap stage: traced {} {}: {e:#}",
                        sender.label(),
                        pass.label()
                    ),
                }
                (*sender, *pass, figures)
            })
            .collect()
    }
}

fn traced_figures(
    sender: Sender,
    command: &GuestCommand,
    pull: &Result<serde_json::Value>,
    outcome: &GuestOutcome,
) -> Result<Figures> {
    if let Err(e) = pull {
        bail!("this host's client: {e:#}");
    }
    let run = outcome
        .commands
        .iter()
        .find(|c| &c.command == command)
        .context("the traced sender did not run in the guest")?;
    if !run.success() {
        bail!(
            "`{}` exited {} in the guest: {}",
            run.command,
            run.exit_code,
            run.stderr.trim()
        );
    }
    let traced = tap_trace::parse_traced_sender(&run.stdout)?;
    Ok(Figures::of(sender, &traced))
}

fn judge(
    modes: &[String],
    plain: Result<RemoteVerify>,
    tapped: Result<RemoteVerify>,
    traced: TracedPasses,
    outcome: Result<GuestOutcome>,
) -> Result<()> {
    // When the guest failed (e.g. its agent waited for a controller that gave up), what
    // the controller saw is the first thing to know.
    if outcome.is_err() {
        for (what, verify) in [("plain", &plain), ("with a packet socket", &tapped)] {
            match verify {
                Ok(v) => println!(
                    "vm-test: tap stage: verify --remote ({what}) exited {}: {}",
                    v.output.status,
                    String::from_utf8_lossy(&v.output.stderr).trim()
                ),
                Err(e) => println!("vm-test: tap stage: verify --remote ({what}): {e:#}"),
            }
        }
    }
    let outcome = outcome.context("the tap stage's guest")?;
    for c in &outcome.commands {
        println!(
            "vm-test: tap stage guest: `{}` exited {}",
            c.command, c.exit_code
        );
        if !c.success() {
            println!("---- stderr:\n{}", c.stderr.trim_end());
        }
    }
    let figures = traced.figures(&outcome);
    let plain = plain.context("zero-copy from the guest over the tap")?;
    for mode in modes {
        check_uncopied(mode, plain.ledger(mode)?)?;
    }
    if !plain.output.status.success() {
        bail!("`netcopy verify --remote` exited {}", plain.output.status);
    }
    let tapped = tapped.context("zero-copy with a packet socket on the guest's NIC")?;
    for mode in modes {
        check_tapped(mode, tapped.ledger(mode)?)?;
    }
    let agent = outcome
        .commands
        .iter()
        .find(|c| matches!(&c.command, GuestCommand::Netcopy(a) if a.first().is_some_and(|s| s == "agent")))
        .context("the agent did not run in the guest")?;
    if !agent.success() {
        bail!(
            "`{GUEST_NETCOPY} agent` exited {} in the guest",
            agent.exit_code
        );
    }
    for (sender, pass, figures) in figures {
        let figures =
            figures.with_context(|| format!("the traced {} {}", sender.label(), pass.label()))?;
        tap_trace::judge(pass, &figures)?;
    }
    Ok(())
}

/// Over the tap, nothing copied: `match`, and no completion flagged copied.
fn check_uncopied(mode: &str, ledger: &serde_json::Value) -> Result<()> {
    let completions = &ledger["completions"];
    let copied = &completions["copied_sends"];
    println!(
        "vm-test: tap stage: {mode} {} ({} of {} completed sends flagged copied, {} \
         notifications)",
        ledger["verdict"].as_str().unwrap_or("?"),
        copied,
        completions["completed_sends"],
        completions["notifications"]
    );
    if ledger["verdict"] != "match" || copied != 0 || completions["completed_sends"] == 0 {
        bail!(
            "{mode} over the tap must be `match` with completed sends and none flagged \
             copied; verify said: {}",
            serde_json::to_string_pretty(ledger).unwrap_or_default()
        );
    }
    Ok(())
}

/// With a packet socket open: `degraded`, the packet socket the cause, and that cause
/// observed at the copy (its caller chains seen).
fn check_tapped(mode: &str, ledger: &serde_json::Value) -> Result<()> {
    let causes: Vec<&serde_json::Value> =
        ledger["causes"].as_array().into_iter().flatten().collect();
    println!(
        "vm-test: tap stage: with a packet socket, {mode} {}{} ({} of {} completed sends \
         flagged copied)",
        ledger["verdict"].as_str().unwrap_or("?"),
        super::checks::cause_labels(ledger),
        ledger["completions"]["copied_sends"],
        ledger["completions"]["completed_sends"]
    );
    super::checks::print_caller_chains("vm-test: tap stage:  ", ledger);
    let packet = causes.iter().find(|c| c["kind"] == "packet_socket");
    let Some(packet) = packet.filter(|_| ledger["verdict"] == "degraded") else {
        bail!(
            "with a packet socket open on the guest's NIC, {mode} must be `degraded` with the \
             packet socket as its cause; verify said: {}",
            serde_json::to_string_pretty(ledger).unwrap_or_default()
        );
    };
    let chains = packet["callers"].as_array().map_or(0, Vec::len);
    if packet["source"] != "observed" || chains == 0 {
        bail!(
            "in the 6.1 guest the packet-socket cause of {mode} must be observed at the copy \
             (caller chains of skb_copy_ubufs), but it is {} with {chains} chain(s): {}",
            packet["source"],
            serde_json::to_string_pretty(packet).unwrap_or_default()
        );
    }
    super::checks::check_chains_cover_the_deferred_copies(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(verdict: &str, copied: u64, causes: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "mode": "m",
            "verdict": verdict,
            "sites": {"deferred_copy": {"calls": 200, "observed_bytes": 13107200}},
            "completions": {"notifications": 50, "completed_sends": 200, "copied_sends": copied},
            "causes": causes,
        })
    }

    #[test]
    fn uncopied_needs_match_and_no_copied_completion() {
        assert!(check_uncopied("m", &ledger("match", 0, serde_json::json!([]))).is_ok());
        assert!(check_uncopied("m", &ledger("match", 1, serde_json::json!([]))).is_err());
        assert!(check_uncopied("m", &ledger("degraded", 0, serde_json::json!([]))).is_err());
        let mut none = ledger("match", 0, serde_json::json!([]));
        none["completions"]["completed_sends"] = 0.into();
        assert!(check_uncopied("m", &none).is_err());
    }

    #[test]
    fn tapped_needs_an_observed_packet_socket_cause() {
        let chain = serde_json::json!([{
            "callers": ["dev_queue_xmit_nit+0x2a5", "dev_hard_start_xmit+0x8f"],
            "copies": 200, "bytes": 13107200
        }]);
        let observed = serde_json::json!([
            {"kind": "packet_socket", "source": "observed", "callers": chain}
        ]);
        assert!(check_tapped("m", &ledger("degraded", 200, observed.clone())).is_ok());
        assert!(check_tapped("m", &ledger("match", 200, observed)).is_err());
        let inferred = serde_json::json!([{"kind": "packet_socket", "source": "inferred"}]);
        let err = check_tapped("m", &ledger("degraded", 200, inferred))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be observed"), "{err}");
        let no_chain = serde_json::json!([{"kind": "packet_socket", "source": "observed"}]);
        assert!(check_tapped("m", &ledger("degraded", 200, no_chain)).is_err());
        let other = serde_json::json!([
            {"kind": "local_delivery", "source": "observed", "callers": chain}
        ]);
        assert!(check_tapped("m", &ledger("degraded", 200, other)).is_err());
    }
}
