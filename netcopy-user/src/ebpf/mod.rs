//! Everything about netcopy's eBPF programs on the user side: the embedded object, the
//! attach plan, run-time discovery of kernel layouts (tracefs, BTF) and the loader.

pub mod btf;
pub mod loader;
pub mod object;
pub mod plan;
pub mod tracefs;

pub use loader::{CopyCounts, CopyProbes};
