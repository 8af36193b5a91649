//! Types shared by the netcopy eBPF programs and the user-space loader.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes it into maps and the
//! user side reads the same bytes back. Keep it `no_std` and free of pointers.
#![no_std]

mod offsets;
mod sites;
mod state;
mod trace;

pub use offsets::*;
pub use sites::*;
pub use state::*;
pub use trace::*;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) structs of integers with no padding holes that
    // could be read uninitialised (every field is u32/u64 and sizes are multiples of 8).
    unsafe impl aya::Pod for super::SiteCounter {}
    unsafe impl aya::Pod for super::FilterEntry {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::SendInFlight {}
    unsafe impl aya::Pod for super::SocketSend {}
    unsafe impl aya::Pod for super::CopyCallerKey {}
}
