//! The ways of sending a `ComplexMessage` (workload/message.rs), behind one `Sender`
//! trait, and the mode table that says everything about each.
//!
//! Every sender writes, per message, a 16-byte message header followed by the 8 payload
//! fields, on a blocking TCP socket, with MSG_NOSIGNAL on every send:
//! - two-copy (`two_copy.rs`): memcpy header and fields into one reused buffer, then
//!   `send()`.
//! - one-copy (`one_copy.rs`): `sendmsg()` with 9 iovecs (header + 8 fields), no
//!   user-space copy.
//! - zero-copy (`zero_copy.rs`): `sendmsg(MSG_ZEROCOPY)` with 9 iovecs from a pool of
//!   message slots (`slots.rs`) that are neither restamped nor freed until the kernel
//!   reports their sends complete.
//! - io-uring (`io_uring.rs`, with the ring helpers): IORING_OP_SENDMSG with 9 iovecs.
//! - io-uring-zc (`io_uring_zc.rs`): IORING_OP_SENDMSG_ZC with 9 iovecs from the slot
//!   pool, each slot held until the notification of every operation on it.
//!   Both zero-copy senders are one driver (`slot_sender.rs`: acquire a slot, waiting for
//!   completions; issue it across short sends with the EINTR/EAGAIN/ENOBUFS retries;
//!   finish) over a mechanism each mode file gives (issue one send, reap completions),
//!   and tell the sends that never left the socket (freed when the client closed) apart
//!   with `unsent.rs`.
//! - sendfile (`sendfile.rs`): the message generated in fresh pages of a memfd, then
//!   `sendfile()`.
//! - splice (`splice.rs`): the message generated in fresh pages, `vmsplice()` into a
//!   pipe, then `splice()` to the socket.
//!
//! A message above `PIECE_BYTES` (1 MiB, `message/large.rs`) goes out as a sequence of
//! pieces of that size, the message header before the first: each piece laid out as 8
//! fields of its own over buffers reused for every piece (`sender::Outgoing`; a slot per
//! piece for the zero-copy modes, held until completion; fresh pages per piece for
//! sendfile and splice). The wire bytes are those of the whole message, and a connection's
//! buffers never exceed a piece or two (zero-copy: its in-flight slots).
//!
//! Files import downwards only: `mode` (the enum) and `sender` (the trait and its counts)
//! at the bottom, the sender files on `sender`, `table` on all of them; this file only
//! re-exports.

mod io_uring;
mod io_uring_zc;
mod mode;
mod one_copy;
mod sender;
mod sendfile;
mod slot_sender;
mod slots;
mod splice;
mod table;
mod two_copy;
mod unsent;
mod zero_copy;

pub use mode::Mode;
pub(crate) use sender::Sender;
pub use sender::SenderStats;
pub use slots::ZeroCopyConfig;
pub(crate) use table::new_sender;
pub use table::{default_sweep_names, Claim, Completions, ModeSpec, MODES};
