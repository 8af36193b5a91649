//! netcopy: measures how many times payload bytes are copied on their way through a TCP
//! socket, for three ways of sending one message of 8 separately allocated fields.
//!
//! Data flows one way: run -> samples -> analysis -> outputs.

pub mod counters;
pub mod ebpf;
pub mod sys;
