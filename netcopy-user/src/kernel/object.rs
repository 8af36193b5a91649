//! The eBPF object embedded at build time (see build.rs).

#[cfg(netcopy_ebpf_embedded)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netcopy-ebpf.o"));

/// The ELF bytes of netcopy's eBPF programs.
pub fn bytes() -> anyhow::Result<&'static [u8]> {
    #[cfg(netcopy_ebpf_embedded)]
    {
        Ok(OBJECT)
    }
    #[cfg(not(netcopy_ebpf_embedded))]
    {
        anyhow::bail!(
            "this netcopy binary was built without its eBPF programs; build it with \
             `cargo xtask build` (which builds netcopy-ebpf first and embeds it)"
        )
    }
}

/// True when the eBPF programs are embedded in this binary.
pub fn embedded() -> bool {
    cfg!(netcopy_ebpf_embedded)
}
