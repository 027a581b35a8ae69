//! Notification channels against real HTTP receivers started in the test: exact payloads,
//! signatures, retries while a receiver is down, and a full queue dropping the oldest.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use metaloop::config::{NotifyEntry, NotifyKind};
use metaloop::metrics::Metrics;
use metaloop::notify::{Message, Notifier, NotifyOptions, RetryPolicy};
use metaloop_core::alert::{Alert, AlertKind, Severity};
use metaloop_core::supervisor::{Notification, NotificationKind};
use metaloop_core::time::Timestamp;
use serde_json::{Value, json};
use sha2::Sha256;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What a receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Request>>>,
    /// When set, each request waits for a permit before it is answered.
    gate: Option<Arc<Semaphore>>,
    status: StatusCode,
    addr: SocketAddr,
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.got.lock().unwrap().push(Request {
        path: uri.path().to_string(),
        headers,
        body,
    });
    if let Some(gate) = &r.gate {
        gate.acquire().await.expect("gate open").forget();
    }
    r.status
}

impl Receiver {
    /// Starts a receiver on `addr` (port 0 for any free port).
    async fn start_on(addr: SocketAddr, status: StatusCode, gated: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let r = Receiver {
            got: Arc::default(),
            gate: gated.then(|| Arc::new(Semaphore::new(0))),
            status,
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new().fallback(record).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), StatusCode::OK, false).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after 10 s).
    async fn wait_for(&self, n: usize) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "receiver {} got {} of {n} requests",
                self.addr,
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(1000);
        }
    }
}

fn entry(kind: NotifyKind, url: &str) -> NotifyEntry {
    NotifyEntry {
        kind,
        url: Some(url.to_string()),
        secret_env: None,
    }
}

fn fast_retry(max_attempts: usize) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        max_elapsed: Duration::from_secs(20),
    }
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn note(kind: NotificationKind, secs: i64, text: &str, subject: Option<&str>) -> Notification {
    Notification {
        kind,
        time: Timestamp::from_secs(secs),
        text: text.to_string(),
        subject: subject.map(str::to_string),
    }
}

/// Asserts that `notify` came back at once: it only queues (a property, not a benchmark).
fn notify_now(n: &Notifier, note: &Notification) {
    let start = Instant::now();
    n.notify(note);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(50),
        "notify blocked for {took:?}"
    );
}

const APPROVAL_ID: &str = "0197f3c2-7a10-7c3e-9d4b-2f6a1b0c9e11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_body_and_signature() {
    let rx = Receiver::start().await;
    let mut e = entry(NotifyKind::Webhook, &format!("{}/hooks/metaloop", rx.url()));
    e.secret_env = Some("HOOK_SECRET".into());
    let n = Notifier::from_config_in(&[e], NotifyOptions::default(), |name| {
        (name == "HOOK_SECRET").then(|| OsString::from("s3cr3t"))
    })
    .unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    notify_now(
        &n,
        &note(
            NotificationKind::Verdict,
            1_767_225_900,
            "Directive 0197f3c2 verified: overall_success_rate +4.1 pp (p = 0.004).",
            Some(APPROVAL_ID),
        ),
    );
    let got = rx.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/hooks/metaloop");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = r
        .header("x-metaloop-delivery")
        .expect("delivery id")
        .to_string();
    assert_eq!(
        r.json(),
        json!({
            "id": id,
            "source": "metaloop",
            "kind": "verdict",
            "time": "2026-01-01T00:05:00Z",
            "text": "Directive 0197f3c2 verified: overall_success_rate +4.1 pp (p = 0.004).",
            "subject": APPROVAL_ID,
            "fields": {}
        })
    );

    // the receiver's check: HMAC-SHA256 over "<timestamp>." + the exact body
    let ts = r.header("x-metaloop-timestamp").expect("timestamp header");
    let ts_num: i64 = ts.parse().unwrap();
    assert!(
        (before - 1..=before + 60).contains(&ts_num),
        "timestamp {ts_num}"
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cr3t").unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        r.header("x-metaloop-signature"),
        Some(format!("sha256={expected}").as_str())
    );
    // a different timestamp (a replay with a fresh header) does not verify
    let mut replay = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cr3t").unwrap();
    replay.update(format!("{}.", ts_num + 600).as_bytes());
    replay.update(&r.body);
    assert!(replay.verify_slice(&hex_decode(&expected)).is_err());
    assert!(n.flush(Duration::from_secs(5)).await);
    assert_eq!(n.stats()[0].sent, 1);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_has_no_signature() {
    let rx = Receiver::start().await;
    let n = Notifier::from_config_in(
        &[entry(NotifyKind::Webhook, &rx.url())],
        NotifyOptions::default(),
        no_env,
    )
    .unwrap();
    n.send(Message::checkpoint(
        Timestamp::from_secs(1_767_225_600),
        812,
        "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
        "0123456789abcdef",
    ));
    let r = &rx.wait_for(1).await[0];
    assert!(r.header("x-metaloop-signature").is_none());
    assert!(r.header("x-metaloop-timestamp").is_some());
    let body = r.json();
    assert_eq!(body["kind"], "checkpoint");
    assert_eq!(
        body["fields"],
        json!({"seq": "812",
               "head": "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
               "key_id": "0123456789abcdef"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_approval_request_shows_the_commands() {
    let rx = Receiver::start().await;
    let n = Notifier::from_config_in(
        &[entry(
            NotifyKind::Slack,
            &format!("{}/services/T0/B0/x", rx.url()),
        )],
        NotifyOptions::default(),
        no_env,
    )
    .unwrap();
    let text = format!(
        "Approval needed (HIGH impact, 1 approver(s)) for directive 0197f3c2: ADJUST_THRESHOLD planner.confidence_threshold in application: success < 95% & recovery > 30 s. Approve with `metaloop directives approve {APPROVAL_ID}`."
    );
    notify_now(
        &n,
        &note(
            NotificationKind::ApprovalRequest,
            1_767_225_900,
            &text,
            Some(APPROVAL_ID),
        ),
    );
    let r = &rx.wait_for(1).await[0];
    assert_eq!(r.path, "/services/T0/B0/x");
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert_eq!(
        r.json(),
        json!({
            "text": format!("Approval needed: {text}"),
            "blocks": [
                {"type": "header",
                 "text": {"type": "plain_text", "text": ":raised_hand: Approval needed", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": escaped}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    "*Approve:* `metaloop directives approve {APPROVAL_ID}`\n*Reject:* `metaloop directives reject {APPROVAL_ID}`")}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "metaloop · approval_request · 2026-01-01T00:05:00Z · `{APPROVAL_ID}`")}]}
            ]
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_alert_verdict_rollback_and_summary() {
    let rx = Receiver::start().await;
    let n = Notifier::from_config_in(
        &[entry(NotifyKind::Slack, &rx.url())],
        NotifyOptions::default(),
        no_env,
    )
    .unwrap();
    let alert = Alert {
        key: "verification_failures".into(),
        kind: AlertKind::VerificationFailures,
        severity: Severity::Critical,
        message: "2 directives failed verification in the last 12 cycles".into(),
        since_cycle: 14,
    };
    n.alert_firing(&alert, Timestamp::from_secs(1_767_225_900));
    n.notify(&note(
        NotificationKind::Verdict,
        1_767_226_200,
        "Directive d1 degraded.",
        Some("d1"),
    ));
    n.notify(&note(
        NotificationKind::Rollback,
        1_767_226_500,
        "Rolled back directive d1.",
        Some("d1"),
    ));
    n.notify(&note(
        NotificationKind::Summary,
        1_767_226_500,
        "Cycle 15: all goals met.",
        None,
    ));
    let got = rx.wait_for(4).await;
    let alert = got[0].json();
    assert_eq!(
        alert["text"],
        "Alert firing (critical): Alert verification_failures: 2 directives failed verification in the last 12 cycles."
    );
    assert_eq!(
        alert["blocks"][0]["text"]["text"],
        ":rotating_light: Alert firing (critical)"
    );
    assert_eq!(
        alert["blocks"][2],
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*alert_kind*\nverification_failures"},
            {"type": "mrkdwn", "text": "*severity*\ncritical"},
            {"type": "mrkdwn", "text": "*since_cycle*\n14"}]})
    );
    let titles: Vec<Value> = got[1..]
        .iter()
        .map(|r| r.json()["blocks"][0]["text"]["text"].clone())
        .collect();
    assert_eq!(
        titles,
        [
            ":mag: Verification verdict",
            ":rewind: Directive rolled back",
            ":bar_chart: Cycle summary"
        ]
    );
    // a summary has no subject and no fields: header, text, context
    assert_eq!(got[3].json()["blocks"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_gets_firing_then_resolved_and_nothing_else() {
    let rx = Receiver::start().await;
    let options = NotifyOptions {
        environment: Some("production".into()),
        ..NotifyOptions::default()
    };
    let n = Notifier::from_config_in(
        &[entry(NotifyKind::Alertmanager, &format!("{}/", rx.url()))],
        options,
        no_env,
    )
    .unwrap();
    n.notify(&note(
        NotificationKind::Summary,
        1_767_225_600,
        "Cycle 1.",
        None,
    ));
    n.notify(&note(
        NotificationKind::AlertFiring,
        1_767_225_900,
        "Alert goal_gap_not_closed: autonomy_rate has missed its target 80.0% for 5 cycles (now 71.2%).",
        Some("goal_gap_not_closed:autonomy_rate"),
    ));
    n.notify(&note(
        NotificationKind::Verdict,
        1_767_226_200,
        "Directive d1 verified.",
        Some("d1"),
    ));
    n.notify(&note(
        NotificationKind::AlertResolved,
        1_767_227_400,
        "Resolved: goal_gap_not_closed:autonomy_rate.",
        Some("goal_gap_not_closed:autonomy_rate"),
    ));
    let got = rx.wait_for(2).await;
    let labels = json!({
        "alertname": "goal_gap_not_closed",
        "environment": "production",
        "key": "goal_gap_not_closed:autonomy_rate",
        "service": "metaloop",
        "severity": "warning"
    });
    assert_eq!(got[0].path, "/api/v2/alerts");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(
        got[0].json(),
        json!([{
            "labels": labels,
            "annotations": {
                "summary": "Alert goal_gap_not_closed: autonomy_rate has missed its target 80.0% for 5 cycles (now 71.2%).",
                "description": "Alert goal_gap_not_closed: autonomy_rate has missed its target 80.0% for 5 cycles (now 71.2%). (alert goal_gap_not_closed:autonomy_rate)"
            },
            "startsAt": "2026-01-01T00:05:00Z"
        }])
    );
    assert_eq!(
        got[1].json(),
        json!([{
            "labels": labels,
            "annotations": {
                "summary": "Alert goal_gap_not_closed: autonomy_rate has missed its target 80.0% for 5 cycles (now 71.2%).",
                "description": "Resolved: goal_gap_not_closed:autonomy_rate. (alert goal_gap_not_closed:autonomy_rate)"
            },
            "startsAt": "2026-01-01T00:05:00Z",
            "endsAt": "2026-01-01T00:30:00Z"
        }])
    );
    assert!(n.flush(Duration::from_secs(5)).await);
    assert_eq!(rx.requests().len(), 2, "only alerts go to alertmanager");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_resends_alerts_still_firing() {
    let rx = Receiver::start().await;
    let options = NotifyOptions {
        alert_resend_interval: Duration::from_millis(200),
        ..NotifyOptions::default()
    };
    let n = Notifier::from_config_in(
        &[entry(NotifyKind::Alertmanager, &rx.url())],
        options,
        no_env,
    )
    .unwrap();
    n.notify(&note(
        NotificationKind::AlertFiring,
        1_767_225_900,
        "Alert directive_no_ack: directive d1 has no ack.",
        Some("directive_no_ack:d1"),
    ));
    let got = rx.wait_for(3).await;
    for r in &got {
        let alerts = r.json();
        assert_eq!(alerts[0]["labels"]["key"], "directive_no_ack:d1");
        assert_eq!(alerts[0]["labels"]["severity"], "critical");
        assert_eq!(alerts[0]["startsAt"], "2026-01-01T00:05:00Z");
        assert!(alerts[0].get("endsAt").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_up_gets_everything_and_delays_no_one() {
    // a port nobody listens on yet
    let down_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let slack = Receiver::start().await;
    let metrics = Metrics::new();
    let options = NotifyOptions {
        retry: fast_retry(10),
        metrics: Some(metrics.clone()),
        ..NotifyOptions::default()
    };
    let n = Notifier::from_config_in(
        &[
            entry(NotifyKind::Webhook, &format!("http://{down_addr}/hook")),
            entry(NotifyKind::Slack, &slack.url()),
            NotifyEntry {
                kind: NotifyKind::Log,
                url: None,
                secret_env: None,
            },
        ],
        options,
        no_env,
    )
    .unwrap();
    for i in 0..3 {
        notify_now(
            &n,
            &note(
                NotificationKind::Summary,
                1_767_225_600 + i * 300,
                &format!("cycle {i}"),
                None,
            ),
        );
    }
    // the other channels deliver while the webhook receiver is still down
    let got = slack.wait_for(3).await;
    let texts: Vec<Value> = got
        .iter()
        .map(|r| r.json()["blocks"][1]["text"]["text"].clone())
        .collect();
    assert_eq!(texts, ["cycle 0", "cycle 1", "cycle 2"]);
    // the receiver has the third message before the sender has counted its answer
    let start = Instant::now();
    while n.stats()[1].sent < 3 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = n.stats();
    assert_eq!((s[0].channel.as_str(), s[0].sent), ("webhook", 0));
    assert_eq!((s[1].channel.as_str(), s[1].sent), ("slack", 3));

    // wait until the webhook channel has retried at least once, then bring its receiver up
    let start = Instant::now();
    while n.stats()[0].retried == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no retry happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hook = Receiver::start_on(down_addr, StatusCode::OK, false).await;
    let got = hook.wait_for(3).await;
    let texts: Vec<Value> = got.iter().map(|r| r.json()["text"].clone()).collect();
    assert_eq!(
        texts,
        ["cycle 0", "cycle 1", "cycle 2"],
        "in order, none lost"
    );
    assert!(n.flush(Duration::from_secs(10)).await);
    let s = n.stats();
    assert_eq!((s[0].sent, s[0].failed, s[0].dropped), (3, 0, 0));
    assert!(s[0].retried >= 1);
    assert_eq!((s[2].channel.as_str(), s[2].sent), ("log", 3));
    let text = metrics.encode();
    assert!(
        text.contains("metaloop_notifications_sent_total{channel=\"webhook\"} 3"),
        "{text}"
    );
    assert!(text.contains("metaloop_notifications_failed_total{channel=\"webhook\"} 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_lost_only_when_its_retry_budget_runs_out() {
    let failing = Receiver::start_on(
        "127.0.0.1:0".parse().unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        false,
    )
    .await;
    let refusing =
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), StatusCode::NOT_FOUND, false).await;
    let options = NotifyOptions {
        retry: fast_retry(3),
        ..NotifyOptions::default()
    };
    let n = Notifier::from_config_in(
        &[
            entry(NotifyKind::Webhook, &failing.url()),
            entry(NotifyKind::Slack, &refusing.url()),
        ],
        options,
        no_env,
    )
    .unwrap();
    n.notify(&note(NotificationKind::Summary, 0, "x", None));
    assert!(n.flush(Duration::from_secs(10)).await);
    let s = n.stats();
    // 503: retried until the budget (3 attempts) ran out
    assert_eq!((s[0].sent, s[0].failed, s[0].retried), (0, 1, 2));
    assert_eq!(failing.requests().len(), 3);
    // 404: permanent, not retried
    assert_eq!((s[1].sent, s[1].failed, s[1].retried), (0, 1, 0));
    assert_eq!(refusing.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), StatusCode::OK, true).await;
    let metrics = Metrics::new();
    let options = NotifyOptions {
        queue_capacity: 2,
        metrics: Some(metrics.clone()),
        ..NotifyOptions::default()
    };
    let n = Notifier::from_config_in(&[entry(NotifyKind::Webhook, &rx.url())], options, no_env)
        .unwrap();
    notify_now(&n, &note(NotificationKind::Summary, 0, "m1", None));
    // m1 is in flight, held by the receiver
    rx.wait_for(1).await;
    for i in 2..=5 {
        notify_now(
            &n,
            &note(NotificationKind::Summary, i, &format!("m{i}"), None),
        );
    }
    let s = &n.stats()[0];
    assert_eq!((s.dropped, s.queued), (2, 2));
    rx.open_gate();
    assert!(n.flush(Duration::from_secs(10)).await);
    let texts: Vec<Value> = rx
        .requests()
        .iter()
        .map(|r| r.json()["text"].clone())
        .collect();
    assert_eq!(texts, ["m1", "m4", "m5"]);
    assert_eq!(n.stats()[0].sent, 3);
    assert!(
        metrics
            .encode()
            .contains("metaloop_notifications_dropped_total{channel=\"webhook\"} 2")
    );
}
