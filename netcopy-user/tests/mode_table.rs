//! The mode table is the only place that names the send modes one by one (issue 14):
//! adding a mode is a sender file, a `Mode` variant and a row of
//! `workload/modes/table.rs`; everything else reads the table.
//!
//! The check reads the non-test code of netcopy-user/src and xtask/src (`#[cfg(test)]`
//! items are skipped, comments too) and lists every place that names a `Mode` variant
//! (`Mode::ZeroCopy`, `Mode::{..}`, `Mode::*`) or spells a mode's name as a string literal
//! (`"zero-copy"`, or a comma-separated list of names such as a default `--modes`). The
//! variants come from the enum's definition and the names from the table, so a new mode
//! is covered without touching this file. Only files under src/workload/modes/ may be on
//! the list.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
};

/// Where the mode module lives, relative to the workspace root.
const MODES_DIR: &str = "netcopy-user/src/workload/modes/";
/// The mode table, whose rows give the modes' names.
const MODE_TABLE_FILE: &str = "netcopy-user/src/workload/modes/table.rs";
/// The source trees whose non-test code is checked.
const CHECKED_TREES: [&str; 2] = ["netcopy-user/src", "xtask/src"];

#[test]
fn only_the_mode_module_names_modes_one_by_one() {
    let root = workspace_root();
    let modes = ModeVocabulary::read(&root);
    let mut code = Vec::new();
    for tree in CHECKED_TREES {
        for file in rust_files(&root.join(tree)) {
            let relative = relative_path(&root, &file);
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {relative}: {e}"));
            code.push((file, relative, split_test_items(lex(&source))));
        }
    }
    // Files of modules declared `#[cfg(test)] mod name;` are test code, with their
    // submodules.
    let test_only: Vec<PathBuf> = code
        .iter()
        .flat_map(|(file, _, split)| {
            let dir = submodule_dir(file);
            split
                .test_modules
                .iter()
                .flat_map(move |name| [dir.join(format!("{name}.rs")), dir.join(name)])
        })
        .collect();
    let mut places = Vec::new();
    for (file, relative, split) in &code {
        if !test_only.iter().any(|prefix| file.starts_with(prefix)) {
            places.extend(modes.places_in(relative, &split.code));
        }
    }

    // A scanner that found nothing would pass vacuously: the table itself must show up.
    let in_modes: Vec<&Place> = places
        .iter()
        .filter(|p| p.file.starts_with(MODES_DIR))
        .collect();
    for variant in &modes.variants {
        assert!(
            in_modes
                .iter()
                .any(|p| p.what == format!("Mode::{variant}")),
            "the scan did not find Mode::{variant} in {MODES_DIR}: the scanner is broken"
        );
    }
    for name in &modes.names {
        assert!(
            in_modes.iter().any(|p| p.what == format!("{name:?}")),
            "the scan did not find {name:?} in {MODE_TABLE_FILE}: the scanner is broken"
        );
    }

    let outside: Vec<&Place> = places
        .iter()
        .filter(|p| !p.file.starts_with(MODES_DIR))
        .collect();
    if !outside.is_empty() {
        let files: BTreeSet<&str> = outside.iter().map(|p| p.file.as_str()).collect();
        let list: String = outside.iter().map(|p| format!("  {p}\n")).collect();
        panic!(
            "{} places in {} files outside {MODES_DIR} name a send mode one by one; they \
             should read the mode table (workload::modes::MODES, Mode::spec(), Mode::ALL):\n{list}",
            outside.len(),
            files.len()
        );
    }
}

#[test]
fn the_scanner_skips_comments_and_test_items_and_reads_literals() {
    let modes = ModeVocabulary {
        variants: vec!["TwoCopy".into(), "ZeroCopy".into()],
        names: vec!["two-copy".into(), "zero-copy".into()],
    };
    let source = r####"
// Mode::TwoCopy in a comment
/* block /* nested Mode::ZeroCopy */ "zero-copy" */
/// doc: "two-copy"
fn a<'a>(x: &'a str) -> char { let _ = r#"Mode::TwoCopy "#; '"' }
fn b() { let m = Mode::ZeroCopy; let s = "two-copy"; }
fn c() { let list = "two-copy,zero-copy"; let prose = "zero-copy sends"; }
use crate::Mode::{TwoCopy, ZeroCopy};
#[cfg(test)]
const SKIPPED: [&str; 1] = ["two-copy"];
#[cfg(test)]
mod tests { fn t() { let _ = Mode::TwoCopy; } }
#[cfg(test)] mod helpers;
fn d() { let _ = b"zero-copy"; let _ = br#"two-copy"#; let _ = Mode :: TwoCopy; }
"####;
    let split = split_test_items(lex(source));
    assert_eq!(split.test_modules, vec!["helpers".to_string()]);
    let found: Vec<String> = modes
        .places_in("x.rs", &split.code)
        .iter()
        .map(Place::to_string)
        .collect();
    assert_eq!(
        found,
        vec![
            "x.rs:6: Mode::ZeroCopy",
            "x.rs:6: \"two-copy\"",
            "x.rs:7: \"two-copy,zero-copy\"",
            "x.rs:8: Mode::TwoCopy",
            "x.rs:8: Mode::ZeroCopy",
            "x.rs:14: \"zero-copy\"",
            "x.rs:14: \"two-copy\"",
            "x.rs:14: Mode::TwoCopy",
        ]
    );
}

#[test]
fn the_vocabulary_comes_from_the_enum_and_the_table() {
    let modes = ModeVocabulary::read(&workspace_root());
    assert!(modes.variants.len() >= 3, "{:?}", modes.variants);
    assert_eq!(modes.variants.len(), modes.names.len(), "{modes:?}");
    assert!(modes.names.iter().any(|n| n == "zero-copy"), "{modes:?}");
}

/// One place that names a mode: a file (relative to the workspace root), a line, and what
/// it names (`Mode::X` or the string literal, quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    file: String,
    line: usize,
    what: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

/// The variants of `enum Mode` and the modes' names in the table.
#[derive(Debug)]
struct ModeVocabulary {
    variants: Vec<String>,
    names: Vec<String>,
}

impl ModeVocabulary {
    fn read(root: &Path) -> Self {
        let read = |file: &str| {
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        // Wherever in the mode module the enum is defined.
        let variants = rust_files(&root.join(MODES_DIR))
            .iter()
            .find_map(|file| {
                let source = std::fs::read_to_string(file).expect("a source file");
                enum_variants(&lex(&source), "Mode")
            })
            .unwrap_or_else(|| panic!("no `enum Mode {{ .. }}` in {MODES_DIR}"));
        let names = table_names(&lex(&read(MODE_TABLE_FILE)));
        assert!(
            !variants.is_empty() && !names.is_empty(),
            "no variants of Mode in {MODES_DIR} or no `name: \"..\"` rows in {MODE_TABLE_FILE}"
        );
        ModeVocabulary { variants, names }
    }

    /// The places in `tokens` (a file's non-test code) that name a mode.
    fn places_in(&self, file: &str, tokens: &[Token]) -> Vec<Place> {
        let mut places = Vec::new();
        let mut place = |line: usize, what: String| {
            places.push(Place {
                file: file.to_string(),
                line,
                what,
            })
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i].tok {
                Tok::Ident(id) if id == "Mode" && is_path_sep(tokens, i + 1) => {
                    let line = tokens[i].line;
                    match tokens.get(i + 3).map(|t| &t.tok) {
                        Some(Tok::Ident(v)) if self.variants.contains(v) => {
                            place(line, format!("Mode::{v}"));
                        }
                        Some(Tok::Punct('*')) => place(line, "Mode::*".to_string()),
                        Some(Tok::Punct('{')) => {
                            let mut j = i + 4;
                            while let Some(t) = tokens.get(j) {
                                match &t.tok {
                                    Tok::Punct('}') => break,
                                    Tok::Ident(v) if self.variants.contains(v) => {
                                        place(t.line, format!("Mode::{v}"));
                                    }
                                    _ => {}
                                }
                                j += 1;
                            }
                        }
                        _ => {}
                    }
                    i += 3;
                }
                Tok::Str(text) if self.is_mode_list(text) => {
                    place(tokens[i].line, format!("{text:?}"));
                    i += 1;
                }
                _ => i += 1,
            }
        }
        places
    }

    /// A mode's name, or a comma-separated list of them ("two-copy,one-copy").
    fn is_mode_list(&self, text: &str) -> bool {
        text.split(',')
            .all(|part| self.names.iter().any(|n| n == part.trim()))
    }
}

fn is_path_sep(tokens: &[Token], at: usize) -> bool {
    matches!(
        (
            tokens.get(at).map(|t| &t.tok),
            tokens.get(at + 1).map(|t| &t.tok)
        ),
        (Some(Tok::Punct(':')), Some(Tok::Punct(':')))
    )
}

/// The variants of `enum NAME { .. }`: the identifiers at the top level of its body that
/// start a variant (attributes and fields skipped).
fn enum_variants(tokens: &[Token], name: &str) -> Option<Vec<String>> {
    let start = tokens.windows(3).position(|w| {
        w[0].tok == Tok::Ident("enum".into())
            && w[1].tok == Tok::Ident(name.into())
            && w[2].tok == Tok::Punct('{')
    })? + 3;
    let mut variants = Vec::new();
    let mut depth = 0usize;
    let mut expect_variant = true;
    for token in &tokens[start..] {
        match &token.tok {
            Tok::Punct('{' | '(' | '[') => depth += 1,
            Tok::Punct('}') if depth == 0 => return Some(variants),
            Tok::Punct('}' | ')' | ']') => depth -= 1,
            Tok::Punct(',') if depth == 0 => expect_variant = true,
            Tok::Ident(id) if depth == 0 && expect_variant => {
                variants.push(id.clone());
                expect_variant = false;
            }
            _ => {}
        }
    }
    None
}

/// The string of every `name: "..."` field in the table.
fn table_names(tokens: &[Token]) -> Vec<String> {
    tokens
        .windows(3)
        .filter_map(|w| match (&w[0].tok, &w[1].tok, &w[2].tok) {
            (Tok::Ident(field), Tok::Punct(':'), Tok::Str(text)) if field == "name" => {
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

/// A file's tokens split into its non-test code and the names of the test modules it
/// declares in files of their own.
struct SplitSource {
    code: Vec<Token>,
    /// `NAME` of every `#[cfg(test)] mod NAME;`.
    test_modules: Vec<String>,
}

/// Drops the items that `#[cfg(test)]` marks (test modules, test-only functions and
/// constants): an item ends at a `;` outside brackets or at the `}` that closes its body.
fn split_test_items(tokens: Vec<Token>) -> SplitSource {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut kept = Vec::with_capacity(tokens.len());
    let mut test_modules = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_cfg_test = tokens.len() - i >= cfg_test.len()
            && tokens[i..i + cfg_test.len()]
                .iter()
                .zip(&cfg_test)
                .all(|(t, want)| t.tok == *want);
        if !starts_cfg_test {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        // `#[cfg(test)] mod name;`: the module's own file is test code as well.
        let tok = |k: usize| tokens.get(i + k).map(|t| &t.tok);
        if let (Some(Tok::Ident(kw)), Some(Tok::Ident(name)), Some(Tok::Punct(';'))) =
            (tok(0), tok(1), tok(2))
        {
            if kw == "mod" {
                test_modules.push(name.clone());
            }
        }
        let mut depth = 0usize;
        while i < tokens.len() {
            let tok = &tokens[i].tok;
            i += 1;
            match tok {
                Tok::Punct('{' | '(' | '[') => depth += 1,
                Tok::Punct(c @ ('}' | ')' | ']')) => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && *c == '}' {
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    SplitSource {
        code: kept,
        test_modules,
    }
}

/// Where the files of `file`'s submodules live: beside a mod.rs, lib.rs or main.rs, in a
/// directory named after any other file.
fn submodule_dir(file: &Path) -> PathBuf {
    let dir = file.parent().expect("a file in a directory");
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") | None => dir.to_path_buf(),
        Some(stem) => dir.join(stem),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// A string literal's text (escapes left as written); byte and raw strings too.
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based line where the token starts.
    line: usize,
}

/// Enough of Rust's lexical grammar to tell code from comments and literals: identifiers,
/// string literals (plain, raw, byte), punctuation; comments, numbers, char literals and
/// lifetimes are dropped.
fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some((prefix, hashes)) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br"..": no escapes; ends at a quote and as many hashes.
            i += prefix + hashes + 1;
            let mut text = String::new();
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            let mut text = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    text.push(chars[i]);
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                text.push(at(i));
                i += 1;
            }
            i += 1;
            tokens.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == 'b' { i + 1 } else { i };
            if at(quote + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{1F600}'.
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(quote + 2) == '\'' {
                i = quote + 3;
            } else {
                // A lifetime or label: drop the quote, its name lexes as an identifier.
                i = quote + 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            // A raw identifier (r#type) is its name.
            if c == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
                i += 2;
            }
            let begin = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(chars[begin..i].iter().collect()),
                line: start_line,
            });
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            tokens.push(Token {
                tok: Tok::Punct(c),
                line: start_line,
            });
            i += 1;
        }
    }
    tokens
}

/// At a raw string (`r"`, `r#"`, `br"`, `br#"`): the prefix length and the hash count.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let prefix = match (chars.get(i), chars.get(i + 1)) {
        (Some('r'), _) => 1,
        (Some('b'), Some('r')) => 2,
        _ => return None,
    };
    // Called only at a token's start: an `r` or `br` here cannot end an identifier.
    let hashes = chars[i + prefix..]
        .iter()
        .take_while(|&&c| c == '#')
        .count();
    (chars.get(i + prefix + hashes) == Some(&'"')).then_some((prefix, hashes))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netcopy-user sits in the workspace root")
        .to_path_buf()
}

fn relative_path(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// Every `.rs` file under `dir`, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
