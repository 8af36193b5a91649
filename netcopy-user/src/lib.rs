//! netcopy: measures how many times payload bytes are copied on their way through a TCP
//! socket, for several ways of sending one message of 8 separately allocated fields.
//!
//! Layers, bottom to top; each imports only from those below it (ARCHITECTURE.md):
//! `util` -> `workload` -> `kernel` -> `ledger` -> `remote` -> `trace` -> `experiment` ->
//! `bench` -> `cli` (tests/architecture.rs checks it).

pub mod bench;
pub mod cli;
pub mod experiment;
pub mod kernel;
pub mod ledger;
pub mod remote;
pub mod trace;
pub mod util;
pub mod workload;
