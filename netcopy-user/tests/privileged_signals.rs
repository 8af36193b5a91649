//! Nothing left behind: SIGINT, SIGTERM and SIGKILL of `netcopy verify` and `netcopy run`
//! leave no `netcopy-server` child and no eBPF program of theirs loaded, and a stop signal
//! ends them as a shell expects (130 for SIGINT, 143 for SIGTERM).

mod common;

use std::{
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The pids of `pid`'s children named `netcopy-server`.
fn server_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm == "netcopy-server" && ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Running, as opposed to gone or a zombie nobody reaped yet (this container's init may
/// not reap): a zombie listens on nothing and holds no program.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The ids of the eBPF programs `pid` holds open (program and link descriptors).
fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                if let Ok(id) = id.trim().parse() {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether the kernel still has the program of this id (BPF_PROG_GET_FD_BY_ID).
fn program_loaded(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u32; 32];
    attr[0] = id;
    // SAFETY: a zeroed bpf_attr with prog_id set, of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the descriptor the kernel just gave us.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    false
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts netcopy with `args`, waits for its server child and its probes, sends `signal`
/// and checks what it leaves behind; returns its exit code (None: killed by a signal).
fn interrupt(args: &[&str], signal: libc::c_int) -> Option<i32> {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netcopy");
    let pid = child.id();
    let mut servers = Vec::new();
    let started = eventually(Duration::from_secs(60), || {
        servers = server_children(pid);
        !servers.is_empty()
    });
    if !started {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!(
            "{args:?}: no netcopy-server child appeared: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Until the server holds its programs (a 300 ms sleep used to assume it did by then).
    let loaded = eventually(Duration::from_secs(60), || !program_ids(pid).is_empty());
    let programs = program_ids(pid);
    assert!(
        loaded && !programs.is_empty(),
        "{args:?}: no eBPF program held"
    );
    // SAFETY: kill on our own child.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let mut status = None;
    let exited = eventually(Duration::from_secs(60), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("{args:?}: still running 60 s after signal {signal}");
    }
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
            text
        })
        .unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || servers
            .iter()
            .all(|&s| !alive(s))),
        "{args:?}: signal {signal} left netcopy-server {servers:?} running; stderr: {stderr}"
    );
    assert!(
        eventually(Duration::from_secs(10), || programs
            .iter()
            .all(|&p| !program_loaded(p))),
        "{args:?}: signal {signal} left eBPF programs of {programs:?} loaded; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{args:?}: panicked on signal {signal}: {stderr}"
    );
    status.unwrap().code()
}

const VERIFY: &[&str] = &[
    "verify",
    "--mode",
    "two-copy",
    "--messages",
    "1000000",
    "--size",
    "64K",
];

#[test]
fn verify_stops_cleanly_on_sigint_and_sigterm_and_leaves_nothing_on_sigkill() {
    if !common::privileged("signals of verify") {
        return;
    }
    let _serial = common::serial();
    assert_eq!(
        interrupt(VERIFY, libc::SIGINT),
        Some(130),
        "verify on SIGINT"
    );
    assert_eq!(
        interrupt(VERIFY, libc::SIGTERM),
        Some(143),
        "verify on SIGTERM"
    );
    assert_eq!(interrupt(VERIFY, libc::SIGKILL), None, "verify on SIGKILL");
}

/// `netcopy run --quick` into a fresh directory.
fn run_args(tag: &str) -> (std::path::PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("netcopy-signals-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let args = [
        "run",
        "--quick",
        "--no-trace",
        "--modes",
        "two-copy",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([dir.display().to_string()])
    .collect();
    (dir, args)
}

#[test]
fn run_exits_130_on_sigint_143_on_sigterm_and_leaves_nothing_on_sigkill() {
    if !common::privileged("signals of run") {
        return;
    }
    let _serial = common::serial();
    for (tag, signal, expected) in [
        ("int", libc::SIGINT, Some(130)),
        ("term", libc::SIGTERM, Some(143)),
        ("kill", libc::SIGKILL, None),
    ] {
        let (dir, args) = run_args(tag);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(interrupt(&args, signal), expected, "run on signal {signal}");
        let _ = fs::remove_dir_all(&dir);
    }
}
