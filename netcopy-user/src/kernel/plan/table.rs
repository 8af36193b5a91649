//! The declarations: every kernel event netcopy needs, with its strategies in rank order
//! (the probes attached at load, those attached only while tracing) and the sites counted
//! from what the kernel reports to user space. What the declarations mean, and how the
//! loader chooses among them, is in the parent module.

use netcopy_common::CopySite;

use super::{
    AttachPoint, HookKind, KernelEvent, Layout, ProbeDecl, ProgramAttach, ReportedSite, SiteSource,
    Source, Strategy,
};

const fn site(site: CopySite, source: Source) -> SiteSource {
    SiteSource { site, source }
}
const fn program(program: &'static str, point: AttachPoint) -> ProgramAttach {
    ProgramAttach { program, point }
}
/// Every probe netcopy uses.
pub const PROBES: &[ProbeDecl] = &[
    ProbeDecl {
        event: KernelEvent::ForkFollow,
        strategies: &[Strategy {
            label: "tracepoint sched/sched_process_fork",
            kind: HookKind::Tracepoint,
            sources: &[],
            programs: &[program(
                "netcopy_fork",
                AttachPoint::Tracepoint {
                    category: "sched",
                    name: "sched_process_fork",
                },
            )],
            needs: &[Layout::TpForkPids],
        }],
    },
    ProbeDecl {
        event: KernelEvent::SendPath,
        // The copy routine itself (_copy_from_iter, lib/iov_iter.c) is notrace on
        // distribution kernels: no kprobe or fentry can see it. What the kernel accepted
        // and what it attached as pinned pages are observed; the rest was copied.
        strategies: &[
            Strategy {
                label: "fentry/fexit tcp_sendmsg_locked + fexit skb_zerocopy_iter_stream",
                kind: HookKind::Fentry,
                sources: &[
                    site(CopySite::KernelSendCopy, Source::Inferred),
                    site(CopySite::ZeroCopyAttach, Source::Observed),
                    site(CopySite::PageReference, Source::Inferred),
                ],
                programs: &[
                    program(
                        "netcopy_send_enter_fentry",
                        AttachPoint::Fentry { function: "tcp_sendmsg_locked" },
                    ),
                    program(
                        "netcopy_send_exit_fexit",
                        AttachPoint::Fexit { function: "tcp_sendmsg_locked" },
                    ),
                    program(
                        "netcopy_zerocopy_attach_fexit",
                        AttachPoint::Fexit { function: "skb_zerocopy_iter_stream" },
                    ),
                ],
                needs: &[Layout::SendDecision],
            },
            Strategy {
                label: "kprobe/kretprobe tcp_sendmsg_locked + kretprobe skb_zerocopy_iter_stream",
                kind: HookKind::Kprobe,
                sources: &[
                    site(CopySite::KernelSendCopy, Source::Inferred),
                    site(CopySite::ZeroCopyAttach, Source::Observed),
                    site(CopySite::PageReference, Source::Inferred),
                ],
                programs: &[
                    program(
                        "netcopy_send_enter_kprobe",
                        AttachPoint::Kprobe { function: "tcp_sendmsg_locked" },
                    ),
                    program(
                        "netcopy_send_exit_kretprobe",
                        AttachPoint::Kretprobe { function: "tcp_sendmsg_locked" },
                    ),
                    program(
                        "netcopy_zerocopy_attach_kretprobe",
                        AttachPoint::Kretprobe { function: "skb_zerocopy_iter_stream" },
                    ),
                ],
                needs: &[Layout::SendDecision],
            },
            Strategy {
                label: "tp_btf tcp_sendmsg_locked (msg_flags, SOCK_ZEROCOPY, msg_ubuf, route SG) + tp_btf sock_send_length",
                kind: HookKind::TpBtf,
                sources: &[
                    site(CopySite::KernelSendCopy, Source::Inferred),
                    site(CopySite::ZeroCopyAttach, Source::Inferred),
                    site(CopySite::PageReference, Source::Inferred),
                ],
                programs: &[
                    program(
                        "netcopy_send_tp_btf",
                        AttachPoint::BtfTracepoint { name: "tcp_sendmsg_locked" },
                    ),
                    program(
                        "netcopy_send_length",
                        AttachPoint::BtfTracepoint {
                            name: "sock_send_length",
                        },
                    ),
                ],
                needs: &[Layout::SendDecision],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::SendPages,
        // Linux < 6.5 only: the function went away when splice moved to MSG_SPLICE_PAGES,
        // which the send path sees, so a newer kernel simply has no strategy here.
        strategies: &[
            Strategy {
                label: "fexit do_tcp_sendpages",
                kind: HookKind::Fentry,
                sources: &[site(CopySite::PageReference, Source::Observed)],
                programs: &[program(
                    "netcopy_send_pages_fexit",
                    AttachPoint::Fexit { function: "do_tcp_sendpages" },
                )],
                needs: &[],
            },
            Strategy {
                label: "kretprobe do_tcp_sendpages",
                kind: HookKind::Kprobe,
                sources: &[site(CopySite::PageReference, Source::Observed)],
                programs: &[program(
                    "netcopy_send_pages_kretprobe",
                    AttachPoint::Kretprobe { function: "do_tcp_sendpages" },
                )],
                needs: &[],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::DeferredCopy,
        strategies: &[
            Strategy {
                label: "fentry skb_copy_ubufs",
                kind: HookKind::Fentry,
                sources: &[site(CopySite::DeferredCopy, Source::Observed)],
                programs: &[program(
                    "netcopy_deferred_copy_fentry",
                    AttachPoint::Fentry { function: "skb_copy_ubufs" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::SkbDataLen],
            },
            Strategy {
                label: "kprobe skb_copy_ubufs",
                kind: HookKind::Kprobe,
                sources: &[site(CopySite::DeferredCopy, Source::Observed)],
                programs: &[program(
                    "netcopy_deferred_copy_kprobe",
                    AttachPoint::Kprobe { function: "skb_copy_ubufs" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::SkbDataLen],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::CopyCaller,
        // skb_copy_ubufs has no tracepoint, so a kernel without fentry and kprobes (this
        // project's 6.18 machines) cannot show the caller: the causes are then inferred
        // from the path, and say so.
        strategies: &[
            Strategy {
                label: "fentry skb_copy_ubufs (kernel stack of each deferred copy)",
                kind: HookKind::Fentry,
                sources: &[],
                programs: &[program(
                    "netcopy_copy_caller_fentry",
                    AttachPoint::Fentry { function: "skb_copy_ubufs" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::SkbDataLen],
            },
            Strategy {
                label: "kprobe skb_copy_ubufs (kernel stack of each deferred copy)",
                kind: HookKind::Kprobe,
                sources: &[],
                programs: &[program(
                    "netcopy_copy_caller_kprobe",
                    AttachPoint::Kprobe { function: "skb_copy_ubufs" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::SkbDataLen],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::Completion,
        strategies: &[
            Strategy {
                label: "fentry __msg_zerocopy_callback",
                kind: HookKind::Fentry,
                sources: &[site(CopySite::ZeroCopyCompletion, Source::Observed)],
                programs: &[program(
                    "netcopy_completion_fentry",
                    AttachPoint::Fentry { function: "__msg_zerocopy_callback" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::UargBytelen],
            },
            Strategy {
                label: "kprobe __msg_zerocopy_callback",
                kind: HookKind::Kprobe,
                sources: &[site(CopySite::ZeroCopyCompletion, Source::Observed)],
                programs: &[program(
                    "netcopy_completion_kprobe",
                    AttachPoint::Kprobe { function: "__msg_zerocopy_callback" },
                )],
                needs: &[Layout::SkbZerocopyOwner, Layout::UargBytelen],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::RecvCopy,
        // The tracepoint sits inside skb_copy_datagram_iter right before the copy; a kprobe
        // or fentry there sees the same (skb, len), so the stable tracepoint is used on
        // every kernel: typed (tp_btf: no trace record is built, the arguments are read
        // directly) where the kernel has BTF, classic otherwise.
        strategies: &[
            Strategy {
                label: "tp_btf skb_copy_datagram_iovec",
                kind: HookKind::TpBtf,
                sources: &[site(CopySite::KernelRecvCopy, Source::Observed)],
                programs: &[program(
                    "netcopy_recv_copy_tp_btf",
                    AttachPoint::BtfTracepoint {
                        name: "skb_copy_datagram_iovec",
                    },
                )],
                needs: &[],
            },
            Strategy {
                label: "tracepoint skb/skb_copy_datagram_iovec",
                kind: HookKind::Tracepoint,
                sources: &[site(CopySite::KernelRecvCopy, Source::Observed)],
                programs: &[program(
                    "netcopy_recv_copy",
                    AttachPoint::Tracepoint {
                        category: "skb",
                        name: "skb_copy_datagram_iovec",
                    },
                )],
                needs: &[Layout::TpSkbCopyLen],
            },
        ],
    },
    ProbeDecl {
        event: KernelEvent::RecvMapped,
        // tcp_zerocopy_receive has no tracepoint, and the bytes it maps never pass
        // skb_copy_datagram_iter: only a hook on the function sees them. It sets
        // zc->length to the bytes mapped before it returns 0. Where neither hook works
        // (this project's 6.18 machines) the site falls back to what the kernel reported
        // to the receiver (REPORTED_SITES).
        strategies: &[
            Strategy {
                label: "fexit tcp_zerocopy_receive (zc->length on a 0 return)",
                kind: HookKind::Fentry,
                sources: &[site(CopySite::RecvMapped, Source::Observed)],
                programs: &[program(
                    "netcopy_recv_mapped_fexit",
                    AttachPoint::Fexit { function: "tcp_zerocopy_receive" },
                )],
                needs: &[],
            },
            Strategy {
                label: "kprobe/kretprobe tcp_zerocopy_receive (zc->length on a 0 return)",
                kind: HookKind::Kprobe,
                sources: &[site(CopySite::RecvMapped, Source::Observed)],
                programs: &[
                    program(
                        "netcopy_recv_mapped_kprobe",
                        AttachPoint::Kprobe { function: "tcp_zerocopy_receive" },
                    ),
                    program(
                        "netcopy_recv_mapped_kretprobe",
                        AttachPoint::Kretprobe { function: "tcp_zerocopy_receive" },
                    ),
                ],
                needs: &[],
            },
        ],
    },
];
/// The sites counted from what the kernel reports to user space where no probe counts
/// them: ranked below the strategies of their event in [`PROBES`] (`recv_mapped`: fexit
/// or kprobes on `tcp_zerocopy_receive`, where the kernel has them).
pub const REPORTED_SITES: &[ReportedSite] = &[ReportedSite {
    site: CopySite::RecvMapped,
    source: Source::Reported,
    // tcp_zerocopy_receive has no tracepoint; the bytes it maps never pass
    // skb_copy_datagram_iter, so the tracepoint that counts receive copies cannot see them.
    label: "the `length` of every getsockopt(TCP_ZEROCOPY_RECEIVE) result, summed by the receiver \
            (no tracepoint sees the mapping, and no fexit or kprobe on tcp_zerocopy_receive \
            works on this kernel)",
}];
const fn syscall_tp(program: &'static str, name: &'static str) -> ProgramAttach {
    ProgramAttach {
        program,
        point: AttachPoint::Tracepoint {
            category: "syscalls",
            name,
        },
    }
}
const fn uring_tp(program: &'static str, name: &'static str) -> ProgramAttach {
    ProgramAttach {
        program,
        point: AttachPoint::Tracepoint {
            category: "io_uring",
            name,
        },
    }
}
/// Events attached only on request (`CopyProbes::attach_on_demand`), never at load: the
/// syscall tracepoints of `netcopy trace` fire on every send, receive, read and write of
/// the machine, and experiments that only count copies must not pay for them. At load the
/// loader checks them (layouts found, tracepoints present: `netcopy probes` shows the
/// verdict) and, when the probes are loaded for tracing, loads their programs; it attaches
/// nothing until a trace starts, and detaches (unloads) them when it stops. They share the
/// copy probes' maps, so the copies counted inside a traced call are booked to it.
pub const ON_DEMAND: &[ProbeDecl] = &[
    ProbeDecl {
        event: KernelEvent::TraceSocketCalls,
        strategies: &[Strategy {
            label: "tracepoints syscalls/sys_{enter,exit}_{sendto,sendmsg,sendmmsg,recvfrom,recvmsg,recvmmsg} and sched/sched_process_exit (attached only while tracing)",
            kind: HookKind::Tracepoint,
            sources: &[],
            programs: &[
                syscall_tp("netcopy_trace_sendto", "sys_enter_sendto"),
                syscall_tp("netcopy_trace_sendmsg", "sys_enter_sendmsg"),
                syscall_tp("netcopy_trace_sendmmsg", "sys_enter_sendmmsg"),
                syscall_tp("netcopy_trace_recvfrom", "sys_enter_recvfrom"),
                syscall_tp("netcopy_trace_recvmsg", "sys_enter_recvmsg"),
                syscall_tp("netcopy_trace_recvmmsg", "sys_enter_recvmmsg"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_sendto"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_sendmsg"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_sendmmsg"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_recvfrom"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_recvmsg"),
                syscall_tp("netcopy_trace_exit_sock", "sys_exit_recvmmsg"),
                ProgramAttach {
                    program: "netcopy_trace_thread_exit",
                    point: AttachPoint::Tracepoint {
                        category: "sched",
                        name: "sched_process_exit",
                    },
                },
            ],
            needs: &[Layout::TraceSyscallArgs],
        }],
    },
    ProbeDecl {
        event: KernelEvent::TraceSocketReadWrite,
        // Telling a socket fd from a pipe or a file in the program (S_IFSOCK in the inode
        // mode) records failed calls on sockets too and never a call on anything else;
        // inferring it from a socket-layer event inside the call would miss calls that
        // fail before reaching the socket layer.
        strategies: &[Strategy {
            label: "tracepoints syscalls/sys_{enter,exit}_{write,read,writev,readv}, socket fds only (attached only while tracing)",
            kind: HookKind::Tracepoint,
            sources: &[],
            programs: &[
                syscall_tp("netcopy_trace_write", "sys_enter_write"),
                syscall_tp("netcopy_trace_read", "sys_enter_read"),
                syscall_tp("netcopy_trace_writev", "sys_enter_writev"),
                syscall_tp("netcopy_trace_readv", "sys_enter_readv"),
                syscall_tp("netcopy_trace_exit_rw", "sys_exit_write"),
                syscall_tp("netcopy_trace_exit_rw", "sys_exit_read"),
                syscall_tp("netcopy_trace_exit_rw", "sys_exit_writev"),
                syscall_tp("netcopy_trace_exit_rw", "sys_exit_readv"),
            ],
            needs: &[Layout::TraceReadWriteArgs, Layout::TraceSocketFd],
        }],
    },
    ProbeDecl {
        event: KernelEvent::TraceIoUring,
        // The submit tracepoint is io_uring_submit_req from Linux 6.3 and
        // io_uring_submit_sqe before (5.19 to 6.2 keep the fields read at the same
        // offsets); io_uring_complete and io_uring_create have these fields from 5.19 to
        // 6.18 at least. Completions are told ours by their ring, since the kernel may
        // post them from another task (an io-wq worker).
        strategies: &[
            Strategy {
                label: "tracepoints io_uring/io_uring_submit_req, io_uring_complete and io_uring_create (attached only while tracing)",
                kind: HookKind::Tracepoint,
                sources: &[],
                programs: &[
                    uring_tp("netcopy_trace_uring_submit", "io_uring_submit_req"),
                    uring_tp("netcopy_trace_uring_complete", "io_uring_complete"),
                    // A ring made where a traced one was freed is not the traced one.
                    uring_tp("netcopy_trace_uring_create", "io_uring_create"),
                ],
                needs: &[Layout::TraceIoUringFields, Layout::TraceIoUringSubmitReq],
            },
            Strategy {
                label: "tracepoints io_uring/io_uring_submit_sqe (Linux < 6.3), io_uring_complete and io_uring_create (attached only while tracing)",
                kind: HookKind::Tracepoint,
                sources: &[],
                programs: &[
                    uring_tp("netcopy_trace_uring_submit_sqe", "io_uring_submit_sqe"),
                    uring_tp("netcopy_trace_uring_complete", "io_uring_complete"),
                    uring_tp("netcopy_trace_uring_create", "io_uring_create"),
                ],
                needs: &[Layout::TraceIoUringFields, Layout::TraceIoUringSubmitSqe],
            },
        ],
    },
];
