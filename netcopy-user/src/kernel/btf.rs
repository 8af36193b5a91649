//! Kernel struct layouts from the running kernel's BTF (/sys/kernel/btf/vmlinux): the
//! offsets our programs read at are found here at run time, never hard-coded.

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, Type};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        let btf = Btf::from_file(VMLINUX_BTF)
            .with_context(|| format!("reading kernel BTF from {VMLINUX_BTF}"))?;
        Ok(Self { btf })
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous unions and
    /// structs the way C does.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32> {
        let bits = self.member_bit_offset(name, member)?;
        if bits % 8 != 0 {
            bail!("{name}.{member} is a bit field");
        }
        Ok(bits / 8)
    }

    /// Bit offset of `member` (which may be a bit field) in `struct name`.
    pub fn member_bit_offset(&self, name: &str, member: &str) -> Result<u32> {
        let candidates = self
            .btf
            .resolve_types_by_name(name)
            .with_context(|| format!("struct {name} not in kernel BTF"))?;
        for candidate in candidates {
            if let Type::Struct(s) = candidate {
                if let Some(bits) = self.find_member(&s, member)? {
                    return Ok(bits);
                }
            }
        }
        Err(anyhow!(
            "struct {name} has no member {member} in kernel BTF"
        ))
    }

    fn find_member(&self, s: &btf_rs::Struct, member: &str) -> Result<Option<u32>> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return Ok(Some(m.bit_offset()));
            }
            if name.is_empty() {
                // Anonymous struct or union: search inside it.
                let mut ty = self.btf.resolve_chained_type(m)?;
                while let Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) = ty {
                    let Some(inner) = ty.as_btf_type() else { break };
                    ty = self.btf.resolve_chained_type(inner)?;
                }
                if let Type::Struct(inner) | Type::Union(inner) = ty {
                    if let Some(off) = self.find_member(&inner, member)? {
                        return Ok(Some(m.bit_offset() + off));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Value of enumerator `name` in any enum of the kernel (e.g. `SOCK_ZEROCOPY`).
    pub fn enum_value(&self, enumerator: &str) -> Result<u64> {
        let mut types = self.btf.type_iter();
        // TypeIter is a fallible iterator; a parse error ends the search.
        while let Ok(Some(ty)) = fallible_iterator::FallibleIterator::next(&mut types) {
            match ty {
                Type::Enum(e) => {
                    for m in &e.members {
                        if self.btf.resolve_name(m).ok().as_deref() == Some(enumerator) {
                            return Ok(u64::from(m.val()));
                        }
                    }
                }
                Type::Enum64(e) => {
                    for m in &e.members {
                        if self.btf.resolve_name(m).ok().as_deref() == Some(enumerator) {
                            return Ok(m.val());
                        }
                    }
                }
                _ => {}
            }
        }
        Err(anyhow!("enumerator {enumerator} not in kernel BTF"))
    }
}
