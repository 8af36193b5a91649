//! Where a cell's server and client threads run: `netcopy run --pin auto|none|SERVER/CLIENT`.
//!
//! Unpinned, a loopback cell on a small machine is bimodal: the scheduler puts server and
//! client on one CPU in one cell and on two in the next, and the two placements differ in
//! throughput by tens of percent (a cross-CPU wake-up costs a VM exit in a guest). Such a
//! difference between two cells says where the scheduler put them, not what the modes
//! did. Pinned, every cell of a run has the same placement, recorded beside its figures.

use std::{fmt, str::FromStr};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::util::affinity::{pin_process, PinnedThread};

/// What `--pin` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PinRequest {
    /// Server and client on distinct CPUs of the ones this process may use, when there
    /// are at least two; unpinned otherwise.
    Auto,
    /// No pinning: the scheduler places both (netcopy before placement was recorded).
    None,
    /// Exactly these CPUs: `SERVER/CLIENT`, each a list such as `0`, `0,2` or `0-3`.
    Cpus {
        server: Vec<usize>,
        client: Vec<usize>,
    },
}

impl PinRequest {
    /// What runs recorded before `--pin` existed did: nothing.
    pub(crate) fn before_recorded() -> PinRequest {
        PinRequest::None
    }
}

impl FromStr for PinRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => return Ok(PinRequest::Auto),
            "none" => return Ok(PinRequest::None),
            _ => {}
        }
        let Some((server, client)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not auto, none or SERVER/CLIENT (CPU lists such as 0/1 or 0-1/2,3)"
            ));
        };
        Ok(PinRequest::Cpus {
            server: parse_cpu_list(server).map_err(|e| format!("server CPUs {server:?}: {e}"))?,
            client: parse_cpu_list(client).map_err(|e| format!("client CPUs {client:?}: {e}"))?,
        })
    }
}

impl fmt::Display for PinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinRequest::Auto => f.write_str("auto"),
            PinRequest::None => f.write_str("none"),
            PinRequest::Cpus { server, client } => {
                write!(f, "{}/{}", cpu_list_text(server), cpu_list_text(client))
            }
        }
    }
}

impl TryFrom<String> for PinRequest {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<PinRequest> for String {
    fn from(request: PinRequest) -> String {
        request.to_string()
    }
}

/// The most CPUs a list may name (the kernel's cpu_set_t holds 1024).
const MAX_CPU: usize = 1023;

/// `0`, `0,2`, `0-3`, `0-1,4`: the CPUs in ascending order, each once.
fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let number = |s: &str| -> Result<usize, String> {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a CPU number"))?;
            if n > MAX_CPU {
                return Err(format!("CPU {n} is beyond the largest, {MAX_CPU}"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(format!("range {part:?} runs backwards"));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(number(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// `0`, `0-3`, `0,2`: the shortest list text for `cpus` (ascending).
pub(crate) fn cpu_list_text(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 {
            format!("{}-{}", cpus[i], cpus[j])
        } else if j == i + 1 {
            format!("{},{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Where a cell's server process and client threads ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// CPUs the server process was pinned to; empty when it was not pinned.
    pub server_cpus: Vec<usize>,
    /// CPUs the client threads (this process) were pinned to; empty when not pinned.
    pub client_cpus: Vec<usize>,
}

impl Placement {
    pub(crate) fn unpinned() -> Placement {
        Placement::default()
    }

    pub(crate) fn is_pinned(&self) -> bool {
        !self.server_cpus.is_empty() || !self.client_cpus.is_empty()
    }

    /// "server on CPU 0, client on CPU 1" / "unpinned (the scheduler placed both)".
    pub(crate) fn describe(&self) -> String {
        if !self.is_pinned() {
            return "unpinned (the scheduler placed server and client)".to_string();
        }
        let side = |cpus: &[usize]| match cpus.len() {
            0 => "unpinned".to_string(),
            1 => format!("on CPU {}", cpus[0]),
            _ => format!("on CPUs {}", cpu_list_text(cpus)),
        };
        format!(
            "server {}, client {}",
            side(&self.server_cpus),
            side(&self.client_cpus)
        )
    }

    /// Pins the server process when it runs on this host, and the calling thread while
    /// the guard lives: the client threads it starts in the meantime inherit the pinning.
    pub(crate) fn apply(&self, server_pid: Option<u32>) -> Result<Option<PinnedThread>> {
        if let (Some(pid), false) = (server_pid, self.server_cpus.is_empty()) {
            pin_process(pid, &self.server_cpus)?;
        }
        if self.client_cpus.is_empty() {
            return Ok(None);
        }
        PinnedThread::pin(&self.client_cpus).map(Some)
    }
}

/// The placement `request` gives on a machine where this process may use `allowed`
/// (ascending). `auto` splits them, the server taking the lower half; an explicit list
/// must name allowed CPUs only.
pub(crate) fn resolve(request: &PinRequest, allowed: &[usize]) -> Result<Placement> {
    match request {
        PinRequest::None => Ok(Placement::unpinned()),
        PinRequest::Auto if allowed.len() < 2 => Ok(Placement::unpinned()),
        PinRequest::Auto => {
            let (server, client) = allowed.split_at(allowed.len() / 2);
            Ok(Placement {
                server_cpus: server.to_vec(),
                client_cpus: client.to_vec(),
            })
        }
        PinRequest::Cpus { server, client } => {
            for (side, cpus) in [("server", server), ("client", client)] {
                if cpus.is_empty() {
                    bail!("--pin {request}: no {side} CPU given");
                }
                if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                    bail!(
                        "--pin {request}: {side} CPU {cpu} is not one this process may run on \
                         (allowed: {})",
                        cpu_list_text(allowed)
                    );
                }
            }
            Ok(Placement {
                server_cpus: server.clone(),
                client_cpus: client.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_requests_parse_and_print_back() {
        for text in ["auto", "none", "0/1", "0-2/3,4", "0/0", "1,3/0-2"] {
            let request: PinRequest = text.parse().unwrap();
            assert_eq!(request.to_string(), text);
        }
        assert_eq!(
            "2,0,1/3".parse::<PinRequest>().unwrap(),
            PinRequest::Cpus {
                server: vec![0, 1, 2],
                client: vec![3]
            }
        );
        for bad in ["", "0", "x/1", "1-0/2", "0/1/2", "2000/1", "0,/1"] {
            assert!(bad.parse::<PinRequest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn auto_splits_the_allowed_cpus_and_lists_must_be_allowed() {
        let two = resolve(&PinRequest::Auto, &[0, 1]).unwrap();
        assert_eq!((two.server_cpus, two.client_cpus), (vec![0], vec![1]));
        let four = resolve(&PinRequest::Auto, &[0, 1, 2, 3]).unwrap();
        assert_eq!(
            (four.server_cpus, four.client_cpus),
            (vec![0, 1], vec![2, 3])
        );
        assert!(!resolve(&PinRequest::Auto, &[3]).unwrap().is_pinned());
        assert!(!resolve(&PinRequest::None, &[0, 1]).unwrap().is_pinned());
        let same = resolve(&"1/1".parse().unwrap(), &[0, 1]).unwrap();
        assert_eq!(same.describe(), "server on CPU 1, client on CPU 1");
        let e = resolve(&"0/5".parse().unwrap(), &[0, 1]).unwrap_err();
        assert!(format!("{e}").contains("client CPU 5 is not one"), "{e}");
    }

    #[test]
    fn a_placement_says_where_each_side_ran() {
        assert_eq!(
            Placement::unpinned().describe(),
            "unpinned (the scheduler placed server and client)"
        );
        let p = Placement {
            server_cpus: vec![0, 1],
            client_cpus: vec![2, 3, 4],
        };
        assert_eq!(p.describe(), "server on CPUs 0,1, client on CPUs 2-4");
    }
}
