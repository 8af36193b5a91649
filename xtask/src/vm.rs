//! `cargo xtask vm-test`: boot Debian's 6.1 kernel (which has kprobes, fentry and BTF,
//! unlike the 6.18 kernel of our machines) in qemu under TCG with a small initramfs, run
//! netcopy commands in it and bring back each command's exit code, stdout and stderr.
//!
//! Pieces:
//! - [`kernel`]: `apt-get download` + `dpkg -x` of `linux-image-6.1.0-*-amd64` and
//!   `busybox-static` into `target/vm/cache/` (once), `ldd`, kernel modules.
//! - [`cpio`]: the newc archive writer for the initramfs.
//! - [`guest`]: the `/init` script and the parser of the records it sends back on the
//!   second serial port.
//! - [`qemu`]: running qemu with a deadline.
//! - `initramfs`: the initramfs tree of one run; `runner`: [`run_in_guest`], the commands,
//!   options and outcomes of a guest run.
//! - `cli`: [`VmTestArgs`], [`vm_test`] (the command) and [`vm_stage`] (its part of
//!   `cargo xtask test`); `commands`: what the default run gives the guest; `checks`: what
//!   that run must show; `binary`: what the netcopy binary says about itself.
//! - [`tap`]: the tap stage (the guest as host A behind a vnet_hdr tap).
//!
//! The lower-level entry point is [`run_in_guest`]; [`vm_test`] is the command.

mod binary;
mod checks;
mod cli;
mod commands;
pub mod cpio;
pub mod guest;
mod initramfs;
pub mod kernel;
pub mod qemu;
mod runner;
pub mod tap;
mod tap_trace;

pub use binary::modes_where;
pub use cli::{qemu_available, vm_stage, vm_test, VmTestArgs};
pub use runner::{guest_kernel, run_in_guest, GuestCommand, GuestOutcome, VmOptions};
