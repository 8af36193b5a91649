//! The stop flag of a long-running netcopy process: set by SIGINT or SIGTERM, with the
//! signal remembered for the exit code (128 + signal, as a shell reports it: 130, 143).

use std::{
    fmt, io,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc, OnceLock,
    },
};

/// The last stop signal received; 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs SIGINT and SIGTERM handlers that set the returned process-wide flag.
pub fn stop_flag_on_signals() -> io::Result<Arc<AtomicBool>> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_stop_signal(signal: libc::c_int) {
        // Only atomic stores: async-signal-safe.
        RECEIVED.store(signal, Ordering::SeqCst);
        if let Some(flag) = STOP.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    let flag = Arc::clone(STOP.get_or_init(|| Arc::new(AtomicBool::new(false))));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; the handler only performs atomic stores.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(flag)
}

/// The exit code of a process a stop signal ended: 128 + that signal (SIGINT's 130 when
/// none was recorded).
pub fn stop_exit_code() -> ExitCode {
    exit_code_for(RECEIVED.load(Ordering::SeqCst))
}

fn exit_code_for(signal: libc::c_int) -> ExitCode {
    ExitCode::from(128 + code_of(signal))
}

fn code_of(signal: libc::c_int) -> u8 {
    match signal {
        1..=127 => signal as u8,
        _ => libc::SIGINT as u8,
    }
}

/// The error of work a stop signal cut short; `cli` turns it into [`stop_exit_code`].
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_maps_to_143_and_sigint_to_130() {
        assert_eq!(128 + code_of(libc::SIGTERM), 143);
        assert_eq!(128 + code_of(libc::SIGINT), 130);
        assert_eq!(128 + code_of(0), 130);
    }
}
