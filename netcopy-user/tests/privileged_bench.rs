//! The probe-overhead benchmark's windows, run for real (root): the instruments take
//! turns on one running workload in the planned order, every window moves data, and what
//! each instrument saw in its windows is what it should have seen. No speed is asserted.

mod common;

use netcopy::bench::{
    tracing::Tracer,
    windows::{self, block_order, WindowPlan, WindowSample},
    Instrument,
};

#[test]
fn instruments_take_turns_on_one_workload_and_see_their_windows() {
    if !common::privileged("instruments_take_turns_on_one_workload_and_see_their_windows") {
        return;
    }
    let _serial = common::serial();
    let tracer = Tracer::find().expect("root finds the tracer");
    // netcopy's instruments, their floors and the control; the peer tools have a test
    // of their own.
    let instruments = [
        Instrument::None,
        Instrument::CopyCounting,
        Instrument::SyscallTracing,
        Instrument::Control,
        Instrument::EmptyCountingHooks,
        Instrument::EmptyTracingHooks,
    ];
    let plan = WindowPlan {
        window_ms: 100,
        settle_ms: 20,
        blocks: 3,
    };
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_netcopy"));
    let run = windows::run(exe, plan, &instruments, Some(&tracer), None, &|_| {})
        .expect("the windows ran");
    assert!(run.failed.is_empty(), "{:?}", run.failed);

    let expected: Vec<(u32, Instrument)> = (0..plan.blocks)
        .flat_map(|b| block_order(&instruments).into_iter().map(move |i| (b, i)))
        .collect();
    let got: Vec<(u32, Instrument)> = run
        .samples
        .iter()
        .map(|w| (w.block, w.instrument))
        .collect();
    assert_eq!(got, expected);
    for w in &run.samples {
        assert!(w.payload_bytes > 0, "a window without data: {w:?}");
        assert!(w.seconds >= 0.1, "a window shorter than planned: {w:?}");
        assert!(w.cpu_seconds.is_some_and(|c| c > 0.0), "no CPU time: {w:?}");
    }
    // One comparison per block for every instrument, none for the baseline itself.
    for instrument in [
        Instrument::CopyCounting,
        Instrument::SyscallTracing,
        Instrument::Control,
        Instrument::EmptyCountingHooks,
        Instrument::EmptyTracingHooks,
    ] {
        let losses = windows::paired(
            &run.samples,
            instrument,
            WindowSample::gbps,
            |base, with| Some(with / base),
        );
        assert_eq!(losses.len(), plan.blocks as usize, "{instrument:?}");
    }

    // Copy counting was on in its windows, and only its probes counted: about one byte
    // copied per payload byte each way. Not exactly one: the client verifies a message
    // after its last receive copy, and the server's sends run ahead of the client by what
    // the socket buffers hold (dozens of 64 KiB messages), which need not be the same at
    // both ends of a 100 ms window. Suspended probes would count 0, doubled ones 2.
    let (recv, send) = run.counted.expect("copy counting booked its windows");
    for (what, ratio) in [("receive", recv), ("send", send)] {
        assert!(
            (0.9..1.1).contains(&ratio),
            "{what}: {ratio} bytes counted per payload byte"
        );
    }
    // Setup once per instrument with programs; a switch on for each of their windows.
    assert_eq!(run.setup_seconds.len(), 4);
    assert_eq!(run.switch_seconds.len(), 4 * plan.blocks as usize);
    // The empty programs went on the hooks of the instrument they stand for (this test
    // runs where the tp_btf strategy is chosen: the host kernel, not the fentry/kprobe
    // guests): copy counting's, and copy counting's plus the trace's.
    let hooks = |of: Instrument| -> Vec<String> {
        let found: Vec<_> = run.empty_hooks.iter().filter(|(i, _)| *i == of).collect();
        assert_eq!(found.len(), 1, "{of:?}: {:?}", run.empty_hooks);
        found[0].1.iter().map(ToString::to_string).collect()
    };
    let counting = hooks(Instrument::EmptyCountingHooks);
    let tracing = hooks(Instrument::EmptyTracingHooks);
    for hook in [
        "tp_btf skb_copy_datagram_iovec",
        "tp_btf tcp_sendmsg_locked",
    ] {
        assert!(counting.iter().any(|h| h == hook), "{hook}: {counting:?}");
    }
    for hook in &counting {
        assert!(tracing.contains(hook), "{hook}: {tracing:?}");
    }
    for hook in [
        "tracepoint syscalls/sys_enter_sendmsg",
        "tracepoint syscalls/sys_exit_recvfrom",
    ] {
        assert!(tracing.iter().any(|h| h == hook), "{hook}: {tracing:?}");
    }
    assert!(
        !counting.iter().any(|h| h.contains("syscalls/")),
        "{counting:?}"
    );

    // The trace recorded the traced windows' calls and lost none: 3 calls per message (a
    // sendmsg, two recvfrom), more with the settling time before each window.
    let stats = run
        .trace
        .expect("the trace ran")
        .expect("the trace stopped cleanly");
    assert_eq!(stats.lost(), 0, "{}", stats.describe_windows());
    let traced_payload: u64 = run
        .samples
        .iter()
        .filter(|w| w.instrument == Instrument::SyscallTracing)
        .map(|w| w.payload_bytes)
        .sum();
    let message = 64 << 10;
    assert!(
        stats.events >= 3 * traced_payload / message,
        "{} events for {} traced messages",
        stats.events,
        traced_payload / message
    );
}

/// The peer tools (bpftrace, perf trace, strace -f) take their windows on the same
/// workload: each is started before its window and stopped after it, every block, and what
/// it counted is checked against netcopy's instrument. A tool not installed is reported as
/// such, never as a failure; one that ran either agreed with netcopy or says it did not.
#[test]
fn peer_tools_take_their_windows_and_their_counts_are_checked() {
    if !common::privileged("peer_tools_take_their_windows_and_their_counts_are_checked") {
        return;
    }
    let _serial = common::serial();
    let tracer = Tracer::find().expect("root finds the tracer");
    let peers = [
        Instrument::Bpftrace,
        Instrument::PerfTrace,
        Instrument::Strace,
    ];
    let instruments = [
        Instrument::None,
        Instrument::CopyCounting,
        Instrument::SyscallTracing,
        Instrument::Bpftrace,
        Instrument::PerfTrace,
        Instrument::Strace,
    ];
    let plan = WindowPlan {
        window_ms: 100,
        settle_ms: 20,
        blocks: 2,
    };
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_netcopy"));
    let run = windows::run(exe, plan, &instruments, Some(&tracer), None, &|_| {})
        .expect("the windows ran");
    for peer in peers {
        if let Some((_, why)) = run.failed.iter().find(|(i, _)| *i == peer) {
            assert!(why.contains("not installed"), "{peer:?} failed: {why}");
            eprintln!("{peer:?}: {why}");
            continue;
        }
        let windows: Vec<&WindowSample> = run
            .samples
            .iter()
            .filter(|w| w.instrument == peer)
            .collect();
        assert_eq!(
            windows.len(),
            plan.blocks as usize,
            "{peer:?}: one window per block"
        );
        for w in &windows {
            assert!(
                w.payload_bytes > 0,
                "{peer:?}: a window without data: {w:?}"
            );
            // The tool's own CPU time is in the window's.
            assert!(w.cpu_seconds.is_some_and(|c| c > 0.0), "{peer:?}: {w:?}");
        }
        let check = run.peer_check(peer).expect("a peer that ran is checked");
        eprintln!("{peer:?}: {}", check.text);
        // Either the counts agreed, or the check says why the peer is not compared.
        assert!(
            check.comparable
                || check.text.contains("DISAGREE")
                || check.text.contains("lost")
                || check.text.contains("no complete window"),
            "{}",
            check.text
        );
        if check.comparable {
            assert!(check.text.contains("they agree"), "{}", check.text);
        }
    }
    // The instruments the peers are checked against counted too.
    assert!(run.counted.is_some(), "copy counting booked its windows");
    let stats = run
        .trace
        .expect("the trace ran")
        .expect("the trace stopped");
    assert!(
        stats.calls.get("sendmsg").is_some_and(|&n| n > 0),
        "{:?}",
        stats.calls
    );
    assert!(run.traced_payload > 0);
}
