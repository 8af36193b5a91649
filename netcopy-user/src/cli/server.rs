//! `netcopy server`: its arguments, and the command that serves until SIGINT/SIGTERM and
//! prints the totals. `workload::harness` starts this command as a child process and
//! reads its `--json` lines.

use std::{
    io::{self, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    kernel::path::PacketTap,
    util::units::{duration_arg, format_size, size_arg},
    workload::modes::{Mode, ZeroCopyConfig},
    workload::server::{stop_flag_on_signals, totals_text, Server, ServerConfig},
};

/// `netcopy server`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Send mechanism.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    listen: String,
    /// Largest message size a client may request (K/M/G are binary units).
    #[arg(long, default_value = "64M", value_parser = size_arg, value_name = "SIZE")]
    max_size: u64,
    /// Most connections served at once (one thread each); one more is answered with
    /// status busy and closed.
    ///
    /// Memory: a connection holds at most 2 MiB of message buffers (two 1 MiB pieces plus
    /// headers) whatever size its client asks for: a message above 1 MiB is sent as 1 MiB
    /// pieces, each 8 fields over the same reused buffers, with the same bytes on the wire.
    /// The modes that lend the kernel their pages (MSG_ZEROCOPY, SENDMSG_ZC) hold their
    /// in-flight slots instead, one piece each, until the kernel completes them: at most --zc-max-in-flight pieces and --zc-pool-bytes
    /// (64 MiB at the defaults). The server's bound is that times N: 128 MiB at the
    /// defaults (zero-copy modes: 4 GiB at the default pool; lower --zc-pool-bytes to
    /// lower it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096), value_name = "N")]
    max_connections: u64,
    /// Accept N connections, then exit once they have ended, as after SIGINT (so that
    /// `netcopy trace -- netcopy server ...` ends by itself).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    exit_after: Option<u64>,
    /// Print exactly two JSON lines on stdout: `listening` at start, `totals` at the end.
    #[arg(long)]
    json: bool,
    /// Zero-copy: most messages awaiting completion per connection (1 MiB pieces, for
    /// messages above 1 MiB).
    #[arg(long, default_value_t = 64, value_name = "N")]
    zc_max_in_flight: usize,
    /// Zero-copy: most bytes of message slots per connection (a slot holds a message of
    /// up to 1 MiB, or one 1 MiB piece of a larger one).
    #[arg(long, default_value = "64M", value_parser = size_arg, value_name = "SIZE")]
    zc_pool_bytes: u64,
    /// SO_SNDBUF of accepted sockets (testing partial writes).
    #[arg(long, hide = true, value_parser = size_arg)]
    sndbuf: Option<u64>,
    /// SO_SNDTIMEO of accepted sockets (testing partial writes).
    #[arg(long, hide = true, value_parser = duration_arg)]
    send_timeout: Option<Duration>,
    /// Hold an ETH_P_ALL packet socket open on DEV while serving, as a running tcpdump
    /// would (testing: the kernel then copies zero-copy sends for the tap).
    #[arg(long, hide = true, value_name = "DEV")]
    packet_tap: Option<String>,
}

impl ServerArgs {
    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(self.mode, &self.listen);
        config.max_size = self.max_size;
        config.max_connections = self.max_connections as usize;
        config.exit_after = self.exit_after;
        config.zero_copy = ZeroCopyConfig {
            max_in_flight: self.zc_max_in_flight,
            max_pool_bytes: self.zc_pool_bytes,
        };
        config.send_buffer = self.sndbuf.map(|b| b.min(i32::MAX as u64) as usize);
        config.send_timeout = self.send_timeout;
        config
    }
}

/// Runs `netcopy server` until SIGINT/SIGTERM (or its `--exit-after` connections have
/// ended); exit 0 after printing the totals.
pub fn run(args: &ServerArgs) -> Result<ExitCode> {
    // Started as /proc/self/exe, a server would be named `exe` in ps and pgrep: name it.
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"netcopy-server".as_ptr(), 0, 0, 0) };
    let stop = stop_flag_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    let _tap = match &args.packet_tap {
        Some(dev) => Some(open_packet_tap(dev)?),
        None => None,
    };
    let server = Server::bind(args.config())?;
    let addr = server.local_addr();
    if args.json {
        let line =
            serde_json::json!({"event": "listening", "addr": addr.to_string(), "mode": args.mode});
        print_line(&line.to_string())?;
    } else {
        print_line(&format!(
            "netcopy server: listening on {addr}, mode {}, max size {}",
            args.mode,
            format_size(args.max_size)
        ))?;
    }
    let totals = server.run(stop)?;
    if args.json {
        let mut value = serde_json::to_value(&totals).context("encoding the totals")?;
        if let Some(object) = value.as_object_mut() {
            object.insert("event".to_string(), "totals".into());
        }
        print_line(&value.to_string())?;
    } else {
        print_line(&totals_text(&totals))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An ETH_P_ALL packet socket on the device named `dev`, open until dropped.
fn open_packet_tap(dev: &str) -> Result<PacketTap> {
    let name = std::ffi::CString::new(dev)
        .with_context(|| format!("--packet-tap {dev:?}: a device name has no NUL byte"))?;
    // SAFETY: reads a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!(
            "--packet-tap {dev}: no such network device: {}",
            io::Error::last_os_error()
        );
    }
    PacketTap::open(ifindex)
        .with_context(|| format!("--packet-tap {dev}: opening an ETH_P_ALL packet socket"))
}

fn print_line(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_tap_on_a_missing_device_is_a_clear_error() {
        let err = open_packet_tap("nosuchdev0").unwrap_err().to_string();
        assert!(
            err.contains("--packet-tap nosuchdev0: no such network device"),
            "{err}"
        );
        let err = open_packet_tap("a\0b").unwrap_err().to_string();
        assert!(err.contains("no NUL byte"), "{err}");
    }
}
