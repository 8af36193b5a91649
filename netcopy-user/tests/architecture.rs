//! The house's architecture, checked on the source: the layers of netcopy-user import
//! only from the layers below them, and no modules import each other in a cycle.
//!
//! Layers, bottom to top (ARCHITECTURE.md): util, workload, kernel, ledger, remote, trace,
//! experiment, bench, cli. Dependencies are read from `crate::` paths (use trees expanded)
//! and `super::` paths in non-test code; a module's own `mod` and `pub use` of its
//! children is its structure, not a dependency, so edges from a parent to its descendants
//! are not counted.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const LAYERS: &[&str] = &[
    "util",
    "workload",
    "kernel",
    "ledger",
    "remote",
    "trace",
    "experiment",
    "bench",
    "cli",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `kernel/perf/counters.rs` -> ["kernel", "perf", "counters"]; `mod.rs` names its dir.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code before the first `#[cfg(test)]` item that opens a module, and without
/// comments: what the crate is built from.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            if let Some(next) = lines.peek() {
                let n = next.trim_start();
                if n.starts_with("mod ")
                    || n.starts_with("pub mod ")
                    || n.starts_with("pub(crate) mod ")
                {
                    if n.ends_with(';') {
                        lines.next();
                        continue;
                    }
                    break;
                }
            }
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into ["a::b", "a::c::d", "a::c::e"].
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    fn go(prefix: &str, rest: &str, out: &mut Vec<String>) {
        if let Some(open) = rest.find('{') {
            let head = &rest[..open];
            let inner = &rest[open + 1..rest.rfind('}').unwrap_or(rest.len())];
            let mut depth = 0;
            let mut start = 0;
            let bytes = inner.as_bytes();
            for i in 0..=bytes.len() {
                let end = i == bytes.len();
                if !end {
                    match bytes[i] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                }
                if end || (bytes[i] == b',' && depth == 0) {
                    let item = &inner[start..i];
                    if !item.is_empty() {
                        go(&format!("{prefix}{head}"), item, out);
                    }
                    start = i + 1;
                }
            }
        } else {
            out.push(format!("{prefix}{rest}"));
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Every module path `code` refers to, as segments from the crate root.
fn references(
    module: &[String],
    code: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(anchor) {
            let start = from + pos;
            from = start + anchor.len();
            if start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'_'
                    || bytes[start - 1] == b':')
            {
                continue;
            }
            // The path runs to the end of its use tree or expression.
            let mut end = start;
            let mut depth = 0i32;
            while end < bytes.len() {
                let c = bytes[end];
                match c {
                    b'{' => depth += 1,
                    b'}' if depth > 0 => depth -= 1,
                    b'}' => break,
                    b';' => break,
                    b'(' | b')' | b'<' | b'>' | b'!' | b'=' | b'&' | b'[' | b']' | b'"' | b'#'
                        if depth == 0 =>
                    {
                        break
                    }
                    b',' | b' ' | b'\n' if depth == 0 => break,
                    _ => {}
                }
                end += 1;
            }
            for p in expand(&code[start..end]) {
                let mut segs: Vec<String> = Vec::new();
                let mut parts = p.split("::").filter(|s| !s.is_empty()).peekable();
                match parts.peek().copied() {
                    Some("crate") => {
                        parts.next();
                    }
                    Some("super") => {
                        segs = module.to_vec();
                        while parts.peek() == Some(&"super") {
                            parts.next();
                            segs.pop();
                        }
                    }
                    _ => continue,
                }
                segs.extend(parts.map(str::to_string));
                paths.push(segs);
            }
        }
    }
    paths
        .into_iter()
        .filter_map(|segs| {
            // The longest prefix that is a module of ours.
            (1..=segs.len())
                .rev()
                .map(|n| segs[..n].to_vec())
                .find(|p| modules.contains(p))
        })
        .filter(|target| target.as_slice() != module)
        .collect()
}

struct Graph {
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let texts: Vec<(Vec<String>, String)> = all
        .iter()
        .filter(|f| !f.ends_with("main.rs") && !f.ends_with("lib.rs"))
        .map(|f| {
            (
                module_of(&src, f),
                non_test_code(&fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = texts.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeMap::new();
    for (module, code) in &texts {
        let targets: BTreeSet<Vec<String>> = references(module, code, &modules)
            .into_iter()
            // A parent declaring or re-exporting its children is structure.
            .filter(|t| !(t.len() > module.len() && t.starts_with(module)))
            .collect();
        edges.insert(module.clone(), targets);
    }
    Graph { edges }
}

fn name(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn no_layer_imports_from_a_layer_above_it() {
    let g = graph();
    let rank = |m: &[String]| LAYERS.iter().position(|l| *l == m[0]);
    let mut upward = Vec::new();
    for (from, targets) in &g.edges {
        let Some(r) = rank(from) else {
            upward.push(format!("{} is in no layer", name(from)));
            continue;
        };
        for to in targets {
            if rank(to).is_some_and(|t| t > r) {
                upward.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward imports:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let g = graph();
    // Tarjan's strongly connected components.
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        cycles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g.edges.get(v).into_iter().flatten() {
            if !s.g.edges.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(name(w));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.cycles.push(comp);
            }
        }
    }
    let mut s = State {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        cycles: Vec::new(),
    };
    for v in g.edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let text: Vec<String> = s.cycles.iter().map(|c| c.join(" <-> ")).collect();
    assert!(
        text.is_empty(),
        "modules in import cycles:\n  {}",
        text.join("\n  ")
    );
}

#[test]
fn the_reader_sees_use_trees_and_relative_paths() {
    assert_eq!(
        expand("crate::{a::b,c::{d,e}}"),
        ["crate::a::b", "crate::c::d", "crate::c::e"]
    );
    let modules: BTreeSet<Vec<String>> = [
        vec!["a".to_string()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .collect();
    let refs = references(
        &["a".into(), "b".into()],
        "use super::Thing;\nuse crate::{c::X, a::b::Y};\nlet v = crate::c::f();",
        &modules,
    );
    assert_eq!(
        refs,
        [vec!["a".to_string()], vec!["c".into()]]
            .into_iter()
            .collect()
    );
    assert!(
        non_test_code("fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::x;\n}\n")
            .find("crate::x")
            .is_none()
    );
}
