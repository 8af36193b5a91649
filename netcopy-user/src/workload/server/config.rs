//! What a server is told: its mode, address, size limit and the socket settings of its
//! connections.

use std::time::Duration;

use crate::workload::modes::{Mode, ZeroCopyConfig};

/// Everything the server needs; [`ServerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub mode: Mode,
    /// `ADDR:PORT`; port 0 picks a free port ([`Server::local_addr`](super::Server::local_addr) tells which).
    pub listen: String,
    /// Largest message size a request may ask for.
    pub max_size: u64,
    /// Most connections served at once; one more is answered with status busy and closed.
    pub max_connections: usize,
    /// SO_SNDBUF for accepted sockets (tests use a small one to force partial sends).
    pub send_buffer: Option<usize>,
    /// SO_SNDTIMEO for accepted sockets: a blocking send then returns early with a partial
    /// count, which exercises the senders' partial-write paths.
    pub send_timeout: Option<Duration>,
    pub zero_copy: ZeroCopyConfig,
    /// How long a connection waits for outstanding zero-copy completions at its end.
    pub finish_timeout: Duration,
    /// After a stop, how long connections get to end on their own before their sockets are
    /// shut down under them.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    pub fn new(mode: Mode, listen: &str) -> Self {
        ServerConfig {
            mode,
            listen: listen.to_string(),
            max_size: 64 << 20,
            max_connections: 64,
            send_buffer: None,
            send_timeout: None,
            zero_copy: ZeroCopyConfig::default(),
            finish_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}
