//! CPU affinity: which CPUs a thread may run on, and pinning a process or the calling
//! thread to a set of them (the bench's probe-overhead runs, the sweep's `--pin`).
//!
//! Unpinned, a loopback stream on 2 CPUs is bimodal: with server and client on the same
//! CPU it runs at one speed, on different CPUs at another (cross-CPU wake-ups cost a VM
//! exit each in a guest), and the scheduler picks either at random from run to run. That
//! spread (20-40% here) would drown a 3% overhead. Pinned to one CPU, the whole pipeline
//! is CPU-bound on that CPU and every nanosecond a probe adds shows in the throughput.

use std::io;

use anyhow::{Context, Result};

/// The CPUs this thread may run on.
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

fn set(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: cpu < CPU_SETSIZE (it came from allowed_cpus or the caller's list).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: valid pointer and size.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins every thread of process `pid` to `cpus` (threads it creates later inherit it).
pub(crate) fn pin_process(pid: u32, cpus: &[usize]) -> Result<()> {
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(tid) = entry?.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        set(tid, cpus).with_context(|| format!("pinning thread {tid} of process {pid}"))?;
    }
    Ok(())
}

/// Pins the calling thread to `cpus` until the guard is dropped (threads it creates in
/// the meantime keep the pinning).
pub(crate) struct PinnedThread {
    previous: Vec<usize>,
}

impl PinnedThread {
    pub(crate) fn pin(cpus: &[usize]) -> Result<PinnedThread> {
        let previous = allowed_cpus().context("reading this thread's CPU affinity")?;
        set(0, cpus).context("pinning this thread")?;
        Ok(PinnedThread { previous })
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        let _ = set(0, &self.previous);
    }
}
