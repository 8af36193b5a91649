//! Where the scheduler put a stream's sender and receiver. Unpinned on a 2-CPU guest, a
//! loopback stream is bimodal: both threads on one CPU, or on two (cross-CPU wake-ups cost
//! a VM exit each), picked anew each run. A sampler reads, every few milliseconds, which
//! CPU the busiest thread of each process last ran on (/proc/PID/task/TID/stat), so that
//! each run can be put in its mode instead of into one median of a mixture.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// How often the threads' CPUs are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Where one run's two threads were, most of the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Placement {
    OneCpu,
    TwoCpus,
}

impl Placement {
    pub(super) const ALL: [Placement; 2] = [Placement::OneCpu, Placement::TwoCpus];

    /// From the share of samples with both threads on one CPU.
    pub(super) fn of(same_cpu_share: f64) -> Placement {
        if same_cpu_share >= 0.5 {
            Placement::OneCpu
        } else {
            Placement::TwoCpus
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Placement::OneCpu => "sender and receiver on one CPU",
            Placement::TwoCpus => "sender and receiver on two CPUs",
        }
    }
}

/// Samples the busiest thread of `sender` and of `receiver` until finished.
pub(super) struct PlacementSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u32, u32)>>,
}

impl PlacementSampler {
    pub(super) fn start(sender: u32, receiver: u32) -> PlacementSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-placement".into())
            .spawn(move || sample(sender, receiver, &flag))
            .ok();
        PlacementSampler { stop, thread }
    }

    /// The share of samples in which both busiest threads were on the same CPU; None
    /// when no sample saw both threads run.
    pub(super) fn finish(mut self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let (same, all) = self.thread.take()?.join().ok()?;
        (all > 0).then(|| f64::from(same) / f64::from(all))
    }
}

impl Drop for PlacementSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (samples with both on one CPU, samples with both seen running).
fn sample(sender: u32, receiver: u32, stop: &AtomicBool) -> (u32, u32) {
    // One record per side: each side's threads are compared with their own last sample.
    let (mut last_sender, mut last_receiver) = (HashMap::new(), HashMap::new());
    let (mut same, mut all) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(SAMPLE_EVERY);
        let a = busiest(sender, &mut last_sender);
        let b = busiest(receiver, &mut last_receiver);
        if let (Some(a), Some(b)) = (a, b) {
            all += 1;
            if a == b {
                same += 1;
            }
        }
    }
    (same, all)
}

/// The CPU of the thread of `pid` that ran the most since the last sample (`last`: ns on
/// a CPU by tid, from schedstat, finer than stat's clock ticks); None when none ran.
fn busiest(pid: u32, last: &mut HashMap<u32, u64>) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut best: Option<(u64, u32)> = None;
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let read = |name: &str| std::fs::read_to_string(task.path().join(name)).ok();
        let (Some(ticks), Some(cpu)) = (
            read("schedstat").and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok()),
            read("stat").and_then(|s| parse_processor(&s)),
        ) else {
            continue;
        };
        let ran = ticks.saturating_sub(last.insert(tid, ticks).unwrap_or(ticks));
        if ran > 0 && best.is_none_or(|(r, _)| ran > r) {
            best = Some((ran, cpu));
        }
    }
    best.map(|(_, cpu)| cpu)
}

/// The processor (field 39: the CPU it last ran on) of a /proc stat line; the command
/// name (field 2) may hold spaces and parentheses, so fields count from its closing
/// parenthesis.
fn parse_processor(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3.
    rest.split_whitespace().nth(39 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_processor() {
        let line = "990 (conn-0 (x)) R 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 2 0 100 1000 10 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_processor(line), Some(1));
        assert_eq!(parse_processor("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_processor(&own).is_some(), "{own}");
    }

    #[test]
    fn a_run_is_in_the_mode_it_spent_most_samples_in() {
        assert_eq!(Placement::of(0.9), Placement::OneCpu);
        assert_eq!(Placement::of(0.5), Placement::OneCpu);
        assert_eq!(Placement::of(0.1), Placement::TwoCpus);
    }

    #[test]
    fn this_process_is_sampled() {
        // A busy thread here, and both sides of the sampler on this process.
        let pid = std::process::id();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let busy = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(Ordering::Relaxed) {
                x = x.wrapping_add(1);
                std::hint::black_box(x);
            }
        });
        let sampler = PlacementSampler::start(pid, pid);
        std::thread::sleep(Duration::from_millis(200));
        let share = sampler.finish();
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        // A share when it saw threads run. Not 1.0 for sure: other tests' threads run
        // in this process too, and each side's busiest is read at a different moment.
        let share = share.expect("the busy thread was seen running");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
