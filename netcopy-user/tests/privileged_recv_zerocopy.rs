//! `--recv zerocopy` for real, in two namespaces this test makes (their names carry "rzc")
//! and removes, joined by veth at the MTU `verify --topology netns --recv zerocopy` sets:
//! every byte the kernel handed the client is mapped or copied, exactly; the receive-copy
//! tracepoint saw exactly the bytes the client was told were copied; every message is
//! verified. A zero-copy sender gets most of its bytes mapped (the kernel copies its pages
//! into fresh single pages on local delivery); a one-copy sender none.
//!
//! And, without root: `--recv` takes copy or zerocopy and nothing else.

mod common;

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use netcopy::{
    experiment::ends::ZEROCOPY_RECEIVE_MTU,
    kernel::CopyProbes,
    workload::{
        client::{run_client, ClientConfig, ClientReport, ReceiveMechanism, RunLimit},
        modes::Mode,
        netns::{self, NetnsOptions, NetnsPair, SENDER_ADDR},
        protocol::{MESSAGE_HEADER_LEN, REPLY_HEADER_LEN, REQUEST_LEN},
        server::{Server, ServerConfig},
    },
};
use netcopy_common::CopySite;

const SLOT: u32 = 1;

/// Runs `messages` messages of `size` from a `mode` server in the sender's namespace to a
/// `--recv zerocopy` client in the receiver's; returns the client's report and the bytes
/// and calls the receive-copy probe counted for this process (client and, in-process, the
/// server's read of the request).
fn transfer(mode: Mode, size: u64, messages: u64) -> (ClientReport, u64) {
    let pair = NetnsPair::create(&NetnsOptions {
        mtu: Some(ZEROCOPY_RECEIVE_MTU),
        tag: Some("rzc"),
    })
    .expect("create the pair");
    assert!(pair.sender.name().contains("rzc"), "{}", pair.sender.name());
    let mut probes = CopyProbes::load().expect("load probes");
    probes
        .watch_process(std::process::id(), SLOT, false)
        .expect("watch");
    let server = {
        let _inside = pair.sender.enter().unwrap();
        let listen = SocketAddr::from((SENDER_ADDR, 0)).to_string();
        Server::bind(ServerConfig::new(mode, &listen)).expect("bind")
    };
    let addr = server.local_addr().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || server.run(stop))
    };
    let before = probes.read_counters().expect("counters");
    let report = {
        let _inside = pair.receiver.enter().unwrap();
        let mut config = ClientConfig::new(&addr, size, 1, RunLimit::Messages(messages));
        config.recv = ReceiveMechanism::ZeroCopy;
        run_client(&config)
    }
    .unwrap_or_else(|f| panic!("client failed: {f}"));
    stop.store(true, Ordering::SeqCst);
    running.join().unwrap().expect("server");
    let delta = probes.read_counters().expect("counters").since(&before);
    probes.unwatch_process(std::process::id()).unwrap();
    drop(probes);
    drop(pair);
    assert!(
        !netns::existing().iter().any(|n| n.contains("rzc")),
        "namespaces left: {:?}",
        netns::existing()
    );
    (report, delta.get(SLOT, CopySite::KernelRecvCopy).bytes)
}

/// What every run must satisfy exactly, whatever the kernel mapped.
fn check_exact(report: &ClientReport, size: u64, messages: u64, recv_copy: u64) -> (u64, u64) {
    assert_eq!(report.messages, messages);
    assert_eq!(report.integrity_errors, 0, "{:?}", report.errors);
    let stream = messages * (size + MESSAGE_HEADER_LEN as u64) + REPLY_HEADER_LEN as u64;
    assert_eq!(report.received_bytes, stream);
    let zc = report.zerocopy_receive.as_ref().expect("zerocopy figures");
    assert!(zc.supported);
    assert_eq!(zc.connections.len(), 1);
    let total = zc.total;
    assert_eq!(
        total.mapped_bytes + total.copied_bytes(),
        stream,
        "mapped + copied must be every byte: {total:?}"
    );
    // The probe saw the client's copies and the in-process server's read of the request.
    assert_eq!(
        recv_copy,
        total.copied_bytes() + REQUEST_LEN as u64,
        "{total:?}"
    );
    (total.mapped_bytes, total.copied_bytes())
}

#[test]
fn a_zero_copy_sender_is_mostly_mapped_and_every_byte_is_accounted() {
    if !common::privileged("zero-copy receive, zero-copy sender") {
        return;
    }
    let _serial = common::serial();
    let (size, messages) = (1 << 20, 64);
    let (report, recv_copy) = transfer(Mode::ZeroCopy, size, messages);
    let (mapped, copied) = check_exact(&report, size, messages, recv_copy);
    // Pages copied on local delivery land in fresh single pages the kernel can map; what
    // it cannot (each burst's last partial page, the reply header) is far less.
    assert!(
        mapped > copied * 4,
        "mapped {mapped}, copied {copied}: the zero-copy sender's pages were not mapped"
    );
    assert_eq!(mapped % 4096, 0, "the kernel maps whole pages");
}

#[test]
fn a_one_copy_sender_maps_nothing_and_every_byte_is_copied() {
    if !common::privileged("zero-copy receive, one-copy sender") {
        return;
    }
    let _serial = common::serial();
    let (size, messages) = (256 << 10, 64);
    let (report, recv_copy) = transfer(Mode::OneCopy, size, messages);
    let (mapped, copied) = check_exact(&report, size, messages, recv_copy);
    assert_eq!(
        mapped, 0,
        "a copying sender's compound pages are never mapped"
    );
    assert_eq!(copied, report.received_bytes);
    let zc = report.zerocopy_receive.unwrap().total;
    assert!(
        zc.skip_hint_bytes > 0,
        "the unmappable stretches are read after the kernel's skip hints: {zc:?}"
    );
}

#[test]
fn recv_takes_copy_or_zerocopy_and_nothing_else() {
    let netcopy = env!("CARGO_BIN_EXE_netcopy");
    for args in [
        &[
            "client",
            "--connect",
            "127.0.0.1:1",
            "--size",
            "1K",
            "--messages",
            "1",
            "--recv",
            "mapped",
        ][..],
        &["verify", "--recv", "zero-copy"][..],
        &["run", "--recv", "copy,sometimes"][..],
    ] {
        let out = Command::new(netcopy).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains("copy, zerocopy"),
            "{args:?}: {stderr}"
        );
    }
}
