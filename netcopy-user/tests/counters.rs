//! Perf counters on real processes: what they count, and that a missing PMU is reported
//! as unavailable with its reason rather than as zero.
//!
//! Every assertion is about behaviour (a lower bound, an increase, a consistency between
//! two sources of the same figure), never about speed. The tests in this binary run in
//! parallel and some count the whole test process, so other tests' threads can only add to
//! a count: the bounds hold regardless.

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use netcopy::kernel::perf::{
    capability_hw, capability_sw, cpu_ns_per_byte, process_cpu_time, wait_child_cpu_time,
    CounterKind, CounterValue, CpuTimeSource, ProcessCounters,
};

/// True when perf software events can be opened with kernel mode included. When the
/// trial is refused for lack of privilege (kernel.perf_event_paranoid and not root) the
/// test prints why and is skipped, except under CI (`CI=true`), which runs as root and
/// where a skip would hide a failure; any other failure is a test failure.
fn perf_allowed(test: &str) -> bool {
    let sw = capability_sw();
    if sw.available {
        return true;
    }
    let denied = matches!(sw.errno, Some(libc::EACCES) | Some(libc::EPERM));
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if denied && !root && !under_ci {
        eprintln!(
            "skipped: {test}: not root and perf is refused: {}",
            sw.reason
        );
        return false;
    }
    panic!("{test}: software perf events must work here: {}", sw.reason);
}

fn value_of(value: &CounterValue, what: &str) -> u64 {
    match value {
        CounterValue::Available { value, .. } => *value,
        CounterValue::Unavailable { reason } => panic!("{what} unavailable: {reason}"),
    }
}

/// CPU time the calling thread has used (the kernel's sum_exec_runtime, the same clock
/// task-clock reads).
fn thread_cpu_time() -> Duration {
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is valid and writable for the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burns CPU on the calling thread until it has used `cpu` more than when it started.
fn burn_cpu(cpu: Duration) {
    let start = thread_cpu_time();
    let mut acc = 1u64;
    while thread_cpu_time() - start < cpu {
        for i in 0..10_000u64 {
            acc = std::hint::black_box(acc.rotate_left(5) ^ i);
        }
    }
    std::hint::black_box(acc);
}

#[test]
fn task_clock_of_a_busy_thread_is_positive_and_increases() {
    if !perf_allowed("task_clock_of_a_busy_thread_is_positive_and_increases") {
        return;
    }
    let mut counters = ProcessCounters::open(std::process::id(), true);
    counters.enable();

    // Created after open: counted through inherit.
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let progress = Arc::clone(&progress);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                burn_cpu(Duration::from_micros(200));
                progress.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let wait_for_progress = |steps: u64| {
        let target = progress.load(Ordering::Relaxed) + steps;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "worker made no progress in 30 s");
            thread::sleep(Duration::from_millis(1));
        }
    };

    wait_for_progress(10);
    let first = value_of(&counters.read().get(CounterKind::TaskClock), "task-clock");
    // 10 steps of at least 200 us of CPU each ran before the first read.
    assert!(
        first >= 2_000_000,
        "task-clock {first} ns < 2 ms of work done"
    );
    wait_for_progress(10);
    let second = value_of(&counters.read().get(CounterKind::TaskClock), "task-clock");
    assert!(
        second >= first + 2_000_000,
        "task-clock went from {first} to {second} ns over 2 ms more of work"
    );

    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread");
    // The worker has exited: the kernel folds its count into the parent counter.
    let after_exit = value_of(&counters.read().get(CounterKind::TaskClock), "task-clock");
    assert!(
        after_exit >= second,
        "{after_exit} < {second} after the worker exited"
    );
}

#[test]
fn a_thread_that_existed_before_open_is_counted_without_inherit() {
    if !perf_allowed("a_thread_that_existed_before_open_is_counted_without_inherit") {
        return;
    }
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<Duration>();
    let worker = thread::spawn(move || {
        go_rx.recv().expect("go");
        let start = thread_cpu_time();
        burn_cpu(Duration::from_millis(30));
        done_tx.send(thread_cpu_time() - start).expect("done");
        // Stay alive until the counters were read, so the count is that of a live thread.
        let _ = go_rx.recv();
    });

    // No inherit: only a counter opened on the worker's own thread id can see its work.
    let mut counters = ProcessCounters::open(std::process::id(), false);
    counters.enable();
    go_tx.send(()).expect("go");
    let worker_cpu = done_rx.recv().expect("worker cpu");
    let readings = counters.read();
    drop(go_tx);
    worker.join().expect("worker thread");

    assert!(readings.threads_opened >= 2, "{readings:?}");
    let task_clock = value_of(&readings.get(CounterKind::TaskClock), "task-clock");
    assert!(
        u128::from(task_clock) >= worker_cpu.as_nanos(),
        "task-clock {task_clock} ns < {worker_cpu:?} of CPU the worker used after enable"
    );
}

#[test]
fn context_switches_count_every_sleep() {
    if !perf_allowed("context_switches_count_every_sleep") {
        return;
    }
    const SLEEPS: u64 = 20;
    let mut counters = ProcessCounters::open(std::process::id(), true);
    counters.enable();
    thread::spawn(|| {
        for _ in 0..SLEEPS {
            thread::sleep(Duration::from_millis(1));
        }
    })
    .join()
    .expect("sleeper thread");
    counters.disable();
    let readings = counters.read();
    let switches = value_of(
        &readings.get(CounterKind::ContextSwitches),
        "context-switches",
    );
    // Each sleep blocks the thread: one voluntary switch at least.
    assert!(
        switches >= SLEEPS,
        "{switches} context switches for {SLEEPS} sleeps"
    );
    // Disabled: counts no longer move.
    thread::sleep(Duration::from_millis(2));
    let later = counters.read();
    assert_eq!(
        later.get(CounterKind::ContextSwitches),
        readings.get(CounterKind::ContextSwitches)
    );
}

#[test]
fn reset_starts_the_counts_again() {
    if !perf_allowed("reset_starts_the_counts_again") {
        return;
    }
    let mut counters = ProcessCounters::open(std::process::id(), true);
    counters.enable();
    // On a new thread: joined, it has exited and its count sits in the parent's
    // child total, which PERF_EVENT_IOC_RESET would not clear.
    thread::spawn(|| burn_cpu(Duration::from_millis(50)))
        .join()
        .expect("burner");
    let before = value_of(&counters.read().get(CounterKind::TaskClock), "task-clock");
    assert!(before >= 50_000_000, "task-clock {before} ns < 50 ms burnt");
    counters.reset();
    let after = value_of(&counters.read().get(CounterKind::TaskClock), "task-clock");
    assert!(
        after < before,
        "task-clock after reset {after} ns is not below {before} ns"
    );
}

#[test]
fn hardware_counters_are_unavailable_without_a_pmu_and_count_with_one() {
    if !perf_allowed("hardware_counters_are_unavailable_without_a_pmu_and_count_with_one") {
        return;
    }
    let hw = capability_hw();
    let mut counters = ProcessCounters::open(std::process::id(), true);
    counters.enable();
    burn_cpu(Duration::from_millis(5));
    counters.disable();
    let readings = counters.read();
    eprintln!("capability_hw: {hw:?}");
    eprintln!(
        "readings: {}",
        serde_json::to_string_pretty(&readings).expect("json")
    );

    let task_clock = value_of(&readings.get(CounterKind::TaskClock), "task-clock");
    assert!(task_clock >= 5_000_000, "task-clock {task_clock} ns < 5 ms");

    let cycles = readings.get(CounterKind::Cycles);
    if hw.available {
        assert!(value_of(&cycles, "cycles") > 0, "{cycles:?}");
        assert!(value_of(&readings.get(CounterKind::Instructions), "instructions") > 0);
    } else {
        assert!(!hw.reason.is_empty());
        // Where the trial open itself failed, the errno is named in the reason.
        if let Some(errno) = hw.errno {
            assert!(
                hw.reason.contains(&format!("errno {errno}")),
                "{}",
                hw.reason
            );
        }
        let reason = cycles.reason().expect("cycles must be unavailable");
        assert!(!reason.is_empty());
        let json = serde_json::to_value(&cycles).expect("json");
        assert_eq!(json["available"], false, "{json}");
        assert!(json.get("value").is_none(), "{json}");
        assert!(!json["reason"].as_str().unwrap_or("").is_empty(), "{json}");
        if hw.errno.is_some() {
            // No PMU at all: every hardware event fails to open, never reads 0.
            for kind in CounterKind::ALL.into_iter().filter(|k| k.is_hardware()) {
                assert!(
                    !readings.get(kind).is_available(),
                    "{kind} available without a PMU"
                );
            }
        }
    }
}

/// Spawns `sh` that waits for a line on stdin, then counts to `iterations`.
fn spawn_waiting_busy_shell(iterations: u32) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read go; i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

#[test]
fn a_child_process_is_counted_from_go_to_exit() {
    if !perf_allowed("a_child_process_is_counted_from_go_to_exit") {
        return;
    }
    let mut child = spawn_waiting_busy_shell(200_000);
    let pid = child.id();
    let mut counters = ProcessCounters::open(pid, true);
    assert_eq!(counters.pid(), pid);
    counters.enable();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    drop(stdin);
    let (status, rusage) = wait_child_cpu_time(child).expect("wait4");
    assert!(status.success(), "{status:?}");
    assert_eq!(rusage.source, CpuTimeSource::Wait4Rusage);

    // Read after the child has exited and been reaped: the counts stay.
    let readings = counters.read();
    eprintln!(
        "child readings: {}\nchild rusage: {rusage:?}",
        serde_json::to_string(&readings).expect("json")
    );
    assert_eq!(readings.pid, pid);
    assert_eq!(readings.threads_opened, 1);
    let task_clock = value_of(&readings.get(CounterKind::TaskClock), "task-clock");
    let rusage_ns = rusage.total().as_nanos() as u64;
    assert!(task_clock > 0);
    // Two measures of the same CPU time: task-clock misses only the shell's start-up
    // before `read go`, rusage has microsecond resolution.
    assert!(
        task_clock <= rusage_ns + rusage_ns / 10 + 1_000_000,
        "task-clock {task_clock} ns exceeds rusage {rusage_ns} ns"
    );
    assert!(
        task_clock >= rusage_ns / 2,
        "task-clock {task_clock} ns is under half of rusage {rusage_ns} ns"
    );
    assert!(cpu_ns_per_byte(&readings.get(CounterKind::TaskClock), 1000).unwrap() > 0.0);
}

#[test]
fn proc_stat_cpu_time_of_this_process_grows_with_work() {
    let pid = std::process::id();
    let start = process_cpu_time(pid).expect("/proc/self/stat");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Clock-tick resolution: burn until a tick lands, bounded by the deadline.
    loop {
        burn_cpu(Duration::from_millis(5));
        let now = process_cpu_time(pid).expect("/proc/self/stat");
        if now > start {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/proc/{pid}/stat CPU time stayed at {start:?}"
        );
    }
}
