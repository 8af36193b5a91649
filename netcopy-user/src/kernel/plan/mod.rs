//! The attach plan: every kernel event the tool needs is declared once, in `table.rs`,
//! with its attach strategies in rank order; this module says what a declaration is and
//! keeps what the loader chose. At load time the loader tries them in order and keeps
//! the first whose programs load and attach; what was rejected, and why, is kept too so
//! that `netcopy probes` and every report can say how each figure was obtained.

use netcopy_common::CopySite;
use serde::Serialize;

mod table;
pub use table::{ON_DEMAND, PROBES, REPORTED_SITES};

/// How a figure was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Seen at the copy itself (the function or tracepoint that does the copy).
    Observed,
    /// Derived from events around the copy (the kernel's own inputs to its decision).
    Inferred,
    /// Reported by the kernel to user space (e.g. zero-copy completion flags).
    Reported,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Observed => "observed",
            Source::Inferred => "inferred",
            Source::Reported => "reported",
        }
    }
}

/// A kernel event netcopy listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelEvent {
    /// New processes forked by a followed process join its filter slot.
    ForkFollow,
    /// Payload entering the kernel on a TCP send: copied, pinned (MSG_ZEROCOPY, io_uring
    /// SEND_ZC), or referenced (MSG_SPLICE_PAGES: splice and sendfile on Linux >= 6.5).
    SendPath,
    /// Splice and sendfile on Linux < 6.5, which attach page references to TCP through
    /// `do_tcp_sendpages`, not `tcp_sendmsg_locked`.
    SendPages,
    /// Pages of a zero-copy send that the kernel copied after all.
    DeferredCopy,
    /// Who asked for each deferred copy: the kernel stack that reached `skb_copy_ubufs`
    /// with a watched process's pages (kept in the copy-caller maps, no copy site of its
    /// own), from which the ledger's causes are observed instead of inferred.
    CopyCaller,
    /// Zero-copy completion notifications, and whether their pages were copied.
    Completion,
    /// Socket data copied to user memory on receive.
    RecvCopy,
    /// Received bytes mapped into user memory instead of copied
    /// (getsockopt(TCP_ZEROCOPY_RECEIVE)).
    RecvMapped,
    /// `netcopy trace`: sendto, sendmsg, sendmmsg, recvfrom, recvmsg, recvmmsg, one record
    /// per call (attached only while a trace runs, see [`ON_DEMAND`]).
    TraceSocketCalls,
    /// `netcopy trace`: write, read, writev, readv on sockets (attached only while a trace
    /// runs, see [`ON_DEMAND`]).
    TraceSocketReadWrite,
    /// `netcopy trace`: io_uring requests submitted and completions posted (attached only
    /// while a trace runs, see [`ON_DEMAND`]): io_uring sends do not go through the
    /// socket system calls.
    TraceIoUring,
}

impl KernelEvent {
    pub fn name(self) -> &'static str {
        match self {
            KernelEvent::ForkFollow => "fork-follow",
            KernelEvent::SendPath => "send-path",
            KernelEvent::SendPages => "send-pages",
            KernelEvent::DeferredCopy => "deferred-copy",
            KernelEvent::CopyCaller => "copy-caller",
            KernelEvent::Completion => "completion",
            KernelEvent::RecvCopy => "recv-copy",
            KernelEvent::RecvMapped => "recv-mapped",
            KernelEvent::TraceSocketCalls => "trace-socket",
            KernelEvent::TraceSocketReadWrite => "trace-rw",
            KernelEvent::TraceIoUring => "trace-io-uring",
        }
    }
}

/// Where one eBPF program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttachPoint {
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    BtfTracepoint {
        name: &'static str,
    },
    Kprobe {
        function: &'static str,
    },
    Kretprobe {
        function: &'static str,
    },
    Fentry {
        function: &'static str,
    },
    Fexit {
        function: &'static str,
    },
}

/// The kinds of kernel hook a strategy attaches with (every program of one strategy uses
/// the same kind: it is the strategy's kind). `LoadOptions::avoid` rules kinds out, so
/// that a figure can be cross-checked under the next strategy in rank (as
/// `netcopy verify --avoid tp_btf` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// fentry and fexit.
    Fentry,
    /// kprobe and kretprobe.
    Kprobe,
    /// BTF-typed tracepoints (tp_btf).
    #[value(name = "tp_btf")]
    TpBtf,
    /// Classic tracepoints.
    Tracepoint,
}

impl HookKind {
    pub const fn name(self) -> &'static str {
        match self {
            HookKind::Fentry => "fentry",
            HookKind::Kprobe => "kprobe",
            HookKind::TpBtf => "tp_btf",
            HookKind::Tracepoint => "tracepoint",
        }
    }
}

/// A set of [`HookKind`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookKinds(u8);

impl HookKinds {
    pub fn of(kinds: &[HookKind]) -> HookKinds {
        HookKinds(kinds.iter().fold(0, |set, &k| set | 1 << k as u8))
    }

    fn contains(self, kind: HookKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

impl AttachPoint {
    pub const fn kind(&self) -> HookKind {
        match self {
            AttachPoint::Tracepoint { .. } => HookKind::Tracepoint,
            AttachPoint::BtfTracepoint { .. } => HookKind::TpBtf,
            AttachPoint::Kprobe { .. } | AttachPoint::Kretprobe { .. } => HookKind::Kprobe,
            AttachPoint::Fentry { .. } | AttachPoint::Fexit { .. } => HookKind::Fentry,
        }
    }
}

impl Strategy {
    /// The first hook of this strategy whose kind is in `avoid`.
    pub fn avoided_hook(&self, avoid: HookKinds) -> Option<AttachPoint> {
        self.programs
            .iter()
            .map(|p| p.point)
            .find(|point| avoid.contains(point.kind()))
    }
}

impl std::fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachPoint::Tracepoint { category, name } => write!(f, "tracepoint {category}/{name}"),
            AttachPoint::BtfTracepoint { name } => write!(f, "tp_btf {name}"),
            AttachPoint::Kprobe { function } => write!(f, "kprobe {function}"),
            AttachPoint::Kretprobe { function } => write!(f, "kretprobe {function}"),
            AttachPoint::Fentry { function } => write!(f, "fentry {function}"),
            AttachPoint::Fexit { function } => write!(f, "fexit {function}"),
        }
    }
}

/// A kernel layout fact a strategy's programs read (see `KernelOffsets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    TpSkbCopyLen,
    TpForkPids,
    SendDecision,
    SkbZerocopyOwner,
    SkbDataLen,
    UargBytelen,
    /// `syscalls/sys_enter_*` argument and `sys_exit_*` `ret` offsets of the socket calls.
    TraceSyscallArgs,
    /// The same for write, read, writev and readv.
    TraceReadWriteArgs,
    /// task->files->fdt->fd[]->f_inode->i_mode, to tell a socket fd from others.
    TraceSocketFd,
    /// The fields of `io_uring/io_uring_complete` and `io_uring_create` records.
    TraceIoUringFields,
    /// The fields of `io_uring/io_uring_submit_req` records (Linux >= 6.3).
    TraceIoUringSubmitReq,
    /// The fields of `io_uring/io_uring_submit_sqe` records (the same event before 6.3).
    TraceIoUringSubmitSqe,
}

/// One program of the object and where it goes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProgramAttach {
    /// Function name of the program in netcopy-ebpf.
    pub program: &'static str,
    pub point: AttachPoint,
}

/// How one copy site's figure is obtained under a strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SiteSource {
    pub site: CopySite,
    pub source: Source,
}

/// One way of observing an event; all its programs must attach for it to count.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Strategy {
    pub label: &'static str,
    /// The kind of hook every one of its programs attaches with (a unit test checks).
    pub kind: HookKind,
    /// The copy sites this strategy feeds, each with how its figure is obtained.
    pub sources: &'static [SiteSource],
    pub programs: &'static [ProgramAttach],
    /// Layout facts that must have been found on this kernel.
    pub needs: &'static [Layout],
}

/// An event and its strategies, best first.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProbeDecl {
    pub event: KernelEvent,
    pub strategies: &'static [Strategy],
}

/// Where program `name` attaches, as the first strategy that declares it says (one
/// program can be attached to several tracepoints, e.g. every socket call's exit).
pub fn declared_points(name: &str) -> Vec<AttachPoint> {
    PROBES
        .iter()
        .chain(ON_DEMAND)
        .flat_map(|decl| decl.strategies)
        .find(|strategy| strategy.programs.iter().any(|p| p.program == name))
        .map(|strategy| {
            strategy
                .programs
                .iter()
                .filter(|p| p.program == name)
                .map(|p| p.point)
                .collect()
        })
        .unwrap_or_default()
}

/// How a copy site's figure is obtained where no probe counts it: declared here beside the
/// probes, so that every site's ways of being counted live in one place. A site whose
/// event has strategies in [`PROBES`] falls back to this line only where none of them
/// works on the kernel.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ReportedSite {
    pub site: CopySite,
    pub source: Source,
    /// What the figure is, for every table that shows it.
    pub label: &'static str,
}

/// How `site` is counted when no probe strategy counts it on a kernel, None for a site
/// only probes count.
pub fn reported_site(site: CopySite) -> Option<&'static ReportedSite> {
    REPORTED_SITES.iter().find(|r| r.site == site)
}

/// What the loader decided for one event.
#[derive(Clone, Debug, Serialize)]
pub struct EventPlan {
    pub event: KernelEvent,
    /// The strategy in use, None when no strategy works on this kernel.
    pub chosen: Option<ChosenStrategy>,
    /// Better-ranked strategies that failed, with the reason.
    pub rejected: Vec<RejectedStrategy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChosenStrategy {
    pub label: &'static str,
    /// The kind of hook it attaches with: what a reader of `netcopy probes --json` or
    /// `netcopy verify --json` tells strategies apart by (labels are for people).
    pub kind: HookKind,
    pub sources: &'static [SiteSource],
}

impl ChosenStrategy {
    pub fn of(strategy: &Strategy) -> ChosenStrategy {
        ChosenStrategy {
            label: strategy.label,
            kind: strategy.kind,
            sources: strategy.sources,
        }
    }

    /// How the figure of copy site `site` is obtained under this strategy.
    pub fn source_of(&self, site: CopySite) -> Option<Source> {
        self.sources
            .iter()
            .find(|s| s.site == site)
            .map(|s| s.source)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectedStrategy {
    pub label: &'static str,
    pub reason: String,
}

/// The plan for every declared event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttachPlan {
    pub events: Vec<EventPlan>,
}

impl AttachPlan {
    pub fn get(&self, event: KernelEvent) -> Option<&EventPlan> {
        self.events.iter().find(|e| e.event == event)
    }

    /// Human-readable lines, one per event.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            match &e.chosen {
                Some(c) => {
                    let sources: Vec<String> = c
                        .sources
                        .iter()
                        .map(|s| format!("{}: {}", s.site, s.source.name()))
                        .collect();
                    let sources = if sources.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", sources.join(", "))
                    };
                    out.push_str(&format!("{:<14} {}{}\n", e.event.name(), c.label, sources));
                }
                None => out.push_str(&format!("{:<14} not observable\n", e.event.name())),
            }
            for r in &e.rejected {
                out.push_str(&format!(
                    "{:<14}   not used: {}: {}\n",
                    "", r.label, r.reason
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_attaches_with_one_kind_of_hook() {
        for decl in PROBES.iter().chain(ON_DEMAND) {
            for strategy in decl.strategies {
                assert!(!strategy.programs.is_empty(), "{}", strategy.label);
                for p in strategy.programs {
                    assert_eq!(p.point.kind(), strategy.kind, "{}", strategy.label);
                }
            }
        }
    }

    #[test]
    fn a_reported_site_ranks_below_observing_strategies_of_one_event() {
        for reported in REPORTED_SITES {
            assert_eq!(reported.source, Source::Reported, "{}", reported.site);
            let feeding: Vec<&ProbeDecl> = PROBES
                .iter()
                .chain(ON_DEMAND)
                .filter(|d| {
                    d.strategies
                        .iter()
                        .any(|s| s.sources.iter().any(|x| x.site == reported.site))
                })
                .collect();
            // A probe that counts the site has a counter for it, and sees it better
            // than the report it replaces.
            if feeding.is_empty() {
                assert_eq!(reported.site.counter(), None, "{}", reported.site);
            } else {
                assert_eq!(feeding.len(), 1, "{}", reported.site);
                assert!(reported.site.counter().is_some(), "{}", reported.site);
                for strategy in feeding[0].strategies {
                    assert_eq!(
                        strategy.sources,
                        &[SiteSource {
                            site: reported.site,
                            source: Source::Observed,
                        }][..],
                        "{}",
                        strategy.label
                    );
                }
            }
        }
        assert_eq!(
            reported_site(CopySite::RecvMapped).map(|r| r.source),
            Some(Source::Reported)
        );
        assert!(reported_site(CopySite::KernelRecvCopy).is_none());
    }

    #[test]
    fn recv_mapped_is_observed_by_fexit_first_then_kprobes() {
        let decl = PROBES
            .iter()
            .find(|d| d.event == KernelEvent::RecvMapped)
            .expect("recv-mapped declared");
        let kinds: Vec<HookKind> = decl.strategies.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [HookKind::Fentry, HookKind::Kprobe]);
        assert_eq!(
            declared_points("netcopy_recv_mapped_fexit"),
            vec![AttachPoint::Fexit {
                function: "tcp_zerocopy_receive"
            }]
        );
    }

    #[test]
    fn io_uring_submits_are_traced_under_either_name_of_the_tracepoint() {
        let decl = ON_DEMAND
            .iter()
            .find(|d| d.event == KernelEvent::TraceIoUring)
            .expect("trace-io-uring declared");
        let submits: Vec<AttachPoint> = decl
            .strategies
            .iter()
            .map(|s| s.programs[0].point)
            .collect();
        assert_eq!(
            submits,
            [
                AttachPoint::Tracepoint {
                    category: "io_uring",
                    name: "io_uring_submit_req"
                },
                AttachPoint::Tracepoint {
                    category: "io_uring",
                    name: "io_uring_submit_sqe"
                },
            ]
        );
        // Each submit program has one hook, so its declared point is where it attaches.
        assert_eq!(
            declared_points("netcopy_trace_uring_submit_sqe"),
            vec![submits[1]]
        );
    }

    #[test]
    fn declared_points_list_every_hook_of_a_program() {
        let exits = declared_points("netcopy_trace_exit_sock");
        assert!(exits.len() >= 6, "{exits:?}");
        assert!(exits.contains(&AttachPoint::Tracepoint {
            category: "syscalls",
            name: "sys_exit_recvmsg",
        }));
        assert_eq!(
            declared_points("netcopy_recv_copy_tp_btf"),
            vec![AttachPoint::BtfTracepoint {
                name: "skb_copy_datagram_iovec"
            }]
        );
        assert!(declared_points("no_such_program").is_empty());
    }
}
