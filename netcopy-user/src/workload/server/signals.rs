//! The stop flag of a long-running netcopy process: set by SIGINT or SIGTERM.

use std::{
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
};

/// Installs SIGINT and SIGTERM handlers that set the returned process-wide flag.
pub fn stop_flag_on_signals() -> io::Result<Arc<AtomicBool>> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_stop_signal(_signal: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        if let Some(flag) = STOP.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    let flag = Arc::clone(STOP.get_or_init(|| Arc::new(AtomicBool::new(false))));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; the handler only performs an atomic store.
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
