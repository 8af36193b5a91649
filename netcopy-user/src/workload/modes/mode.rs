//! The send mechanism under test, as a type. Everything known about a mode (name, wire
//! byte, claim, colour, ...) is its row of the mode table, which [`Mode::spec`] returns.

use serde::{Deserialize, Serialize};

/// The send mechanism under test; `table.rs` holds its facts and its `impl`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Serialize the fields into one buffer (memcpy), then send().
    TwoCopy,
    /// sendmsg() with an iovec of the fields.
    OneCopy,
    /// sendmsg(MSG_ZEROCOPY) with an iovec; buffers held until the kernel completes them.
    ZeroCopy,
    /// IORING_OP_SENDMSG with an iovec of the fields, through an io_uring.
    IoUring,
    /// IORING_OP_SENDMSG_ZC with an iovec; buffers held until their notification.
    IoUringZc,
    /// The serialized message in a memfd, sent with sendfile().
    Sendfile,
    /// vmsplice() of the fields into a pipe, then splice() to the socket.
    Splice,
}
