//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

/// True when privileged tests can run. Not root: prints `skipped: needs root` and the
/// test returns early, except under CI (`CI=true`), where a skip is a failure.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test}: under CI privileged tests must run, but this is not root");
    }
    eprintln!("skipped: needs root: {test}");
    false
}

/// Privileged tests in one binary share the process id the probes filter on, so they
/// must not overlap: each holds this lock while its probes are loaded.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
