//! netcopy: measures how many times payload bytes are copied on their way through a TCP
//! socket, for three ways of sending one message of 8 separately allocated fields.
//!
//! Data flows one way: run -> samples -> analysis -> outputs.

pub mod analysis;
pub mod bench;
pub mod capabilities;
pub mod client;
pub mod counters;
pub mod ebpf;
pub mod harness;
pub mod ledger;
pub mod message;
pub mod modes;
pub mod plots;
pub mod protocol;
pub mod report;
pub mod results;
pub mod run;
pub mod server;
pub mod size;
pub mod sockets;
pub mod sys;
pub mod trace;
pub mod verify;

/// Writes `text` to standard output. A closed pipe (`netcopy probes | head`) ends the
/// output quietly instead of failing: the reader has what it wanted.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}
