//! Programs that do nothing: `netcopy probes` loads and attaches them to find out which
//! program types this kernel accepts, with the kernel's own error when it refuses.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};

#[kprobe]
pub fn netcopy_trial_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "tcp_sendmsg")]
pub fn netcopy_trial_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn netcopy_trial_tp_btf(_ctx: BtfTracePointContext) -> u32 {
    0
}
