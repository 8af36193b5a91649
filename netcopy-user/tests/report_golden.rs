//! `netcopy report DIR` on a results.json written before the restructure of issue 14 (schema
//! version 1: one repeat, unpinned, no floor) gives byte-identical report.md and
//! results.csv. The fixture (tests/fixtures/report-golden) is a real `netcopy run --quick`
//! on this project's machines; the expected outputs were written from it at commit 9888f2e
//! and regenerated, from the same results.json, when issue 16 changed the report on
//! purpose (intervals, decided/undecided, the floor, the study side by side).
//!
//! When an output is changed on purpose, regenerate the expected files from the same
//! results.json and say so in the commit.

use std::{path::PathBuf, process::Command};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report-golden")
        .join(name)
}

#[test]
fn report_of_a_pre_restructure_run_is_byte_identical() {
    let dir = std::env::temp_dir().join(format!("netcopy-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("results.json"), dir.join("results.json")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run netcopy report");
    assert!(
        out.status.success(),
        "netcopy report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["report.md", "results.csv"] {
        let expected = std::fs::read_to_string(fixture(name)).unwrap();
        let got = std::fs::read_to_string(dir.join(name)).unwrap();
        if got != expected {
            let line = expected
                .lines()
                .zip(got.lines())
                .position(|(a, b)| a != b)
                .map_or(expected.lines().count().min(got.lines().count()), |i| i);
            panic!(
                "{name} differs from the golden output, first at line {}:\n expected: {:?}\n      got: {:?}",
                line + 1,
                expected.lines().nth(line),
                got.lines().nth(line)
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
