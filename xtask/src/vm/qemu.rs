//! Running qemu-system-x86_64 under TCG with a deadline, capturing the serial console.

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::kernel::which;

pub const QEMU: &str = "qemu-system-x86_64";

/// One qemu invocation.
pub struct QemuRun<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Where the second serial port (the guest's ttyS1) is written.
    pub data_path: &'a Path,
    /// Where the console (ttyS0) is saved as it arrives.
    pub console_path: &'a Path,
    pub timeout: Duration,
    /// When the boot marker has not appeared by then, qemu is killed and [`BootStalled`]
    /// returned: the caller may boot again (see `runner::BOOT_ATTEMPTS`).
    pub boot_timeout: Option<Duration>,
    /// Copy the console to stderr as it arrives.
    pub echo: bool,
    /// A line whose first appearance on the console marks the end of boot.
    pub boot_marker: String,
    pub extra_args: &'a [String],
    /// Run qemu inside this network namespace (`ip netns exec`), so that a tap device
    /// made there backs the guest's NIC and nothing touches the host's own namespace.
    pub netns: Option<&'a str>,
}

pub struct QemuResult {
    pub console: Vec<u8>,
    /// From qemu's start until the boot marker appeared on the console.
    pub boot_time: Option<Duration>,
    pub elapsed: Duration,
}

/// The guest never reached the boot marker within `QemuRun::boot_timeout`. Under TCG a
/// boot very rarely stalls for good before the kernel's console starts (CI saw one stop
/// after the real-mode "Probing EDD" line and idle to the overall deadline); another
/// boot of the same image goes through, so this is told apart from a guest that failed.
#[derive(Debug)]
pub struct BootStalled {
    pub after: Duration,
    /// The console's last lines.
    pub tail: String,
}

impl std::fmt::Display for BootStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest had not started /init {} s after qemu started; qemu was killed. Console's last lines:\n{}",
            self.after.as_secs(),
            self.tail
        )
    }
}

impl std::error::Error for BootStalled {}

pub fn find_qemu() -> Result<PathBuf> {
    which(QEMU).with_context(|| {
        format!("{QEMU} not found: install it with `apt-get install -y qemu-system-x86`")
    })
}

/// The qemu argument list (always TCG: KVM hangs on our machines).
pub fn qemu_args(run: &QemuRun) -> Vec<String> {
    let mut args: Vec<String> = [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
        "-nic",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["-m".into(), run.memory_mib.to_string()]);
    args.extend(["-smp".into(), run.cpus.to_string()]);
    args.extend(["-kernel".into(), run.kernel.display().to_string()]);
    args.extend(["-initrd".into(), run.initrd.display().to_string()]);
    args.extend(["-append".into(), run.append.clone()]);
    args.extend(["-serial".into(), "stdio".into()]);
    args.extend([
        "-serial".into(),
        format!("file:{}", run.data_path.display()),
    ]);
    args.extend(run.extra_args.iter().cloned());
    args
}

/// Runs qemu until it exits (the guest powered off or panicked) or the deadline passes;
/// on the deadline qemu is killed and an error returned with the console's tail.
pub fn run(run: &QemuRun) -> Result<QemuResult> {
    let qemu = find_qemu()?;
    if !run.kernel.is_file() {
        bail!("kernel image {} does not exist", run.kernel.display());
    }
    let mut command = match run.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&qemu);
            c
        }
        None => Command::new(&qemu),
    };
    command.args(qemu_args(run));
    supervise(command, run)
}

/// Runs `command` (qemu) under the run's deadlines, saving its console as it arrives.
fn supervise(mut command: Command, run: &QemuRun) -> Result<QemuResult> {
    let mut console_file = File::create(run.console_path)
        .with_context(|| format!("creating {}", run.console_path.display()))?;
    let start = Instant::now();
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let mut stderr = child.stderr.take().context("qemu stderr")?;

    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let boot_time = Arc::new(Mutex::new(None::<Duration>));
    let reader = {
        let console = Arc::clone(&console);
        let boot_time = Arc::clone(&boot_time);
        let marker = run.boot_marker.clone().into_bytes();
        let echo = run.echo;
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let _ = console_file.write_all(chunk);
                let _ = console_file.flush();
                if echo {
                    let _ = std::io::stderr().write_all(chunk);
                }
                let Ok(mut all) = console.lock() else { break };
                let from = all.len().saturating_sub(marker.len());
                all.extend_from_slice(chunk);
                if !marker.is_empty() {
                    if let Ok(mut bt) = boot_time.lock() {
                        if bt.is_none() && all[from..].windows(marker.len()).any(|w| w == marker) {
                            *bt = Some(start.elapsed());
                        }
                    }
                }
            }
        })
    };
    let err_reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });

    let deadline = start + run.timeout;
    let booted = || boot_time.lock().map(|b| b.is_some()).unwrap_or(true);
    let mut stalled = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break Some(status);
        }
        stalled = run
            .boot_timeout
            .is_some_and(|limit| start.elapsed() >= limit && !booted());
        if stalled || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    let console = console.lock().map(|c| c.clone()).unwrap_or_default();
    let boot_time = boot_time.lock().ok().and_then(|b| *b);
    if stalled {
        return Err(BootStalled {
            after: elapsed,
            tail: tail(&console, 10),
        }
        .into());
    }
    let Some(status) = status else {
        bail!(
            "the guest did not finish within {} s; qemu was killed. Console ({}), last lines:\n{}",
            run.timeout.as_secs(),
            run.console_path.display(),
            tail(&console, 25)
        );
    };
    if !qemu_stderr.is_empty() {
        let text = String::from_utf8_lossy(&qemu_stderr);
        if !status.success() {
            bail!(
                "qemu exited with {status}: {}\nconsole tail:\n{}",
                text.trim(),
                tail(&console, 15)
            );
        }
        eprintln!("vm: qemu: {}", text.trim());
    } else if !status.success() {
        bail!(
            "qemu exited with {status}; console tail:\n{}",
            tail(&console, 15)
        );
    }
    Ok(QemuResult {
        console,
        boot_time,
        elapsed,
    })
}

/// The last `n` lines of a console log, without carriage returns and terminal escape
/// sequences (the firmware clears the screen).
pub fn tail(console: &[u8], n: usize) -> String {
    let text = strip_escapes(&String::from_utf8_lossy(console));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_strips_escapes() {
        let log = b"one\r\n\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nBooting\x1b[0m\r\nthree\r\n";
        assert_eq!(tail(log, 2), "Booting\nthree");
        assert_eq!(tail(log, 10), "one\nSeaBIOS\nBooting\nthree");
        assert_eq!(tail(b"", 3), "");
        assert_eq!(tail(b"\x1b[", 3), "");
    }

    fn scripted(script: &str, dir: &Path, timeout: u64, boot_timeout: u64) -> Result<QemuResult> {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let console = dir.join("console.log");
        let run = QemuRun {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            append: String::new(),
            memory_mib: 1,
            cpus: 1,
            data_path: Path::new("/d"),
            console_path: &console,
            timeout: Duration::from_secs(timeout),
            boot_timeout: Some(Duration::from_secs(boot_timeout)),
            echo: false,
            boot_marker: "@@BOOTED".into(),
            extra_args: &[],
            netns: None,
        };
        supervise(command, &run)
    }

    #[test]
    fn a_boot_without_the_marker_is_a_stall_and_one_with_it_is_not() {
        let dir = std::env::temp_dir().join(format!("ncvm-qemu-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stalled = scripted("echo 'Probing EDD'; exec sleep 30", &dir, 60, 1)
            .err()
            .expect("a stall is an error");
        let stall = stalled.downcast_ref::<BootStalled>().expect("BootStalled");
        assert!(stall.tail.contains("Probing EDD"), "{}", stall.tail);
        assert!(stall.after < Duration::from_secs(30), "{:?}", stall.after);

        // Booted at once, then ran past the boot limit and finished: not a stall.
        let done = scripted("echo @@BOOTED; sleep 4; echo bye", &dir, 60, 3).unwrap();
        assert!(done.boot_time.is_some());
        assert!(String::from_utf8_lossy(&done.console).contains("bye"));

        // The overall deadline is not a stall.
        let late = scripted("exec sleep 30", &dir, 1, 60).err().unwrap();
        assert!(late.downcast_ref::<BootStalled>().is_none(), "{late:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn always_tcg() {
        let args = qemu_args(&QemuRun {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            append: "console=ttyS0".into(),
            memory_mib: 2048,
            cpus: 2,
            data_path: Path::new("/d"),
            console_path: Path::new("/c"),
            timeout: Duration::from_secs(1),
            boot_timeout: None,
            echo: false,
            boot_marker: String::new(),
            extra_args: &[],
            netns: None,
        });
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(!joined.contains("kvm"));
        assert!(joined.contains("-serial stdio -serial file:/d"));
        assert!(joined.contains("-no-reboot"));
    }
}
