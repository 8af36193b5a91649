//! How the thread that drains the call logs is scheduled: it must get to the logs
//! before they fill, while the traced workload may keep every CPU busy.
//!
//! Measured on the 2-CPU 6.18 guests (`netcopy bench --only trace`, with a bpftrace
//! script on sched_switch watching the draining thread):
//! - A normal thread, even at nice -20, woken while every CPU is busy waits for the
//!   running thread's slice to end: a 1 MiB ring (1.9 ms of calls at 2M calls/s per CPU)
//!   lost 1-3% of the calls.
//! - SCHED_FIFO gets it onto a CPU within 256 us of its wake-up, but not always: with
//!   unpaced generator threads on both CPUs, the runnable drain was switched out for
//!   49-50 ms at a time, the CPU running its idle task meanwhile. 50 ms is the runtime of
//!   the kernel's fair server (a deadline-class entity that since Linux 6.12 guarantees
//!   normal threads 50 ms per second against real-time ones); 8 MiB per-CPU logs last
//!   30 ms at that rate, and 1-3% of the calls were lost in a third of the runs.
//! - SCHED_DEADLINE is above both: the fair server is one more deadline entity, and ours
//!   has the earlier deadline (5 ms against its period of 1 s), so it preempts it.
//!
//! So: SCHED_DEADLINE first (2 ms of CPU every 5 ms, far more than the 0.04 us per call
//! it needs at 4M calls/s; a drain that used up its budget waits at most the rest of the
//! 5 ms period), SCHED_FIFO where the kernel refuses that (no root, an affinity mask
//! narrower than the CPUs, admission control), nice -20 last. All need root or
//! CAP_SYS_NICE.

/// Nice value of the draining thread where neither policy is allowed.
pub const DRAIN_NICE: i32 = -20;

/// Real-time priority of the drain thread under SCHED_FIFO (1 is the lowest).
const DRAIN_RT_PRIORITY: libc::c_int = 1;

/// SCHED_DEADLINE budget: `RUNTIME_NS` of CPU within every `PERIOD_NS`.
const PERIOD_NS: u64 = 5_000_000;
const RUNTIME_NS: u64 = 2_000_000;

/// How the thread that drains the call logs is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainPriority {
    /// SCHED_DEADLINE with a budget of [`RUNTIME_NS`] per [`PERIOD_NS`].
    Deadline,
    /// SCHED_DEADLINE was refused; SCHED_FIFO at [`DRAIN_RT_PRIORITY`].
    RealTime,
    /// Neither was allowed; nice [`DRAIN_NICE`].
    Nice,
}

impl DrainPriority {
    pub fn describe(self) -> String {
        match self {
            DrainPriority::Deadline => format!(
                "SCHED_DEADLINE, {} ms of CPU every {} ms",
                RUNTIME_NS / 1_000_000,
                PERIOD_NS / 1_000_000
            ),
            DrainPriority::RealTime => {
                format!("SCHED_FIFO priority {DRAIN_RT_PRIORITY} (SCHED_DEADLINE was refused)")
            }
            DrainPriority::Nice => {
                format!("nice {DRAIN_NICE} (SCHED_DEADLINE and SCHED_FIFO were refused)")
            }
        }
    }
}

/// `struct sched_attr` of sched_setattr(2), its first version (48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

const SCHED_DEADLINE: u32 = 6;
/// Threads the drain starts (the trace's memory helper) start as normal threads: a
/// deadline thread could not create any otherwise (clone fails with EAGAIN).
const SCHED_FLAG_RESET_ON_FORK: u64 = 1;

fn set_deadline() -> std::io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: SCHED_DEADLINE,
        sched_flags: SCHED_FLAG_RESET_ON_FORK,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: RUNTIME_NS,
        sched_deadline: PERIOD_NS,
        sched_period: PERIOD_NS,
    };
    // SAFETY: pid 0 is the calling thread; attr is a valid, fully initialised struct
    // whose size field names its length.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the calling thread, the one that drains the call logs, run as soon as it is
/// woken (see the module's comment for the order and why).
pub fn prioritize_drain_thread() -> std::io::Result<DrainPriority> {
    if set_deadline().is_ok() {
        return Ok(DrainPriority::Deadline);
    }
    let param = libc::sched_param {
        sched_priority: DRAIN_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param. The reset flag
    // makes threads it starts normal ones.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) }
        == 0
    {
        return Ok(DrainPriority::RealTime);
    }
    // SAFETY: no arguments; returns the caller's thread id.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: plain syscall on the calling thread (PRIO_PROCESS with a tid is per-thread
    // on Linux).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, DRAIN_NICE) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(DrainPriority::Nice)
}

/// Puts the calling thread back among normal threads (its nice value stays) once it has
/// drained the logs for the last time: decoding and writing a long trace at real-time
/// priority would keep a CPU from everything else for seconds (and a deadline thread
/// would be throttled to its budget).
pub fn end_drain_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attr_struct_has_the_kernels_first_layout() {
        // SCHED_ATTR_SIZE_VER0 in include/uapi/linux/sched/types.h.
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
    }

    #[test]
    fn the_budget_fits_its_period() {
        const { assert!(RUNTIME_NS < PERIOD_NS) };
        assert!(DrainPriority::Deadline
            .describe()
            .contains("2 ms of CPU every 5 ms"));
    }
}
