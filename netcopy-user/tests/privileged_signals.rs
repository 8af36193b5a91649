//! Nothing left behind: SIGINT, SIGTERM and SIGKILL of `netcopy verify`, `netcopy run` and
//! `netcopy trace` leave no `netcopy-server` child, no netcopy process and no eBPF program
//! of theirs loaded, and a stop signal ends them as a shell expects (130 for SIGINT, 143
//! for SIGTERM); a trace stopped by SIGINT or SIGTERM still writes what it recorded.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// `pid`'s children, with their command names, from /proc.
fn children(pid: u32) -> Vec<(u32, String)> {
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
        if ppid == Some(pid) {
            found.push((child, comm.to_string()));
        }
    }
    found
}

/// The pids of `pid`'s children named `netcopy-server`.
fn server_children(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|(_, comm)| comm == "netcopy-server")
        .map(|(child, _)| child)
        .collect()
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

/// sendto calls the trace helper makes once told to go.
const HELPER_SENDS: usize = 7;

/// The traced program of the trace tests: this test binary re-executed with
/// NETCOPY_SIGNAL_HELPER set to a marker path. On a line on stdin it sends
/// [`HELPER_SENDS`] datagrams over loopback, creates the marker, then waits for a signal.
#[test]
#[ignore = "helper process for the trace signal tests"]
fn signal_helper() {
    let Some(marker) = std::env::var_os("NETCOPY_SIGNAL_HELPER") else {
        return;
    };
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..HELPER_SENDS {
        sender
            .send_to(b"datagram", receiver.local_addr().unwrap())
            .unwrap();
    }
    fs::write(&marker, std::process::id().to_string()).unwrap();
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

fn helper_command(program: &mut Command, marker: &Path) {
    program
        .args(["--ignored", "--exact", "signal_helper", "--nocapture"])
        .env("NETCOPY_SIGNAL_HELPER", marker);
}

/// Netcopy processes whose parent is `pid`.
fn netcopy_children(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|(child, comm)| comm.starts_with("netcopy") && alive(*child))
        .map(|(child, _)| child)
        .collect()
}

/// Reads `stderr` until a line containing `what`, and returns that line.
fn line_with(stderr: &mut BufReader<ChildStderr>, what: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "netcopy trace ended before saying `{what}`"
        );
        if line.contains(what) {
            return line;
        }
    }
}

fn wait_for_file(path: &Path) {
    assert!(
        eventually(Duration::from_secs(30), || path.exists()),
        "{} never appeared",
        path.display()
    );
}

/// How a trace test starts its target.
#[derive(Clone, Copy, Debug)]
enum TraceTarget {
    /// `netcopy trace -- HELPER`.
    Command,
    /// `netcopy trace --pid PID` of a helper the test started.
    Pid,
}

/// Traces the helper, lets it make its calls, sends `signal` to netcopy trace and checks
/// what is left: no netcopy process, no eBPF program of the trace, and for a stop signal
/// the outputs with exactly the helper's calls. Returns netcopy's exit code (None: killed).
fn interrupt_trace(target: TraceTarget, signal: libc::c_int, dir: &Path) -> Option<i32> {
    let out = dir.join("out");
    let marker = dir.join("sent");
    let mut helper = None;
    let mut trace = Command::new(env!("CARGO_BIN_EXE_netcopy"));
    trace.args(["trace", "--out"]).arg(&out);
    match target {
        TraceTarget::Command => {
            trace.arg("--").arg(std::env::current_exe().unwrap());
            helper_command(&mut trace, &marker);
        }
        TraceTarget::Pid => {
            let mut command = Command::new(std::env::current_exe().unwrap());
            helper_command(&mut command, &marker);
            let child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("start the helper");
            trace.args(["--pid", &child.id().to_string()]);
            helper = Some(child);
        }
    }
    // The command inherits netcopy's stdin: the test tells it to go through it.
    let mut trace = trace
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netcopy trace");
    let pid = trace.id();
    let mut stderr = BufReader::new(trace.stderr.take().unwrap());
    let tracing = line_with(&mut stderr, "netcopy: tracing");
    let helper_pid: u32 = match &helper {
        Some(child) => child.id(),
        None => tracing
            .split("(pid ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .expect("the command's pid"),
    };
    let programs = program_ids(pid);
    assert!(!programs.is_empty(), "{target:?}: no eBPF program held");
    let mut go = match helper.as_mut() {
        Some(child) => child.stdin.take().unwrap(),
        None => trace.stdin.take().unwrap(),
    };
    go.write_all(b"go\n").unwrap();
    wait_for_file(&marker);
    // SAFETY: kill on our own child.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let mut status = None;
    let exited = eventually(Duration::from_secs(60), || {
        status = trace.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = trace.kill();
        panic!("{target:?}: still running 60 s after signal {signal}");
    }
    // A command that outlives netcopy holds its stderr open: read it after the command
    // is dealt with below.
    let stderr = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    assert!(
        eventually(Duration::from_secs(10), || netcopy_children(pid).is_empty()),
        "{target:?}: signal {signal} left netcopy processes {:?}",
        netcopy_children(pid)
    );
    assert!(
        eventually(Duration::from_secs(10), || programs
            .iter()
            .all(|&p| !program_loaded(p))),
        "{target:?}: signal {signal} left eBPF programs of {programs:?} loaded"
    );
    match target {
        // A stop signal reaches the command, which it ends; SIGKILL reaches netcopy
        // alone and the command runs on, untraced, as after a second stop signal.
        TraceTarget::Command if signal == libc::SIGKILL => {
            assert!(alive(helper_pid), "the command outlives a killed trace");
            // SAFETY: the helper netcopy started for this test.
            unsafe { libc::kill(helper_pid as libc::pid_t, libc::SIGKILL) };
        }
        TraceTarget::Command => assert!(
            eventually(Duration::from_secs(10), || !alive(helper_pid)),
            "the command got the stop signal"
        ),
        // The traced process is left alone whatever ends the trace.
        TraceTarget::Pid => {
            assert!(
                alive(helper_pid),
                "{target:?}: the traced process was touched"
            );
            let mut child = helper.take().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    drop(go);
    let rest = stderr.join().unwrap();
    assert!(!rest.contains("panicked"), "{target:?}: panicked: {rest}");
    if signal != libc::SIGKILL {
        check_trace_outputs(&out, helper_pid, &rest);
    }
    status.unwrap().code()
}

/// The outputs of a trace stopped by a signal: written, and holding exactly the helper's
/// sendto calls.
fn check_trace_outputs(out: &Path, helper_pid: u32, stderr: &str) {
    let jsonl = fs::read_to_string(out.join("syscalls.jsonl"))
        .unwrap_or_else(|e| panic!("no syscalls.jsonl ({e}); stderr: {stderr}"));
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap()["type"], "trace_end");
    assert_eq!(lines.last().unwrap()["lost_events"], 0);
    let sends = lines
        .iter()
        .filter(|l| l["syscall"] == "sendto" && l["pid"] == helper_pid && l["ret"] == 8)
        .count();
    assert_eq!(sends, HELPER_SENDS, "{jsonl}");
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let sendto = summary["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["syscall"] == "sendto")
        .expect("sendto in summary.json");
    assert_eq!(sendto["calls"], HELPER_SENDS);
    let trace: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    assert!(trace["traceEvents"].is_array());
}

fn trace_scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netcopy-signals-{}-trace-{tag}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn trace_exits_130_on_sigint_143_on_sigterm_writes_its_outputs_and_leaves_nothing_on_sigkill() {
    if !common::privileged("signals of trace") {
        return;
    }
    let _serial = common::serial();
    for target in [TraceTarget::Command, TraceTarget::Pid] {
        for (tag, signal, expected) in [
            ("int", libc::SIGINT, Some(130)),
            ("term", libc::SIGTERM, Some(143)),
            ("kill", libc::SIGKILL, None),
        ] {
            let dir = trace_scratch(&format!("{target:?}-{tag}"));
            assert_eq!(
                interrupt_trace(target, signal, &dir),
                expected,
                "trace of a {target:?} on signal {signal}"
            );
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
