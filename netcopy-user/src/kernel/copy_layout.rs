//! What the copy programs need to know about the running kernel, found at run time: the
//! struct offsets they read at (kernel BTF), the tracepoint fields they read (tracefs
//! `format` files), and for each fact that could not be found, why. Rust eBPF has no
//! CO-RE, so nothing the programs read is hard-coded but a few tracepoint fields, which
//! are checked here.

use std::{collections::HashMap, path::Path};

use anyhow::{anyhow, bail, Result};
use netcopy_common::{KernelOffsets, OFFSET_UNKNOWN};

use super::{btf::KernelBtf, plan::Layout, tracefs::TracepointFormat};

/// Offsets found for this kernel, and for each layout fact that could not be found, why.
pub(super) struct CopyLayout {
    pub offsets: KernelOffsets,
    pub missing: HashMap<Layout, String>,
}

impl CopyLayout {
    /// Reads what it can; never fails as a whole (a missing fact disables the strategies
    /// that need it, with the reason).
    pub fn discover(tracefs: &Path, btf: Option<&KernelBtf>) -> Self {
        let mut o = KernelOffsets::default();
        let mut missing = HashMap::new();
        let tp = |category: &str, name: &str, field: &str, size: u32| -> Result<u32> {
            TracepointFormat::read(tracefs, category, name)?.offset(field, size)
        };
        // A field the programs read at a constant offset: this kernel must agree.
        let tp_at = |category: &str, name: &str, field: &str, size: u32, at: u32| -> Result<()> {
            let found = tp(category, name, field, size)?;
            if found != at {
                bail!(
                    "{category}/{name} keeps `{field}` at offset {found}; netcopy's program \
                     reads it at {at} (the layout of every kernel it was built for)"
                );
            }
            Ok(())
        };
        let mut record = |layout: Layout, result: Result<()>| {
            if let Err(e) = result {
                missing.insert(layout, format!("{e:#}"));
            }
        };
        record(
            Layout::TpSkbCopyLen,
            tp_at(
                "skb",
                "skb_copy_datagram_iovec",
                "len",
                4,
                netcopy_common::TP_SKB_COPY_LEN_OFFSET,
            ),
        );
        record(
            Layout::TpForkPids,
            (|| {
                o.tp_fork_parent_pid = tp("sched", "sched_process_fork", "parent_pid", 4)?;
                o.tp_fork_child_pid = tp("sched", "sched_process_fork", "child_pid", 4)?;
                Ok(())
            })(),
        );
        let Some(btf) = btf else {
            for layout in [
                Layout::SendDecision,
                Layout::SkbZerocopyOwner,
                Layout::SkbDataLen,
                Layout::UargBytelen,
            ] {
                missing.insert(layout, "kernel BTF is unavailable".to_string());
            }
            return Self {
                offsets: o,
                missing,
            };
        };
        let bit = |value: u64, name: &str| -> Result<u32> {
            u32::try_from(value)
                .ok()
                .filter(|v| *v < 64)
                .ok_or_else(|| anyhow!("{name} = {value} is not a bit number below 64"))
        };
        record(
            Layout::SendDecision,
            (|| {
                o.msghdr_msg_flags = btf.member_offset("msghdr", "msg_flags")?;
                // Linux >= 6.0 (io_uring SEND_ZC); before it, no caller brings a ubuf_info.
                o.msghdr_msg_ubuf = btf
                    .member_offset("msghdr", "msg_ubuf")
                    .unwrap_or(OFFSET_UNKNOWN);
                // Newer kernels keep sk_flags in sock_common (#define sk_flags
                // __sk_common.skc_flags); older ones have it in struct sock.
                o.sock_sk_flags = btf.member_offset("sock", "sk_flags").or_else(|_| {
                    Ok::<u32, anyhow::Error>(
                        btf.member_offset("sock", "__sk_common")?
                            + btf.member_offset("sock_common", "skc_flags")?,
                    )
                })?;
                o.sock_sk_route_caps = btf.member_offset("sock", "sk_route_caps")?;
                o.sock_zerocopy_bit = bit(btf.enum_value("SOCK_ZEROCOPY")?, "SOCK_ZEROCOPY")?;
                o.netif_f_sg_bit = bit(btf.enum_value("NETIF_F_SG_BIT")?, "NETIF_F_SG_BIT")?;
                Ok(())
            })(),
        );
        record(
            Layout::SkbZerocopyOwner,
            (|| {
                o.skb_head = btf.member_offset("sk_buff", "head")?;
                o.skb_end = btf.member_offset("sk_buff", "end")?;
                o.skb_cb = btf.member_offset("sk_buff", "cb")?;
                o.skb_sk = btf.member_offset("sk_buff", "sk")?;
                o.shinfo_destructor_arg = btf.member_offset("skb_shared_info", "destructor_arg")?;
                Ok(())
            })(),
        );
        record(
            Layout::SkbDataLen,
            (|| {
                o.skb_data_len = btf.member_offset("sk_buff", "data_len")?;
                Ok(())
            })(),
        );
        record(
            Layout::UargBytelen,
            (|| {
                // Kernels >= 6.2 split the zero-copy fields into struct ubuf_info_msgzc.
                let uarg = ["ubuf_info_msgzc", "ubuf_info"]
                    .into_iter()
                    .find(|s| btf.member_offset(s, "bytelen").is_ok())
                    .ok_or_else(|| anyhow!("neither ubuf_info_msgzc nor ubuf_info has bytelen"))?;
                o.uarg_bytelen = btf.member_offset(uarg, "bytelen")?;
                // Optional: without it completions are counted but not split by copied.
                if let Ok(bit) = btf.member_bit_offset(uarg, "zerocopy") {
                    o.uarg_zerocopy_bit = bit;
                }
                Ok(())
            })(),
        );
        // Optional, for the trace only: without it a sendmsg's request is read from user
        // memory, as on the kprobe and fentry strategies.
        let send_iter = (|| -> Result<[u32; 5]> {
            let iter = btf.member_offset("msghdr", "msg_iter")?;
            let value = |name: &str| -> Result<u32> {
                u32::try_from(btf.enum_value(name)?)
                    .map_err(|_| anyhow!("{name} does not fit 32 bits"))
            };
            Ok([
                iter + btf.member_offset("iov_iter", "iter_type")?,
                iter + btf.member_offset("iov_iter", "count")?,
                iter + btf.member_offset("iov_iter", "nr_segs")?,
                value("ITER_IOVEC")?,
                // Kernels before 6.0 have no ITER_UBUF: every request is ITER_IOVEC.
                value("ITER_UBUF").unwrap_or(OFFSET_UNKNOWN),
            ])
        })();
        match send_iter {
            Ok([kind, count, segs, iovec, ubuf]) => {
                o.msghdr_iter_type = kind;
                o.msghdr_iter_count = count;
                o.msghdr_iter_nr_segs = segs;
                o.iter_iovec = iovec;
                o.iter_ubuf = ubuf;
            }
            Err(e) => log::debug!("the trace reads sendmsg requests from user memory: {e:#}"),
        }
        Self {
            offsets: o,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_format(root: &Path, category: &str, name: &str, fields: &[(&str, u32, u32)]) {
        let dir = root.join("events").join(category).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!("name: {name}\nID: 1\nformat:\n");
        text.push_str("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n");
        for (field, offset, size) in fields {
            text.push_str(&format!(
                "\tfield:long {field};\toffset:{offset};\tsize:{size};\tsigned:1;\n"
            ));
        }
        std::fs::write(dir.join("format"), text).unwrap();
    }

    #[test]
    fn tracepoint_fields_read_at_constant_offsets_are_checked() {
        let root =
            std::env::temp_dir().join(format!("netcopy-copy-layout-tp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // The receive copy's record with `len` moved.
        write_format(
            &root,
            "skb",
            "skb_copy_datagram_iovec",
            &[("skbaddr", 8, 8), ("len", 24, 4)],
        );
        let discovery = CopyLayout::discover(&root, None);
        let _ = std::fs::remove_dir_all(&root);
        let why = &discovery.missing[&Layout::TpSkbCopyLen];
        assert!(
            why.contains("skb/skb_copy_datagram_iovec keeps `len` at offset 24")
                && why.contains("reads it at 16"),
            "{why}"
        );
    }
}
