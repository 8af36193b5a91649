//! Two hosts on one kernel: a pair of network namespaces joined by a veth pair, which
//! netcopy creates for `--topology netns` and removes when done. The sender (server)
//! runs in one, the receiver (client) in the other, so their traffic crosses a real
//! device and the kernel's IP stack, yet both ends are on this kernel: the pages of a
//! MSG_ZEROCOPY send are copied on delivery to the local receiver (skb_orphan_frags_rx).
//!
//! The namespaces and links are made with iproute2's `ip` (as a user would, and as the
//! kernel selftests do); their names carry our pid, so a run killed before it could clean
//! up is recognised and its namespaces removed by the next one ([`remove_stale`]).

use std::{
    ffi::OsStr,
    fs::File,
    net::Ipv4Addr,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Every namespace netcopy makes is named `netcopy-<pid>-<role>`, or
/// `netcopy-<pid>-<tag>-<role>` when its maker tags it (tests do, to tell theirs apart).
const PREFIX: &str = "netcopy-";
/// The sender's and the receiver's addresses: IPv4 link-local, inside namespaces of ours
/// only, so no packet to them can leave this machine or reach anyone else's host.
pub const SENDER_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 201, 1);
pub const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 201, 2);
const PREFIX_LEN: u8 = 30;

/// A network namespace made by `ip netns add`, bound at /run/netns/NAME.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that holds the namespace open.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Makes `command` start inside this namespace. The namespace file is opened here,
    /// before the fork; the child only calls setns, which is async-signal-safe.
    pub fn run_inside(&self, command: &mut Command) -> Result<()> {
        let file = File::open(self.path())
            .with_context(|| format!("opening network namespace {}", self.name))?;
        // SAFETY: the closure calls only setns(2) on a descriptor opened before the fork
        // and kept alive by the closure itself; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace until the guard is dropped. Threads
    /// the caller creates meanwhile start in it too (a namespace is inherited on clone).
    pub fn enter(&self) -> Result<NetnsGuard> {
        let original = File::open("/proc/thread-self/ns/net")
            .context("opening this thread's network namespace")?;
        let target = File::open(self.path())
            .with_context(|| format!("opening network namespace {}", self.name))?;
        setns(&target).with_context(|| format!("entering network namespace {}", self.name))?;
        Ok(NetnsGuard { original })
    }
}

/// Returns the thread to the namespace it was in before [`Netns::enter`].
#[must_use = "the thread leaves the namespace when the guard is dropped"]
pub struct NetnsGuard {
    original: File,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original) {
            // Staying in a namespace we are about to delete would strand this thread.
            eprintln!("netcopy: error: returning to the original network namespace: {e}");
        }
    }
}

fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: a valid namespace descriptor, owned by `file` for the duration of the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What the pair is made with.
#[derive(Clone, Debug, Default)]
pub struct NetnsOptions {
    /// The veth MTU; None keeps the kernel's default (1500).
    pub mtu: Option<u32>,
    /// A word in both namespaces' names (letters and digits).
    pub tag: Option<&'static str>,
}

/// The sender's and the receiver's namespaces and the veth pair between them. Dropping it
/// deletes both namespaces, and with them the veth pair.
#[derive(Debug)]
pub struct NetnsPair {
    pub sender: Netns,
    pub receiver: Netns,
    /// The veth device on the sender's side (the route to the receiver goes through it).
    pub sender_dev: String,
    pub receiver_dev: String,
    pub mtu: u32,
}

impl NetnsPair {
    pub fn create(options: &NetnsOptions) -> Result<NetnsPair> {
        remove_stale()?;
        let pid = std::process::id();
        let tag = match options.tag {
            Some(tag) if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                format!("{tag}-")
            }
            Some(tag) => bail!("a namespace tag is letters and digits, not {tag:?}"),
            None => String::new(),
        };
        let pair = NetnsPair {
            sender: add_netns(&format!("{PREFIX}{pid}-{tag}sender"))?,
            // Built up as we go: a failure below drops what exists so far.
            receiver: Netns {
                name: String::new(),
            },
            // IFNAMSIZ is 16 with the NUL: "ncs" + pid (at most 7 digits) fits.
            sender_dev: format!("ncs{pid}"),
            receiver_dev: format!("ncr{pid}"),
            mtu: options.mtu.unwrap_or(1500),
        };
        let mut pair = pair;
        pair.receiver = add_netns(&format!("{PREFIX}{pid}-{tag}receiver"))?;
        let (s, r) = (pair.sender.name.clone(), pair.receiver.name.clone());
        let mtu = pair.mtu.to_string();
        let (sd, rd) = (pair.sender_dev.clone(), pair.receiver_dev.clone());
        ip(&[
            "link", "add", &sd, "netns", &s, "type", "veth", "peer", "name", &rd, "netns", &r,
        ])?;
        for (ns, dev, addr) in [(&s, &sd, SENDER_ADDR), (&r, &rd, RECEIVER_ADDR)] {
            let cidr = format!("{addr}/{PREFIX_LEN}");
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu])?;
            ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    /// One line for reports: what was made, with which addresses and MTU.
    pub fn describe(&self) -> String {
        format!(
            "network namespaces {} ({SENDER_ADDR}, {}) and {} ({RECEIVER_ADDR}, {}), \
             joined by veth, MTU {}",
            self.sender.name, self.sender_dev, self.receiver.name, self.receiver_dev, self.mtu
        )
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.sender, &self.receiver] {
            if !ns.name.is_empty() {
                if let Err(e) = ip(&["netns", "del", &ns.name]) {
                    eprintln!(
                        "netcopy: error: removing network namespace {}: {e:#}",
                        ns.name
                    );
                }
            }
        }
    }
}

fn add_netns(name: &str) -> Result<Netns> {
    ip(&["netns", "add", name])?;
    Ok(Netns {
        name: name.to_string(),
    })
}

/// Runs `ip ARGS`, with its error text in ours.
fn ip<S: AsRef<OsStr>>(args: &[S]) -> Result<()> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "`ip` (iproute2) is not installed; it makes the namespaces of --topology netns \
                 (apt-get install iproute2)"
            )
        } else {
            anyhow::anyhow!("running ip {}: {e}", shown.join(" "))
        }
    })?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The pid in a namespace name of ours, `netcopy-<pid>-[<tag>-]<role>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, role) = rest.split_once('-')?;
    let role = match role.split_once('-') {
        Some((tag, role)) if tag.bytes().all(|b| b.is_ascii_alphanumeric()) => role,
        _ => role,
    };
    matches!(role, "sender" | "receiver").then_some(())?;
    pid.parse().ok()
}

/// Deletes namespaces left by netcopy runs that no longer exist (killed before they could
/// clean up). Namespaces of live runs are left alone.
pub fn remove_stale() -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = owner_pid(&name) {
            if !Path::new("/proc").join(pid.to_string()).exists() {
                ip(&["netns", "del", &name])
                    .with_context(|| format!("removing stale namespace {name}"))?;
            }
        }
    }
    Ok(())
}

/// The names of namespaces of ours that exist now (tests check nothing is left).
pub fn existing() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| owner_pid(n).is_some())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_have_an_owner() {
        assert_eq!(owner_pid("netcopy-1234-sender"), Some(1234));
        assert_eq!(owner_pid("netcopy-1-receiver"), Some(1));
        assert_eq!(owner_pid("netcopy-1234-other"), None);
        assert_eq!(owner_pid("netcopy-x-sender"), None);
        assert_eq!(owner_pid("someone-1234-sender"), None);
        assert_eq!(owner_pid("netcopy-1234-rzc-sender"), Some(1234));
        assert_eq!(owner_pid("netcopy-1234-rzc-other"), None);
    }
}
