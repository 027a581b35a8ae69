//! Humans in the loop of a running demo: a HIGH directive waits for
//! `metaloop directives approve`, then proceeds; a CRITICAL one needs two different
//! approvers; one left alone expires and is never applied.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
environment = "production"

[approval]
ttl_seconds = 3600

[[approval.rules]]
impact = "LOW"
approvals = 0
notify = true

[[approval.rules]]
impact = "HIGH"
approvals = 1
approvals_elsewhere = 1

[[approval.rules]]
impact = "CRITICAL"
approvals = 2
approvals_elsewhere = 2
review_note = true

[[policies]]
id = "raise_threshold_high"
name = "Raise the planner threshold (HIGH impact)"
for_cycles = 1
cooldown_cycles = 100
[policies.condition]
goal_gap_metric = "overall_success_rate"
goal_gap_threshold = 0.05
[policies.directive_template]
type = "ADJUST_THRESHOLD"
action = "increase_playbook_confidence_threshold"
target = "worst_domain"
knob = "planner.confidence_threshold"
parameters = { adjustment = 0.05 }
target_kpi = "overall_success_rate"
impact_level = "HIGH"
side_effects = { autonomy_rate = 0.10, human_intervention_rate = 0.05, mean_recovery_time_seconds = 0.15 }

[[policies]]
id = "enable_probe_critical"
name = "Enable probes (CRITICAL impact)"
for_cycles = 1
cooldown_cycles = 100
[policies.condition]
goal_gap_metric = "mean_recovery_time_seconds"
goal_gap_threshold = 10.0
[policies.directive_template]
type = "ENABLE_PROBE"
action = "enable_synthetic_probe"
target = "worst_domain"
subsystem = "sensing"
knob = "probe.synthetic.enabled"
parameters = { value = true }
target_kpi = "mean_recovery_time_seconds"
impact_level = "CRITICAL"
"#;

struct Demo {
    child: Child,
    data: tempfile::TempDir,
    server: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(demo: &Demo, who: &str, args: &[&str]) -> Output {
    let token = std::fs::read_to_string(demo.data.path().join(format!("api-token-{who}"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(args)
        .env("METALOOP_SERVER", &demo.server)
        .env("METALOOP_TOKEN", token.trim())
        .output()
        .unwrap()
}

fn directives(demo: &Demo) -> Vec<serde_json::Value> {
    let out = cli(demo, "ops", &["directives", "list", "--json"]);
    if !out.status.success() {
        return vec![];
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(config: &Path) -> Demo {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "demo",
            "--scenario",
            "seed",
            "--seed",
            "1",
            "--cycles",
            "400",
            "--speed",
            "2",
        ])
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--data", data.path().to_str().unwrap(), "--report", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let demo = Demo {
        child,
        data,
        server: format!("http://127.0.0.1:{port}"),
    };
    wait_for("the API to answer", Duration::from_secs(20), || {
        if !demo.data.path().join("api-token-ops2").exists() {
            return None;
        }
        let out = cli(&demo, "ops", &["status", "--json"]);
        out.status.success().then_some(())
    });
    demo
}

#[test]
fn high_waits_for_approval_critical_needs_two_and_expired_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaloop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let demo = start(&config);

    // a HIGH directive waits …
    let high = wait_for("a pending HIGH directive", Duration::from_secs(60), || {
        directives(&demo)
            .into_iter()
            .find(|d| d["effective_impact"] == "HIGH" && d["status"] == "pending_approval")
            .map(|d| d["id"].as_str().unwrap().to_string())
    });
    std::thread::sleep(Duration::from_millis(1200));
    let still = directives(&demo)
        .into_iter()
        .find(|d| d["id"] == high.as_str())
        .unwrap();
    assert_eq!(
        still["status"], "pending_approval",
        "nothing applies a HIGH directive without approval"
    );
    // … until a human approves it, then it proceeds to the spine
    let out = cli(
        &demo,
        "ops",
        &["directives", "approve", &high, "--note", "go"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the HIGH directive to be applied",
        Duration::from_secs(20),
        || {
            let d = directives(&demo)
                .into_iter()
                .find(|d| d["id"] == high.as_str())?;
            matches!(
                d["status"].as_str(),
                Some("verifying" | "verified" | "no_effect" | "degraded" | "rolled_back")
            )
            .then_some(())
        },
    );

    // a CRITICAL directive: one approver is not enough, the same one twice is refused
    let critical = wait_for(
        "a pending CRITICAL directive",
        Duration::from_secs(60),
        || {
            directives(&demo)
                .into_iter()
                .find(|d| d["effective_impact"] == "CRITICAL" && d["status"] == "pending_approval")
                .map(|d| d["id"].as_str().unwrap().to_string())
        },
    );
    let out = cli(&demo, "ops", &["directives", "approve", &critical]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a CRITICAL approval needs a review note"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("note"));
    let out = cli(
        &demo,
        "ops",
        &[
            "directives",
            "approve",
            &critical,
            "--note",
            "reviewed the blast radius",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &demo,
        "ops",
        &["directives", "approve", &critical, "--note", "again"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "the same approver cannot approve twice"
    );
    let d = directives(&demo)
        .into_iter()
        .find(|d| d["id"] == critical.as_str())
        .unwrap();
    assert_eq!(d["status"], "pending_approval");
    let out = cli(
        &demo,
        "ops2",
        &[
            "directives",
            "approve",
            &critical,
            "--note",
            "second pair of eyes",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the CRITICAL directive to be applied",
        Duration::from_secs(20),
        || {
            let d = directives(&demo)
                .into_iter()
                .find(|d| d["id"] == critical.as_str())?;
            (d["status"] != "pending_approval"
                && d["status"] != "approved"
                && d["status"] != "published")
                .then_some(())
        },
    );

    // the next ones are left alone: they expire and are never applied
    let expired = wait_for("an expired directive", Duration::from_secs(90), || {
        directives(&demo)
            .into_iter()
            .find(|d| d["status"] == "expired")
    });
    let lifecycle: Vec<&str> = expired["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert!(!lifecycle.contains(&"published"), "{lifecycle:?}");
    assert!(expired["applied"].is_null());
    let out = cli(
        &demo,
        "ops",
        &[
            "directives",
            "approve",
            expired["id"].as_str().unwrap(),
            "--note",
            "too late",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}
