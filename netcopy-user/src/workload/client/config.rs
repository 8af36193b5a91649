//! What a client run is asked to do: where, how big, how many threads, until when, which
//! traffic pattern and how much verification.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64},
        Arc,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Most client threads.
pub const MAX_THREADS: usize = 256;

/// Message traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// One request per thread, messages back to back.
    Stream,
    /// Request/response: one request of count 1 per transaction.
    Rr,
}

/// How much of every message the client checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// CRC32C of the payload, sequence number, length and field stamps.
    Full,
    /// Sequence number, length and field stamps, no payload checksum: the receive loop
    /// does what iperf3's does (read and discard) plus a few compares, so throughput
    /// comparisons with it are like for like.
    Framing,
}

/// How the client takes the bytes from its sockets.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
pub enum ReceiveMechanism {
    /// recv(): the kernel copies every byte into the client's buffer.
    #[default]
    #[serde(rename = "copy")]
    #[value(name = "copy")]
    Copy,
    /// getsockopt(TCP_ZEROCOPY_RECEIVE) on a mapping of the socket: the kernel maps the
    /// pages it can and copies only the rest.
    #[serde(rename = "zerocopy")]
    #[value(name = "zerocopy")]
    ZeroCopy,
}

impl ReceiveMechanism {
    pub const ALL: [ReceiveMechanism; 2] = [ReceiveMechanism::Copy, ReceiveMechanism::ZeroCopy];

    pub fn name(self) -> &'static str {
        match self {
            ReceiveMechanism::Copy => "copy",
            ReceiveMechanism::ZeroCopy => "zerocopy",
        }
    }

    /// Whether this kernel can receive this way (why not, if not).
    pub fn available(self) -> std::io::Result<()> {
        match self {
            ReceiveMechanism::Copy => Ok(()),
            ReceiveMechanism::ZeroCopy => super::zerocopy::zerocopy_receive_available(),
        }
    }
}

impl std::fmt::Display for ReceiveMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLimit {
    /// This many messages in total across all threads.
    Messages(u64),
    /// Run for this long.
    Duration(Duration),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ADDR:PORT` of the server.
    pub connect: String,
    /// Payload bytes per message.
    pub size: u64,
    pub threads: usize,
    pub limit: RunLimit,
    pub pattern: Pattern,
    /// A server that sends nothing for this long is an error.
    pub io_timeout: Duration,
    pub verification: Verification,
    /// How the bytes are taken from the sockets.
    pub recv: ReceiveMechanism,
    /// Payload bytes of verified messages so far, all threads, for an observer that
    /// samples the run while it goes (the benchmark's windows); None: not kept.
    pub progress: Option<Arc<AtomicU64>>,
    /// Set by an observer to end the run early, as its deadline would (a duration run
    /// then ends within one read slice); None: only the limit ends it.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ClientConfig {
    pub fn new(connect: &str, size: u64, threads: usize, limit: RunLimit) -> Self {
        ClientConfig {
            connect: connect.to_string(),
            size,
            threads,
            limit,
            pattern: Pattern::Stream,
            io_timeout: Duration::from_secs(30),
            verification: Verification::Full,
            recv: ReceiveMechanism::Copy,
            progress: None,
            stop: None,
        }
    }
}
