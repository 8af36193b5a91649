//! The agent's control protocol against controllers good and bad, with a stand-in for
//! the phases (no root, no eBPF): a wrong token, a replayed answer, another version,
//! garbage before and after authentication, a second controller while one is connected,
//! and a controller that vanishes mid-phase. After each, the agent serves the next
//! controller, and no phase outlives its controller.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{atomic::AtomicBool, Arc, Mutex},
    thread,
    time::Duration,
};

use netcopy::{
    experiment::ends::Ends,
    ledger::{ModeLedger, Verdict},
    remote::{
        agent::{serve, AgentOptions, Phases, SessionEnd},
        auth::{Challenge, Role, Token},
        controller::Controller,
        frame::{read_frame, write_frame},
        messages::{
            AgentMessage, ControllerMessage, ErrorCode, HostInfo, ModeSupport, PhaseRequest,
            PROTOCOL_VERSION,
        },
    },
    workload::modes::Mode,
};

const SECRET: &str = "a test token of enough length";
/// The mode the fake agent's kernel cannot run, and why.
const REFUSED: Mode = Mode::IoUringZc;
const REFUSED_WHY: &str = "this fake kernel's io_uring has no IORING_OP_SENDMSG_ZC";
const TIMEOUT: Duration = Duration::from_secs(10);

type Log = Arc<Mutex<Vec<String>>>;

struct FakePhases {
    log: Log,
}

impl Phases for FakePhases {
    type Report = u64;
    fn host(&self) -> HostInfo {
        HostInfo {
            hostname: "fake".into(),
            kernel: "0.0".into(),
            plan: serde_json::json!({"events": []}),
            // The kernel of this fake runs every mode but one.
            modes: Mode::ALL
                .iter()
                .map(|&mode| ModeSupport {
                    mode,
                    unsupported: (mode == REFUSED).then(|| REFUSED_WHY.to_string()),
                })
                .collect(),
        }
    }
    fn start(
        &mut self,
        request: &PhaseRequest,
        local: IpAddr,
        _peer: IpAddr,
    ) -> anyhow::Result<SocketAddr> {
        if request.max_size == 0 {
            anyhow::bail!("no such size");
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", request.mode));
        Ok(SocketAddr::new(local, 9))
    }
    fn end(&mut self) -> anyhow::Result<u64> {
        self.log.lock().unwrap().push("end".into());
        Ok(42)
    }
    fn abort(&mut self) {
        self.log.lock().unwrap().push("abort".into());
    }
}

struct Agent {
    addr: String,
    log: Log,
    ends: Arc<Mutex<Vec<SessionEnd>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Agent {
    fn start(idle: Duration) -> Agent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let ends: Arc<Mutex<Vec<SessionEnd>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, e, s) = (Arc::clone(&log), Arc::clone(&ends), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let options = AgentOptions {
                auth_timeout: Duration::from_secs(2),
                idle_timeout: idle,
                max_sessions: None,
            };
            serve(
                listener,
                token(),
                FakePhases { log: l },
                options,
                s,
                |_, end| e.lock().unwrap().push(end.clone()),
            )
            .unwrap();
        });
        Agent {
            addr,
            log,
            ends,
            stop,
            thread: Some(thread),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `n` sessions have ended and returns their ends.
    fn ends(&self, n: usize) -> Vec<SessionEnd> {
        // A bound against a hang only (it was 5 s, which a loaded machine can need): the
        // sessions' ends come from the agent's own timeouts, not from this wait.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let ends = self.ends.lock().unwrap().clone();
            if ends.len() >= n {
                return ends;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "fewer than {n} sessions ended: {:?}",
            self.ends.lock().unwrap()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn token() -> Token {
    Token::new(SECRET.as_bytes()).unwrap()
}

fn request(mode: Mode) -> PhaseRequest {
    PhaseRequest {
        mode,
        max_size: 65536,
        packet_tap: false,
    }
}

/// A connection that speaks the protocol by hand.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Raw { stream }
    }
    fn send(&mut self, m: &ControllerMessage) {
        write_frame(&mut self.stream, m).unwrap();
    }
    fn receive(&mut self) -> AgentMessage<serde_json::Value> {
        read_frame(&mut self.stream).unwrap()
    }
    fn hello(&mut self) -> Challenge {
        match self.receive() {
            AgentMessage::Hello {
                challenge,
                protocol,
                ..
            } => {
                assert_eq!(protocol, PROTOCOL_VERSION);
                Challenge::from_hex(&challenge).unwrap()
            }
            other => panic!("expected hello, got {other:?}"),
        }
    }
    fn expect_error(&mut self, code: ErrorCode) -> String {
        match self.receive() {
            AgentMessage::Error { code: c, message } if c == code => message,
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

fn a_good_phase(addr: &str) {
    let mut c = Controller::connect(addr, &token(), TIMEOUT).expect("a good controller is served");
    assert_eq!(c.host.hostname, "fake");
    let (phase, data) = c.start_phase(&request(Mode::OneCopy)).unwrap();
    assert_eq!(data.port(), 9);
    assert_eq!(c.end_phase::<u64>(phase).unwrap(), 42);
    c.bye().unwrap();
}

#[test]
fn a_good_controller_runs_phases_and_the_next_one_is_served() {
    let agent = Agent::start(TIMEOUT);
    a_good_phase(&agent.addr);
    a_good_phase(&agent.addr);
    assert_eq!(
        agent.log(),
        ["start one-copy", "end", "start one-copy", "end"]
    );
    assert_eq!(agent.ends(2), [SessionEnd::Bye, SessionEnd::Bye]);
}

#[test]
fn a_wrong_token_is_refused_without_the_token_on_the_wire() {
    let agent = Agent::start(TIMEOUT);
    let wrong = Token::new(b"another token, just as long").unwrap();
    let err = Controller::connect(&agent.addr, &wrong, TIMEOUT)
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("token files"), "{err:#}");
    assert!(matches!(agent.ends(1)[0], SessionEnd::Refused(_)));
    assert!(
        agent.log().is_empty(),
        "a refused controller started something"
    );
    a_good_phase(&agent.addr);
}

#[test]
fn a_replayed_answer_fails_on_the_next_connection() {
    let agent = Agent::start(TIMEOUT);
    let t = token();
    let ours = Challenge::fresh().unwrap();
    let mut first = Raw::connect(&agent.addr);
    let theirs = first.hello();
    let auth = ControllerMessage::Auth {
        protocol: PROTOCOL_VERSION,
        challenge: ours.to_hex(),
        proof: t.prove(Role::Controller, &theirs, &ours),
    };
    first.send(&auth);
    assert!(matches!(first.receive(), AgentMessage::Welcome { .. }));
    first.send(&ControllerMessage::Bye);
    assert!(matches!(first.receive(), AgentMessage::Bye));
    // The same answer, recorded, on a new connection: the agent's challenge is new.
    let mut replay = Raw::connect(&agent.addr);
    let fresh = replay.hello();
    assert_ne!(fresh, theirs);
    replay.send(&auth);
    replay.expect_error(ErrorCode::Auth);
    assert!(replay.closed());
    assert!(matches!(agent.ends(2)[1], SessionEnd::Refused(_)));
    assert!(agent.log().is_empty());
}

#[test]
fn another_protocol_version_is_told_so() {
    let agent = Agent::start(TIMEOUT);
    let mut raw = Raw::connect(&agent.addr);
    let theirs = raw.hello();
    let ours = Challenge::fresh().unwrap();
    raw.send(&ControllerMessage::Auth {
        protocol: PROTOCOL_VERSION + 1,
        challenge: ours.to_hex(),
        proof: token().prove(Role::Controller, &theirs, &ours),
    });
    let message = raw.expect_error(ErrorCode::Version);
    assert!(message.contains("protocol"), "{message}");
}

#[test]
fn garbage_is_answered_and_never_crashes_the_agent() {
    let agent = Agent::start(TIMEOUT);
    // Before authentication: a request instead of auth, then bytes that are no frame.
    let mut raw = Raw::connect(&agent.addr);
    raw.hello();
    raw.send(&ControllerMessage::StartPhase(request(Mode::ZeroCopy)));
    raw.expect_error(ErrorCode::BadRequest);
    let mut raw = Raw::connect(&agent.addr);
    raw.hello();
    raw.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    raw.expect_error(ErrorCode::BadRequest);
    assert!(raw.closed());

    // After authentication: malformed bodies are answered and the session goes on; a
    // length beyond the limit ends it, since the framing is lost.
    let mut raw = Raw::connect(&agent.addr);
    let theirs = raw.hello();
    let ours = Challenge::fresh().unwrap();
    raw.send(&ControllerMessage::Auth {
        protocol: PROTOCOL_VERSION,
        challenge: ours.to_hex(),
        proof: token().prove(Role::Controller, &theirs, &ours),
    });
    assert!(matches!(raw.receive(), AgentMessage::Welcome { .. }));
    for body in [
        &b"{not json"[..],
        b"{\"type\":\"shell\",\"cmd\":\"id\"}",
        b"\xff\xfe",
        b"[]",
    ] {
        raw.stream
            .write_all(&(body.len() as u32).to_be_bytes())
            .unwrap();
        raw.stream.write_all(body).unwrap();
        raw.expect_error(ErrorCode::BadRequest);
    }
    raw.send(&ControllerMessage::EndPhase { phase: 7 });
    raw.expect_error(ErrorCode::NoPhase);
    raw.send(&ControllerMessage::StartPhase(PhaseRequest {
        mode: Mode::TwoCopy,
        max_size: 0,
        packet_tap: false,
    }));
    let why = raw.expect_error(ErrorCode::Failed);
    assert!(why.contains("no such size"), "{why}");
    raw.send(&ControllerMessage::StartPhase(request(Mode::TwoCopy)));
    let phase = match raw.receive() {
        AgentMessage::PhaseStarted { phase, .. } => phase,
        other => panic!("{other:?}"),
    };
    raw.send(&ControllerMessage::StartPhase(request(Mode::TwoCopy)));
    raw.expect_error(ErrorCode::PhaseRunning);
    raw.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    raw.expect_error(ErrorCode::BadRequest);
    assert!(raw.closed());
    let ends = agent.ends(3);
    assert!(matches!(ends[2], SessionEnd::Lost(_)), "{ends:?}");
    assert_eq!(
        agent.log(),
        ["start two-copy", "abort"],
        "the phase {phase} outlived its session"
    );
    a_good_phase(&agent.addr);
}

#[test]
fn a_second_controller_is_refused_while_one_is_connected() {
    let agent = Agent::start(TIMEOUT);
    let first = Controller::connect(&agent.addr, &token(), TIMEOUT).unwrap();
    let err = Controller::connect(&agent.addr, &token(), TIMEOUT)
        .err()
        .expect("busy");
    assert!(format!("{err:#}").contains("another controller"), "{err:#}");
    first.bye().unwrap();
    agent.ends(1);
    a_good_phase(&agent.addr);
}

#[test]
fn a_controller_that_vanishes_mid_phase_leaves_nothing_running() {
    let agent = Agent::start(TIMEOUT);
    let mut c = Controller::connect(&agent.addr, &token(), TIMEOUT).unwrap();
    c.start_phase(&request(Mode::ZeroCopy)).unwrap();
    drop(c);
    assert!(matches!(agent.ends(1)[0], SessionEnd::Lost(_)));
    assert_eq!(agent.log(), ["start zero-copy", "abort"]);
    a_good_phase(&agent.addr);
}

#[test]
fn a_controller_that_goes_quiet_mid_phase_is_timed_out() {
    let agent = Agent::start(Duration::from_millis(300));
    let mut c = Controller::connect(&agent.addr, &token(), TIMEOUT).unwrap();
    c.start_phase(&request(Mode::ZeroCopy)).unwrap();
    let ends = agent.ends(1);
    assert!(
        matches!(&ends[0], SessionEnd::Lost(why) if why.contains("quiet")),
        "{ends:?}"
    );
    assert_eq!(agent.log(), ["start zero-copy", "abort"]);
    drop(c);
}

/// A phase's report carries the server's perf counters, read on the agent's host (the
/// server's CPU time per byte of `run --remote`); a report without them, as an agent
/// before the field sends, still reads, with none.
#[test]
fn a_phase_report_carries_the_servers_counters_and_one_without_them_still_reads() {
    use netcopy::{
        kernel::{
            callers::{CallerChain, CopyCallers},
            path::PathFacts,
            perf::{CounterKind, CounterReadings, CounterValue},
        },
        ledger::sides::{KernelSide, Role},
        remote::phases::SenderReport,
        workload::modes::SenderStats,
    };
    let lo = IpAddr::from([127, 0, 0, 1]);
    let counters = CounterReadings {
        source: "perf_event_open".into(),
        pid: 4242,
        threads_opened: 1,
        inherit: true,
        coverage_note: None,
        counters: CounterKind::ALL
            .iter()
            .map(|&kind| {
                let value = if kind == CounterKind::TaskClock {
                    CounterValue::Available {
                        value: 1_234_567,
                        raw: 1_234_567,
                        scaled: false,
                    }
                } else {
                    CounterValue::Unavailable {
                        reason: "no PMU".into(),
                    }
                };
                (kind, value)
            })
            .collect(),
    };
    let report = SenderReport {
        side: KernelSide {
            host: "agent-host".into(),
            role: Role::Sender,
            probes: Default::default(),
        },
        sender: SenderStats::default(),
        path: PathFacts {
            local: lo,
            peer: lo,
            device: None,
            peer_is_local: true,
            taps: Vec::new(),
        },
        counters: Some(counters.clone()),
        copy_callers: Some(CopyCallers {
            chains: vec![CallerChain {
                callers: vec!["dev_queue_xmit_nit+0x28a".into()],
                copies: 3,
                bytes: 196_656,
            }],
            ..CopyCallers::default()
        }),
    };
    let message = AgentMessage::PhaseReport {
        phase: 3,
        report: report.clone(),
    };
    let text = serde_json::to_string(&message).unwrap();
    let read: AgentMessage<SenderReport> = serde_json::from_str(&text).unwrap();
    let AgentMessage::PhaseReport {
        phase: 3,
        report: r,
    } = read
    else {
        panic!("not the phase's report: {text}");
    };
    assert_eq!(
        r.copy_callers, report.copy_callers,
        "the caller chains crossed the wire"
    );
    let got = r.counters.expect("the counters crossed the wire");
    assert_eq!(got, counters);
    assert_eq!(
        got.get(CounterKind::TaskClock),
        CounterValue::Available {
            value: 1_234_567,
            raw: 1_234_567,
            scaled: false
        }
    );
    assert!(matches!(
        got.get(CounterKind::Cycles),
        CounterValue::Unavailable { .. }
    ));

    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["report"].as_object_mut().unwrap().remove("counters");
    value["report"]
        .as_object_mut()
        .unwrap()
        .remove("copy_callers");
    let older: AgentMessage<SenderReport> = serde_json::from_value(value).unwrap();
    let AgentMessage::PhaseReport { report: r, .. } = older else {
        panic!("not a phase report");
    };
    assert!(r.counters.is_none());
    assert!(r.copy_callers.is_none());
    assert_eq!(r.side, report.side);
}

#[test]
fn a_mode_the_agents_kernel_cannot_run_is_a_value_not_a_failure() {
    let agent = Agent::start(TIMEOUT);
    let c = Controller::connect(&agent.addr, &token(), TIMEOUT).unwrap();
    // Welcome says which modes the agent's kernel runs, and why not the others.
    assert_eq!(c.host.modes.len(), Mode::ALL.len());
    assert_eq!(c.host.runs(REFUSED), Err(REFUSED_WHY.to_string()));
    assert_eq!(c.host.runs(Mode::ZeroCopy), Ok(()));
    // What verify and run ask before a phase: the agent's kernel, not this one, decides,
    // and its answer becomes the `unsupported` ledger they record and go on from.
    let mut ends = Ends::Remote(c);
    let (kernel, why) = ends.runs(REFUSED).unwrap_err();
    assert_eq!(kernel, "the agent's kernel");
    let ledger = ModeLedger::unsupported(REFUSED, kernel, &why);
    assert_eq!(ledger.verdict, Verdict::Unsupported);
    assert_eq!(
        ledger.findings,
        [format!(
            "not supported by the agent's kernel: {REFUSED_WHY}"
        )]
    );
    assert_eq!(ends.runs(Mode::OneCopy), Ok(()));
    // The session goes on: the next mode runs.
    let Ends::Remote(c) = &mut ends else {
        unreachable!()
    };
    let (phase, _) = c.start_phase(&request(Mode::OneCopy)).unwrap();
    assert_eq!(c.end_phase::<u64>(phase).unwrap(), 42);
    ends.close().unwrap();
    assert_eq!(agent.log(), ["start one-copy", "end"]);
    assert_eq!(agent.ends(1), [SessionEnd::Bye]);
}

#[test]
fn a_phase_of_a_mode_the_agents_kernel_cannot_run_is_refused_before_any_server_starts() {
    let agent = Agent::start(TIMEOUT);
    let mut raw = Raw::connect(&agent.addr);
    let ours = raw.hello();
    let theirs = Challenge::fresh().unwrap();
    raw.send(&ControllerMessage::Auth {
        protocol: PROTOCOL_VERSION,
        challenge: theirs.to_hex(),
        proof: token().prove(Role::Controller, &ours, &theirs),
    });
    match raw.receive() {
        AgentMessage::Welcome { host, .. } => {
            let listed = host.modes.iter().find(|m| m.mode == REFUSED).unwrap();
            assert_eq!(listed.unsupported.as_deref(), Some(REFUSED_WHY));
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    raw.send(&ControllerMessage::StartPhase(request(REFUSED)));
    let message = raw.expect_error(ErrorCode::Unsupported);
    assert_eq!(
        message,
        format!("io-uring-zc is not supported by this agent's kernel: {REFUSED_WHY}")
    );
    // No phase runs: another mode starts at once, and ends as phase 1.
    raw.send(&ControllerMessage::StartPhase(request(Mode::TwoCopy)));
    assert!(matches!(
        raw.receive(),
        AgentMessage::PhaseStarted { phase: 1, .. }
    ));
    raw.send(&ControllerMessage::EndPhase { phase: 1 });
    assert!(matches!(
        raw.receive(),
        AgentMessage::PhaseReport { phase: 1, .. }
    ));
    raw.send(&ControllerMessage::Bye);
    assert!(matches!(raw.receive(), AgentMessage::Bye));
    assert_eq!(agent.log(), ["start two-copy", "end"]);
    assert_eq!(agent.ends(1), [SessionEnd::Bye]);
}

#[test]
fn a_mode_missing_from_the_agents_list_is_one_it_cannot_run() {
    let host = HostInfo {
        hostname: "old".into(),
        kernel: "0.0".into(),
        plan: serde_json::Value::Null,
        modes: vec![ModeSupport {
            mode: Mode::TwoCopy,
            unsupported: None,
        }],
    };
    assert_eq!(host.runs(Mode::TwoCopy), Ok(()));
    assert_eq!(
        host.runs(Mode::Splice),
        Err("old's netcopy has no splice mode".to_string())
    );
}

/// An agent that accepts but never answers: the controller gives up after its reply
/// timeout with an error that says so, not with the socket's "Resource temporarily
/// unavailable".
#[test]
fn a_silent_agent_is_reported_as_not_answering_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Hold the connection open and silent until the controller gives up.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    let err = Controller::connect(&addr.to_string(), &token(), Duration::from_secs(1))
        .err()
        .expect("a silent agent cannot authenticate");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("the agent at {addr} did not answer within 1 s")),
        "{text}"
    );
    holder.join().unwrap();
}
