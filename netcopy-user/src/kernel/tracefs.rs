//! Tracepoint record layouts, read from tracefs `format` files at run time: offsets of
//! tracepoint fields are not ABI and Rust eBPF has no CO-RE to relocate them.

use std::{fs, path::Path};

use anyhow::{anyhow, Context, Result};

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TracepointField {
    name: String,
    offset: u32,
    size: u32,
}

/// The parsed `format` file of one tracepoint.
#[derive(Clone, Debug)]
pub struct TracepointFormat {
    category: String,
    name: String,
    fields: Vec<TracepointField>,
}

impl TracepointFormat {
    /// Reads `events/CATEGORY/NAME/format` under the tracefs mount `tracefs`.
    pub fn read(tracefs: &Path, category: &str, name: &str) -> Result<Self> {
        let path = tracefs
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "tracepoint {category}/{name} not found ({})",
                path.display()
            )
        })?;
        Ok(Self::parse(category, name, &text))
    }

    /// Parses the text of a format file; lines that are not field lines are skipped.
    fn parse(category: &str, name: &str, text: &str) -> Self {
        let fields = text.lines().filter_map(parse_field_line).collect();
        Self {
            category: category.to_string(),
            name: name.to_string(),
            fields,
        }
    }

    /// Offset of field `name`, checking its size is `size` bytes.
    pub fn offset(&self, field: &str, size: u32) -> Result<u32> {
        let found = self
            .fields
            .iter()
            .find(|f| f.name == field)
            .ok_or_else(|| {
                anyhow!(
                    "tracepoint {}/{} has no field `{field}`",
                    self.category,
                    self.name
                )
            })?;
        if found.size != size {
            return Err(anyhow!(
                "tracepoint {}/{} field `{field}` is {} bytes, expected {size}",
                self.category,
                self.name,
                found.size
            ));
        }
        Ok(found.offset)
    }
}

/// `\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;`
fn parse_field_line(line: &str) -> Option<TracepointField> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.trim().split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(o) = part.strip_prefix("offset:") {
            offset = o.trim().parse().ok();
        } else if let Some(s) = part.strip_prefix("size:") {
            size = s.trim().parse().ok();
        }
    }
    let decl = decl?;
    // The field name is the last identifier once array brackets are removed:
    // `char comm[16]` -> comm, `__data_loc char[] parent_comm` -> parent_comm.
    let mut plain = String::with_capacity(decl.len());
    let mut depth = 0;
    for c in decl.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let name = plain
        .trim()
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()
        .filter(|n| !n.is_empty())?
        .to_string();
    Some(TracepointField {
        name,
        offset: offset?,
        size: size?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKB_COPY: &str = "name: skb_copy_datagram_iovec\nID: 2308\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:int len;\toffset:16;\tsize:4;\tsigned:1;\n\n\
print fmt: \"skbaddr=%p len=%d\", REC->skbaddr, REC->len\n";

    #[test]
    fn parses_fields_with_pointer_and_plain_types() {
        let format = TracepointFormat::parse("skb", "skb_copy_datagram_iovec", SKB_COPY);
        assert_eq!(format.offset("len", 4).unwrap(), 16);
        assert_eq!(format.offset("skbaddr", 8).unwrap(), 8);
        assert_eq!(format.offset("common_pid", 4).unwrap(), 4);
    }

    #[test]
    fn wrong_size_or_missing_field_is_an_error() {
        let format = TracepointFormat::parse("skb", "skb_copy_datagram_iovec", SKB_COPY);
        assert!(format
            .offset("len", 8)
            .unwrap_err()
            .to_string()
            .contains("4 bytes"));
        assert!(format
            .offset("nope", 4)
            .unwrap_err()
            .to_string()
            .contains("no field"));
    }

    #[test]
    fn parses_data_loc_and_array_fields() {
        let text = "\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n";
        let format = TracepointFormat::parse("sched", "x", text);
        assert_eq!(format.offset("parent_comm", 4).unwrap(), 8);
        assert_eq!(format.offset("comm", 16).unwrap(), 12);
    }
}
