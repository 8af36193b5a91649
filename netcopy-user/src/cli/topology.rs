//! `--topology`, `--remote`, `--token-file`, `--remote-wait`: where the two ends of
//! `netcopy verify` and `netcopy run` run, one set of flags for both. Checked whole before
//! anything starts: a bad address or an unreadable token fails before a probe loads.

use std::{net::ToSocketAddrs, path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{experiment::ends::Topology, remote::auth::Token, util::units::duration_arg};

/// Where the two ends run, for `--topology`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopologyArg {
    /// Sender and receiver on this kernel, over the loopback device.
    Loopback,
    /// Sender and receiver in two network namespaces netcopy makes (and removes), joined
    /// by a veth pair: a real device between them, but both ends still on this kernel.
    Netns,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TopologyArgs {
    /// Where the ends run on this host (see --remote for two hosts).
    #[arg(
        long,
        value_enum,
        default_value = "loopback",
        conflicts_with = "remote"
    )]
    pub topology: TopologyArg,
    /// The sender runs on another host, behind `netcopy agent` at ADDR:PORT; this host is
    /// the receiver. Needs --token-file.
    #[arg(long, value_name = "ADDR:PORT", requires = "token_file")]
    pub remote: Option<String>,
    /// The token shared with the agent (a file only its owner can read).
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub token_file: Option<PathBuf>,
    /// Keep trying this long while the agent is not up yet (e.g. it is still booting).
    #[arg(long, value_parser = duration_arg, requires = "remote")]
    pub remote_wait: Option<Duration>,
}

impl TopologyArgs {
    /// The topology asked for, its address resolved and its token read.
    pub fn topology(&self) -> Result<Topology> {
        let Some(addr) = &self.remote else {
            return Ok(match self.topology {
                TopologyArg::Loopback => Topology::Loopback,
                TopologyArg::Netns => Topology::Netns,
            });
        };
        check_address(addr)?;
        let Some(path) = &self.token_file else {
            bail!("--remote needs --token-file");
        };
        Ok(Topology::Remote {
            addr: addr.clone(),
            token: Token::from_file(path).context("--token-file")?,
            wait: self.remote_wait.unwrap_or(Duration::ZERO),
        })
    }
}

/// `HOST:PORT` or `[V6]:PORT` that resolves, with a port to connect to.
fn check_address(addr: &str) -> Result<()> {
    let Some((_, port)) = addr.rsplit_once(':') else {
        bail!(
            "--remote {addr:?}: not ADDR:PORT (the address and port of `netcopy agent --listen`)"
        );
    };
    match port.parse::<u16>() {
        Ok(0) => bail!("--remote {addr:?}: port 0 is no agent's port"),
        Ok(_) => {}
        Err(_) => bail!("--remote {addr:?}: {port:?} is not a port number"),
    }
    let mut resolved = addr
        .to_socket_addrs()
        .with_context(|| format!("--remote {addr:?}: cannot resolve the agent's address"))?;
    if resolved.next().is_none() {
        bail!("--remote {addr:?}: the address resolves to nothing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_addresses_are_checked_before_anything_connects() {
        assert!(check_address("127.0.0.1:7878").is_ok());
        assert!(check_address("[::1]:7878").is_ok());
        for (bad, says) in [
            ("127.0.0.1", "not ADDR:PORT"),
            ("127.0.0.1:0", "port 0"),
            ("127.0.0.1:http", "not a port number"),
            ("127.0.0.1:70000", "not a port number"),
            ("300.1.2.3:7878", "cannot resolve"),
        ] {
            let e = format!("{:#}", check_address(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
