//! Programs that do nothing: `netcopy probes` loads and attaches them to find out which
//! program types this kernel accepts, with the kernel's own error when it refuses, and
//! `netcopy bench` attaches them to the hooks of its instruments to measure what the
//! kernel's dispatch to a program there costs on its own.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
};

#[kprobe]
pub fn netcopy_trial_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[kretprobe]
pub fn netcopy_trial_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[fentry(function = "tcp_sendmsg")]
pub fn netcopy_trial_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[fexit(function = "tcp_sendmsg")]
pub fn netcopy_trial_fexit(_ctx: FExitContext) -> u32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn netcopy_trial_tp_btf(_ctx: BtfTracePointContext) -> u32 {
    0
}

/// One program for any number of classic tracepoints (the attach target of a classic
/// tracepoint program is chosen at attach, not at load).
#[tracepoint]
pub fn netcopy_trial_tp(_ctx: TracePointContext) -> u32 {
    0
}
