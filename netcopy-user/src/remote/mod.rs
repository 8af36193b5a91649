//! Two hosts, one ledger: `netcopy agent` serves the workload on host A and counts its own
//! servers' copies; a controller on host B drives it over a versioned, authenticated
//! control protocol, counts the receive side itself and merges both.

pub mod agent;
pub mod auth;
pub mod controller;
pub mod frame;
pub mod messages;
pub mod phases;
