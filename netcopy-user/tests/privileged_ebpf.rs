//! Loads and attaches the real eBPF programs and checks the counts they make, exactly.

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    thread,
};

use netcopy::kernel::{
    plan::{AttachPoint, HookKind, HookKinds, KernelEvent},
    runstats::{self, EmptyHooks, StatsEnabled},
    CopyProbes, LoadOptions,
};
use netcopy_common::CopySite;

/// Not a round number, so that no chunking coincidence can make a wrong count look right.
const TEST_BYTES: usize = 3_000_017;
/// What the unrelated process sends.
const NOISE_BYTES: usize = 1_234_567;

/// Sends `bytes` over loopback from one thread to another of this process and returns
/// how many bytes the receiving side read.
fn loopback_transfer(bytes: usize) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let sender = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let chunk = vec![0x5au8; 65_521];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
    });
    let total = read_to_end(&listener);
    sender.join().expect("sender thread");
    total
}

/// One getsockopt(TCP_ZEROCOPY_RECEIVE) on a connected loopback socket with nothing to
/// map: the kernel enters `tcp_zerocopy_receive` (the `recv_mapped` hook where fexit or
/// kprobes work) whatever it then maps. Returns the call's result (0, or -1 with errno).
fn zerocopy_receive_call() -> i32 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let stream = TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect");
    let (_conn, _) = listener.accept().expect("accept");
    // struct tcp_zerocopy_receive, all zero: no address, no length.
    let mut zc = [0u8; 64];
    let mut len = zc.len() as libc::socklen_t;
    // SAFETY: a valid socket and a buffer of `len` bytes the kernel may write.
    unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_ZEROCOPY_RECEIVE,
            zc.as_mut_ptr().cast(),
            &mut len,
        )
    }
}

/// `bytes` sent over loopback with sendfile(2) from a file: the page-reference path
/// (do_tcp_sendpages before Linux 6.5, the send path after); returns what arrived.
fn sendfile_transfer(bytes: usize) -> usize {
    let path = std::env::temp_dir().join(format!("netcopy-sendfile-{}", std::process::id()));
    std::fs::write(&path, vec![0xa5u8; bytes]).expect("write the file to send");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let file_path = path.clone();
    let sender = thread::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        let file = std::fs::File::open(&file_path).expect("open the file to send");
        let mut offset: libc::off_t = 0;
        while (offset as usize) < bytes {
            // SAFETY: valid descriptors and offset pointer for the duration of the call.
            let n = unsafe {
                libc::sendfile(
                    stream.as_raw_fd(),
                    file.as_raw_fd(),
                    &mut offset,
                    bytes - offset as usize,
                )
            };
            assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
        }
    });
    let total = read_to_end(&listener);
    sender.join().expect("sender thread");
    let _ = std::fs::remove_file(&path);
    total
}

/// Accepts one connection on `listener` and reads it to its end; returns the bytes read.
fn read_to_end(listener: &TcpListener) -> usize {
    let (mut conn, _) = listener.accept().expect("accept");
    let mut buf = vec![0u8; 100_003];
    let mut total = 0;
    loop {
        match conn.read(&mut buf).expect("read") {
            0 => break,
            n => total += n,
        }
    }
    total
}

/// Entry point of the unrelated "noise" process: this same test binary, re-executed.
/// It waits for a line on stdin, transfers NOISE_BYTES over loopback, prints the count.
#[test]
#[ignore = "helper process for recv_copy_is_counted_exactly_and_only_for_watched_processes"]
fn noise_process() {
    if std::env::var_os("NETCOPY_NOISE").is_none() {
        return;
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go line");
    let n = loopback_transfer(NOISE_BYTES);
    println!("noise-bytes={n}");
}

#[test]
fn recv_copy_is_counted_exactly_and_only_for_watched_processes() {
    if !common::privileged("recv_copy_is_counted_exactly_and_only_for_watched_processes") {
        return;
    }
    let _serial = common::serial();
    let mut probes = CopyProbes::load().expect("load probes");
    let recv = probes
        .plan()
        .get(KernelEvent::RecvCopy)
        .and_then(|e| e.chosen.clone())
        .expect("a strategy for the receive copy");
    eprintln!("recv-copy strategy: {}", recv.label);

    let mut noise = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "noise_process", "--nocapture"])
        .env("NETCOPY_NOISE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn noise process");
    let noise_pid = noise.id();
    // Our own process in slot 0; the noise process in slot 1; slot 2 stays unwatched.
    probes
        .watch_process(std::process::id(), 0, false)
        .expect("watch self");
    probes
        .watch_process(noise_pid, 1, false)
        .expect("watch noise");
    let before = probes.read_counters().expect("read counters");

    // Both transfers run at the same time.
    noise
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("start noise");
    let received = loopback_transfer(TEST_BYTES);
    let mut noise_out = String::new();
    BufReader::new(noise.stdout.take().unwrap())
        .read_to_string(&mut noise_out)
        .expect("noise output");
    assert!(noise.wait().expect("noise exit").success());
    let after = probes.read_counters().expect("read counters");
    let delta = after.since(&before);

    assert_eq!(received, TEST_BYTES);
    let sent = delta.get(0, CopySite::KernelSendCopy);
    assert_eq!(
        sent.bytes, TEST_BYTES as u64,
        "send-copy bytes of this process"
    );
    assert_eq!(delta.get(0, CopySite::ZeroCopyAttach).bytes, 0);
    let own = delta.get(0, CopySite::KernelRecvCopy);
    assert_eq!(
        own.bytes, TEST_BYTES as u64,
        "receive-copy bytes of this process"
    );
    assert!(own.calls > 0);
    let noise_bytes: u64 = noise_out
        .lines()
        .find_map(|l| l.strip_prefix("noise-bytes="))
        .and_then(|v| v.trim().parse().ok())
        .expect("noise process reports its byte count");
    assert_eq!(noise_bytes, NOISE_BYTES as u64);
    assert_eq!(
        delta.get(1, CopySite::KernelRecvCopy).bytes,
        NOISE_BYTES as u64,
        "the noise process is counted in its own slot"
    );
    assert_eq!(
        delta.get(2, CopySite::KernelRecvCopy).bytes,
        0,
        "nothing is booked to an unwatched slot"
    );
}

#[test]
fn unwatched_process_is_not_counted() {
    if !common::privileged("unwatched_process_is_not_counted") {
        return;
    }
    let _serial = common::serial();
    let mut probes = CopyProbes::load().expect("load probes");
    let counted = received_per_slot(&mut probes, 200_003);
    assert!(counted.iter().all(|b| *b == 0), "{counted:?}");
}

/// Receive-copy bytes booked to each slot while this process moves `bytes` over loopback.
fn received_per_slot(probes: &mut CopyProbes, bytes: usize) -> Vec<u64> {
    let before = probes.read_counters().expect("read counters");
    assert_eq!(loopback_transfer(bytes), bytes);
    let delta = probes
        .read_counters()
        .expect("read counters")
        .since(&before);
    (0..netcopy_common::SLOT_COUNT as u32)
        .map(|slot| delta.get(slot, CopySite::KernelRecvCopy).bytes)
        .collect()
}

/// The programs cache filter answers per CPU: an unwatch must reach every CPU's cache at
/// once, and a watch with another slot must move the counts to it.
#[test]
fn unwatch_and_rewatch_take_effect_at_once() {
    if !common::privileged("unwatch_and_rewatch_take_effect_at_once") {
        return;
    }
    let _serial = common::serial();
    let mut probes = CopyProbes::load().expect("load probes");
    let me = std::process::id();
    probes.watch_process(me, 1, false).expect("watch self");
    let counted = received_per_slot(&mut probes, 100_001);
    assert_eq!(counted[1], 100_001, "watched in slot 1: {counted:?}");
    probes.unwatch_process(me).expect("unwatch self");
    let counted = received_per_slot(&mut probes, 100_003);
    assert!(counted.iter().all(|b| *b == 0), "unwatched: {counted:?}");
    probes
        .watch_process(me, 2, false)
        .expect("watch self again");
    let counted = received_per_slot(&mut probes, 100_005);
    assert_eq!(counted[2], 100_005, "watched in slot 2: {counted:?}");
    assert_eq!(
        counted.iter().sum::<u64>(),
        100_005,
        "only slot 2: {counted:?}"
    );
}

/// Suspended probes stay loaded but count nothing; resumed, they count every byte again,
/// many times over (the benchmark switches them on and off hundreds of times a run).
#[test]
fn suspended_probes_count_nothing_and_resumed_count_everything() {
    if !common::privileged("suspended_probes_count_nothing_and_resumed_count_everything") {
        return;
    }
    let _serial = common::serial();
    let mut probes = CopyProbes::load().expect("load probes");
    probes
        .watch_process(std::process::id(), 1, false)
        .expect("watch self");
    for round in 0..5usize {
        probes.suspend().expect("suspend");
        assert!(probes.suspend().is_err(), "suspending twice is an error");
        let counted = received_per_slot(&mut probes, 100_001 + round);
        assert!(counted.iter().all(|b| *b == 0), "suspended: {counted:?}");
        probes.resume().expect("resume");
        assert!(probes.resume().is_err(), "resuming twice is an error");
        let counted = received_per_slot(&mut probes, 200_001 + round);
        assert_eq!(counted[1], 200_001 + round as u64, "resumed: {counted:?}");
    }
}

/// Threads writing to one TCP socket at the same time: a send can start (under the
/// socket lock) while another thread's send has released the lock but not yet returned,
/// which the tp_btf strategy must keep apart (per thread) to count every byte once.
#[test]
fn concurrent_senders_on_one_socket_are_counted_exactly() {
    if !common::privileged("concurrent_senders_on_one_socket_are_counted_exactly") {
        return;
    }
    let _serial = common::serial();
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 750_007;
    let mut probes = CopyProbes::load().expect("load probes");
    probes
        .watch_process(std::process::id(), 0, false)
        .expect("watch self");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let stream = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (mut conn, _) = listener.accept().expect("accept");
    // Small buffers and a receiver that starts late: the senders fill the socket and wait
    // for room inside tcp_sendmsg_locked, which releases the socket lock to the others.
    set_buffer(stream.as_raw_fd(), libc::SO_SNDBUF, 32 << 10);
    set_buffer(conn.as_raw_fd(), libc::SO_RCVBUF, 32 << 10);
    let before = probes.read_counters().expect("read counters");
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let mut stream = stream.try_clone().expect("clone the socket");
            thread::spawn(move || {
                // Odd chunk sizes, different per thread, so sends interleave unevenly.
                let chunk = vec![i as u8; 24_571 + 4_099 * i];
                let mut left = PER_SENDER;
                while left > 0 {
                    let n = left.min(chunk.len());
                    stream.write_all(&chunk[..n]).expect("write");
                    left -= n;
                }
            })
        })
        .collect();
    let total = SENDERS * PER_SENDER;
    thread::sleep(std::time::Duration::from_millis(200));
    let mut buf = vec![0u8; 100_003];
    let mut received = 0;
    while received < total {
        match conn.read(&mut buf).expect("read") {
            0 => break,
            n => received += n,
        }
    }
    for s in senders {
        s.join().expect("sender thread");
    }
    let delta = probes
        .read_counters()
        .expect("read counters")
        .since(&before);
    assert_eq!(received, total);
    assert_eq!(
        delta.get(0, CopySite::KernelSendCopy).bytes,
        total as u64,
        "every byte of every sender counted once"
    );
    assert_eq!(delta.get(0, CopySite::ZeroCopyAttach).bytes, 0);
    assert_eq!(delta.get(0, CopySite::KernelRecvCopy).bytes, total as u64);
}

/// Sends that sleep for room in the socket (`sk_stream_wait_memory`) between passes of
/// `tcp_sendmsg_locked` while another thread keeps moving them between CPUs, two
/// connections' senders taking turns on a CPU: the tp_btf strategy's per-CPU cache of
/// the send in flight must follow a send that moves (its later passes on the new CPU, its
/// end there) and must not outlive it on the CPU it left, or the thread's next send on
/// that socket would pass for a later pass and go uncounted.
#[test]
fn sends_moved_between_cpus_mid_send_are_counted_exactly() {
    if !common::privileged("sends_moved_between_cpus_mid_send_are_counted_exactly") {
        return;
    }
    let _serial = common::serial();
    const CONNECTIONS: usize = 2;
    const PER_CONNECTION: usize = 4_000_037;
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("only one CPU allowed: the sends cannot move, so this checks only the counts");
    }
    let mut probes = CopyProbes::load().expect("load probes");
    probes
        .watch_process(std::process::id(), 0, false)
        .expect("watch self");
    let before = probes.read_counters().expect("read counters");
    let (tids_tx, tids_rx) = std::sync::mpsc::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for c in 0..CONNECTIONS {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let mut stream = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (mut conn, _) = listener.accept().expect("accept");
        // Small buffers: a write of several times the buffer waits for room inside
        // tcp_sendmsg_locked again and again.
        set_buffer(stream.as_raw_fd(), libc::SO_SNDBUF, 16 << 10);
        set_buffer(conn.as_raw_fd(), libc::SO_RCVBUF, 16 << 10);
        let tids_tx = tids_tx.clone();
        senders.push(thread::spawn(move || {
            // SAFETY: gettid cannot fail.
            tids_tx.send(unsafe { libc::gettid() }).expect("send tid");
            let chunk = vec![c as u8; 150_001 + 10_007 * c];
            let mut left = PER_CONNECTION;
            while left > 0 {
                let n = left.min(chunk.len());
                stream.write_all(&chunk[..n]).expect("write");
                left -= n;
            }
        }));
        receivers.push(thread::spawn(move || {
            let mut buf = vec![0u8; 7_919];
            let mut received = 0;
            while received < PER_CONNECTION {
                match conn.read(&mut buf).expect("read") {
                    0 => break,
                    n => received += n,
                }
            }
            received
        }));
    }
    let tids: Vec<libc::pid_t> = (0..CONNECTIONS).map(|_| tids_rx.recv().unwrap()).collect();
    let mover = {
        let done = done.clone();
        thread::spawn(move || {
            let mut moves = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, &tid) in tids.iter().enumerate() {
                    // Both senders on one CPU, then both on the next: they take turns
                    // on a CPU and move together.
                    let cpu = cpus[(moves as usize + i / CONNECTIONS) % cpus.len()];
                    // A sender that has finished is gone: ESRCH is expected.
                    let _ = set_affinity(tid, cpu);
                }
                moves += 1;
                thread::sleep(std::time::Duration::from_micros(300));
            }
            moves
        })
    };
    let received: usize = receivers
        .into_iter()
        .map(|r| r.join().expect("receiver"))
        .sum();
    for s in senders {
        s.join().expect("sender thread");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = mover.join().expect("mover thread");
    let delta = probes
        .read_counters()
        .expect("read counters")
        .since(&before);
    let total = CONNECTIONS * PER_CONNECTION;
    assert_eq!(received, total);
    assert!(moves > 10, "the senders were moved only {moves} times");
    assert_eq!(
        delta.get(0, CopySite::KernelSendCopy).bytes,
        total as u64,
        "every byte sent counted once, wherever its send went on"
    );
    assert_eq!(delta.get(0, CopySite::ZeroCopyAttach).bytes, 0);
    assert_eq!(delta.get(0, CopySite::KernelRecvCopy).bytes, total as u64);
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: CPU_ISSET reads the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Moves thread `tid` to `cpu`.
fn set_affinity(tid: libc::pid_t, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE: it came from allowed_cpus.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid pointer and size.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_buffer(fd: i32, option: i32, bytes: i32) {
    // SAFETY: a valid socket fd and an int option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// What a zero-copy transfer moved.
struct ZeroCopyTransfer {
    received: usize,
    /// Bytes TCP sent again (`tcpi_bytes_retrans`, read once every byte was acknowledged):
    /// each retransmitted segment carries the same pinned pages, and loopback copies them
    /// again. Seen in a slow (emulated) guest, where a delayed ACK can outlast the RTO.
    retransmitted: u64,
}

/// `tcpi_bytes_retrans` of a TCP socket.
fn bytes_retransmitted(fd: i32) -> u64 {
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_bytes_retrans
}

/// Sends `bytes` with MSG_ZEROCOPY on a SO_ZEROCOPY socket, in sends of at most `chunk`.
fn zerocopy_transfer(bytes: usize, chunk: usize) -> ZeroCopyTransfer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let sender = thread::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        let fd = stream.as_raw_fd();
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option buffer.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ZEROCOPY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_ZEROCOPY");
        // Buffers stay alive until the thread ends, after every completion could arrive.
        let buf = vec![0x42u8; chunk];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk);
            // SAFETY: buf outlives the send and its completion (kept until join).
            let sent = unsafe {
                libc::send(
                    fd,
                    buf.as_ptr() as *const libc::c_void,
                    n,
                    libc::MSG_ZEROCOPY,
                )
            };
            if sent < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENOBUFS) {
                    thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                panic!("send: {err}");
            }
            left -= sent as usize;
        }
        // The receiver closes once it has every byte; its FIN follows its last ACK, so
        // after it no retransmission is pending and the count is final.
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut rest = [0u8; 1];
        assert_eq!((&stream).read(&mut rest).expect("read EOF"), 0);
        let retransmitted = bytes_retransmitted(fd);
        (buf, retransmitted)
    });
    // Reading to the end closes our side, which the sender waits for.
    let total = read_to_end(&listener);
    let (_buf, retransmitted) = sender.join().expect("sender thread");
    ZeroCopyTransfer {
        received: total,
        retransmitted,
    }
}

#[test]
fn zerocopy_sends_are_counted_as_attached_not_copied() {
    if !common::privileged("zerocopy_sends_are_counted_as_attached_not_copied") {
        return;
    }
    let _serial = common::serial();
    let mut probes = CopyProbes::load().expect("load probes");
    eprintln!("{}", probes.plan().describe());
    probes
        .watch_process(std::process::id(), 0, false)
        .expect("watch self");
    let before = probes.read_counters().expect("read counters");
    let transfer = zerocopy_transfer(TEST_BYTES, 262_147);
    assert_eq!(transfer.received, TEST_BYTES);
    let delta = probes
        .read_counters()
        .expect("read counters")
        .since(&before);
    assert_eq!(
        delta.get(0, CopySite::ZeroCopyAttach).bytes,
        TEST_BYTES as u64,
        "zero-copy attached bytes"
    );
    assert_eq!(delta.get(0, CopySite::KernelSendCopy).bytes, 0);
    assert_eq!(
        delta.get(0, CopySite::KernelRecvCopy).bytes,
        TEST_BYTES as u64
    );

    // Where the kernel lets us see them: completions cover every byte, and over loopback
    // the kernel copies every zero-copy page before the receiver gets it.
    let plan = probes.plan().clone();
    let has = |event| plan.get(event).is_some_and(|e| e.chosen.is_some());
    if has(KernelEvent::Completion) {
        // Completions arrive when the last reference to each skb goes; wait for them
        // (bounded), rather than assume how fast that is.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut delta = delta;
        while delta.get(0, CopySite::ZeroCopyCompletion).bytes < TEST_BYTES as u64
            && std::time::Instant::now() < deadline
        {
            thread::sleep(std::time::Duration::from_millis(50));
            delta = probes
                .read_counters()
                .expect("read counters")
                .since(&before);
        }
        let completions = delta.get(0, CopySite::ZeroCopyCompletion);
        eprintln!(
            "completions: {} calls, {} bytes; flagged copied: {} bytes; deferred copy: {} bytes in {} calls; retransmitted: {} bytes",
            completions.calls,
            completions.bytes,
            delta.get(0, CopySite::ZeroCopyCompletionCopied).bytes,
            delta.get(0, CopySite::DeferredCopy).bytes,
            delta.get(0, CopySite::DeferredCopy).calls,
            transfer.retransmitted,
        );
        assert_eq!(completions.bytes, TEST_BYTES as u64, "completion bytes");
        assert!(completions.calls >= 1);
        if has(KernelEvent::DeferredCopy) {
            assert_eq!(
                delta.get(0, CopySite::DeferredCopy).bytes,
                TEST_BYTES as u64 + transfer.retransmitted,
                "loopback copies every zero-copy byte (and every retransmitted one again)"
            );
            assert_eq!(
                delta.get(0, CopySite::ZeroCopyCompletionCopied).bytes,
                TEST_BYTES as u64,
                "every completion has its zerocopy bit cleared"
            );
        }
    }
}

/// The benchmark's floors: empty programs go on every hook the copy probes use on this
/// kernel (tp_btf here; fentry/fexit or kprobes in the guests) and on classic syscall
/// tracepoints as the trace's, each runs there while attached, and none runs at all
/// while detached (the kernel's own run counts, exact).
#[test]
fn empty_programs_run_on_every_hook_only_while_attached() {
    if !common::privileged("empty_programs_run_on_every_hook_only_while_attached") {
        return;
    }
    let _serial = common::serial();
    // The hooks of the first strategy this kernel offers, and of the next one without
    // fentry: in the guests, fentry/fexit and kprobe/kretprobe; here, tp_btf twice.
    let mut points = Vec::new();
    for avoid in [&[][..], &[HookKind::Fentry][..]] {
        let probes = CopyProbes::load_with(LoadOptions {
            avoid: HookKinds::of(avoid),
            ..LoadOptions::default()
        })
        .expect("load probes");
        points.extend(probes.attach_points());
    }
    assert!(!points.is_empty());
    // std's send and recv are the sendto and recvfrom system calls.
    for name in ["sys_enter_sendto", "sys_exit_recvfrom"] {
        points.push(AttachPoint::Tracepoint {
            category: "syscalls",
            name,
        });
    }
    let _stats = StatsEnabled::enable().expect("enable run-time statistics");
    let mut empty = EmptyHooks::load(&points).expect("load the empty programs");
    let mut expected = points.clone();
    expected.sort_by_key(ToString::to_string);
    expected.dedup();
    let mut got = empty.points();
    got.sort_by_key(ToString::to_string);
    assert_eq!(got, expected, "one empty program on each hook");
    let ids = empty.ids().expect("program ids");
    let runs = || -> Vec<u64> {
        let counters = runstats::read(&ids).expect("read run counts");
        ids.iter()
            .map(|id| counters.get(id).expect("program loaded").runs)
            .collect()
    };
    // Every kind of traffic the copy probes' hooks see: a copying send and receive (and
    // the threads' creation, for sched_process_fork), a zero-copy send, a sendfile (the
    // page-reference hook, do_tcp_sendpages on the 6.1 guest) and a zero-copy receive
    // (tcp_zerocopy_receive, hooked on the 6.1 guest; its result does not matter here).
    let traffic = || {
        assert_eq!(loopback_transfer(200_003), 200_003);
        assert_eq!(zerocopy_transfer(200_003, 65_536).received, 200_003);
        assert_eq!(sendfile_transfer(200_003), 200_003);
        let _ = zerocopy_receive_call();
    };
    for round in 0..2 {
        let before = runs();
        traffic();
        let detached = runs();
        assert_eq!(detached, before, "round {round}: detached programs ran");
        empty.attach().expect("attach the empty programs");
        traffic();
        empty.detach();
        let attached = runs();
        for ((id, a), d) in ids.iter().zip(&attached).zip(&detached) {
            assert!(
                a > d,
                "round {round}: empty program {id} never ran while attached"
            );
        }
    }
}
