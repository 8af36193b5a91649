//! The controller's end of the control protocol: connect, prove the token, check the
//! agent's proof, then start and end phases. Every agent reply is checked against what
//! was asked; any text from the agent is shown with its control characters escaped, so a
//! hostile agent cannot rewrite the user's terminal.

use std::{
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

use super::{
    auth::{Challenge, Role, Token},
    frame::{read_frame, write_frame, FrameError},
    messages::{
        AgentMessage, ControllerMessage, ErrorCode, HostInfo, PhaseRequest, PROTOCOL_VERSION,
    },
};
use crate::util::text::printable;

/// A connected, authenticated controller.
pub struct Controller {
    stream: TcpStream,
    pub agent_addr: SocketAddr,
    pub host: HostInfo,
    reply_timeout: Duration,
}

impl Controller {
    /// Connects to the agent at `addr` and authenticates both ways. `timeout` bounds the
    /// connect and each reply (a phase's end waits for the agent's server to drain).
    pub fn connect(addr: &str, token: &Token, timeout: Duration) -> Result<Controller> {
        let agent_addr = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the agent address {addr:?}"))?
            .next()
            .with_context(|| format!("the agent address {addr:?} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&agent_addr, timeout).with_context(|| {
            format!("connecting to the agent at {agent_addr} (is `netcopy agent` running there?)")
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut c = Controller {
            stream,
            agent_addr,
            reply_timeout: timeout,
            host: HostInfo {
                hostname: String::new(),
                kernel: String::new(),
                plan: serde_json::Value::Null,
                modes: Vec::new(),
            },
        };
        let ours = Challenge::fresh()?;
        let theirs = match c.receive::<serde_json::Value>()? {
            AgentMessage::Hello {
                protocol,
                challenge,
                ..
            } => {
                if protocol != PROTOCOL_VERSION {
                    bail!(
                        "the agent at {agent_addr} speaks protocol {protocol}, this netcopy \
                         {PROTOCOL_VERSION}: run the same netcopy version on both hosts"
                    );
                }
                Challenge::from_hex(&challenge).ok_or_else(|| {
                    anyhow!("the agent at {agent_addr} sent a malformed challenge")
                })?
            }
            other => bail!(
                "the agent at {agent_addr} did not greet: {}",
                describe(&other)
            ),
        };
        c.send(&ControllerMessage::Auth {
            protocol: PROTOCOL_VERSION,
            challenge: ours.to_hex(),
            proof: token.prove(Role::Controller, &theirs, &ours),
        })?;
        match c.receive::<serde_json::Value>()? {
            AgentMessage::Welcome { proof, host } => {
                if !token.check(Role::Agent, &theirs, &ours, &proof) {
                    bail!(
                        "the agent at {agent_addr} could not prove it holds the token: not our \
                         agent, or another token"
                    );
                }
                c.host = host;
                Ok(c)
            }
            other => bail!("the agent at {agent_addr} refused: {}", describe(&other)),
        }
    }

    /// How long a reply may take from now on. A phase's end on a slow agent (a guest under
    /// emulation: it drains its server, reads its maps and names the caller chains with
    /// /proc/kallsyms) can take far longer than authenticating did.
    pub fn set_reply_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.reply_timeout = timeout;
        Ok(())
    }

    fn send(&mut self, message: &ControllerMessage) -> Result<()> {
        write_frame(&mut self.stream, message)
            .with_context(|| format!("sending to the agent at {}", self.agent_addr))
    }

    fn receive<R: DeserializeOwned>(&mut self) -> Result<AgentMessage<R>> {
        let timeout = self.reply_timeout;
        read_frame(&mut self.stream).map_err(|e| match e {
            FrameError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                anyhow!(
                    "the agent at {} did not answer within {} s",
                    self.agent_addr,
                    timeout.as_secs()
                )
            }
            e => anyhow!("reading from the agent at {}: {e}", self.agent_addr),
        })
    }

    /// Starts a phase; returns its number and where its server listens.
    pub fn start_phase(&mut self, request: &PhaseRequest) -> Result<(u64, SocketAddr)> {
        self.send(&ControllerMessage::StartPhase(request.clone()))?;
        match self.receive::<serde_json::Value>()? {
            AgentMessage::PhaseStarted { phase, data_addr } => Ok((phase, data_addr)),
            other => bail!(
                "the agent at {} did not start the {} phase: {}",
                self.agent_addr,
                request.mode,
                describe(&other)
            ),
        }
    }

    /// Ends a phase and returns the agent's report of it.
    pub fn end_phase<R: DeserializeOwned>(&mut self, phase: u64) -> Result<R> {
        self.send(&ControllerMessage::EndPhase { phase })?;
        match self.receive::<R>()? {
            AgentMessage::PhaseReport { phase: p, report } if p == phase => Ok(report),
            AgentMessage::PhaseReport { phase: p, .. } => bail!(
                "the agent at {} reported phase {p} when phase {phase} was ended",
                self.agent_addr
            ),
            other => bail!(
                "the agent at {} did not report phase {phase}: {}",
                self.agent_addr,
                describe(&other)
            ),
        }
    }

    /// Ends the session politely (the agent then serves the next controller).
    pub fn bye(mut self) -> Result<()> {
        self.send(&ControllerMessage::Bye)?;
        match self.receive::<serde_json::Value>()? {
            AgentMessage::Bye => Ok(()),
            other => bail!("the agent did not say bye: {}", describe(&other)),
        }
    }
}

/// An unexpected agent message, for an error: errors with their code and escaped text.
fn describe<R>(m: &AgentMessage<R>) -> String {
    match m {
        AgentMessage::Error { code, message } => {
            let hint = match code {
                ErrorCode::Busy => " (another controller is using it; try again when it is done)",
                ErrorCode::Auth => " (the token files on the two hosts differ)",
                ErrorCode::Unsupported => " (its Welcome said so: this netcopy should not ask)",
                _ => "",
            };
            format!("{}{hint}", printable(message))
        }
        AgentMessage::Hello { .. } => "hello".into(),
        AgentMessage::Welcome { .. } => "welcome".into(),
        AgentMessage::PhaseStarted { phase, .. } => format!("phase {phase} started"),
        AgentMessage::PhaseReport { phase, .. } => format!("report of phase {phase}"),
        AgentMessage::Bye => "bye".into(),
    }
}
