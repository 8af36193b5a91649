//! `netcopy trace`: per-syscall traces of any process -- every send and receive system
//! call, with its flags, sizes, result, duration and the copies the kernel made inside it.
//!
//! Library use (e.g. by the experiment runner):
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use netcopy::kernel::{CopyProbes, LoadOptions};
//! use netcopy::trace::{write_outputs, SyscallTracer};
//! let mut probes = CopyProbes::load_with(LoadOptions {
//!     trace_ring_bytes: Some(8 << 20),
//!     ..LoadOptions::default()
//! })?;
//! probes.watch_process(1234, 0, true)?;
//! let mut tracer = SyscallTracer::start(&mut probes, &[0])?;
//! tracer.poll(std::time::Duration::from_millis(100))?; // call regularly to drain
//! let output = tracer.stop(&mut probes)?;
//! write_outputs(std::path::Path::new("results/trace"), &output)?;
//! # Ok(()) }
//! ```
//!
//! The `netcopy trace` command is a [`session`]; its arguments are `cli::trace`'s.
//!
//! How it works: see `netcopy-ebpf/src/trace.rs`. The syscall programs are on-demand
//! events of the attach plan: loaded with the copy probes but attached only between
//! [`SyscallTracer::start`] and [`SyscallTracer::stop`].

mod event;
#[cfg(test)]
mod fuzz_seeds;
mod launch;
mod log;
mod output;
mod priority;
pub mod session;
mod store;
mod summary;
pub mod tracer;
mod uring;
mod zerocopy;

pub use event::SyscallRecord;
pub use output::{render_log_bytes, summary_json, write_outputs, OutputPaths};
/// Bytes of one record in the per-CPU call logs (for the fuzz target of the decoder).
#[doc(hidden)]
pub const RECORD_LEN: usize = event::RECORD_LEN;
pub use priority::{end_drain_priority, prioritize_drain_thread, DrainPriority, DRAIN_NICE};
pub use summary::{LostCounts, RingHeadroom, SyscallStats, TraceSummary, UringStats};
pub use tracer::{SyscallTracer, TraceOutput};
pub use uring::{opcode_name, UringKind, UringRecord};
pub use zerocopy::{
    Numbering, UringZeroCopy, UringZeroCopyTotals, ZeroCopyAccount, ZeroCopyNotification,
    ZeroCopySend, ZeroCopyTotals,
};
