//! What the command-line tests share: running the binary, and a demo run to a JSON report.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `metaloop` binary with `args` and waits for it.
pub fn metaloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(args)
        .output()
        .expect("metaloop runs")
}

/// Runs `metaloop demo` (seed 1, fast, approvals by `ops`) into `data` with `extra`
/// arguments, asserts it succeeded and returns its JSON report.
pub fn demo_report(data: &Path, scenario: &str, cycles: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "demo",
        "--scenario",
        scenario,
        "--seed",
        "1",
        "--fast",
        "--cycles",
        cycles,
        "--auto-approve-as",
        "ops",
        "--report",
        "json",
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = metaloop(&args);
    assert!(
        out.status.success(),
        "demo failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}
