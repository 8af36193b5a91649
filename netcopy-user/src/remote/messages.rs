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

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::workload::modes::Mode;

/// Bumped on any change a peer of the previous version would misread.
pub const PROTOCOL_VERSION: u32 = 1;

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
