//! netcopy's eBPF programs: count the copies the kernel makes of socket payload, for the
//! processes the user side puts in the filter map.
//!
//! Several programs observe the same copy site through different attach points (fentry,
//! kprobe, tracepoint); the user side's attach plan loads only the best one the running
//! kernel offers, so no byte is counted twice.
#![no_std]
#![no_main]

mod capability;
mod filter;
mod maps;
mod recv;
mod send;
mod trace;
mod zerocopy;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot unwind; the verifier rejects any reachable panic anyway.
    loop {}
}
