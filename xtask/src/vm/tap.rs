//! The tap stage of `cargo xtask vm-test`: two hosts, and a zero-copy that really avoids
//! the copy. The 6.1 guest is host A, running `netcopy agent` behind a virtio-net NIC that
//! a tap device backs with `vnet_hdr=on` (so the guest's NIC has scatter-gather and the
//! guest kernel can send MSG_ZEROCOPY pages by reference); this machine, inside a network
//! namespace made for the stage, is host B, running `netcopy verify --remote`.
//!
//! Expected (shared/PLATFORM.md, "MSG_ZEROCOPY here"): zero-copy `match`, no completion
//! flagged copied; with a packet socket on the guest's NIC (`--packet-tap`), `degraded`,
//! with the packet socket named as the cause. The namespace, and the tap in it, are
//! removed whatever happens; nothing is made in the host's own namespace.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    thread,
};

use anyhow::{bail, Context, Result};

use super::{guest::GUEST_NETCOPY, run_in_guest, GuestCommand, GuestOutcome, VmOptions};

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
    /// The ledger of `mode`, the MSG_ZEROCOPY mode verified.
    fn zero_copy(&self, mode: &str) -> Result<&serde_json::Value> {
        self.json["modes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mode"] == mode)
            .with_context(|| format!("the remote verify reported no {mode} mode"))
    }
}

/// The mode the stage verifies: MSG_ZEROCOPY, the one with error-queue completions (the
/// mode table names it; this stage picks it by its claim).
fn zero_copy_mode(netcopy: &Path) -> Result<String> {
    super::modes_where(netcopy, |m| m["completions"] == "error_queue")?
        .into_iter()
        .next()
        .context("the mode table has no mode with error-queue (MSG_ZEROCOPY) completions")
}

fn remote_verify(
    ns: &StageNetns,
    netcopy: &Path,
    token: &Path,
    mode: &str,
    tap: bool,
) -> Result<RemoteVerify> {
    let mut c = ns.command(netcopy);
    c.args(["verify", "--remote", &format!("{GUEST_ADDR}:{AGENT_PORT}")])
        .arg("--token-file")
        .arg(token)
        // The guest boots while we start: wait for its agent.
        .args(["--remote-wait", "180s", "--mode", mode, "--size", SIZE])
        .args(["--messages", &MESSAGES.to_string(), "--json"]);
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

/// Runs the stage: boots the guest with its agent, verifies zero-copy from this host twice
/// (without and with a packet tap on the guest's NIC), and checks both verdicts.
pub fn tap_stage(netcopy: &Path, base: &VmOptions) -> Result<()> {
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
    let guest_netcopy = netcopy.to_path_buf();
    let guest = thread::spawn(move || run_in_guest(&guest_netcopy, &commands, &opts));

    let mode = zero_copy_mode(netcopy)?;
    let plain = remote_verify(&ns, netcopy, &token_path, &mode, false);
    let tapped = match &plain {
        Ok(_) => remote_verify(&ns, netcopy, &token_path, &mode, true),
        Err(_) => Err(anyhow::anyhow!("not run: the first remote verify failed")),
    };
    let outcome = guest
        .join()
        .map_err(|_| anyhow::anyhow!("the guest thread panicked"))?;
    let _ = fs::remove_file(&token_path);
    drop(ns);
    judge(&mode, plain, tapped, outcome)
}

fn judge(
    mode: &str,
    plain: Result<RemoteVerify>,
    tapped: Result<RemoteVerify>,
    outcome: Result<GuestOutcome>,
) -> Result<()> {
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
    let plain = plain.context("zero-copy from the guest over the tap")?;
    let zc = plain.zero_copy(mode)?;
    let copied = &zc["completions"]["copied_sends"];
    println!(
        "vm-test: tap stage: zero-copy {} ({} of {} completed sends flagged copied)",
        zc["verdict"].as_str().unwrap_or("?"),
        copied,
        zc["completions"]["completed_sends"]
    );
    if zc["verdict"] != "match" || copied != 0 {
        bail!(
            "zero-copy over the tap must be `match` with no completion flagged copied; \
             verify said: {}",
            serde_json::to_string_pretty(zc).unwrap_or_default()
        );
    }
    if !plain.output.status.success() {
        bail!("`netcopy verify --remote` exited {}", plain.output.status);
    }
    let tapped = tapped.context("zero-copy with a packet socket on the guest's NIC")?;
    let zc = tapped.zero_copy(mode)?;
    let causes: Vec<&str> = zc["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    println!(
        "vm-test: tap stage: with a packet socket, zero-copy {} (causes: {})",
        zc["verdict"].as_str().unwrap_or("?"),
        causes.join(", ")
    );
    if zc["verdict"] != "degraded" || !causes.contains(&"packet_socket") {
        bail!(
            "with a packet socket open on the guest's NIC, zero-copy must be `degraded` with \
             the packet socket as its cause; verify said: {}",
            serde_json::to_string_pretty(zc).unwrap_or_default()
        );
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
    Ok(())
}
