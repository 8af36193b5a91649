//! The mode table: every fact about a send mode that the rest of netcopy needs, one row per
//! mode. Verify, the sweep's defaults, the ledger's expectations, plots, crossovers, answers
//! and the bench all read this table; nothing outside `workload::modes` names a mode one by
//! one. Adding a mode: a sender file beside this one, a `Mode` variant (mode.rs), and
//! one row here (with the variant in `Mode::ALL`; a unit test checks the two agree).

use std::{fmt, io, net::TcpStream};

use super::{
    mode::Mode,
    one_copy::OneCopySender,
    sender::Sender,
    two_copy::TwoCopySender,
    zero_copy::{self, ZeroCopyConfig, ZeroCopySender},
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
    /// The kernel pins the user pages and attaches them instead of copying (MSG_ZEROCOPY).
    pub zerocopy_attach: bool,
    /// The kernel reports each send's completion (the error queue), saying whether it
    /// copied the pages after all: the evidence a "degraded" verdict rests on.
    pub completions: bool,
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
            completions: false,
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
            completions: false,
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
            completions: true,
        },
        colour: (0x2c, 0xa0, 0x2c),
        challenges: &[Mode::TwoCopy, Mode::OneCopy],
        in_default_sweep: true,
        bench_peer: false,
        available: zero_copy::probe_support,
        new_sender: |socket, config| Ok(Box::new(ZeroCopySender::new(socket, config.clone())?)),
    },
];

impl Mode {
    /// Every mode, in the table's order.
    pub const ALL: [Mode; 3] = [Mode::TwoCopy, Mode::OneCopy, Mode::ZeroCopy];

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
        assert_eq!(Mode::from_wire(4), None);
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
