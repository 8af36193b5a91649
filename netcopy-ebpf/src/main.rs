//! netcopy's eBPF programs: count the copies the kernel makes of socket payload, for the
//! processes the user side puts in the filter map.
//!
//! Several programs observe the same copy site through different attach points (fentry,
//! kprobe, tracepoint); the user side's attach plan loads only the best one the running
//! kernel offers, so no byte is counted twice.
//!
//! Modules, each importing only from those listed before it: `offsets` (the kernel layout
//! the loader found), `filter` (which processes are ours), `trace` (the syscall records of
//! `netcopy trace`), `counters` (the copy counters, which also book each copy to the
//! traced call in flight), then the programs: `send`, `recv`, `zerocopy`, and `trials`
//! (programs that do nothing).
#![no_std]
#![no_main]

mod counters;
mod filter;
mod offsets;
mod recv;
mod send;
mod trace;
mod trials;
mod zerocopy;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot unwind; the verifier rejects any reachable panic anyway.
    loop {}
}
