//! The workload: the 8-field message, its wire protocol, the send modes, the server that
//! sends and the client that receives and verifies.
//!
//! Layer: above `util` only; it knows nothing of the kernel observation built on it.

pub mod client;
pub mod harness;
pub(crate) mod message;
pub mod modes;
pub mod netns;
pub mod protocol;
pub mod server;
pub(crate) mod sockets;
