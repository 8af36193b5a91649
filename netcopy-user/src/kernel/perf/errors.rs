//! What a perf_event_open error means, in words a user can act on.

use std::{fs, io};

use super::CounterKind;
use crate::util::errno::errno_name;

/// kernel.perf_event_paranoid, or None when it cannot be read.
fn perf_event_paranoid() -> Option<i32> {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What an errno from perf_event_open means for `kind`, in words a user can act on.
fn errno_meaning(errno: i32, kind: CounterKind) -> String {
    match errno {
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV if kind.is_hardware() => {
            "the kernel has no PMU (hardware performance counter) driver that provides this \
             event: no PMU in this machine (virtual machine?)"
                .to_string()
        }
        libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV => {
            "this kernel does not provide this software event".to_string()
        }
        libc::EACCES | libc::EPERM => {
            let paranoid = match perf_event_paranoid() {
                Some(level) => format!("kernel.perf_event_paranoid={level}"),
                None => "kernel.perf_event_paranoid (unreadable)".to_string(),
            };
            format!(
                "permission denied: {paranoid} forbids an unprivileged process to count \
                 kernel-mode events (level >= 2; level 3 or more forbids perf_event_open \
                 altogether on Debian/Ubuntu kernels), or the target belongs to another user; \
                 netcopy counts kernel mode because the copies happen there: run as root (or \
                 with CAP_PERFMON) or set `sysctl kernel.perf_event_paranoid=1`"
            )
        }
        libc::ESRCH => "the process or thread does not exist (any more)".to_string(),
        libc::EMFILE | libc::ENFILE => {
            "out of file descriptors (netcopy opens one per event per thread): raise \
             `ulimit -n`"
                .to_string()
        }
        libc::EBUSY => {
            "the PMU is in exclusive use by someone else (another profiler?)".to_string()
        }
        libc::ENOSPC => "no free PMU counter or breakpoint slot for this event".to_string(),
        libc::EINVAL => {
            "the kernel rejected the event attributes: this kernel or PMU does not support \
             this event as configured"
                .to_string()
        }
        libc::ENOSYS => {
            "perf_event_open is not available: kernel built without CONFIG_PERF_EVENTS, or \
             the syscall is blocked by a seccomp filter (container?)"
                .to_string()
        }
        _ => "unexpected error".to_string(),
    }
}

/// "ENOENT (errno 2): meaning" for a failed perf_event_open.
pub(super) fn describe_open_error(err: &io::Error, kind: CounterKind) -> String {
    match err.raw_os_error() {
        Some(errno) => format!(
            "{} (errno {errno}): {}",
            errno_name(errno),
            errno_meaning(errno, kind)
        ),
        // perf-event2 turns E2BIG into an Unsupported error without an errno.
        None if err.kind() == io::ErrorKind::Unsupported => format!(
            "E2BIG (errno {}): this kernel is older than the perf_event_attr layout used \
             ({err})",
            libc::E2BIG
        ),
        None => err.to_string(),
    }
}

/// Like [`describe_open_error`], for reads and ioctls on an open counter.
pub(super) fn describe_io_error(err: &io::Error, kind: CounterKind) -> String {
    match err.raw_os_error() {
        Some(errno) => format!("{} (errno {errno}): {err}", errno_name(errno)),
        None if err.kind() == io::ErrorKind::UnexpectedEof => format!(
            "end of file: the kernel put the {} counter in an error state (it could not be \
             scheduled)",
            kind.perf_name()
        ),
        None => err.to_string(),
    }
}

pub(super) fn is_missing_event_errno(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_the_paranoid_setting() {
        let text = errno_meaning(libc::EACCES, CounterKind::TaskClock);
        assert!(text.contains("kernel.perf_event_paranoid"), "{text}");
        let text = describe_open_error(
            &io::Error::from_raw_os_error(libc::ENOENT),
            CounterKind::Cycles,
        );
        assert!(text.starts_with("ENOENT (errno 2): "), "{text}");
        assert!(text.contains("no PMU"), "{text}");
    }
}
