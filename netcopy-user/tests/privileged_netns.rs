//! The namespaces of `--topology netns`: made, joined by veth, used by a sender and a
//! receiver that cannot be reached from the host's own namespace, and removed without a
//! trace, including those of a run that was killed.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use netcopy::kernel::path::PathFacts;
use netcopy::workload::netns::{self, NetnsOptions, NetnsPair, RECEIVER_ADDR, SENDER_ADDR};

#[test]
fn a_sender_and_a_receiver_talk_across_the_veth_and_nothing_is_left() {
    if !common::privileged("netns pair") {
        return;
    }
    let _serial = common::serial();
    let pair = NetnsPair::create(&NetnsOptions {
        mtu: Some(9000),
        tag: None,
    })
    .expect("create the pair");
    assert!(pair.describe().contains("MTU 9000"), "{}", pair.describe());
    let names = netns::existing();
    assert!(names.contains(&pair.sender.name().to_string()), "{names:?}");
    assert!(
        names.contains(&pair.receiver.name().to_string()),
        "{names:?}"
    );

    let listener = {
        let _inside = pair.sender.enter().unwrap();
        // What the cause of a copy is judged from: a veth with scatter-gather, its peer
        // address not on this namespace's devices (the other end is another namespace).
        let facts = PathFacts::read(SENDER_ADDR.into(), RECEIVER_ADDR.into());
        let dev = facts
            .device
            .clone()
            .expect("the sender's address is on a device");
        assert_eq!(dev.name, pair.sender_dev);
        assert_eq!(dev.driver.as_deref(), Some("veth"), "{facts:?}");
        assert_eq!(dev.scatter_gather, Some(true), "{facts:?}");
        assert!(!dev.loopback && !facts.peer_is_local, "{facts:?}");
        TcpListener::bind((SENDER_ADDR, 0)).expect("bind in the sender's namespace")
    };
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(b"across the veth").unwrap();
        peer
    });
    // The host's own namespace has no route to the sender.
    let from_host = TcpStream::connect_timeout(
        &SocketAddr::from((SENDER_ADDR, port)),
        Duration::from_millis(300),
    );
    assert!(from_host.is_err(), "the host reached a namespace of ours");
    let mut text = String::new();
    {
        let _inside = pair.receiver.enter().unwrap();
        let mut conn = TcpStream::connect((SENDER_ADDR, port)).expect("connect across veth");
        conn.read_to_string(&mut text).unwrap();
    }
    let peer = server.join().unwrap();
    assert_eq!(text, "across the veth");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(RECEIVER_ADDR));
    drop(pair);
    assert!(
        netns::existing().is_empty(),
        "left behind: {:?}",
        netns::existing()
    );
}

#[test]
fn namespaces_of_a_dead_run_are_removed_by_the_next() {
    if !common::privileged("stale netns") {
        return;
    }
    let _serial = common::serial();
    // A pid that cannot be alive: above the kernel's pid_max.
    let stale = "netcopy-4194305-sender";
    let status = std::process::Command::new("ip")
        .args(["netns", "add", stale])
        .status()
        .unwrap();
    assert!(status.success());
    netns::remove_stale().unwrap();
    assert!(!netns::existing().contains(&stale.to_string()));
}

/// The zero-copy sender's ENOBUFS path, for real: net.core.optmem_max lowered in the
/// sender's namespace alone (never the host's), every message still arrives intact, and
/// the retries are counted.
#[test]
fn zero_copy_retries_enobufs_under_a_tiny_optmem_and_loses_nothing() {
    use std::sync::{atomic::AtomicBool, Arc};

    use netcopy::workload::{
        client::{run_client, ClientConfig, RunLimit},
        modes::Mode,
        server::{Server, ServerConfig},
    };

    if !common::privileged("ENOBUFS under optmem exhaustion") {
        return;
    }
    let _serial = common::serial();
    let pair = NetnsPair::create(&NetnsOptions::default()).expect("create the pair");
    let host_optmem = std::fs::read_to_string("/proc/sys/net/core/optmem_max").unwrap();
    let server = {
        let _inside = pair.sender.enter().unwrap();
        std::fs::write("/proc/sys/net/core/optmem_max", "2048").expect("lower optmem_max");
        let listen = SocketAddr::from((SENDER_ADDR, 0)).to_string();
        Server::bind(ServerConfig::new(Mode::ZeroCopy, &listen)).expect("bind")
    };
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/optmem_max").unwrap(),
        host_optmem,
        "the host's optmem_max changed"
    );
    let addr = server.local_addr().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || server.run(stop))
    };
    let messages = 200;
    let report = {
        let _inside = pair.receiver.enter().unwrap();
        run_client(&ClientConfig::new(
            &addr,
            256 << 10,
            1,
            RunLimit::Messages(messages),
        ))
    }
    .unwrap_or_else(|f| panic!("client failed: {f}"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let totals = running.join().unwrap().expect("server");
    assert_eq!(report.messages, messages);
    assert_eq!(report.integrity_errors, 0);
    assert!(
        totals.total.sender.enobufs_retries > 0,
        "no ENOBUFS retry counted: {:?}",
        totals.total.sender
    );
}
