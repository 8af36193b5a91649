//! Starting a command so that it is traced from its first instruction, watching a process
//! for its exit, and SIGINT/SIGTERM handling for `netcopy trace`.
//!
//! `std::process::Command::spawn` waits for the child's exec, so a child that waits for
//! us before exec would deadlock it. [`HeldChild`] forks by hand: the child blocks on a
//! pipe until [`HeldChild::release`], by which time its pid is in the filter map and the
//! trace programs are attached; only then does it exec.

use std::{
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

use anyhow::{anyhow, bail, Context, Result};

/// How a child ended, as a shell reports it: its exit code, or 128 + signal.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Finds `program` the way a shell does: as a path when it has a slash, else in $PATH.
pub(super) fn resolve_command(program: &OsStr) -> Result<PathBuf> {
    if program.is_empty() {
        bail!("empty command");
    }
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return if path.exists() {
            check_executable(&path)?;
            Ok(path)
        } else {
            Err(anyhow!("command not found: {}", path.display()))
        };
    }
    let search =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join(program);
        if candidate.is_file() && check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(anyhow!(
        "command not found: {} (not in PATH)",
        Path::new(program).display()
    ))
}

fn check_executable(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("{} contains a NUL byte", path.display()))?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 || path.is_dir() {
        bail!(
            "cannot execute {}: {}",
            path.display(),
            if path.is_dir() {
                "is a directory".to_string()
            } else {
                std::io::Error::last_os_error().to_string()
            }
        );
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `pidfd_open(pid)`: an fd that becomes readable when the process exits.
pub(super) fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// True when process `pid` exists (a zombie counts as gone).
pub(super) fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised comm, which may itself contain ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// A forked command waiting, before exec, to be released.
pub(super) struct HeldChild {
    pid: libc::pid_t,
    path: PathBuf,
    release: Option<OwnedFd>,
    exec_error: Option<OwnedFd>,
    pidfd: Option<OwnedFd>,
    status: Option<i32>,
}

impl HeldChild {
    /// Forks `argv[0]` (resolved in $PATH) with `argv`; the child waits before exec.
    pub(super) fn spawn(argv: &[OsString]) -> Result<HeldChild> {
        let program = argv.first().ok_or_else(|| anyhow!("no command given"))?;
        let path = resolve_command(program)?;
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| anyhow!("{} contains a NUL byte", path.display()))?;
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow!("an argument of the command contains a NUL byte"))?;
        let mut arg_ptrs: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let (release_r, release_w) = pipe()?;
        let (error_r, error_w) = pipe()?;
        // SAFETY: between fork and exec the child calls only async-signal-safe functions
        // (read, write, execv, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            // Child: keep only its ends of the pipes, so that the parent's death reads
            // as end-of-file here.
            let (rfd, efd) = (release_r.as_raw_fd(), error_w.as_raw_fd());
            // SAFETY: closing descriptors this process owns; close is async-signal-safe.
            unsafe {
                libc::close(release_w.as_raw_fd());
                libc::close(error_r.as_raw_fd());
            }
            let mut byte = 0u8;
            loop {
                // SAFETY: reading one byte into a local.
                let n = unsafe { libc::read(rfd, &mut byte as *mut u8 as *mut libc::c_void, 1) };
                if n == 1 {
                    break;
                }
                // SAFETY: errno location of this thread.
                if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                // The parent gave up (closed the pipe without releasing us).
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(126) };
            }
            // SAFETY: pointers prepared before the fork, NUL-terminated array.
            unsafe { libc::execv(c_path.as_ptr(), arg_ptrs.as_ptr()) };
            // SAFETY: as above; report errno to the parent, then leave.
            unsafe {
                let errno = *libc::__errno_location();
                libc::write(efd, &errno as *const i32 as *const libc::c_void, 4);
                libc::_exit(127);
            }
        }
        drop(release_r);
        drop(error_w);
        Ok(HeldChild {
            pid,
            path,
            release: Some(release_w),
            exec_error: Some(error_r),
            pidfd: pidfd_open(pid as u32).ok(),
            status: None,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// An fd readable once the child has exited, when the kernel has pidfds (>= 5.3).
    pub(super) fn pidfd(&self) -> Option<RawFd> {
        self.pidfd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Lets the child exec; an error when exec failed (the child has then exited).
    pub(super) fn release(&mut self) -> Result<()> {
        let release = self
            .release
            .take()
            .ok_or_else(|| anyhow!("the command was already released"))?;
        let go = 1u8;
        // SAFETY: writing one byte from a local to our pipe.
        let n = unsafe {
            libc::write(
                release.as_raw_fd(),
                &go as *const u8 as *const libc::c_void,
                1,
            )
        };
        if n != 1 {
            return Err(std::io::Error::last_os_error()).context("releasing the command");
        }
        drop(release);
        let error = self.exec_error.take().expect("exec_error pipe taken once");
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into the rest of a local buffer.
            let n = unsafe {
                libc::read(
                    error.as_raw_fd(),
                    errno[got..].as_mut_ptr() as *mut libc::c_void,
                    4 - got,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        if got == 0 {
            // The pipe closed on exec: the command runs.
            return Ok(());
        }
        let _ = self.wait();
        let errno = i32::from_ne_bytes(errno);
        bail!(
            "cannot execute {}: {}",
            self.path.display(),
            std::io::Error::from_raw_os_error(errno)
        )
    }

    /// The child's exit code if it has exited (reaps it).
    pub(super) fn try_wait(&mut self) -> Result<Option<i32>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Waits for the child to exit and returns its exit code.
    pub(super) fn wait(&mut self) -> Result<i32> {
        loop {
            if let Some(code) = self.wait_flags(0)? {
                return Ok(code);
            }
        }
    }

    fn wait_flags(&mut self, flags: libc::c_int) -> Result<Option<i32>> {
        if let Some(code) = self.status {
            return Ok(Some(code));
        }
        let mut status = 0;
        // SAFETY: valid status pointer; our own child.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(err).context("waiting for the command");
        }
        if rc == 0 {
            return Ok(None);
        }
        let code = exit_code(status);
        self.status = Some(code);
        Ok(Some(code))
    }

    /// Sends `signal` to the child (nothing once it has been reaped).
    pub(super) fn signal(&self, signal: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: kill with our own child's pid.
            unsafe { libc::kill(self.pid, signal) };
        }
    }
}

/// Dropping a released child neither waits for it nor signals it: it may outlive us.
impl Drop for HeldChild {
    fn drop(&mut self) {
        if self.release.is_some() {
            // Never released: closing the pipe makes it _exit(126); reap it.
            self.release = None;
            let _ = self.wait();
        }
    }
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNAL_FROM_PROCESS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // A terminal's Ctrl-C is sent by the kernel (si_code SI_KERNEL) to the whole
    // foreground process group, the traced command included; kill(1) sends SI_USER (0)
    // or a negative code to us alone.
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    SIGNAL_FROM_PROCESS.store(code <= 0, Ordering::SeqCst);
    SIGNAL.store(signal, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM from now on (without SA_RESTART, so a blocking poll
/// returns); see [`take_signal`].
pub(super) fn catch_stop_signals() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error()).context("installing a signal handler");
            }
        }
    }
    Ok(())
}

/// The stop signal received since the last call, and whether a process (not the
/// terminal) sent it.
pub(super) fn take_signal() -> Option<(libc::c_int, bool)> {
    match SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        signal => Some((signal, SIGNAL_FROM_PROCESS.load(Ordering::SeqCst))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_commands_like_a_shell() {
        let sh = resolve_command(OsStr::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let err = resolve_command(OsStr::new("netcopy-no-such-command")).unwrap_err();
        assert!(err.to_string().contains("command not found"), "{err}");
        let err = resolve_command(OsStr::new("/nonexistent/x")).unwrap_err();
        assert!(err.to_string().contains("command not found"), "{err}");
        let err = resolve_command(OsStr::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn held_child_runs_only_after_release_and_reports_its_exit_code() {
        let marker = std::env::temp_dir().join(format!("netcopy-held-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let script = format!("touch {}; exit 7", marker.display());
        let mut child = HeldChild::spawn(&["sh".into(), "-c".into(), script.into()]).unwrap();
        // Held: it cannot have run yet, however long we wait.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!marker.exists());
        assert_eq!(child.try_wait().unwrap(), None);
        child.release().unwrap();
        assert_eq!(child.wait().unwrap(), 7);
        assert!(marker.exists());
        let _ = std::fs::remove_file(&marker);
    }

    #[test]
    fn exec_failure_is_reported_on_release() {
        let dir = std::env::temp_dir().join(format!("netcopy-noexec-{}", std::process::id()));
        std::fs::write(&dir, b"not a program").unwrap();
        // Executable bit set, but no valid format: exec fails with ENOEXEC.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = HeldChild::spawn(&[dir.clone().into_os_string()]).unwrap();
        let err = child.release().unwrap_err();
        assert!(err.to_string().contains("cannot execute"), "{err}");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn unreleased_child_is_reaped_on_drop() {
        let child = HeldChild::spawn(&["true".into()]).unwrap();
        let pid = child.pid();
        drop(child);
        assert!(!process_exists(pid));
    }

    #[test]
    fn exit_codes_follow_shell_conventions() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 128 + libc::SIGKILL);
    }
}
