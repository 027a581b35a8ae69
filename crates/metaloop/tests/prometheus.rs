//! `/metrics` as Prometheus sees it: every metric exercised, the exposition linted by
//! `promtool check metrics`, and scraped by a real Prometheus that then answers a query.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool` on PATH). With `CI=true`
//! a missing tool fails the test; otherwise the test is skipped with a message on stderr.

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::get;
use metaloop::config::{NotifyEntry, NotifyKind};
use metaloop::metrics::{CONTENT_TYPE, Metrics, TEXT_CONTENT_TYPE};
use metaloop::notify::{Notifier, NotifyOptions};
use metaloop_core::supervisor::{Notification, NotificationKind};
use metaloop_core::time::Timestamp;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get update && apt-get install -y prometheus";

/// Whether `tool` runs; under `CI=true` a missing tool is a failure, elsewhere a skip.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is not installed; CI needs it: {INSTALL}");
        }
        // straight to stderr: the test harness captures eprintln! of passing tests
        let _ = writeln!(
            std::io::stderr(),
            "skipping: {tool} is not installed (install with: {INSTALL})"
        );
    }
    found
}

/// Drives every metric at least once, through the same calls the runtime makes.
async fn exercised() -> Metrics {
    let m = Metrics::new();
    m.observe_cycle(Duration::from_millis(42));
    m.observe_cycle(Duration::from_millis(1300));
    m.set_kpi("application", "overall_success_rate", 0.87);
    m.set_kpi("global", "mean_recovery_time_seconds", 42.3);
    m.set_goal_gap("overall_success_rate", 0.08);
    m.set_goal_gap("mean_recovery_time_seconds", 12.3);
    m.directive_status("ADJUST_THRESHOLD", "verified", 2);
    m.directive_status("ENABLE_PLAYBOOK", "pending_approval", 1);
    m.verdict("verified", "metaloop");
    m.verdict("degraded", "metaloop");
    m.rollback();
    m.policy_evaluated("improve_success_rate", true);
    m.policy_evaluated("improve_success_rate", false);
    m.event_ingested();
    m.event_rejected("signature");
    m.event_rejected("duplicate");
    m.ledger_appended(12);
    m.checkpoint_made(Timestamp::from_secs(1_767_225_600));
    m.notification_dropped("slack");
    m.notification_failed("slack");
    m.notification_retried("slack");

    // the notification counters, through a real channel
    let n = Notifier::from_config_with(
        &[NotifyEntry {
            kind: NotifyKind::Log,
            url: None,
            secret_env: None,
        }],
        NotifyOptions {
            metrics: Some(m.clone()),
            ..NotifyOptions::default()
        },
    )
    .unwrap();
    n.notify(&Notification {
        kind: NotificationKind::Summary,
        time: Timestamp::from_secs(1_767_225_600),
        text: "cycle 1".into(),
        subject: None,
    });
    assert!(n.flush(Duration::from_secs(5)).await);
    m
}

/// Content types served so far.
type Served = Arc<Mutex<Vec<&'static str>>>;

/// Serves the metrics at `/metrics` (OpenMetrics when asked for, text 0.0.4 otherwise);
/// returns the address and the content types it served.
async fn serve(metrics: Metrics) -> (std::net::SocketAddr, Served) {
    let served = Served::default();
    let log = served.clone();
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let m = metrics.clone();
            let log = log.clone();
            async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                let (content_type, body) = m.render(accept);
                log.lock().unwrap().push(content_type);
                ([(header::CONTENT_TYPE, content_type)], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, served)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus process, stopped when dropped (also when the test panics).
struct Prometheus {
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGTERM for a clean shutdown, then make sure
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_no_problems() {
    if !have("promtool") {
        return;
    }
    let (addr, _) = serve(exercised().await).await;
    // what a plain scraper (no Accept header) gets
    let resp = metaloop::http::client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        TEXT_CONTENT_TYPE
    );
    let text = resp.text().await.unwrap();
    // every metric the module documents is present
    for name in [
        "metaloop_cycle_duration_seconds_bucket",
        "metaloop_cycles_total",
        "metaloop_directives{",
        "metaloop_verdicts_total{",
        "metaloop_rollbacks_total",
        "metaloop_rollback_ratio",
        "metaloop_policy_evaluations_total{",
        "metaloop_policy_matches_total{",
        "metaloop_policy_match_ratio{",
        "metaloop_kpi{",
        "metaloop_goal_gap{",
        "metaloop_events_ingested_total",
        "metaloop_events_rejected_total{",
        "metaloop_ledger_appends_total",
        "metaloop_ledger_checkpoints_total",
        "metaloop_ledger_checkpoint_timestamp_seconds",
        "metaloop_ledger_checkpoint_age_seconds",
        "metaloop_notifications_sent_total{channel=\"log\"} 1",
        "metaloop_notifications_dropped_total{",
        "metaloop_notifications_failed_total{",
        "metaloop_notifications_retried_total{",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported problems:\n{report}\nin:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_answers_a_query() {
    if !have("prometheus") {
        return;
    }
    let (addr, served) = serve(exercised().await).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: metaloop\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("prometheus.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let prometheus = Prometheus {
        child: Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("prometheus starts"),
    };
    let api = format!("http://{web}/api/v1");
    let client = metaloop::http::client();

    // the target is up: Prometheus scraped it and understood it
    let start = Instant::now();
    loop {
        let targets: Option<Value> = match client.get(format!("{api}/targets")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let target = targets
            .as_ref()
            .and_then(|t| t["data"]["activeTargets"].get(0).cloned());
        if let Some(t) = &target
            && t["health"] == "up"
        {
            assert_eq!(t["scrapeUrl"], format!("http://{addr}/metrics"));
            // Prometheus asked for OpenMetrics, and parsed it
            assert!(served.lock().unwrap().contains(&CONTENT_TYPE));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "target never came up: {target:?}\nprometheus log:\n{}",
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // and a query returns what the test set
    let start = Instant::now();
    loop {
        let reply: Value = client
            .get(format!("{api}/query"))
            .query(&[(
                "query",
                "metaloop_kpi{domain=\"application\",kpi=\"overall_success_rate\"}",
            )])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["status"], "success", "{reply}");
        if let Some(sample) = reply["data"]["result"].get(0) {
            assert_eq!(sample["metric"]["job"], "metaloop");
            assert_eq!(sample["value"][1], "0.87");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no sample yet: {reply}\nprometheus log:\n{}",
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
}
