//! A demo killed with SIGKILL mid-run and resumed with the same `--data` reaches the same
//! decisions as an uninterrupted run: no directive published twice, none forgotten.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CYCLES: &str = "30";

fn args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "demo",
        "--scenario",
        "bad-directive",
        "--seed",
        "3",
        "--cycles",
        CYCLES,
        "--auto-approve-as",
        "ops",
        "--report",
        "json",
        "--data",
        data,
    ];
    a.extend_from_slice(extra);
    a
}

fn run_to_end(data: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(args(data.to_str().unwrap(), &["--fast"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What must not differ between an interrupted and an uninterrupted run.
fn decisions(report: &serde_json::Value) -> serde_json::Value {
    let directives: Vec<serde_json::Value> = report["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d["id"], "type": d["type"], "target_domain": d["target_domain"], "knob": d["knob"],
                "status": d["status"], "lifecycle": d["lifecycle"], "approvals": d["approvals"],
                "previous": d["previous"], "current": d["current"],
                "verdict": d["verdict"]["details"],
                "rollback_of": d["rollback_of"], "rolled_back_by": d["rolled_back_by"],
            })
        })
        .collect();
    let cycles: Vec<serde_json::Value> = report["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!({
                "cycle": c["cycle"], "snapshot_id": c["snapshot_id"], "global_kpis": c["global_kpis"],
                "goal_gaps": c["goal_gaps"], "directives": c["directives"],
            })
        })
        .collect();
    serde_json::json!({ "directives": directives, "cycles": cycles })
}

fn published_per_directive(data: &Path) -> BTreeMap<String, usize> {
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "ledger",
            "show",
            "--data",
            data.to_str().unwrap(),
            "--action",
            "directive.published",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(r["resource"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn cycles_recorded(data: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "ledger",
            "show",
            "--data",
            data.to_str().unwrap(),
            "--action",
            "snapshot.built",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn killed_and_resumed_demo_decides_as_an_uninterrupted_one() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = run_to_end(reference_dir.path());
    let expected = decisions(&reference);
    assert!(
        reference["directives"].as_array().unwrap().len() >= 3,
        "the run must decide something"
    );

    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut interrupted = 0;
    for attempt in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        // paced at 60 cycles/s so the kill lands mid-run; killed once, sometimes twice
        for _ in 0..(1 + attempt % 2) {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let delay = Duration::from_millis(80 + (rng >> 33) % 400);
            let mut child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
                .args(args(&data, &["--speed", "60"]))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < delay {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            child.kill().ok(); // SIGKILL
            child.wait().unwrap();
        }
        let before = cycles_recorded(dir.path());
        if before > 0 && before < 30 {
            interrupted += 1;
        }
        let resumed = run_to_end(dir.path());
        let got = decisions(&resumed);
        assert_eq!(
            got, expected,
            "attempt {attempt}: resumed after cycle {before}, decisions differ from the uninterrupted run"
        );
        for (id, n) in published_per_directive(dir.path()) {
            assert_eq!(n, 1, "directive {id} published {n} times");
        }
        let verify = Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args(["ledger", "verify", "--data", &data])
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} runs were actually killed mid-run"
    );
}
