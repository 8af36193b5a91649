//! `netcopy run --quick` end to end: every cell in results.json and results.csv, plots and
//! report written, and a run interrupted with Ctrl-C still leaves a valid results.json.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netcopy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn results(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is valid JSON")
}

#[test]
fn quick_sweep_writes_every_cell_and_every_output() {
    if !common::privileged("quick_sweep_writes_every_cell_and_every_output") {
        return;
    }
    let _serial = common::serial();
    let dir = temp_dir("quick");
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(["run", "--quick", "--out"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run netcopy run --quick");
    assert!(
        out.status.success(),
        "netcopy run --quick failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No server found its client gone in the middle of a message (issue 16, item 7).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("client disconnected"), "{stderr}");
    let json = results(&dir);
    assert_eq!(json["schema_version"], 4);
    assert_eq!(json["complete"], true);
    // The default receive mechanism alone: every cell received with recv().
    assert_eq!(json["config"]["recv"], serde_json::json!(["copy"]));
    assert_eq!(json["interrupted"], false);
    let config = &json["config"];
    let expected_cells = config["modes"].as_array().unwrap().len()
        * config["sizes"].as_array().unwrap().len()
        * config["threads"].as_array().unwrap().len()
        * config["repeat"].as_u64().unwrap() as usize;
    let cells = json["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), expected_cells);
    assert!(cells.iter().all(|c| c["recv"] == "copy"));
    // The default takes 3 repeats, run round-robin across the modes of each point.
    let repeats = config["repeat"].as_u64().unwrap();
    assert_eq!(repeats, 3);
    assert_eq!(config["interleaved"], true);
    assert_eq!(config["pin"], "auto");
    let modes = config["modes"].as_array().unwrap().len();
    for (i, cell) in cells.iter().enumerate() {
        // Cells of one (size, threads) point come together, repeat by repeat.
        assert_eq!(
            cell["repeat"].as_u64().unwrap(),
            (i / modes) as u64 % repeats,
            "cell {i} out of order"
        );
        // Every cell records where its server and client ran.
        assert!(cell["placement"].is_object(), "cell {i}: no placement");
    }
    // Every group's figures carry their repeats and an interval.
    let groups = json["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), expected_cells / repeats as usize);
    for group in groups {
        let throughput = &group["figures"]["throughput_gbps"];
        assert_eq!(throughput["values"].as_array().unwrap().len(), 3);
        assert!(
            throughput["interval"]["low"].as_f64().unwrap()
                <= throughput["median"].as_f64().unwrap()
        );
        assert_eq!(throughput["interval"]["coverage"], 0.75);
    }
    // The machine's floor was measured, every placement with every repeat.
    let floor = json["machine_floor"]["placements"]
        .as_array()
        .expect("machine_floor");
    assert!(!floor.is_empty());
    for placement in floor {
        let round_trips = placement["round_trips"].as_array().unwrap();
        assert_eq!(round_trips.len(), 3);
        assert!(round_trips.iter().all(|n| n.as_u64().unwrap() > 0));
    }
    for mode in ["two-copy", "one-copy", "zero-copy"] {
        for size in config["sizes"].as_array().unwrap() {
            for threads in config["threads"].as_array().unwrap() {
                assert!(
                    cells.iter().any(|c| c["mode"] == mode
                        && c["size"] == *size
                        && c["threads"] == *threads),
                    "missing cell {mode} {size} x{threads}"
                );
            }
        }
    }
    for cell in cells {
        // Every cell keeps a syscall trace sample, complete and loss-free.
        let sample = dir.join(cell["trace_sample"].as_str().expect("trace_sample"));
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(sample.join("summary.json")).expect("summary.json"),
        )
        .expect("summary.json is JSON");
        assert_eq!(summary["lost_events"], 0, "{}", sample.display());
        assert!(summary["events"].as_u64().unwrap() > 0);
        let chrome: Value = serde_json::from_str(
            &std::fs::read_to_string(sample.join("trace.json")).expect("trace.json"),
        )
        .expect("trace.json is JSON");
        assert!(chrome["traceEvents"]
            .as_array()
            .is_some_and(|e| !e.is_empty()));
        assert_eq!(cell["stream"]["integrity_errors"], 0);
        assert!(cell["stream"]["messages"].as_u64().unwrap() > 0);
        assert!(cell["latency"]["transactions"].as_u64().unwrap() > 0);
        // The receive copy is observed on every kernel netcopy supports.
        assert!(
            cell["copies"]["kernel_recv_copy"]["bytes"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // The exact verification ran first, and every mode passed or degraded as reported.
    for ledger in json["verification"].as_array().expect("verification") {
        assert_ne!(ledger["verdict"], "mismatch", "{ledger:#}");
    }
    let csv = std::fs::read_to_string(dir.join("results.csv")).expect("results.csv");
    assert_eq!(
        csv.lines().count(),
        expected_cells + 1,
        "header + one row per cell"
    );
    for file in [
        "report.md",
        "report.html",
        "throughput_vs_size.svg",
        "copies_per_message.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interrupted_run_leaves_valid_results() {
    if !common::privileged("interrupted_run_leaves_valid_results") {
        return;
    }
    let _serial = common::serial();
    let dir = temp_dir("interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args(["run", "--quick", "--out"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netcopy run");
    // Wait (bounded) until a few cells are on disk, then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cells = std::fs::read_to_string(dir.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["cells"].as_array().map(|c| c.len()))
            .unwrap_or(0);
        if cells >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no cells written in time");
        assert!(child.try_wait().unwrap().is_none(), "run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 130");
    let json = results(&dir);
    assert_eq!(json["interrupted"], true);
    assert_eq!(json["complete"], false);
    let cells = json["cells"].as_array().unwrap().len();
    assert!(cells >= 2, "what was measured is kept");
    assert!(cells < 18, "the sweep did stop early");
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(report.to_lowercase().contains("interrupted"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--recv copy,zerocopy`: both mechanisms in every point, each cell saying which; the
/// zerocopy cells say what the kernel mapped (behind one-copy: nothing, every byte copied
/// and seen at the receive copy site), and the report sets the two side by side.
#[test]
fn a_sweep_of_both_receive_mechanisms_records_and_reports_each() {
    if !common::privileged("a_sweep_of_both_receive_mechanisms_records_and_reports_each") {
        return;
    }
    let _serial = common::serial();
    let dir = temp_dir("recv");
    let out = Command::new(env!("CARGO_BIN_EXE_netcopy"))
        .args([
            "run",
            "--modes",
            "one-copy",
            "--recv",
            "copy,zerocopy",
            "--sizes",
            "64K",
            "--threads",
            "1",
            "--duration",
            "200ms",
            "--repeat",
            "2",
            "--no-trace",
            "--out",
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run netcopy run --recv copy,zerocopy");
    assert!(
        out.status.success(),
        "netcopy run --recv copy,zerocopy failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = results(&dir);
    assert_eq!(
        json["config"]["recv"],
        serde_json::json!(["copy", "zerocopy"])
    );
    let cells = json["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 4);
    let zerocopy: Vec<&Value> = cells.iter().filter(|c| c["recv"] == "zerocopy").collect();
    assert_eq!(zerocopy.len(), 2);
    for c in zerocopy {
        let z = &c["zerocopy_receive"];
        assert_eq!(z["mapped_bytes"], 0, "{z}");
        let copied = z["copybuf_bytes"].as_u64().unwrap() + z["skip_hint_bytes"].as_u64().unwrap();
        assert!(
            copied >= c["stream"]["payload_bytes"].as_u64().unwrap(),
            "{c}"
        );
        assert_eq!(c["copies"]["recv_mapped"]["bytes"], 0);
    }
    let ledgers = json["verification"].as_array().unwrap();
    let receivers: Vec<&Value> = ledgers
        .iter()
        .map(|l| &l["receiver"]["mechanism"])
        .collect();
    assert_eq!(receivers, ["copy", "zerocopy"]);
    assert_eq!(ledgers[1]["verdict"], "degraded");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| one-copy | 65536 (64K) | zerocopy (n=2) | 1.00"),
        "{md}"
    );
    assert!(dir.join("receive_cost_vs_size.svg").is_file());
}
