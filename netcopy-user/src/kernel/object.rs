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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

    use super::super::{
        plan::{AttachPoint, ON_DEMAND, PROBES},
        runstats::empty_program_name,
    };

    /// What the object's symbol table says of one name: the section it is in, and
    /// whether it is code.
    struct Symbol {
        section: String,
        code: bool,
    }

    fn symbols(bytes: &[u8]) -> HashMap<String, Symbol> {
        let file = object::File::parse(bytes).expect("the embedded eBPF object is an ELF file");
        file.symbols()
            .filter_map(|symbol| {
                let name = symbol.name().ok()?.to_string();
                let section = file.section_by_index(symbol.section_index()?).ok()?;
                let symbol = Symbol {
                    section: section.name().ok()?.to_string(),
                    code: symbol.kind() == SymbolKind::Text,
                };
                Some((name, symbol))
            })
            .collect()
    }

    /// The section aya-ebpf puts a program for `point` in: the kind, and for the hooks the
    /// kernel fixes at load, the function or tracepoint it was written for.
    fn program_section(point: AttachPoint) -> String {
        match point {
            AttachPoint::Tracepoint { .. } => "tracepoint".into(),
            AttachPoint::Kprobe { .. } => "kprobe".into(),
            AttachPoint::Kretprobe { .. } => "kretprobe".into(),
            AttachPoint::BtfTracepoint { name } => format!("tp_btf/{name}"),
            AttachPoint::Fentry { function } => format!("fentry/{function}"),
            AttachPoint::Fexit { function } => format!("fexit/{function}"),
        }
    }

    /// Every `pub const NAME: &str = "VALUE";` of kernel/maps.rs, as (NAME, VALUE): read
    /// from the source, so that a name added there is checked without a list to update.
    fn maps_rs_names() -> Vec<(&'static str, &'static str)> {
        include_str!("maps.rs")
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("pub const ")?;
                let (name, rest) = rest.split_once(": &str = \"")?;
                Some((name, rest.strip_suffix("\";")?))
            })
            .collect()
    }

    #[test]
    fn the_object_has_every_program_map_and_global_the_user_side_names() {
        let Ok(bytes) = super::bytes() else {
            let why = "this netcopy was built without its eBPF object (build it with \
                       `cargo xtask build`), so the object's names cannot be checked";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("under CI the eBPF object must be embedded: {why}");
            }
            eprintln!("skipped: {why}");
            return;
        };
        let symbols = symbols(bytes);
        let mut missing = Vec::new();
        let mut check =
            |name: &str, what: &str, ok: &dyn Fn(&Symbol) -> bool| match symbols.get(name) {
                Some(symbol) if ok(symbol) => {}
                Some(symbol) => missing.push(format!(
                    "{name} ({what}) is in section {} as {}",
                    symbol.section,
                    if symbol.code { "code" } else { "data" }
                )),
                None => missing.push(format!("{name} ({what}) is not in the object")),
            };
        let plan = PROBES.iter().chain(ON_DEMAND).flat_map(|d| d.strategies);
        let programs = plan.flat_map(|s| s.programs);
        for p in programs {
            let section = program_section(p.point);
            check(p.program, &format!("a program for {}", p.point), &|s| {
                s.code && s.section == section
            });
        }
        let every_kind = [
            AttachPoint::Tracepoint {
                category: "sched",
                name: "sched_process_fork",
            },
            AttachPoint::BtfTracepoint {
                name: "sched_process_fork",
            },
            AttachPoint::Kprobe { function: "f" },
            AttachPoint::Kretprobe { function: "f" },
            AttachPoint::Fentry { function: "f" },
            AttachPoint::Fexit { function: "f" },
        ];
        for point in every_kind {
            let kind = program_section(point);
            let kind = kind.split('/').next().unwrap_or_default().to_string();
            check(empty_program_name(point), "an empty program", &|s| {
                s.code && s.section.split('/').next() == Some(kind.as_str())
            });
        }
        let names = maps_rs_names();
        assert!(names.len() >= 13, "kernel/maps.rs names read: {names:?}");
        for (constant, name) in names {
            if constant.ends_with("_MAP") {
                check(name, constant, &|s| !s.code && s.section == "maps");
            } else if constant.ends_with("_GLOBAL") {
                check(name, constant, &|s| {
                    !s.code && s.section.starts_with(".rodata")
                });
            } else {
                panic!(
                    "kernel/maps.rs: {constant} names neither a map (_MAP) nor a global (_GLOBAL)"
                );
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
