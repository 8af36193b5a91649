//! The control protocol's messages, version [`PROTOCOL_VERSION`]. Each frame carries one,
//! tagged by `type`. A session:
//!
//! ```text
//! agent -> Hello{challenge}           controller -> Auth{challenge, proof}
//! agent -> Welcome{proof, host}       (or Error{auth} and the connection closes)
//! controller -> StartPhase{mode,..}   agent -> PhaseStarted{phase, data_addr}
//!   ... the controller's client runs against data_addr ...
//! controller -> EndPhase{phase}       agent -> PhaseReport{phase, report}
//! controller -> Bye                   agent -> Bye
//! ```
//!
//! A second controller while one is connected gets Error{busy} instead of Hello.
//!
//! Welcome lists every mode of the agent's mode table with whether its kernel runs it, so
//! the controller reports a mode the agent's kernel cannot run as a value (verdict
//! `unsupported`) without asking for it; a StartPhase of such a mode gets
//! Error{unsupported}.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::workload::modes::{Mode, MODES};

/// Bumped on any change a peer of the previous version would misread. 2: Welcome's
/// `host.modes` and Error{unsupported} (a version 1 controller would fail a run on a mode
/// the agent's kernel cannot run; a version 1 agent sends no mode list).
pub const PROTOCOL_VERSION: u32 = 2;

/// What the agent sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage<R> {
    Hello {
        protocol: u32,
        /// `netcopy 0.1.0`: for error messages only.
        agent: String,
        /// Hex of [`super::auth::CHALLENGE_LEN`] random bytes.
        challenge: String,
    },
    Welcome {
        /// The agent's answer to both challenges: it holds the token too.
        proof: String,
        host: HostInfo,
    },
    PhaseStarted {
        phase: u64,
        /// Where the phase's server listens.
        data_addr: SocketAddr,
    },
    PhaseReport {
        phase: u64,
        report: R,
    },
    Bye,
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// What the controller sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMessage {
    Auth {
        protocol: u32,
        challenge: String,
        proof: String,
    },
    StartPhase(PhaseRequest),
    EndPhase {
        phase: u64,
    },
    Bye,
}

/// One phase: a server of `mode` on the agent, counted by the agent's probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRequest {
    pub mode: Mode,
    /// The largest message the server will send (its `--max-size`).
    pub max_size: u64,
    /// Hold an ETH_P_ALL packet socket open on the device the data leaves by, for the
    /// phase: what a running tcpdump does to zero-copy, shown on purpose.
    #[serde(default)]
    pub packet_tap: bool,
}

/// The agent's host, as the merged results name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// The agent's attach plan, as `netcopy probes --json` prints it.
    pub plan: serde_json::Value,
    /// Every mode of the agent's mode table, and whether its kernel runs it.
    pub modes: Vec<ModeSupport>,
}

/// Whether a host's kernel runs a mode: the mode table's `available` check, made there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSupport {
    pub mode: Mode,
    /// Why that kernel cannot run it (None: it can).
    pub unsupported: Option<String>,
}

impl ModeSupport {
    /// Every mode of this host's mode table, checked on this kernel.
    pub fn of_this_kernel() -> Vec<ModeSupport> {
        MODES
            .iter()
            .map(|spec| ModeSupport {
                mode: spec.mode,
                unsupported: (spec.available)().err().map(|e| e.to_string()),
            })
            .collect()
    }
}

impl HostInfo {
    /// Ok when the host's kernel runs `mode`, else why not (a mode missing from its list
    /// is one its netcopy does not know).
    pub fn runs(&self, mode: Mode) -> Result<(), String> {
        match self.modes.iter().find(|m| m.mode == mode) {
            Some(ModeSupport {
                unsupported: None, ..
            }) => Ok(()),
            Some(ModeSupport {
                unsupported: Some(why),
                ..
            }) => Err(why.clone()),
            None => Err(format!("{}'s netcopy has no {mode} mode", self.hostname)),
        }
    }
}

/// Why the agent refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Another controller is connected.
    Busy,
    /// The controller speaks another protocol version.
    Version,
    /// The proof did not check: wrong token, or a replayed answer.
    Auth,
    /// Not a message of this protocol, or not one expected now.
    BadRequest,
    /// A phase is running; end it first.
    PhaseRunning,
    /// EndPhase for a phase that is not running.
    NoPhase,
    /// StartPhase of a mode this host's kernel cannot run (as Welcome's mode list says).
    Unsupported,
    /// The agent could not do what was asked (e.g. the server failed to start).
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_and_round_trip() {
        let m = ControllerMessage::StartPhase(PhaseRequest {
            mode: Mode::ZeroCopy,
            max_size: 65536,
            packet_tap: false,
        });
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"type":"start_phase","mode":"zero-copy","max_size":65536,"packet_tap":false}"#
        );
        assert_eq!(serde_json::from_str::<ControllerMessage>(&text).unwrap(), m);
        let e: AgentMessage<()> = AgentMessage::Error {
            code: ErrorCode::Busy,
            message: "x".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"type":"error","code":"busy","message":"x"}"#);
        assert!(
            serde_json::from_str::<ControllerMessage>(r#"{"type":"shell","cmd":"rm"}"#).is_err()
        );
    }
}
