//! The experiment: the sweep behind `netcopy run`, its results file, the analysis of those
//! results and the outputs written from them, and `verify`, the exact check of each mode.
//!
//! Data flows one way: sweep -> results -> analysis -> output.

pub(crate) mod analysis;
pub mod output;
pub mod results;
pub(crate) mod sweep;
pub mod verify;
