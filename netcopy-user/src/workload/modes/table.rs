//! The mode table: every fact about a send mode that the rest of netcopy needs, one row per
//! mode. Verify, the sweep's defaults, the ledger's expectations, plots, crossovers, answers
//! and the bench all read this table; nothing outside `workload::modes` names a mode one by
//! one. Adding a mode: a sender file beside this one, a `Mode` variant (mode.rs), and
//! one row here (with the variant in `Mode::ALL`; a unit test checks the two agree).

use std::{fmt, io, net::TcpStream};

use super::{
    io_uring::{self, IoUringSender},
    io_uring_zc::{self, IoUringZcSender},
    mode::Mode,
    one_copy::OneCopySender,
    sender::Sender,
    sendfile::{self, SendfileSender},
    slots::ZeroCopyConfig,
    splice::{self, SpliceSender},
    two_copy::TwoCopySender,
    zero_copy::{self, ZeroCopySender},
};

/// What a mode claims the kernel and user space do with each payload byte: the ledger's
/// expectation. Protocol bytes (requests, reply headers) are sent by plain `send()` in every
/// mode, so they are copied on send and on receive whatever the claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The sender memcpy's payload and message headers into one buffer in user space.
    pub user_copy: bool,
    /// The kernel copies payload and message headers into socket buffers at send.
    pub kernel_send_copy: bool,
    /// The kernel pins the user pages and attaches them instead of copying (MSG_ZEROCOPY,
    /// io_uring SENDMSG_ZC).
    pub zerocopy_attach: bool,
    /// The kernel attaches references to pages it already holds (a pipe's, the page
    /// cache's) instead of copying: splice, sendfile.
    pub page_reference: bool,
    /// The kernel reports each send's completion, saying whether it copied the pages
    /// after all (the evidence a "degraded" verdict rests on), and where.
    pub completions: Option<Completions>,
}

/// Where a zero-copy mode's completions reach the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completions {
    /// The socket's error queue (MSG_ZEROCOPY): the kernel raises them in
    /// `__msg_zerocopy_callback`, which the completion probes watch.
    ErrorQueue,
    /// The io_uring's completion queue (IORING_CQE_F_NOTIF): io_uring's own callback,
    /// which no probe watches, so the figures are the ones the sender read.
    Ring,
}

/// One row of the mode table.
#[derive(Clone, Copy, Debug)]
pub struct ModeSpec {
    pub mode: Mode,
    /// The name on the command line, in results.json and in reports.
    pub name: &'static str,
    /// The mode byte of the reply header.
    pub wire: u8,
    /// How it sends, in one line (README, report).
    pub how: &'static str,
    /// What it claims, in one line (README, report).
    pub claims: &'static str,
    pub claim: Claim,
    /// Its colour in every plot, as RGB.
    pub colour: (u8, u8, u8),
    /// The modes it is compared against in crossovers and "who wins" answers (it is the
    /// challenger, they are the baselines).
    pub challenges: &'static [Mode],
    /// Swept by `netcopy run` unless `--modes` says otherwise.
    pub in_default_sweep: bool,
    /// The mode the bench compares with iperf3 and a bare sender: the one whose work is
    /// closest to theirs (no user-space copy, no completions).
    pub bench_peer: bool,
    /// Checks that this kernel and socket layer support the mode (a server refuses to start
    /// otherwise, with this error).
    pub available: fn() -> io::Result<()>,
    /// Builds the sender on an accepted, blocking TCP socket.
    pub(crate) new_sender: fn(TcpStream, &ZeroCopyConfig) -> io::Result<Box<dyn Sender>>,
}

fn always() -> io::Result<()> {
    Ok(())
}

/// Every mode, in the order reports list them.
pub const MODES: &[ModeSpec] = &[
    ModeSpec {
        mode: Mode::TwoCopy,
        name: "two-copy",
        wire: 1,
        how: "`memcpy` the 8 fields into one buffer, then `send()`",
        claims: "two copies",
        claim: Claim {
            user_copy: true,
            kernel_send_copy: true,
            zerocopy_attach: false,
            page_reference: false,
            completions: None,
        },
        colour: (0xd6, 0x27, 0x28),
        challenges: &[],
        in_default_sweep: true,
        bench_peer: false,
        available: always,
        new_sender: |socket, _| Ok(Box::new(TwoCopySender::new(socket))),
    },
    ModeSpec {
        mode: Mode::OneCopy,
        name: "one-copy",
        wire: 2,
        how: "`sendmsg()` with an iovec of the 8 fields",
        claims: "no user-space copy",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: true,
            zerocopy_attach: false,
            page_reference: false,
            completions: None,
        },
        colour: (0x1f, 0x77, 0xb4),
        challenges: &[Mode::TwoCopy],
        in_default_sweep: true,
        bench_peer: true,
        available: always,
        new_sender: |socket, _| Ok(Box::new(OneCopySender::new(socket))),
    },
    ModeSpec {
        mode: Mode::ZeroCopy,
        name: "zero-copy",
        wire: 3,
        how: "`sendmsg(MSG_ZEROCOPY)` on a `SO_ZEROCOPY` socket, completions from `MSG_ERRQUEUE`",
        claims: "no copy at all",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: false,
            zerocopy_attach: true,
            page_reference: false,
            completions: Some(Completions::ErrorQueue),
        },
        colour: (0x2c, 0xa0, 0x2c),
        challenges: &[Mode::TwoCopy, Mode::OneCopy],
        in_default_sweep: true,
        bench_peer: false,
        available: zero_copy::probe_support,
        new_sender: |socket, config| Ok(Box::new(ZeroCopySender::new(socket, config.clone())?)),
    },
    ModeSpec {
        mode: Mode::IoUring,
        name: "io-uring",
        wire: 4,
        how: "`IORING_OP_SENDMSG` with an iovec of the 8 fields, through an io_uring",
        claims: "no user-space copy (one-copy without the system call per send)",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: true,
            zerocopy_attach: false,
            page_reference: false,
            completions: None,
        },
        colour: (0x8c, 0x56, 0x4b),
        challenges: &[Mode::OneCopy],
        in_default_sweep: false,
        bench_peer: false,
        available: io_uring::probe_support,
        new_sender: |socket, _| Ok(Box::new(IoUringSender::new(socket)?)),
    },
    ModeSpec {
        mode: Mode::IoUringZc,
        name: "io-uring-zc",
        wire: 5,
        how: "`IORING_OP_SENDMSG_ZC` with `IORING_SEND_ZC_REPORT_USAGE`, buffers held until \
              their notification",
        claims: "no copy at all",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: false,
            zerocopy_attach: true,
            page_reference: false,
            completions: Some(Completions::Ring),
        },
        colour: (0x94, 0x67, 0xbd),
        challenges: &[Mode::IoUring, Mode::ZeroCopy],
        in_default_sweep: false,
        bench_peer: false,
        available: io_uring_zc::probe_support,
        new_sender: |socket, config| Ok(Box::new(IoUringZcSender::new(socket, config.clone())?)),
    },
    ModeSpec {
        mode: Mode::Sendfile,
        name: "sendfile",
        wire: 6,
        how: "the serialized message generated in a memfd, sent with `sendfile()`",
        claims: "no copy on send: page references, no user buffer",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: false,
            zerocopy_attach: false,
            page_reference: true,
            completions: None,
        },
        colour: (0xff, 0x7f, 0x0e),
        challenges: &[Mode::OneCopy],
        in_default_sweep: false,
        bench_peer: false,
        available: sendfile::probe_support,
        new_sender: |socket, _| Ok(Box::new(SendfileSender::new(socket)?)),
    },
    ModeSpec {
        mode: Mode::Splice,
        name: "splice",
        wire: 7,
        how: "`vmsplice(SPLICE_F_GIFT)` of the 8 fields into a pipe, then `splice()` to the \
              socket",
        claims: "no copy on send: page references",
        claim: Claim {
            user_copy: false,
            kernel_send_copy: false,
            zerocopy_attach: false,
            page_reference: true,
            completions: None,
        },
        colour: (0x17, 0xbe, 0xcf),
        challenges: &[Mode::OneCopy],
        in_default_sweep: false,
        bench_peer: false,
        available: splice::probe_support,
        new_sender: |socket, _| Ok(Box::new(SpliceSender::new(socket)?)),
    },
];

impl Mode {
    /// Every mode, in the table's order.
    pub const ALL: [Mode; 7] = [
        Mode::TwoCopy,
        Mode::OneCopy,
        Mode::ZeroCopy,
        Mode::IoUring,
        Mode::IoUringZc,
        Mode::Sendfile,
        Mode::Splice,
    ];

    /// This mode's row of the mode table.
    pub fn spec(self) -> &'static ModeSpec {
        MODES
            .iter()
            .find(|s| s.mode == self)
            .expect("the mode table has a row for every mode (a unit test checks it)")
    }

    /// The mode byte of the reply header.
    pub fn wire(self) -> u8 {
        self.spec().wire
    }

    pub(crate) fn from_wire(byte: u8) -> Option<Mode> {
        MODES.iter().find(|s| s.wire == byte).map(|s| s.mode)
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds the sender of `mode` on an accepted, blocking TCP socket.
pub(crate) fn new_sender(
    mode: Mode,
    socket: TcpStream,
    zero_copy: &ZeroCopyConfig,
) -> io::Result<Box<dyn Sender>> {
    (mode.spec().new_sender)(socket, zero_copy)
}

impl ModeSpec {
    /// `#D62728`: the colour as the SVG backend writes it.
    pub fn colour_hex(&self) -> String {
        let (r, g, b) = self.colour;
        format!("#{r:02X}{g:02X}{b:02X}")
    }
}

/// The modes `netcopy run` sweeps by default, comma-separated (for clap's default value).
pub fn default_sweep_names() -> String {
    MODES
        .iter()
        .filter(|s| s.in_default_sweep)
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_and_wire_bytes() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_wire(mode.wire()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            let parsed = <Mode as clap::ValueEnum>::from_str(mode.name(), false).unwrap();
            assert_eq!(parsed, mode);
        }
        assert_eq!(Mode::TwoCopy.to_string(), "two-copy");
        assert_eq!(Mode::ZeroCopy.wire(), 3);
        assert_eq!(Mode::from_wire(0), None);
        assert_eq!(Mode::from_wire(8), None);
    }

    #[test]
    fn every_mode_has_exactly_one_row_with_distinct_names_and_wire_bytes() {
        for mode in Mode::ALL {
            assert_eq!(
                MODES.iter().filter(|s| s.mode == mode).count(),
                1,
                "{mode:?}"
            );
        }
        assert_eq!(MODES.len(), Mode::ALL.len());
        let names: std::collections::BTreeSet<_> = MODES.iter().map(|s| s.name).collect();
        let wires: std::collections::BTreeSet<_> = MODES.iter().map(|s| s.wire).collect();
        assert_eq!((names.len(), wires.len()), (MODES.len(), MODES.len()));
        assert!(!wires.contains(&0), "0 is no mode on the wire");
        for spec in MODES {
            assert!(
                !spec.challenges.contains(&spec.mode),
                "{} challenges itself",
                spec.name
            );
            assert_eq!(Mode::from_wire(spec.wire), Some(spec.mode));
        }
        assert_eq!(MODES.iter().filter(|s| s.bench_peer).count(), 1);
    }

    #[test]
    fn the_default_sweep_names_parse_back() {
        for name in default_sweep_names().split(',') {
            assert!(MODES.iter().any(|s| s.name == name));
        }
    }
}
