//! A peer tool's process: started with its output in files of its own, waited for until
//! it records, stopped with SIGINT as a user would stop it at the terminal.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How long a tool may take to start recording, and to exit after SIGINT.
pub(super) const START_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// bpftrace 0.17 looks at its exit flag only when a signal interrupts its wait for events:
/// a SIGINT that arrives while it prints maps (after a SIGUSR1) is noted and never acted
/// on. Sending it again after a pause reaches it in its wait.
const RESEND: Duration = Duration::from_millis(300);

/// A file in the temporary directory for one run of `tool`, removed when dropped.
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    pub(super) fn new(tool: &str, what: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "netcopy-bench-{tool}-{}-{what}",
            std::process::id()
        )))
    }

    pub(super) fn create(&self) -> Result<File> {
        File::create(&self.0).with_context(|| format!("creating {}", self.0.display()))
    }

    pub(super) fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    pub(super) fn len(&self) -> u64 {
        std::fs::metadata(&self.0).map_or(0, |m| m.len())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running tool: its child process and the file its standard error goes to.
pub(super) struct ToolProcess {
    pub(super) child: Child,
    pub(super) stderr: TempFile,
    name: String,
}

impl ToolProcess {
    /// Starts `exe args` with standard error to a file and standard output to `stdout`.
    pub(super) fn spawn(exe: &Path, args: &[String], stdout: Stdio) -> Result<ToolProcess> {
        let name = exe
            .file_name()
            .map_or("tool".into(), |n| n.to_string_lossy().into_owned());
        let stderr = TempFile::new(&name, "stderr");
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr.create()?)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(ToolProcess {
            child,
            stderr,
            name,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error when the tool has exited (it should run until stopped), with what it said.
    pub(super) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}): {}", self.name, self.last_words());
        }
        Ok(())
    }

    /// The last lines of its standard error, for an error message.
    pub(super) fn last_words(&self) -> String {
        let text = self.stderr.text();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return "(no output)".into();
        }
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// Waits until `ready` holds, polling every 10 ms; an error when the tool exits first
    /// or [`START_LIMIT`] passes.
    pub(super) fn wait_until(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&mut ToolProcess) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            self.check_running()?;
            if ready(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not {what} within {START_LIMIT:?}: {}",
                    self.name,
                    self.last_words()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT, as Ctrl-C at a terminal, again every [`RESEND`] until the tool exits, then
    /// SIGKILL if it has not exited within [`STOP_LIMIT`]. Whether it exited by itself (or
    /// by the default action of a repeated SIGINT), or an error when it had to be killed.
    pub(super) fn interrupt(&mut self) -> Result<ExitStatus> {
        let deadline = Instant::now() + STOP_LIMIT;
        let mut next_signal = Instant::now();
        loop {
            if Instant::now() >= next_signal {
                self.signal(libc::SIGINT);
                next_signal = Instant::now() + RESEND;
            }
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not exit within {STOP_LIMIT:?} of SIGINT; killed it",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Exited normally with 0, or ended by SIGINT (a repeated one, after the tool had
    /// restored the default action on its way out).
    pub(super) fn stopped_cleanly(status: ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt;
        status.success() || status.signal() == Some(libc::SIGINT)
    }

    pub(super) fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// True when the process has a handler for `signal` (SigCgt of /proc/PID/status): a
    /// signal sent earlier would take its default action and end it.
    pub(super) fn catches(&self, signal: libc::c_int) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        status.ok().is_some_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & (1u64 << (signal - 1)) != 0)
        })
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
