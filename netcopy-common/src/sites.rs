//! Copy sites and their counters: the vocabulary of places where payload bytes are copied,
//! the per-slot counter layout the eBPF programs count into, and the copy-caller map's key.

/// A place where payload bytes are copied (or deliberately not copied) on their way from
/// the sender's fields to the receiver's memory: the one vocabulary of copy sites, shared
/// by the eBPF counters, the attach plan and the ledger.
///
/// The discriminant of a site the eBPF programs count is the index of its counter within
/// a slot (see [`counter_index`]); [`CopySite::UserCopy`], which no program counts, comes
/// after them and has no counter.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopySite {
    /// User pages copied into socket buffers by `tcp_sendmsg_locked`.
    KernelSendCopy = 0,
    /// User pages pinned and attached to socket buffers (MSG_ZEROCOPY), no copy.
    ZeroCopyAttach = 1,
    /// Pages of a zero-copy send that the kernel copied later (`skb_copy_ubufs`).
    DeferredCopy = 2,
    /// Zero-copy completion notifications raised by the kernel.
    ZeroCopyCompletion = 3,
    /// Socket buffers copied to the receiver's user memory.
    KernelRecvCopy = 4,
    /// Zero-copy completions whose pages the kernel had to copy (`zerocopy` bit clear);
    /// user space sees these as SO_EE_CODE_ZEROCOPY_COPIED.
    ZeroCopyCompletionCopied = 5,
    /// References to pages the kernel already held (a pipe's, the page cache's) attached
    /// to socket buffers instead of a copy: splice and sendfile (`MSG_SPLICE_PAGES` on
    /// Linux >= 6.5, `do_tcp_sendpages` before).
    PageReference = 6,
    /// Received bytes the kernel mapped into the receiver's memory instead of copying them
    /// (getsockopt(TCP_ZEROCOPY_RECEIVE), `--recv zerocopy`): counted at the return of
    /// `tcp_zerocopy_receive` where fexit or kprobes work; no tracepoint sees the mapping,
    /// so elsewhere the figure is what the kernel reported to the receiver, call by call.
    RecvMapped = 7,
    /// The two-copy mode's serialization memcpy in user space: the sender counts it
    /// itself, no probe is needed to see a `memcpy` we wrote.
    UserCopy = 8,
}

/// Number of sites the eBPF programs count; the counter array is
/// `SLOT_COUNT * COUNTED_SITE_COUNT` long.
pub const COUNTED_SITE_COUNT: usize = 8;

impl CopySite {
    /// Every site.
    pub const ALL: [CopySite; 9] = [
        CopySite::UserCopy,
        CopySite::KernelSendCopy,
        CopySite::ZeroCopyAttach,
        CopySite::PageReference,
        CopySite::DeferredCopy,
        CopySite::ZeroCopyCompletion,
        CopySite::KernelRecvCopy,
        CopySite::RecvMapped,
        CopySite::ZeroCopyCompletionCopied,
    ];

    /// The sites the eBPF programs count, in counter order.
    pub const COUNTED: [CopySite; COUNTED_SITE_COUNT] = [
        CopySite::KernelSendCopy,
        CopySite::ZeroCopyAttach,
        CopySite::DeferredCopy,
        CopySite::ZeroCopyCompletion,
        CopySite::KernelRecvCopy,
        CopySite::ZeroCopyCompletionCopied,
        CopySite::PageReference,
        CopySite::RecvMapped,
    ];

    /// Index of this site's counter within a slot, None for a site no program counts.
    #[inline(always)]
    pub const fn counter(self) -> Option<u32> {
        match self {
            CopySite::UserCopy => None,
            counted => Some(counted as u32),
        }
    }

    /// The site's name in results.json, reports and `netcopy probes`.
    pub const fn name(self) -> &'static str {
        match self {
            CopySite::UserCopy => "user_copy",
            CopySite::KernelSendCopy => "kernel_send_copy",
            CopySite::ZeroCopyAttach => "zerocopy_attach",
            CopySite::DeferredCopy => "deferred_copy",
            CopySite::ZeroCopyCompletion => "zerocopy_completions",
            CopySite::KernelRecvCopy => "kernel_recv_copy",
            CopySite::ZeroCopyCompletionCopied => "zerocopy_completions_copied",
            CopySite::PageReference => "page_reference",
            CopySite::RecvMapped => "recv_mapped",
        }
    }

    /// True for sites where bytes are copied (attaching pinned pages and completion
    /// notifications are not copies).
    pub const fn is_copy(self) -> bool {
        matches!(
            self,
            CopySite::UserCopy
                | CopySite::KernelSendCopy
                | CopySite::DeferredCopy
                | CopySite::KernelRecvCopy
        )
    }
}

impl core::fmt::Display for CopySite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Processes are put in a filter map with a slot number; counters are kept per slot so
/// that one probe set can tell the server's copies from the client's.
pub const SLOT_COUNT: usize = 4;

/// Index of the counter for `site` in the per-CPU counter array, None for a site no
/// program counts.
#[inline(always)]
pub const fn counter_index(slot: u32, site: CopySite) -> Option<u32> {
    match site.counter() {
        Some(counter) => Some(slot * COUNTED_SITE_COUNT as u32 + counter),
        None => None,
    }
}

/// Calls and bytes seen at one copy site on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounter {
    pub calls: u64,
    pub bytes: u64,
}

/// Return addresses kept of each deferred copy's kernel stack (`bpf_get_stack` at
/// `skb_copy_ubufs`): the probe's own frames (the program, an fentry trampoline, the
/// function itself) come first, then the callers, which decide the cause. 16 leave ten
/// or more callers, enough to reach from the copy to the device or socket that wanted it.
pub const COPY_CALLER_FRAMES: usize = 16;

/// Distinct caller chains kept (the key of [`CopyCallerKey`]'s map); a copy whose chain
/// finds no room is counted as unrecorded instead.
pub const COPY_CALLER_CHAINS: u32 = 512;

/// Key of the copy-caller map: one kernel stack that reached `skb_copy_ubufs` with a
/// watched slot's zero-copy pages. Its value is a [`SiteCounter`] (copies, bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CopyCallerKey {
    /// Counter slot of the socket that owns the pages.
    pub slot: u32,
    /// Entries of `ips` the kernel filled.
    pub frames: u32,
    /// Return addresses, innermost first; zero past `frames`.
    pub ips: [u64; COPY_CALLER_FRAMES],
}

impl Default for CopyCallerKey {
    fn default() -> Self {
        Self {
            slot: 0,
            frames: 0,
            ips: [0; COPY_CALLER_FRAMES],
        }
    }
}

// The key crosses to user space as raw bytes: no padding, a size both sides agree on.
const _: () = assert!(core::mem::size_of::<CopyCallerKey>() == 8 + 8 * COPY_CALLER_FRAMES);

#[cfg(feature = "user")]
impl serde::Serialize for CopySite {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counted_site_has_its_own_counter_and_the_user_copy_none() {
        for (index, site) in CopySite::COUNTED.iter().enumerate() {
            assert_eq!(site.counter(), Some(index as u32), "{site:?}");
        }
        assert_eq!(CopySite::UserCopy.counter(), None);
        assert_eq!(CopySite::RecvMapped.counter(), Some(7));
        assert_eq!(counter_index(0, CopySite::UserCopy), None);
        let last = (SLOT_COUNT * COUNTED_SITE_COUNT - 1) as u32;
        assert_eq!(
            counter_index(SLOT_COUNT as u32 - 1, CopySite::RecvMapped),
            Some(last)
        );
        for site in CopySite::ALL {
            assert_eq!(
                site.counter().is_some(),
                CopySite::COUNTED.contains(&site),
                "{site:?}"
            );
        }
    }

    #[test]
    fn site_names_are_distinct() {
        for a in CopySite::ALL {
            for b in CopySite::ALL {
                assert_eq!(a == b, a.name() == b.name(), "{a:?} {b:?}");
            }
        }
    }
}
