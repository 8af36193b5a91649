//! The commands the default `vm-test` run gives the guest, and the `--debug` ones.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{
    binary::{has_subcommand, modes_where},
    cli::VmTestArgs,
    guest, GuestCommand,
};

/// Diagnostic shell commands for `--debug`.
pub fn debug_commands() -> Vec<GuestCommand> {
    [
        "uname -a; cat /proc/cmdline",
        "ls -l /sys/kernel/btf/vmlinux && echo btf: yes || echo btf: no",
        "grep -c . /proc/kallsyms",
        "for e in skb/skb_copy_datagram_iovec tcp/tcp_sendmsg_locked sock/sock_send_length \
         sock/sock_recv_length net/net_dev_xmit; do \
         if [ -d /sys/kernel/tracing/events/$e ]; then echo \"$e: present\"; \
         else echo \"$e: absent\"; fi; done",
        "grep -E 'tcp_sendmsg_locked|skb_zerocopy_iter_stream|skb_copy_ubufs|msg_zerocopy_callback\
         |msg_zerocopy_complete|skb_copy_datagram_iter|_copy_from_iter' /proc/kallsyms | head -30",
        // fentry needs the function in available_filter_functions; kprobe only in kallsyms.
        "grep -c . /sys/kernel/tracing/available_filter_functions; \
         grep -E '^(tcp_sendmsg|tcp_sendmsg_locked|skb_zerocopy_iter_stream|__zerocopy_sg_from_iter\
         |skb_copy_ubufs|msg_zerocopy_callback|__msg_zerocopy_callback|msg_zerocopy_complete\
         |skb_copy_datagram_iter|_copy_from_iter|_copy_from_iter_nocache|csum_and_copy_from_iter\
         |csum_and_copy_from_iter_full|copy_page_from_iter)( |$)' \
         /sys/kernel/tracing/available_filter_functions",
        // Whether a kprobe can be placed on each copy site (through tracefs, no BPF needed).
        "cd /sys/kernel/tracing && i=0; for f in tcp_sendmsg_locked _copy_from_iter \
         _copy_from_iter_nocache csum_and_copy_from_iter skb_zerocopy_iter_stream \
         __zerocopy_sg_from_iter skb_copy_ubufs msg_zerocopy_callback skb_copy_datagram_iter; do \
         if echo \"p:ncvm/k$i $f\" >> kprobe_events 2>/dev/null; then echo \"kprobe $f: ok\"; \
         else echo \"kprobe $f: failed\"; fi; i=$((i+1)); done; echo > kprobe_events",
        "mount; ip -o link; lsmod; free -m; nproc",
    ]
    .into_iter()
    .map(GuestCommand::shell)
    .collect()
}

/// The mode the traced verify runs: the bench's peer, whose claim is the one the trace
/// check counts on (one sendmsg per message, its bytes copied by the kernel).
fn traced_mode(netcopy: &Path) -> Result<String> {
    modes_where(netcopy, |m| {
        m["bench_peer"] == true
            && m["kernel_send_copy"] == true
            && m["user_copy"] == false
            && m["completions"].is_null()
    })?
    .into_iter()
    .next()
    .context(
        "the mode table has no bench peer that copies in the kernel without a user copy or \
         completions, which the traced verify checks",
    )
}

/// The MSG_ZEROCOPY mode: the sender behind which zero-copy receive maps pages on local
/// delivery (the kernel copies its pages into fresh single pages), so that the probe on
/// `tcp_zerocopy_receive` has mapped bytes to see.
fn msg_zerocopy_mode(netcopy: &Path) -> Result<String> {
    modes_where(netcopy, |m| {
        m["zerocopy_attach"] == true && m["completions"] == "error_queue"
    })?
    .into_iter()
    .next()
    .context("the mode table has no MSG_ZEROCOPY mode (zero-copy attach, error-queue completions)")
}

/// The io_uring modes: those the table describes as sending with an `IORING_OP_`, one of
/// them with completions from the ring (the zero-copy one, whose notifications the trace
/// check counts).
fn io_uring_modes(netcopy: &Path) -> Result<Vec<String>> {
    let modes = modes_where(netcopy, |m| {
        m["how"].as_str().is_some_and(|h| h.contains("IORING_OP_"))
    })?;
    let ring = modes_where(netcopy, |m| m["completions"] == "ring")?;
    if !ring.iter().any(|m| modes.contains(m)) {
        bail!(
            "the mode table has no io_uring mode with completions from the ring, which the \
             io_uring trace checks"
        );
    }
    Ok(modes)
}

/// `netcopy verify --recv zerocopy` of `mode` over the guest's loopback: with fexit on
/// `tcp_zerocopy_receive` (or, with `avoid` = fentry, its kprobes) the bytes mapped are
/// observed, and must be what the receiver was told.
fn zerocopy_receive_verify(mode: &str, avoid: Option<&str>) -> GuestCommand {
    let mut args = vec![
        "verify", "--mode", mode, "--recv", "zerocopy", "--size", "64K", "--json",
    ];
    if let Some(kind) = avoid {
        args.extend(["--avoid", kind]);
    }
    GuestCommand::netcopy(args)
}

/// Where the io_uring trace writes its records in the guest.
pub(super) const URING_TRACE_OUT: &str = "/tmp/netcopy-trace-uring";

/// `netcopy trace` of a `netcopy verify` of the io_uring modes: 6.1 names the submit
/// tracepoint `io_uring_submit_sqe`, and the trace must record through it.
fn traced_io_uring_verify(modes: &[String]) -> GuestCommand {
    let mut args: Vec<String> = vec![
        "trace".into(),
        "--json".into(),
        "--out".into(),
        URING_TRACE_OUT.into(),
        "--".into(),
        guest::GUEST_NETCOPY.into(),
        "verify".into(),
        "--size".into(),
        TRACED_SIZE.to_string(),
        "--messages".into(),
        TRACED_MESSAGES.to_string(),
    ];
    for mode in modes {
        args.extend(["--mode".to_string(), mode.clone()]);
    }
    GuestCommand::Netcopy(args)
}

/// The commands `vm-test` runs for these arguments.
pub(super) fn planned_commands(args: &VmTestArgs, netcopy: &Path) -> Result<Vec<GuestCommand>> {
    let mut commands: Vec<GuestCommand> = if args.run.is_empty() {
        for sub in ["probes", "verify"] {
            if !has_subcommand(netcopy, sub) {
                bail!(
                    "{} has no `{sub}` subcommand; rebuild it, or say what to run with --run ARGS",
                    netcopy.display()
                );
            }
        }
        let (msg_zerocopy, io_uring) = (msg_zerocopy_mode(netcopy)?, io_uring_modes(netcopy)?);
        vec![
            GuestCommand::netcopy(["probes", "--json"]),
            GuestCommand::netcopy(["verify", "--json"]),
            traced_verify(&traced_mode(netcopy)?),
            zerocopy_receive_verify(&msg_zerocopy, None),
            zerocopy_receive_verify(&msg_zerocopy, Some("fentry")),
            traced_io_uring_verify(&io_uring),
        ]
    } else {
        args.run
            .iter()
            .map(|a| GuestCommand::netcopy(a.split_whitespace()))
            .collect()
    };
    commands.extend(args.shell.iter().map(GuestCommand::shell));
    if args.debug {
        commands.extend(debug_commands());
    }
    Ok(commands)
}

/// Messages of the traced verify run in the guest.
pub(super) const TRACED_MESSAGES: u64 = 4;
/// Their payload size.
pub(super) const TRACED_SIZE: u64 = 65536;

/// `netcopy trace` of a `netcopy verify` of `mode` (the plain sendmsg one): the syscall
/// tracer's programs must load and record on the guest kernel too (its verifier is older
/// than the host's).
fn traced_verify(mode: &str) -> GuestCommand {
    GuestCommand::netcopy([
        "trace".to_string(),
        "--json".into(),
        "--out".into(),
        "/tmp/netcopy-trace".into(),
        "--".into(),
        guest::GUEST_NETCOPY.into(),
        "verify".into(),
        "--mode".into(),
        mode.into(),
        "--size".into(),
        TRACED_SIZE.to_string(),
        "--messages".into(),
        TRACED_MESSAGES.to_string(),
    ])
}
