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

/// A `netcopy agent` a test started, killed on drop (a failed test leaves none behind).
pub struct Agent {
    pub child: std::process::Child,
    /// The address it said it listens on.
    pub addr: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command`, a `netcopy agent` (or a wrapper that execs one) listening on port 0,
/// and waits for its first line, which names the address it listens on; its later log is
/// drained so that it never blocks on a full pipe.
pub fn start_agent(mut command: std::process::Command) -> Agent {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start netcopy agent");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .expect("read the agent's first line");
    let addr = line
        .trim()
        .strip_prefix("netcopy agent: listening on ")
        .unwrap_or_else(|| panic!("the agent said {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in stderr.lines() {});
    Agent { child, addr }
}

/// A token file shared with an agent (mode 0600, as the agent requires), removed on drop.
pub struct TokenFile(pub std::path::PathBuf);

impl TokenFile {
    /// A token file named after `test` and this process.
    pub fn new(test: &str) -> TokenFile {
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("netcopy-{test}-token-{}", std::process::id()));
        std::fs::write(&path, format!("a token for the {test} test, long enough")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        TokenFile(path)
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
