//! A minimal writer (and, for tests and checks, reader) of "newc" cpio archives, the
//! format the kernel unpacks as an initramfs (Documentation/driver-api/early-userspace/
//! buffer-format.rst). Only what an initramfs needs: directories, regular files,
//! symbolic links and device nodes, all owned by root, mtime 0.

use std::{collections::BTreeMap, io::Write};

use anyhow::{bail, Context, Result};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
#[cfg(test)]
const S_IFMT: u32 = 0o170_000;

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// One entry of an archive: its kind and permission bits (without the file type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub perm: u32,
}

impl Entry {
    fn mode(&self) -> u32 {
        let ty = match self.kind {
            EntryKind::Dir => S_IFDIR,
            EntryKind::File(_) => S_IFREG,
            EntryKind::Symlink(_) => S_IFLNK,
            EntryKind::CharDev { .. } => S_IFCHR,
        };
        ty | (self.perm & 0o7777)
    }
}

/// A file tree to be written as one archive. Paths are relative to the archive's root,
/// written without a leading slash ("bin/busybox"); parent directories are added as
/// needed, and are written before what they contain.
#[derive(Default, Debug)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

fn normalize(path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("archive path {path:?} contains `..`"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        bail!("archive path {path:?} names the root");
    }
    Ok(parts.join("/"))
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                break;
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.entries.get(&prefix) {
                None => {
                    self.entries.insert(
                        prefix.clone(),
                        Entry {
                            kind: EntryKind::Dir,
                            perm: 0o755,
                        },
                    );
                }
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                }) => {}
                Some(_) => bail!("archive path {prefix:?} is needed as a directory for {path:?}"),
            }
        }
        Ok(())
    }

    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, path: &str, entry: Entry) -> Result<()> {
        let path = normalize(path)?;
        self.add_parents(&path)?;
        if let Some(old) = self.entries.get(&path) {
            let both_dirs = old.kind == EntryKind::Dir && entry.kind == EntryKind::Dir;
            if both_dirs && old.perm == entry.perm {
                return Ok(());
            }
            if old.kind == EntryKind::Dir && entry.kind != EntryKind::Dir {
                bail!("archive path {path:?} is already a directory");
            }
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::Dir,
                perm: 0o755,
            },
        )
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<()> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::File(data),
                perm,
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::Symlink(target.to_string()),
                perm: 0o777,
            },
        )
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::CharDev { major, minor },
                perm,
            },
        )
    }

    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Writes the whole tree as a newc archive, ending with the trailer.
    pub fn write_newc<W: Write>(&self, out: W) -> Result<W> {
        let mut w = NewcWriter::new(out);
        for (path, entry) in &self.entries {
            w.entry(path, entry)?;
        }
        w.finish()
    }
}

/// Streams newc headers and data, padding each to 4 bytes.
struct NewcWriter<W: Write> {
    out: W,
    offset: u64,
    ino: u32,
}

impl<W: Write> NewcWriter<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            offset: 0,
            ino: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).context("writing cpio archive")?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let rem = (self.offset % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u64,
        rdev: (u32, u32),
    ) -> Result<()> {
        let size = u32::try_from(size)
            .with_context(|| format!("{name:?} is too large for a newc cpio archive (4 GiB)"))?;
        if name.as_bytes().contains(&0) {
            bail!("archive path {name:?} contains a NUL byte");
        }
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.put(&header)?;
        self.pad()
    }

    fn entry(&mut self, name: &str, entry: &Entry) -> Result<()> {
        let mode = entry.mode();
        match &entry.kind {
            EntryKind::Dir => self.header(name, mode, 2, 0, (0, 0)),
            EntryKind::File(data) => {
                self.header(name, mode, 1, data.len() as u64, (0, 0))?;
                self.put(data)?;
                self.pad()
            }
            EntryKind::Symlink(target) => {
                self.header(name, mode, 1, target.len() as u64, (0, 0))?;
                self.put(target.as_bytes())?;
                self.pad()
            }
            EntryKind::CharDev { major, minor } => self.header(name, mode, 1, 0, (*major, *minor)),
        }
    }

    fn finish(mut self) -> Result<W> {
        self.header(TRAILER, 0, 1, 0, (0, 0))?;
        self.out.flush().context("writing cpio archive")?;
        Ok(self.out)
    }
}

/// Parses a newc archive back into (path, entry) pairs, in archive order, stopping at the
/// trailer (for the tests).
#[cfg(test)]
pub fn read_newc(data: &[u8]) -> Result<Vec<(String, Entry)>> {
    fn align(n: usize) -> usize {
        (n + 3) & !3
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let header = data
            .get(pos..pos + 110)
            .with_context(|| format!("cpio archive truncated at byte {pos} (no trailer)"))?;
        if &header[..6] != MAGIC {
            bail!("bad cpio magic at byte {pos}");
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .with_context(|| format!("bad cpio header field {i} at byte {pos}"))?;
            *field = hex;
        }
        let (mode, size, rmaj, rmin, namesize) = (
            fields[1],
            fields[6] as usize,
            fields[9],
            fields[10],
            fields[11] as usize,
        );
        let name_start = pos + 110;
        let name_bytes = data
            .get(name_start..name_start + namesize)
            .context("cpio archive truncated in a name")?;
        if namesize == 0 || name_bytes[namesize - 1] != 0 {
            bail!("cpio name at byte {pos} is not NUL-terminated");
        }
        let name = String::from_utf8(name_bytes[..namesize - 1].to_vec())
            .context("cpio name is not UTF-8")?;
        let data_start = align(name_start + namesize);
        let body = data
            .get(data_start..data_start + size)
            .context("cpio archive truncated in file data")?;
        pos = align(data_start + size);
        if name == TRAILER {
            return Ok(out);
        }
        let perm = mode & 0o7777;
        let kind = match mode & S_IFMT {
            S_IFDIR => EntryKind::Dir,
            S_IFREG => EntryKind::File(body.to_vec()),
            S_IFLNK => EntryKind::Symlink(
                String::from_utf8(body.to_vec()).context("cpio symlink target is not UTF-8")?,
            ),
            S_IFCHR => EntryKind::CharDev {
                major: rmaj,
                minor: rmin,
            },
            other => bail!("unsupported cpio file type {other:o} for {name:?}"),
        };
        out.push((name, Entry { kind, perm }));
    }
}

/// Gzip-compresses `data` (the kernel's initramfs unpacker understands gzip on every
/// distribution kernel: CONFIG_RD_GZIP). Uses the `gzip` program when there is one
/// (several times faster than flate2 in xtask's unoptimized build, which matters for
/// a binary with debug info), else flate2.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    match gzip_command(data) {
        Ok(out) => Ok(out),
        Err(_) => gzip_flate2(data),
    }
}

fn gzip_command(data: &[u8]) -> Result<Vec<u8>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(data));
        let output = child.wait_with_output();
        let written = writer.join();
        (output, written)
    });
    let out = output.0.context("running gzip")?;
    if !out.status.success() || !matches!(output.1, Ok(Ok(()))) {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

fn gzip_flate2(data: &[u8]) -> Result<Vec<u8>> {
    use flate2::{write::GzEncoder, Compression};
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 2), Compression::fast());
    enc.write_all(data)
        .context("gzip-compressing the initramfs")?;
    enc.finish().context("gzip-compressing the initramfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.file("bin/busybox", 0o755, b"\x7fELF pretend".to_vec())
            .unwrap();
        t.symlink("bin/sh", "busybox").unwrap();
        t.char_dev("dev/console", 0o600, 5, 1).unwrap();
        t.file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .unwrap();
        t.file("lib/x86_64-linux-gnu/libc.so.6", 0o755, vec![1, 2, 3])
            .unwrap();
        t.dir("proc").unwrap();
        t.file("/empty", 0o644, Vec::new()).unwrap();
        t
    }

    #[test]
    fn round_trip() {
        let tree = sample();
        let bytes = tree.write_newc(Vec::new()).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let back = read_newc(&bytes).unwrap();
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "empty",
                "init",
                "lib",
                "lib/x86_64-linux-gnu",
                "lib/x86_64-linux-gnu/libc.so.6",
                "proc"
            ]
        );
        let original: Vec<(String, Entry)> = tree
            .entries()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        assert_eq!(back, original);
    }

    #[test]
    fn parents_come_before_children() {
        let mut t = Tree::new();
        t.file("a/b/c", 0o644, vec![]).unwrap();
        t.file("a-b", 0o644, vec![]).unwrap();
        t.file("a/b-c/d", 0o644, vec![]).unwrap();
        let bytes = t.write_newc(Vec::new()).unwrap();
        let back = read_newc(&bytes).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &back {
            if let Some((parent, _)) = name.rsplit_once('/') {
                assert!(seen.contains(parent), "{name} before {parent}");
            }
            seen.insert(name.clone());
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let mut t = Tree::new();
        assert!(t.file("../etc/passwd", 0o644, vec![]).is_err());
        assert!(t.file("/", 0o644, vec![]).is_err());
        t.file("x", 0o644, vec![]).unwrap();
        assert!(t.file("x/y", 0o644, vec![]).is_err());
    }

    #[test]
    fn truncated_archive_is_an_error_not_a_panic() {
        let bytes = sample().write_newc(Vec::new()).unwrap();
        for cut in [0, 5, 110, 200, bytes.len() - 1] {
            assert!(read_newc(&bytes[..cut]).is_err());
        }
        assert!(read_newc(b"garbage garbage garbage").is_err());
    }

    /// Cross-check with an independent implementation when one is installed.
    #[test]
    fn listed_by_cpio_tool() {
        use std::process::{Command, Stdio};
        let bytes = sample().write_newc(Vec::new()).unwrap();
        let tools: [&[&str]; 2] = [&["cpio", "-t"], &["busybox", "cpio", "-t"]];
        for tool in tools {
            let Ok(mut child) = Command::new(tool[0])
                .args(&tool[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&bytes).unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{tool:?} failed");
            let listed = String::from_utf8_lossy(&out.stdout);
            let listed: Vec<&str> = listed.lines().collect();
            assert!(listed.contains(&"bin/busybox"), "{listed:?}");
            assert!(listed.contains(&"dev/console"), "{listed:?}");
            assert!(listed.contains(&"lib/x86_64-linux-gnu/libc.so.6"));
            return;
        }
        eprintln!("no cpio tool installed; skipped the cross-check");
    }

    #[test]
    fn gzip_round_trip() {
        use std::io::Read;
        let bytes = sample().write_newc(Vec::new()).unwrap();
        let mut outputs = vec![gzip(&bytes).unwrap(), gzip_flate2(&bytes).unwrap()];
        if let Ok(out) = gzip_command(&bytes) {
            outputs.push(out);
        }
        for gz in outputs {
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, bytes);
        }
    }
}
