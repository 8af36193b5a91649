//! The experiment: the sweep behind `netcopy run`, its results file, the analysis of those
//! results and the outputs written from them, and `verify`, the exact check of each mode.
//!
//! Data flows one way: sweep -> results -> analysis -> output. `placement` (where a
//! cell's server and client run, `--pin`) and `floor` (the machine's own round-trip
//! floor) are the sweep's; the sweep also writes into results.json every group's figures
//! summarised over its repeats, with the analysis' own definitions, so that a reader of
//! the file finds the intervals the report uses. `ends` (where the sender and the receiver
//! run: loopback, two namespaces, two hosts) is shared by the sweep and `verify`.

pub(crate) mod analysis;
pub mod ends;
pub(crate) mod floor;
pub mod output;
pub mod placement;
pub mod results;
pub(crate) mod sweep;
pub mod verify;
