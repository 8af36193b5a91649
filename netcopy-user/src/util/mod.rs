//! Small utilities every layer uses: units and durations, errno names, privileges, times,
//! atomic writes, machine facts, statistics.
//!
//! Layer: the bottom one; nothing here imports from another netcopy module.

pub mod affinity;
pub mod errno;
pub mod fs;
pub mod machine;
pub mod stats;
pub mod sys;
pub mod text;
pub mod time;
pub mod units;

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
