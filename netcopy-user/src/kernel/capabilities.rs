//! `netcopy probes`: what this kernel offers the tool, each item with the evidence.
//!
//! Every check is a real trial where one is possible (load and attach a program, open a
//! perf event): a kernel config line or a symbol in kallsyms says what should work, only
//! the kernel's answer to a trial says what does.

use std::path::Path;

use aya::{programs::Program, Btf, EbpfLoader};
use serde::Serialize;

use super::{
    attach::{self, trial},
    btf::VMLINUX_BTF,
    object, perf,
    plan::AttachPoint,
    CopyProbes,
};
use crate::util::sys;

/// Available or not, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Capability {
    pub available: bool,
    pub reason: String,
}

impl Capability {
    fn yes(reason: impl Into<String>) -> Self {
        Self {
            available: true,
            reason: reason.into(),
        }
    }
    fn no(reason: impl Into<String>) -> Self {
        Self {
            available: false,
            reason: reason.into(),
        }
    }
}

impl From<perf::Capability> for Capability {
    fn from(c: perf::Capability) -> Self {
        Self {
            available: c.available,
            reason: c.reason,
        }
    }
}

/// Tracepoints netcopy uses (category, name).
const TRACEPOINTS: &[(&str, &str)] = &[
    ("skb", "skb_copy_datagram_iovec"),
    ("tcp", "tcp_sendmsg_locked"),
    ("sock", "sock_send_length"),
    ("sock", "sock_recv_length"),
    ("sched", "sched_process_fork"),
    ("syscalls", "sys_enter_sendmsg"),
    ("syscalls", "sys_exit_sendmsg"),
    ("syscalls", "sys_enter_sendto"),
    ("syscalls", "sys_enter_recvmsg"),
    ("syscalls", "sys_enter_recvfrom"),
];

/// The whole report.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub kernel: String,
    pub btf: Capability,
    pub kprobe: Capability,
    pub fentry: Capability,
    pub tracepoint: Capability,
    pub tp_btf: Capability,
    pub ringbuf: Capability,
    pub perf_hw: Capability,
    pub perf_sw: Capability,
    /// Each tracepoint netcopy may use, by `category/name`.
    pub tracepoints: std::collections::BTreeMap<String, Capability>,
    /// The attach plan the copy probes would use on this kernel (root only).
    pub plan: Option<crate::kernel::plan::AttachPlan>,
    pub plan_error: Option<String>,
}

/// Runs every check. Never fails: a check that cannot run is reported unavailable.
pub fn probe_kernel() -> ProbeReport {
    let root = sys::is_root();
    let tracefs = super::host::tracefs();
    let tracepoints = TRACEPOINTS
        .iter()
        .map(|(cat, name)| {
            let cap = match &tracefs {
                Ok(dir) => {
                    let path = dir.join("events").join(cat).join(name);
                    if path.is_dir() {
                        Capability::yes(format!("{} exists", path.display()))
                    } else {
                        Capability::no(format!("{} does not exist in this kernel", path.display()))
                    }
                }
                Err(e) => Capability::no(format!("{e:#}")),
            };
            (format!("{cat}/{name}"), cap)
        })
        .collect();
    let btf = check_btf();
    let trial = if root {
        TrialResults::run(btf.available)
    } else {
        TrialResults::not_root()
    };
    let tracepoint = match &tracefs {
        Err(e) => Capability::no(format!("{e:#}")),
        Ok(_) if !root => Capability::no("not checked: attaching needs root"),
        Ok(_) => trial.tracepoint.clone(),
    };
    let (plan, plan_error) = if root {
        match CopyProbes::load() {
            Ok(probes) => (Some(probes.plan().clone()), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, Some("not loaded: needs root".to_string()))
    };
    ProbeReport {
        kernel: sys::kernel_release(),
        btf,
        kprobe: trial.kprobe,
        fentry: trial.fentry,
        tracepoint,
        tp_btf: trial.tp_btf,
        ringbuf: check_ringbuf(root),
        perf_hw: perf::capability_hw().into(),
        perf_sw: perf::capability_sw().into(),
        tracepoints,
        plan,
        plan_error,
    }
}

fn check_btf() -> Capability {
    if !Path::new(VMLINUX_BTF).exists() {
        return Capability::no(format!(
            "{VMLINUX_BTF} does not exist (kernel built without CONFIG_DEBUG_INFO_BTF)"
        ));
    }
    match Btf::from_sys_fs() {
        Ok(_) => Capability::yes(format!("{VMLINUX_BTF} present and parsed")),
        Err(e) => Capability::no(format!("{VMLINUX_BTF} present but unreadable: {e}")),
    }
}

fn check_ringbuf(root: bool) -> Capability {
    if !root {
        return Capability::no("not checked: creating a map needs root");
    }
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Capability::yes("BPF_MAP_TYPE_RINGBUF created"),
        Ok(false) => Capability::no("the kernel refused BPF_MAP_TYPE_RINGBUF (kernel < 5.8?)"),
        Err(e) => Capability::no(format!("probing BPF_MAP_TYPE_RINGBUF failed: {e}")),
    }
}

/// Results of loading and attaching the trial programs.
struct TrialResults {
    kprobe: Capability,
    fentry: Capability,
    tracepoint: Capability,
    tp_btf: Capability,
}

/// The kernel function the kprobe and fentry trials attach to.
const TRIAL_FUNCTION: &str = "tcp_sendmsg";

impl TrialResults {
    fn not_root() -> Self {
        let no = || Capability::no("not checked: loading eBPF programs needs root");
        Self {
            kprobe: no(),
            fentry: no(),
            tracepoint: no(),
            tp_btf: no(),
        }
    }

    fn run(btf_available: bool) -> Self {
        let bytes = match object::bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                let msg = format!("not checked: {e:#}");
                return Self {
                    kprobe: Capability::no(&msg),
                    fentry: Capability::no(&msg),
                    tracepoint: Capability::no(&msg),
                    tp_btf: Capability::no(&msg),
                };
            }
        };
        let kernel_btf = if btf_available {
            Btf::from_sys_fs().ok()
        } else {
            None
        };
        let mut ebpf = match EbpfLoader::new().load(bytes) {
            Ok(ebpf) => ebpf,
            Err(e) => {
                let msg = format!("the eBPF object did not load: {e}");
                return Self {
                    kprobe: Capability::no(&msg),
                    fentry: Capability::no(&msg),
                    tracepoint: Capability::no(&msg),
                    tp_btf: Capability::no(&msg),
                };
            }
        };
        let kprobe = trial_kprobe(ebpf.program_mut("netcopy_trial_kprobe"));
        let fentry = match &kernel_btf {
            None => Capability::no("fentry needs kernel BTF, which is unavailable"),
            Some(btf) => trial_fentry(ebpf.program_mut("netcopy_trial_fentry"), btf),
        };
        let tp_btf = match &kernel_btf {
            None => Capability::no("tp_btf needs kernel BTF, which is unavailable"),
            Some(btf) => trial_tp_btf(ebpf.program_mut("netcopy_trial_tp_btf"), btf),
        };
        let tracepoint = trial_tracepoint(ebpf.program_mut("netcopy_recv_copy"));
        Self {
            kprobe,
            fentry,
            tracepoint,
            tp_btf,
        }
    }
}

fn trial_kprobe(program: Option<&mut Program>) -> Capability {
    let Some(program @ Program::KProbe(_)) = program else {
        return Capability::no("trial kprobe program missing from the eBPF object");
    };
    let config = match super::host::kernel_config("CONFIG_KPROBES") {
        Ok(Some(v)) => format!("CONFIG_KPROBES={v}"),
        Ok(None) => "CONFIG_KPROBES is not set".to_string(),
        Err(e) => format!("kernel config unreadable ({e:#})"),
    };
    let in_kallsyms = super::host::kallsyms_present(&[TRIAL_FUNCTION])
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    let point = AttachPoint::Kprobe {
        function: TRIAL_FUNCTION,
    };
    match trial(program, point, None) {
        Ok(()) => Capability::yes(format!("attached a kprobe to {TRIAL_FUNCTION}; {config}")),
        Err(e) => Capability::no(format!(
            "attaching a kprobe to {TRIAL_FUNCTION} failed: {}; {config}; {TRIAL_FUNCTION} {} in /proc/kallsyms",
            attach::describe(&e),
            if in_kallsyms { "is" } else { "is not" }
        )),
    }
}

fn trial_fentry(program: Option<&mut Program>, btf: &Btf) -> Capability {
    let Some(program @ Program::FEntry(_)) = program else {
        return Capability::no("trial fentry program missing from the eBPF object");
    };
    let point = AttachPoint::Fentry {
        function: TRIAL_FUNCTION,
    };
    match trial(program, point, Some(btf)) {
        Ok(()) => Capability::yes(format!(
            "loaded and attached an fentry program on {TRIAL_FUNCTION}"
        )),
        Err(e) => Capability::no(format!(
            "fentry on {TRIAL_FUNCTION} failed: {}",
            attach::describe(&e)
        )),
    }
}

fn trial_tp_btf(program: Option<&mut Program>, btf: &Btf) -> Capability {
    let Some(program @ Program::BtfTracePoint(_)) = program else {
        return Capability::no("trial tp_btf program missing from the eBPF object");
    };
    let point = AttachPoint::BtfTracepoint {
        name: "sched_process_fork",
    };
    match trial(program, point, Some(btf)) {
        Ok(()) => Capability::yes("loaded and attached tp_btf/sched_process_fork"),
        Err(e) => Capability::no(format!(
            "tp_btf/sched_process_fork failed: {}",
            attach::describe(&e)
        )),
    }
}

fn trial_tracepoint(program: Option<&mut Program>) -> Capability {
    let Some(program @ Program::TracePoint(_)) = program else {
        return Capability::no("tracepoint program missing from the eBPF object");
    };
    let point = AttachPoint::Tracepoint {
        category: "skb",
        name: "skb_copy_datagram_iovec",
    };
    match trial(program, point, None) {
        Ok(()) => Capability::yes("loaded and attached a program to skb/skb_copy_datagram_iovec"),
        Err(e) => Capability::no(format!(
            "attaching to skb/skb_copy_datagram_iovec failed: {}",
            attach::describe(&e)
        )),
    }
}

fn line(name: &str, cap: &Capability) -> String {
    format!(
        "{:<12} {:<12} {}\n",
        name,
        if cap.available {
            "available"
        } else {
            "unavailable"
        },
        cap.reason
    )
}

/// The table `netcopy probes` prints.
pub fn render(report: &ProbeReport) -> String {
    let mut out = format!("kernel       {}\n", report.kernel);
    out.push_str(&line("btf", &report.btf));
    out.push_str(&line("kprobe", &report.kprobe));
    out.push_str(&line("fentry", &report.fentry));
    out.push_str(&line("tracepoint", &report.tracepoint));
    out.push_str(&line("tp_btf", &report.tp_btf));
    out.push_str(&line("ringbuf", &report.ringbuf));
    out.push_str(&line("perf_hw", &report.perf_hw));
    out.push_str(&line("perf_sw", &report.perf_sw));
    out.push_str("\ntracepoints:\n");
    for (name, cap) in &report.tracepoints {
        out.push_str(&format!(
            "  {:<36} {}\n",
            name,
            if cap.available { "present" } else { "absent" }
        ));
    }
    out.push_str("\nattach plan:\n");
    match (&report.plan, &report.plan_error) {
        (Some(plan), _) => {
            for l in plan.describe().lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        (None, Some(e)) => out.push_str(&format!("  unavailable: {e}\n")),
        (None, None) => out.push_str("  unavailable\n"),
    }
    out
}
