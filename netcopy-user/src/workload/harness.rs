//! One measurement: a `netcopy server` child process and the client in this process, so
//! the copy probes can tell the sender's copies (server slot) from the receiver's (client
//! slot) by process, and perf counters can be opened on the server alone.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};

use crate::{workload::modes::Mode, workload::netns::Netns, workload::server::ServerTotals};

/// A running `netcopy server --json` child.
pub struct ServerProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub addr: String,
    pub mode: Mode,
}

impl ServerProcess {
    /// Starts `netcopy server --mode MODE --listen 127.0.0.1:0 --json EXTRA...` and waits
    /// for its `listening` line.
    pub fn spawn(mode: Mode, extra: &[String]) -> Result<Self> {
        // /proc/self/exe, not current_exe(): it still runs this very binary when the file
        // was replaced on disk during a long run (a rebuild), where the path would not.
        Self::spawn_with(std::path::Path::new("/proc/self/exe"), mode, extra)
    }

    /// As [`ServerProcess::spawn`], with an explicit netcopy executable (tests).
    pub fn spawn_with(exe: &std::path::Path, mode: Mode, extra: &[String]) -> Result<Self> {
        Self::launch(exe, mode, "127.0.0.1:0", extra, None)
    }

    /// Starts `EXE server --mode MODE --listen LISTEN --json EXTRA...`, inside `netns`
    /// when given, and waits for its `listening` line. The child dies with us: a server
    /// left listening after its parent was killed is what users found as orphans.
    pub fn launch(
        exe: &std::path::Path,
        mode: Mode,
        listen: &str,
        extra: &[String],
        netns: Option<&Netns>,
    ) -> Result<Self> {
        let mut command = Command::new(exe);
        command
            .args([
                "server",
                "--mode",
                mode.name(),
                "--listen",
                listen,
                "--json",
            ])
            // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop
            // the server when we are ready, with its totals.
            .process_group(0)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut command);
        if let Some(ns) = netns {
            ns.run_inside(&mut command)?;
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} server", exe.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("server stdout")?);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let listening: serde_json::Value = match read {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .with_context(|| format!("server's first line is not JSON: {line:?}"))?,
            _ => {
                let status = child.wait().ok();
                bail!("the {mode} server exited before listening ({status:?})");
            }
        };
        let addr = listening["addr"]
            .as_str()
            .ok_or_else(|| anyhow!("server's listening line has no addr: {line:?}"))?
            .to_string();
        Ok(Self {
            child,
            stdout,
            addr,
            mode,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the `totals` line; the server drains zero-copy completions first.
    pub fn stop(mut self) -> Result<ServerTotals> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("reading the server's totals")?;
        let status = wait_bounded(&mut self.child, Duration::from_secs(30))?;
        if !status.success() {
            bail!("the {} server exited with {status}", self.mode);
        }
        let mut value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("server's totals line is not JSON: {line:?}"))?;
        if let Some(object) = value.as_object_mut() {
            object.remove("event");
        }
        serde_json::from_value(value).context("decoding the server's totals")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A server left behind by an error path must not outlive us.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGKILL for the child when its parent dies, however it dies (SIGKILL included). The
/// parent may already be gone by the time the child runs: then it exits at once. The
/// kernel ties this to the thread that forks, so a [`ServerProcess`] must not outlive the
/// thread that started it (none does: each is stopped or dropped where it was made).
fn die_with_parent(command: &mut Command) {
    // SAFETY: getpid before the fork; after it the closure calls only prctl, getppid and
    // _exit, which are async-signal-safe.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("the server did not exit within {limit:?} of SIGTERM; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
