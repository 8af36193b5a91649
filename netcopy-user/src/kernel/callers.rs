//! Who asked for each deferred copy: the kernel stacks that reached `skb_copy_ubufs` with
//! a watched process's zero-copy pages, as the copy-caller programs keep them (where
//! fentry or kprobe reaches that function; see `plan::KernelEvent::CopyCaller`), read
//! back, told apart per phase, and named with /proc/kallsyms.
//!
//! A chain's frames are the callers only: the probe's own frames (the program, an fentry
//! trampoline, `skb_copy_ubufs` itself) are dropped, so that the first frame is the
//! function that wanted the copy (e.g. `dev_queue_xmit_nit`, which copies for a packet
//! tap through the inline `deliver_skb` and `skb_orphan_frags_rx`).

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use netcopy_common::{CopyCallerKey, SiteCounter, COPY_CALLER_FRAMES, SLOT_COUNT};
use serde::{Deserialize, Serialize};

use super::maps::{COPY_CALLERS_MAP, COPY_CALLERS_UNRECORDED_MAP};

/// The function whose callers are looked for.
const COPY_FUNCTION: &str = "skb_copy_ubufs";

/// Copies and bytes per raw kernel stack, and the copies whose stack was not kept, as the
/// maps hold them now (summed over CPUs). Two readings make a phase's with [`Self::since`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerCounts {
    chains: HashMap<CopyCallerKey, SiteCounter>,
    /// Per slot; a slot past the end has none.
    unrecorded: Vec<SiteCounter>,
}

fn minus(now: SiteCounter, then: SiteCounter) -> SiteCounter {
    SiteCounter {
        calls: now.calls.wrapping_sub(then.calls),
        bytes: now.bytes.wrapping_sub(then.bytes),
    }
}

fn sum(values: impl IntoIterator<Item = SiteCounter>) -> SiteCounter {
    values
        .into_iter()
        .fold(SiteCounter::default(), |acc, c| SiteCounter {
            calls: acc.calls + c.calls,
            bytes: acc.bytes + c.bytes,
        })
}

impl CallerCounts {
    /// Reads the copy-caller maps of `ebpf`.
    pub fn read(ebpf: &Ebpf) -> Result<CallerCounts> {
        let map = ebpf
            .map(COPY_CALLERS_MAP)
            .ok_or_else(|| anyhow!("eBPF object has no map {COPY_CALLERS_MAP}"))?;
        let chains: PerCpuHashMap<_, CopyCallerKey, SiteCounter> = PerCpuHashMap::try_from(map)?;
        let mut out = CallerCounts::default();
        for entry in chains.iter() {
            let (key, per_cpu) = entry.context("reading the copy-caller map")?;
            out.chains.insert(key, sum(per_cpu.iter().copied()));
        }
        let map = ebpf
            .map(COPY_CALLERS_UNRECORDED_MAP)
            .ok_or_else(|| anyhow!("eBPF object has no map {COPY_CALLERS_UNRECORDED_MAP}"))?;
        let unrecorded: PerCpuArray<_, SiteCounter> = PerCpuArray::try_from(map)?;
        for slot in 0..SLOT_COUNT as u32 {
            let per_cpu = unrecorded
                .get(&slot, 0)
                .context("reading the unrecorded copy callers")?;
            out.unrecorded.push(sum(per_cpu.iter().copied()));
        }
        Ok(out)
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &CallerCounts) -> CallerCounts {
        let chains = self
            .chains
            .iter()
            .map(|(key, now)| {
                let then = earlier.chains.get(key).copied().unwrap_or_default();
                (*key, minus(*now, then))
            })
            .filter(|(_, c)| c.calls > 0)
            .collect();
        let unrecorded = self
            .unrecorded
            .iter()
            .enumerate()
            .map(|(slot, now)| {
                let then = earlier.unrecorded.get(slot).copied().unwrap_or_default();
                minus(*now, then)
            })
            .collect();
        CallerCounts { chains, unrecorded }
    }

    /// Adds `copies` copies of `bytes` in all by the stack `ips` for `slot` (for tests
    /// and for building expected figures).
    pub fn add(&mut self, slot: u32, ips: &[u64], copies: u64, bytes: u64) {
        let mut key = CopyCallerKey {
            slot,
            ..CopyCallerKey::default()
        };
        let n = ips.len().min(COPY_CALLER_FRAMES);
        key.ips[..n].copy_from_slice(&ips[..n]);
        key.frames = n as u32;
        let c = self.chains.entry(key).or_default();
        c.calls += copies;
        c.bytes += bytes;
    }

    /// The chains of `slot`, named with `symbols`, most bytes first; chains whose callers
    /// read the same are merged.
    pub fn of_slot(&self, slot: u32, symbols: &KernelSymbols) -> CopyCallers {
        let mut merged: Vec<CallerChain> = Vec::new();
        for (key, counter) in self.chains.iter().filter(|(k, _)| k.slot == slot) {
            let frames = key.frames.min(COPY_CALLER_FRAMES as u32) as usize;
            let callers = callers_of(&key.ips[..frames], symbols);
            match merged.iter_mut().find(|c| c.callers == callers) {
                Some(chain) => {
                    chain.copies += counter.calls;
                    chain.bytes += counter.bytes;
                }
                None => merged.push(CallerChain {
                    callers,
                    copies: counter.calls,
                    bytes: counter.bytes,
                }),
            }
        }
        merged.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.callers.cmp(&b.callers)));
        let unrecorded = self
            .unrecorded
            .get(slot as usize)
            .copied()
            .unwrap_or_default();
        CopyCallers {
            chains: merged,
            unrecorded_copies: unrecorded.calls,
            unrecorded_bytes: unrecorded.bytes,
            symbols_hidden: symbols.hidden(),
        }
    }
}

/// One phase's deferred copies of one process, by the kernel stack that asked for them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCallers {
    pub chains: Vec<CallerChain>,
    /// Deferred copies whose stack was not kept (unreadable, or no room for the chain).
    pub unrecorded_copies: u64,
    pub unrecorded_bytes: u64,
    /// /proc/kallsyms gave no addresses (hidden by kptr_restrict, or unreadable): frames
    /// are addresses.
    #[serde(default)]
    pub symbols_hidden: bool,
}

impl CopyCallers {
    pub fn copies(&self) -> u64 {
        self.chains.iter().map(|c| c.copies).sum::<u64>() + self.unrecorded_copies
    }
}

/// The callers of one kernel stack that reached `skb_copy_ubufs`, innermost first, with
/// the copies it made and their bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerChain {
    /// `function+0xoffset`, with ` [module]` for a module's function; `0x...` when the
    /// address is in no known function.
    pub callers: Vec<String>,
    pub copies: u64,
    pub bytes: u64,
}

impl CallerChain {
    /// The functions of the chain, innermost first, without offsets, modules or the
    /// compiler's suffixes (`__netif_receive_skb_core.constprop.0` is
    /// `__netif_receive_skb_core`).
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.callers.iter().map(|frame| function_name(frame))
    }

    /// `a <- b <- c`: the first `n` callers, for a sentence.
    pub fn short(&self, n: usize) -> String {
        let mut text = self
            .callers
            .iter()
            .take(n)
            .cloned()
            .collect::<Vec<_>>()
            .join(" <- ");
        if self.callers.len() > n {
            text.push_str(" <- ...");
        }
        if text.is_empty() {
            text.push_str("(no caller frames)");
        }
        text
    }
}

/// The function a frame names: `dev_queue_xmit_nit+0x2a5` -> `dev_queue_xmit_nit`,
/// `__netif_receive_skb_core.constprop.0+0x6f` -> `__netif_receive_skb_core`,
/// `veth_xmit+0x1a [veth]` -> `veth_xmit`.
pub fn function_name(frame: &str) -> &str {
    let name = frame.split(['+', ' ']).next().unwrap_or(frame);
    name.split('.').next().unwrap_or(name)
}

/// The caller frames of one raw stack: what comes after `skb_copy_ubufs`, or, when the
/// unwinder did not list that function, what comes after the probe's own frames.
fn callers_of(ips: &[u64], symbols: &KernelSymbols) -> Vec<String> {
    let frames: Vec<String> = ips
        .iter()
        .filter(|ip| **ip != 0)
        .map(|ip| symbols.frame(*ip))
        .collect();
    let after_copy = frames
        .iter()
        .rposition(|f| function_name(f) == COPY_FUNCTION)
        .map(|i| i + 1);
    let start = after_copy.unwrap_or_else(|| {
        frames
            .iter()
            .position(|f| !is_probe_frame(f))
            .unwrap_or(frames.len())
    });
    frames[start..].to_vec()
}

/// A frame of the probe itself: the eBPF program, an fentry trampoline, the helper.
fn is_probe_frame(frame: &str) -> bool {
    let f = function_name(frame);
    f.starts_with("bpf_prog_")
        || f.starts_with("bpf_trampoline_")
        || f.starts_with("bpf_get_stack")
        || frame.ends_with("[bpf]")
}

/// The kernel's text symbols (/proc/kallsyms), to name return addresses.
#[derive(Clone, Debug, Default)]
pub struct KernelSymbols {
    /// (address, name, module), sorted by address.
    symbols: Vec<(u64, String, Option<String>)>,
    hidden: bool,
}

impl KernelSymbols {
    /// Reads /proc/kallsyms.
    pub fn load() -> Result<KernelSymbols> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(KernelSymbols::parse(&text))
    }

    /// `ADDRESS TYPE NAME[\t[MODULE]]` lines; only text symbols are kept.
    pub fn parse(text: &str) -> KernelSymbols {
        let mut symbols = Vec::new();
        let mut lines = 0usize;
        let mut zero = 0usize;
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(addr), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            lines += 1;
            if addr == 0 {
                zero += 1;
                continue;
            }
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let (name, module) = match rest.split_once('\t') {
                Some((name, module)) => (
                    name.trim(),
                    Some(module.trim().trim_matches(['[', ']']).to_string()),
                ),
                None => (rest.trim(), None),
            };
            symbols.push((addr, name.to_string(), module));
        }
        symbols.sort_by_key(|s| s.0);
        KernelSymbols {
            symbols,
            hidden: lines > 0 && zero == lines,
        }
    }

    /// No symbols at all (/proc/kallsyms unreadable): frames are addresses.
    pub fn unreadable() -> KernelSymbols {
        KernelSymbols {
            symbols: Vec::new(),
            hidden: true,
        }
    }

    /// Every address read as 0: the kernel hides them from this process.
    pub fn hidden(&self) -> bool {
        self.hidden
    }

    /// `function+0xoffset [module]` for return address `ip`.
    pub fn frame(&self, ip: u64) -> String {
        // A return address follows its call, which may be a function's last instruction:
        // the function is the one holding the byte before it.
        let at = ip.saturating_sub(1);
        let index = self.symbols.partition_point(|s| s.0 <= at);
        match index.checked_sub(1).map(|i| &self.symbols[i]) {
            Some((start, name, module)) => {
                let offset = ip - start;
                match module {
                    Some(m) => format!("{name}+{offset:#x} [{m}]"),
                    None => format!("{name}+{offset:#x}"),
                }
            }
            None => format!("{ip:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffffa69c1020 T skb_copy_ubufs
ffffffffa69c16b0 t skb_zerocopy_clone
ffffffffa69d6e50 T dev_queue_xmit_nit
ffffffffa69dcc10 T dev_hard_start_xmit
ffffffffa69de470 t __netif_receive_skb_core.constprop.0
ffffffffa69e0000 D some_data
ffffffffc050aa80 t veth_xmit\t[veth]
ffffffffc0600000 t bpf_prog_6deef7357e7b4530_netcopy_copy_caller_fentry\t[bpf]
ffffffffc0601000 t bpf_trampoline_6442523617\t[bpf]
";

    #[test]
    fn frames_are_named_by_the_function_holding_them() {
        let s = KernelSymbols::parse(KALLSYMS);
        assert!(!s.hidden());
        assert_eq!(
            s.frame(0xffffffffa69d6e50 + 0x2a5),
            "dev_queue_xmit_nit+0x2a5"
        );
        assert_eq!(s.frame(0xffffffffc050aa80 + 0x1a), "veth_xmit+0x1a [veth]");
        // A return address just past a function's end still names that function.
        assert_eq!(s.frame(0xffffffffa69dcc10), "dev_queue_xmit_nit+0x5dc0");
        // Data symbols name nothing: the address lies in the function before them.
        assert_eq!(
            s.frame(0xffffffffa69e0010),
            "__netif_receive_skb_core.constprop.0+0x1ba0"
        );
        assert_eq!(s.frame(0x1000), "0x1000");
        assert_eq!(
            function_name("__netif_receive_skb_core.constprop.0+0x6f"),
            "__netif_receive_skb_core"
        );
        assert_eq!(function_name("veth_xmit+0x1a [veth]"), "veth_xmit");
    }

    #[test]
    fn hidden_addresses_are_told() {
        let s = KernelSymbols::parse("0000000000000000 T skb_copy_ubufs\n0000000000000000 t x\n");
        assert!(s.hidden());
        assert_eq!(s.frame(0xffffffffa69d6e60), "0xffffffffa69d6e60");
    }

    #[test]
    fn chains_keep_only_the_callers_of_the_copy_per_phase_and_slot() {
        let s = KernelSymbols::parse(KALLSYMS);
        let fentry = [
            0xffffffffc0600000 + 0x40,  // the program
            0xffffffffc0601000 + 0x30,  // the trampoline
            0xffffffffa69c1020 + 0x5,   // skb_copy_ubufs, at its fentry call
            0xffffffffa69d6e50 + 0x2a5, // dev_queue_xmit_nit
            0xffffffffa69dcc10 + 0x60,  // dev_hard_start_xmit
        ];
        let mut before = CallerCounts::default();
        before.add(1, &fentry, 3, 3000);
        let mut now = before.clone();
        now.add(1, &fentry, 10, 655_360);
        // A kprobe's stack starts at the function itself.
        let kprobe = [0xffffffffa69c1020 + 0x1, 0xffffffffa69de470 + 0x6f];
        now.add(1, &kprobe, 2, 8192);
        // Another slot's copies are not this slot's.
        now.add(2, &kprobe, 5, 5);
        now.unrecorded = vec![
            SiteCounter::default(),
            SiteCounter {
                calls: 1,
                bytes: 64,
            },
        ];
        let phase = now.since(&before).of_slot(1, &s);
        assert_eq!(phase.chains.len(), 2, "{phase:?}");
        assert_eq!(
            phase.chains[0],
            CallerChain {
                callers: vec![
                    "dev_queue_xmit_nit+0x2a5".into(),
                    "dev_hard_start_xmit+0x60".into()
                ],
                copies: 10,
                bytes: 655_360,
            }
        );
        assert_eq!(
            phase.chains[1].functions().collect::<Vec<_>>(),
            ["__netif_receive_skb_core"]
        );
        assert_eq!((phase.unrecorded_copies, phase.unrecorded_bytes), (1, 64));
        assert_eq!(phase.copies(), 13);
        assert_eq!(phase.chains[0].short(1), "dev_queue_xmit_nit+0x2a5 <- ...");
    }

    #[test]
    fn without_the_copy_function_in_the_stack_the_probe_frames_are_dropped() {
        let s = KernelSymbols::parse(KALLSYMS);
        let ips = [
            0xffffffffc0600000 + 0x40,
            0xffffffffc0601000 + 0x30,
            0xffffffffc050aa80 + 0x1a,
        ];
        assert_eq!(callers_of(&ips, &s), ["veth_xmit+0x1a [veth]"]);
    }
}
