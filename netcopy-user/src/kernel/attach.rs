//! Loading netcopy's eBPF object and attaching its programs: the one path every user of
//! the object takes (the copy probes, the empty programs of `runstats`, the trials of
//! `netcopy probes`), with all-or-nothing attachment of a strategy and its rollback.

use std::{collections::HashMap, path::Path};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{
        fentry::FEntryLink, fexit::FExitLink, kprobe::KProbeLink, tp_btf::BtfTracePointLink,
        trace_point::TracePointLink, ProbeKind, Program,
    },
    Btf, Ebpf, EbpfLoader,
};

use super::{
    btf::VMLINUX_BTF,
    maps::{self, LogLayout},
    plan::{AttachPoint, Layout, Strategy},
};

/// In-flight map entries when tracing: live threads of the traced processes that have
/// made a traced call (an entry is kept between a thread's calls and freed at its exit).
const TRACE_INFLIGHT_ENTRIES: u32 = 8192;

/// Loads the object `bytes` into the kernel with its trace maps sized for
/// `trace_ring_bytes` of calls (a power of two, at least a page); None: no trace, the
/// trace maps at their smallest (a page of calls, one in-flight entry). Returns the
/// object and how its per-CPU trace rings are laid out.
pub(super) fn load_object(
    bytes: &[u8],
    trace_ring_bytes: Option<u32>,
) -> Result<(Ebpf, LogLayout)> {
    let page = sys_page_size();
    let (ring_bytes, inflight_entries) = match trace_ring_bytes {
        Some(bytes) => {
            if !bytes.is_power_of_two() || bytes < page {
                return Err(anyhow!(
                    "trace ring buffer size {bytes} must be a power of two of at least one \
                     page ({page} bytes)"
                ));
            }
            (bytes, TRACE_INFLIGHT_ENTRIES)
        }
        None => (page, 1),
    };
    let log = LogLayout::new(ring_bytes, possible_cpus());
    let records = u64::from(log.records_per_cpu);
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(maps::RING_MAP, page)
        .map_max_entries(maps::LOG_MAP, log.entries())
        .map_max_entries(maps::LOG_POS_MAP, 2 * log.cpus)
        .map_max_entries(maps::INFLIGHT_MAP, inflight_entries)
        .override_global(maps::LOG_RECORDS_GLOBAL, &records, true)
        .override_global(maps::WAKE_EVERY_GLOBAL, &log.wake_every, true);
    let ebpf = loader
        .load(bytes)
        .context("loading netcopy's eBPF object into the kernel")?;
    Ok((ebpf, log))
}

/// CPUs the kernel may run programs on (per-CPU maps have one slot for each); 1 when the
/// list cannot be read, which only makes the trace wake its reader more often.
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn sys_page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Kernels >= 5.11 charge BPF memory to the cgroup; older ones need memlock raised.
/// Failing to raise it (no CAP_SYS_RESOURCE) is not an error in itself.
pub(super) fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is reported via errno only.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

/// An attachment's link, owned (taken from aya's per-program table), by program type:
/// dropping it detaches the program. Never read: held for its drop.
#[allow(dead_code)]
pub(super) enum Link {
    TracePoint(TracePointLink),
    BtfTracePoint(BtfTracePointLink),
    KProbe(KProbeLink),
    FEntry(FEntryLink),
    FExit(FExitLink),
}

/// One program attached to one hook, and the link that keeps it there: dropping it
/// detaches the program (which stays loaded).
pub(super) struct Attachment {
    pub program: &'static str,
    pub point: AttachPoint,
    _link: Link,
}

impl Attachment {
    /// Attaches loaded program `program` of `ebpf` to `point` (again).
    pub fn reattach(ebpf: &mut Ebpf, program: &'static str, point: AttachPoint) -> Result<Self> {
        let loaded = ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("eBPF object has no program {program}"))?;
        let link = attach_loaded(loaded, point)
            .with_context(|| format!("attaching {point} ({program}) again"))?;
        Ok(Attachment {
            program,
            point,
            _link: link,
        })
    }
}

/// One line for an attach or load error: aya's error chain described (errno named, what
/// it means on real kernels), or the error itself when it is one of ours.
pub(super) fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<aya::programs::ProgramError>() {
        Some(pe) => super::describe_error(pe),
        None => format!("{e:#}"),
    }
}

/// Fails with the reason of the first layout fact in `needs` this kernel lacks.
fn check_layouts(needs: &[Layout], missing: &HashMap<Layout, String>) -> Result<()> {
    match needs.iter().find_map(|need| missing.get(need)) {
        Some(reason) => bail!("kernel layout unknown: {reason}"),
        None => Ok(()),
    }
}

/// Attaches every program of `strategy`, loading those not loaded: all or nothing. When
/// one fails, what the strategy attached is detached and unloaded again, so that the next
/// strategy does not count the same copies twice.
pub(super) fn attach_strategy(
    ebpf: &mut Ebpf,
    strategy: &Strategy,
    missing: &HashMap<Layout, String>,
    btf: Option<&Btf>,
) -> Result<Vec<Attachment>> {
    check_layouts(strategy.needs, missing)?;
    let mut attached: Vec<Attachment> = Vec::new();
    for p in strategy.programs {
        let result = match ebpf.program_mut(p.program) {
            None => Err(anyhow!("eBPF object has no program {}", p.program)),
            Some(program) => load_for(program, p.point, btf)
                .and_then(|()| attach_loaded(program, p.point))
                .map_err(|e| anyhow!("{} ({}): {}", p.point, p.program, describe(&e))),
        };
        match result {
            Ok(link) => attached.push(Attachment {
                program: p.program,
                point: p.point,
                _link: link,
            }),
            Err(e) => {
                let names: Vec<&'static str> = attached.iter().map(|a| a.program).collect();
                drop(attached);
                unload_all(ebpf, &names);
                return Err(e);
            }
        }
    }
    Ok(attached)
}

/// Checks an on-demand strategy (layouts, tracepoints, programs) and, with `load`, loads
/// its programs without attaching them: all or nothing, like [`attach_strategy`]. On-demand
/// events use classic tracepoints only.
pub(super) fn prepare_strategy(
    ebpf: &mut Ebpf,
    strategy: &Strategy,
    missing: &HashMap<Layout, String>,
    tracefs: &Path,
    load: bool,
) -> Result<()> {
    check_layouts(strategy.needs, missing)?;
    let mut loaded: Vec<&'static str> = Vec::new();
    let mut result = Ok(());
    for p in strategy.programs {
        let AttachPoint::Tracepoint { category, name } = p.point else {
            result = Err(anyhow!(
                "{}: on-demand events support tracepoints only",
                p.point
            ));
            break;
        };
        let dir = tracefs.join("events").join(category).join(name);
        if !dir.is_dir() {
            result = Err(anyhow!(
                "tracepoint {category}/{name} does not exist on this kernel ({})",
                dir.display()
            ));
            break;
        }
        match ebpf.program_mut(p.program) {
            Some(Program::TracePoint(tp)) => {
                if load && tp.fd().is_err() {
                    if let Err(e) = tp.load() {
                        result = Err(anyhow!(
                            "{} ({}): {}",
                            p.point,
                            p.program,
                            super::describe_error(&e)
                        ));
                        break;
                    }
                    loaded.push(p.program);
                }
            }
            Some(_) => {
                result = Err(anyhow!("the program has the wrong type for {}", p.point));
                break;
            }
            None => {
                result = Err(anyhow!("eBPF object has no program {}", p.program));
                break;
            }
        }
    }
    if result.is_err() {
        unload_all(ebpf, &loaded);
    }
    result
}

/// Loads `program` for `point`, attaches it there, detaches and unloads it again: whether
/// this kernel takes a program of that kind on that hook, with the kernel's answer.
pub(super) fn trial(program: &mut Program, point: AttachPoint, btf: Option<&Btf>) -> Result<()> {
    // Dropping the link detaches the program.
    let result = load_for(program, point, btf)
        .and_then(|()| attach_loaded(program, point))
        .map(drop);
    unload(program);
    result
}

fn need_btf(btf: Option<&Btf>) -> Result<&Btf> {
    btf.ok_or_else(|| anyhow!("needs kernel BTF ({VMLINUX_BTF}), which is unavailable"))
}

/// Loads `program` for `point`, unless it is loaded (tp_btf, fentry and fexit programs
/// are loaded for their hook, and need the kernel's BTF for it).
pub(super) fn load_for(program: &mut Program, point: AttachPoint, btf: Option<&Btf>) -> Result<()> {
    if program_fd_missing(program) {
        match (point, &mut *program) {
            (AttachPoint::Tracepoint { .. }, Program::TracePoint(tp)) => tp.load()?,
            (AttachPoint::BtfTracepoint { name }, Program::BtfTracePoint(tp)) => {
                tp.load(name, need_btf(btf)?)?
            }
            (AttachPoint::Kprobe { .. }, Program::KProbe(kp))
                if matches!(kp.kind(), ProbeKind::Entry) =>
            {
                kp.load()?
            }
            (AttachPoint::Kretprobe { .. }, Program::KProbe(kp))
                if matches!(kp.kind(), ProbeKind::Return) =>
            {
                kp.load()?
            }
            (AttachPoint::Fentry { function }, Program::FEntry(fe)) => {
                fe.load(function, need_btf(btf)?)?
            }
            (AttachPoint::Fexit { function }, Program::FExit(fe)) => {
                fe.load(function, need_btf(btf)?)?
            }
            (point, _) => return Err(anyhow!("the program has the wrong type for {point}")),
        }
    }
    Ok(())
}

fn program_fd_missing(program: &Program) -> bool {
    match program {
        Program::TracePoint(p) => p.fd().is_err(),
        Program::BtfTracePoint(p) => p.fd().is_err(),
        Program::KProbe(p) => p.fd().is_err(),
        Program::FEntry(p) => p.fd().is_err(),
        Program::FExit(p) => p.fd().is_err(),
        _ => true,
    }
}

/// Attaches the loaded `program` to `point` (tp_btf, fentry and fexit programs were
/// loaded for their hook, so `point` only names it) and takes the link out of aya's
/// table, so that the attachment lives exactly as long as the returned link.
pub(super) fn attach_loaded(program: &mut Program, point: AttachPoint) -> Result<Link> {
    Ok(match (point, program) {
        (AttachPoint::Tracepoint { category, name }, Program::TracePoint(tp)) => {
            let id = tp.attach(category, name)?;
            Link::TracePoint(tp.take_link(id)?)
        }
        (AttachPoint::BtfTracepoint { .. }, Program::BtfTracePoint(tp)) => {
            let id = tp.attach()?;
            Link::BtfTracePoint(tp.take_link(id)?)
        }
        (AttachPoint::Kprobe { function }, Program::KProbe(kp))
            if matches!(kp.kind(), ProbeKind::Entry) =>
        {
            let id = kp.attach(function, 0)?;
            Link::KProbe(kp.take_link(id)?)
        }
        (AttachPoint::Kretprobe { function }, Program::KProbe(kp))
            if matches!(kp.kind(), ProbeKind::Return) =>
        {
            let id = kp.attach(function, 0)?;
            Link::KProbe(kp.take_link(id)?)
        }
        (AttachPoint::Fentry { .. }, Program::FEntry(fe)) => {
            let id = fe.attach()?;
            Link::FEntry(fe.take_link(id)?)
        }
        (AttachPoint::Fexit { .. }, Program::FExit(fe)) => {
            let id = fe.attach()?;
            Link::FExit(fe.take_link(id)?)
        }
        (point, _) => return Err(anyhow!("the program has the wrong type for {point}")),
    })
}

/// Drops `links` (owned links: dropping one detaches its program) from threads of their
/// own. Each detach of a classic tracepoint's last user waits for an RCU grace period in
/// the kernel (tens of milliseconds; ~1.5 s for the trace's dozen one after another).
/// Detached side by side, the waits overlap.
pub(super) fn detach_side_by_side<L: Send>(links: Vec<L>) {
    std::thread::scope(|scope| {
        for link in links {
            let spawned = std::thread::Builder::new()
                .name("netcopy-detach".into())
                .spawn_scoped(scope, move || drop(link));
            // Without a thread the detach happens here, in turn (the closure, and the
            // link in it, is dropped with the error).
            drop(spawned);
        }
    });
}

/// Unloads the programs `names` of `ebpf` (a program not loaded, or not in the object, is
/// left alone).
pub(super) fn unload_all(ebpf: &mut Ebpf, names: &[&str]) {
    for name in names {
        if let Some(program) = ebpf.program_mut(name) {
            unload(program);
        }
    }
}

fn unload(program: &mut Program) {
    let _ = match program {
        Program::TracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        _ => Ok(()),
    };
}
