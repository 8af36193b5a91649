//! What a server is told: its mode, address, size limit and the socket settings of its
//! connections.

use std::time::Duration;

use crate::workload::{
    message::PIECE_BYTES,
    modes::{Mode, ZeroCopyConfig},
    protocol::MESSAGE_HEADER_LEN,
};

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
    /// Accept this many connections, then stop accepting and return once they have
    /// ended, as after a stop (`netcopy trace -- netcopy server` then ends by itself).
    pub exit_after: Option<u64>,
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
            exit_after: None,
            send_buffer: None,
            send_timeout: None,
            zero_copy: ZeroCopyConfig::default(),
            finish_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl ServerConfig {
    /// Most bytes of message buffers one connection holds, whatever size its client asks
    /// for: a message above [`PIECE_BYTES`] (1 MiB) is sent in pieces of that size from
    /// buffers reused for every piece, so the copying modes hold at most two pieces
    /// (two-copy: the fields and their serialization; the others one piece, or one
    /// piece's fresh pages). The modes whose buffers the kernel reads after the send
    /// returned (MSG_ZEROCOPY, SENDMSG_ZC) hold their in-flight slots instead, one piece
    /// each, bounded by `--zc-max-in-flight` and `--zc-pool-bytes`. The whole server's
    /// bound is this times `max_connections`; `netcopy server --help` states both.
    pub fn connection_buffer_bound(&self) -> u64 {
        let piece = (PIECE_BYTES + MESSAGE_HEADER_LEN) as u64;
        if self.mode.spec().claim.zerocopy_attach {
            self.zero_copy.slots_for(PIECE_BYTES as u64) as u64 * piece
        } else {
            2 * piece
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::modes::MODES;

    #[test]
    fn the_stated_bound_is_two_pieces_or_the_zero_copy_pool() {
        // `netcopy server --help` and README say 1 MiB pieces and 2 MiB per connection.
        assert_eq!(PIECE_BYTES, 1 << 20);
        for spec in MODES {
            let mut config = ServerConfig::new(spec.mode, "127.0.0.1:0");
            let bound = config.connection_buffer_bound();
            if spec.claim.zerocopy_attach {
                // The default pool: 64 MiB of 1 MiB pieces (with their headers).
                assert_eq!(bound, 63 * ((1 << 20) + 16), "{}", spec.name);
                config.zero_copy.max_pool_bytes = 4 << 20;
                assert_eq!(config.connection_buffer_bound(), 3 * ((1 << 20) + 16));
            } else {
                assert_eq!(bound, 2 * ((1 << 20) + 16), "{}", spec.name);
            }
        }
    }
}
