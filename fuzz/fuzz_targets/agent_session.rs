//! The agent's whole session state machine (remote/agent.rs `session`), driven by a
//! controller's bytes through an in-memory stream, with phases that only keep score.
//!
//! The first byte of an input says how the controller behaves:
//! - bit 0: authenticate properly first (the harness answers the agent's Hello with the
//!   right proof, as a controller holding the token would), then send the rest;
//!   otherwise the rest is all the agent gets, and must never get it past Hello.
//! - bit 1: the rest is messages separated by '\n', each sent as a correctly framed frame;
//!   otherwise the rest goes on the wire as it is.
//! - bit 2: at the end of the bytes the controller goes quiet (reads time out) instead of
//!   closing the connection.
//! - bit 3: the agent is told to stop.
//! - bits 4-6: the largest read the stream returns at once (1 to 7 bytes; 0: unbounded).
//!
//! Properties: no panic; every byte the agent writes is a well-formed frame of an
//! AgentMessage, the first a Hello; no phase starts without the token, none starts while
//! another runs, and none outlives the session; the session ends Bye only after a Bye.
#![no_main]

use std::{
    cell::RefCell,
    collections::VecDeque,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::AtomicBool,
    time::Duration,
};

use libfuzzer_sys::fuzz_target;
use netcopy::remote::{
    agent::{session, AgentOptions, ControlStream, Phases, SessionEnd},
    auth::{Challenge, Role, Token},
    frame::{decode, encode},
    messages::{AgentMessage, ControllerMessage, HostInfo, PhaseRequest, PROTOCOL_VERSION},
};

const SECRET: &[u8] = b"the fuzz target's token, long enough";
const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7001);
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7002);

type FromAgent = AgentMessage<u64>;

/// Phases that start nothing: they count, and check the agent's side of the contract.
#[derive(Default)]
struct ScorePhases {
    running: bool,
    started: u64,
}

impl Phases for ScorePhases {
    type Report = u64;
    fn host(&self) -> HostInfo {
        HostInfo {
            hostname: "fuzz".into(),
            kernel: "0".into(),
            plan: serde_json::json!({"events": []}),
            modes: Vec::new(),
        }
    }
    fn start(
        &mut self,
        request: &PhaseRequest,
        local: IpAddr,
        _peer: IpAddr,
    ) -> anyhow::Result<SocketAddr> {
        assert!(!self.running, "a phase started while another runs");
        if request.max_size == 0 {
            anyhow::bail!("refused: size 0");
        }
        self.running = true;
        self.started += 1;
        Ok(SocketAddr::new(local, 9))
    }
    fn end(&mut self) -> anyhow::Result<u64> {
        assert!(self.running, "end without a running phase");
        self.running = false;
        Ok(self.started)
    }
    fn abort(&mut self) {
        assert!(self.running, "abort without a running phase");
        self.running = false;
    }
}

/// The controller's side of the connection, in memory.
struct ScriptedController {
    token: Token,
    ours: Challenge,
    /// Bytes the agent has yet to read.
    inbox: RefCell<VecDeque<u8>>,
    /// What the controller sends after authenticating (bit 0), held until the Hello.
    after_hello: RefCell<Option<Vec<u8>>>,
    /// Everything the agent wrote.
    written: RefCell<Vec<u8>>,
    quiet_at_end: bool,
    max_read: usize,
}

impl ScriptedController {
    /// The agent's Hello, once it has been written whole.
    fn answer_hello(&self) {
        let Some(rest) = self.after_hello.borrow().clone() else {
            return;
        };
        let written = self.written.borrow();
        let Some(len) = written
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l) as usize)
        else {
            return;
        };
        if written.len() < 4 + len {
            return;
        }
        let Ok(FromAgent::Hello { challenge, .. }) = decode(&written[..4 + len]) else {
            panic!("the agent's first frame is not a Hello");
        };
        let theirs = Challenge::from_hex(&challenge).expect("the agent's challenge is hex");
        let auth = ControllerMessage::Auth {
            protocol: PROTOCOL_VERSION,
            challenge: self.ours.to_hex(),
            proof: self.token.prove(Role::Controller, &theirs, &self.ours),
        };
        let mut inbox = self.inbox.borrow_mut();
        inbox.extend(encode(&auth));
        inbox.extend(rest);
        *self.after_hello.borrow_mut() = None;
    }
}

impl ControlStream for ScriptedController {
    fn prepare(&self) {}
    fn addresses(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((LOCAL, PEER))
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.is_empty() {
            if self.quiet_at_end {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "quiet"));
            }
            return Ok(0);
        }
        let n = buf.len().min(inbox.len()).min(self.max_read);
        for (slot, byte) in buf.iter_mut().zip(inbox.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.written.borrow_mut().extend_from_slice(buf);
        self.answer_hello();
        Ok(buf.len())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let authenticate = how & 1 != 0;
    let script: Vec<u8> = if how & 2 != 0 {
        rest.split(|&b| b == b'\n')
            .flat_map(|message| {
                let mut frame = (message.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(message);
                frame
            })
            .collect()
    } else {
        rest.to_vec()
    };
    let max_read = match (how >> 4) & 7 {
        0 => usize::MAX,
        n => n as usize,
    };
    let token = Token::new(SECRET).unwrap();
    let controller = ScriptedController {
        token: token.clone(),
        ours: Challenge::from_hex(&"ab".repeat(32)).unwrap(),
        inbox: RefCell::new(if authenticate {
            VecDeque::new()
        } else {
            script.clone().into()
        }),
        after_hello: RefCell::new(authenticate.then_some(script)),
        written: RefCell::new(Vec::new()),
        quiet_at_end: how & 4 != 0,
        max_read,
    };
    let options = AgentOptions {
        auth_timeout: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        max_sessions: None,
    };
    let stop = AtomicBool::new(how & 8 != 0);
    let mut phases = ScorePhases::default();
    let controller = &controller;
    let end = session(controller, &token, &mut phases, &options, &stop);

    assert!(!phases.running, "a phase outlived its session ({end:?})");
    let written = controller.written.borrow();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < written.len() {
        let len = u32::from_be_bytes(written[at..at + 4].try_into().unwrap()) as usize;
        let message: FromAgent =
            decode(&written[at..at + 4 + len]).expect("the agent writes well-formed frames");
        frames.push(message);
        at += 4 + len;
    }
    assert!(matches!(frames.first(), Some(FromAgent::Hello { .. })));
    if !authenticate {
        assert!(
            !frames
                .iter()
                .any(|m| matches!(m, FromAgent::Welcome { .. })),
            "welcomed without the token"
        );
        assert_eq!(phases.started, 0, "a phase started without the token");
    }
    if end == SessionEnd::Bye {
        assert!(matches!(frames.last(), Some(FromAgent::Bye)));
    }
});
