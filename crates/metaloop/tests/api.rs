//! The HTTP API through a real server: every route for success, 400 (naming the field), 401,
//! 403 and 404 where they apply; the approval workflow (HIGH needs one approval, CRITICAL two
//! distinct approvers with a note, an approver cannot approve twice, rejected and expired
//! directives are never published); the OpenAPI document lists every route served.

use metaloop::api::auth::Tokens;
use metaloop::api::views::{EventResult, EventResults};
use metaloop::api::{ApiError, ApiState, EventIngest, router};
use metaloop::config::{Role, TokenEntry};
use metaloop::runtime::{BoxFuture, NotificationSink, Publisher, RecordSink, Runtime};
use metaloop_core::directive::{DirectiveType, ImpactLevel};
use metaloop_core::policy::{Condition, DirectiveTemplate, MetaPolicy, TargetSelector};
use metaloop_core::protocol::{Decision, DirectiveMessage, EventData, Recovery, SpineEvent};
use metaloop_core::record::Entry;
use metaloop_core::supervisor::Notification;
use metaloop_core::time::Timestamp;
use metaloop_core::{Supervisor, SupervisorConfig};
use metaloop_ledger::{LedgerStore, SqliteLedger};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

struct LedgerRecords(Arc<SqliteLedger>);
impl RecordSink for LedgerRecords {
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<anyhow::Result<()>> {
        let l = self.0.clone();
        Box::pin(async move {
            let batch = entries
                .into_iter()
                .map(metaloop::store::new_record)
                .collect();
            l.append(batch).await?;
            Ok(())
        })
    }
}

#[derive(Clone, Default)]
struct Published(Arc<Mutex<Vec<String>>>);
impl Publisher for Published {
    fn publish(&mut self, m: DirectiveMessage) -> BoxFuture<anyhow::Result<()>> {
        self.0.lock().unwrap().push(m.directive_id);
        Box::pin(async { Ok(()) })
    }
}
struct Quiet;
impl NotificationSink for Quiet {
    fn notify(&mut self, _: Notification) {}
}

/// Counts events posted (stands in for the mesh's ingest pipeline).
struct CountingIngest;
impl EventIngest for CountingIngest {
    fn ingest(
        &self,
        body: bytes::Bytes,
        _: Option<String>,
    ) -> BoxFuture<Result<EventResults, ApiError>> {
        Box::pin(async move {
            let v: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", e.to_string()))?;
            let n = v.as_array().map_or(1, Vec::len);
            let results = (0..n)
                .map(|i| EventResult {
                    id: Some(format!("e{i}")),
                    source: Some("s".into()),
                    result: "accepted".into(),
                    reason: None,
                    message: None,
                })
                .collect();
            Ok(EventResults { results })
        })
    }
}

fn policy(id: &str, impact: ImpactLevel, knob: &str, kpi: &str) -> MetaPolicy {
    MetaPolicy {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        condition: Condition {
            goal_gap_metric: Some(kpi.into()),
            goal_gap_threshold: Some(0.0),
            ..Default::default()
        },
        directive_template: DirectiveTemplate {
            directive_type: DirectiveType::AdjustConfidence,
            action: "test".into(),
            target: TargetSelector::WorstDomain,
            subsystem: "planner".into(),
            knob: knob.into(),
            parameters: json!({ "adjustment": 0.01 }),
            target_kpi: kpi.into(),
            impact_level: impact,
            side_effects: BTreeMap::new(),
            min_effect: None,
            expected_impact: String::new(),
            experiment_first: false,
            experiment_fraction: None,
        },
        confidence_threshold: 0.0,
        min_evidence: 0.0,
        approval_override: None,
        for_cycles: 1,
        cooldown_cycles: 100,
        priority: 0,
        enabled: true,
        mode: Default::default(),
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    published: Published,
    runtime: Runtime,
    clock: Arc<std::sync::atomic::AtomicI64>,
    _dir: tempfile::TempDir,
}

const TOKENS: [(&str, &[Role]); 6] = [
    ("viewer", &[Role::Viewer]),
    ("operator", &[Role::Operator]),
    ("approver", &[Role::Approver]),
    ("approver2", &[Role::Approver]),
    ("admin", &[Role::Admin]),
    ("adapter", &[Role::Adapter]),
];

fn token(name: &str) -> String {
    format!("token-of-{name}")
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(
        SqliteLedger::open(dir.path().join("ledger.db"))
            .await
            .unwrap(),
    );
    let start = Timestamp::from_secs(1_767_225_600);
    let mut cfg = SupervisorConfig {
        id_seed: 3,
        ..Default::default()
    };
    cfg.policies = vec![
        policy(
            "high_policy",
            ImpactLevel::High,
            "planner.exploration",
            "autonomy_rate",
        ),
        policy(
            "critical_policy",
            ImpactLevel::Critical,
            "planner.safety_checks",
            "overall_success_rate",
        ),
    ];
    cfg.policies[1].priority = 1;
    cfg.verification.min_samples = 50;
    cfg.verification.min_pre_cycles = 1;
    cfg.verification.min_baseline_samples = 50;
    cfg.approval.ttl_seconds = 600;
    let sup = Supervisor::new(cfg, start).unwrap();
    let published = Published::default();
    let (runtime, _task) =
        Runtime::start(sup, LedgerRecords(ledger.clone()), published.clone(), Quiet)
            .await
            .unwrap();
    let entries: Vec<TokenEntry> = TOKENS
        .iter()
        .map(|(n, roles)| TokenEntry {
            principal: n.to_string(),
            roles: roles.to_vec(),
            sha256: Sha256::digest(token(n).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
        .collect();
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(start.millis()));
    let c = clock.clone();
    let state = ApiState {
        runtime: runtime.clone(),
        tokens: Arc::new(Tokens::from_config(&entries).unwrap()),
        ledger,
        snapshots: Default::default(),
        ingest: Some(Arc::new(CountingIngest)),
        clock: Arc::new(move || Timestamp(c.load(std::sync::atomic::Ordering::Relaxed))),
        metrics: Some(Arc::new(metaloop::metrics::Metrics::new())),
        history: Default::default(),
        truth: None,
        checkpoint_key: None,
        role: Default::default(),
        reload: None,
        drive_clock: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Server {
        base,
        http: metaloop::http::client(),
        published,
        runtime,
        clock,
        _dir: dir,
    }
}

impl Server {
    async fn req(
        &self,
        method: &str,
        path: &str,
        who: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(w) = who {
            r = r.bearer_auth(token(w));
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Two cycles of events that miss the success and autonomy goals, so both test policies
    /// fire: one HIGH and one CRITICAL directive wait for approval.
    async fn make_pending(&self) -> (String, String) {
        let mut n = 0;
        for _ in 0..2 {
            let events: Vec<SpineEvent> = (0..200)
                .flat_map(|i| {
                    n += 1;
                    let r = Recovery {
                        domain: "application".into(),
                        incident_id: format!("i{n}"),
                        playbook: "restart".into(),
                        duration_s: 20.0,
                        autonomous: true,
                        human_override: false,
                        experiment: None,
                    };
                    let rec = if i % 5 == 0 {
                        EventData::RecoveryFailed(r)
                    } else {
                        EventData::RecoverySucceeded(r)
                    };
                    let dec = EventData::DecisionMade(Decision {
                        domain: "application".into(),
                        decision_id: format!("d{n}"),
                        confidence: 0.8,
                        autonomous: i % 2 == 0,
                        approved_by_human: i % 2 == 1,
                        overridden: false,
                        experiment: None,
                    });
                    [rec, dec]
                        .into_iter()
                        .enumerate()
                        .map(move |(k, data)| SpineEvent {
                            id: format!("e{n}-{k}"),
                            source: "urn:spine:application".into(),
                            time: Timestamp(0),
                            data,
                        })
                })
                .collect();
            let now = self
                .runtime
                .call(move |sup| {
                    let end = sup.next_cycle_at();
                    for mut e in events {
                        e.time = end.plus_millis(-1000);
                        sup.ingest(&e).unwrap();
                    }
                    sup.tick(end);
                    end
                })
                .await
                .unwrap();
            self.clock
                .store(now.millis(), std::sync::atomic::Ordering::Relaxed);
        }
        let (_, list) = self
            .req(
                "GET",
                "/v1/directives?status=pending_approval",
                Some("viewer"),
                None,
            )
            .await;
        let find = |t: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|d| d["effective_impact"] == t)
                .map(|d| d["id"].as_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no pending {t} directive in {list}"))
        };
        (find("HIGH"), find("CRITICAL"))
    }
}

#[tokio::test]
async fn approval_workflow_through_the_api() {
    let s = server().await;
    let (high, critical) = s.make_pending().await;
    assert!(
        s.published.0.lock().unwrap().is_empty(),
        "nothing needing approval was published"
    );

    // HIGH: one approval publishes it
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{high}/approve"),
            Some("approver"),
            Some(json!({"note": "ok"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "published");
    assert_eq!(*s.published.0.lock().unwrap(), vec![high.clone()]);
    // approving again is a conflict, not a second publication
    let (st, _) = s
        .req(
            "POST",
            &format!("/v1/directives/{high}/approve"),
            Some("approver2"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // CRITICAL: needs a review note, two distinct approvers
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{critical}/approve"),
            Some("approver"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "note", "{v}");
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{critical}/approve"),
            Some("approver"),
            Some(json!({"note": "reviewed"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["status"], "pending_approval",
        "one approval is not enough"
    );
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{critical}/approve"),
            Some("approver"),
            Some(json!({"note": "again"})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "the same approver cannot approve twice: {v}"
    );
    assert_eq!(s.published.0.lock().unwrap().len(), 1);
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{critical}/approve"),
            Some("approver2"),
            Some(json!({"note": "second look"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "published");
    assert_eq!(s.published.0.lock().unwrap().len(), 2);

    // every change is recorded with its principal
    let (_, records) = s
        .req("GET", "/v1/ledger/records?limit=1000", Some("viewer"), None)
        .await;
    let approvals: Vec<(&str, &str)> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "directive.approved")
        .map(|r| {
            (
                r["actor"].as_str().unwrap(),
                r["resource"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        vec![
            ("approver", high.as_str()),
            ("approver", critical.as_str()),
            ("approver2", critical.as_str())
        ]
    );
}

#[tokio::test]
async fn rejected_and_expired_directives_are_never_published() {
    let s = server().await;
    let (high, critical) = s.make_pending().await;
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{high}/reject"),
            Some("approver"),
            Some(json!({"note": "no"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "rejected");
    let (st, _) = s
        .req(
            "POST",
            &format!("/v1/directives/{high}/approve"),
            Some("approver2"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // the CRITICAL one waits past its TTL
    s.clock
        .fetch_add(3_600_000, std::sync::atomic::Ordering::Relaxed);
    let (st, v) = s
        .req(
            "POST",
            &format!("/v1/directives/{critical}/approve"),
            Some("approver"),
            Some(json!({"note": "late"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    let (_, d) = s
        .req(
            "GET",
            &format!("/v1/directives/{critical}"),
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(d["status"], "expired");
    assert!(s.published.0.lock().unwrap().is_empty());
}

/// (method, path, body, role that may call it, a role that may not, a bad request)
#[tokio::test]
async fn every_route_answers_401_403_400_404_and_success() {
    let s = server().await;
    let (high, _critical) = s.make_pending().await;
    let policy_body = serde_json::to_value(policy(
        "custom",
        ImpactLevel::Low,
        "planner.x",
        "autonomy_rate",
    ))
    .unwrap();
    type Case<'a> = (
        &'a str,
        String,
        Option<Value>,
        &'a str,
        Option<&'a str>,
        Option<(String, Option<Value>, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/status".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/status?x=1".into(), None, "x")),
        ),
        (
            "GET",
            "/v1/goals".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/goals?y=1".into(), None, "y")),
        ),
        (
            "GET",
            "/v1/snapshots".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/snapshots?limit=lots".into(), None, "limit")),
        ),
        (
            "GET",
            "/v1/directives".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/directives?status=happy".into(), None, "status")),
        ),
        (
            "GET",
            format!("/v1/directives/{high}"),
            None,
            "operator",
            Some("adapter"),
            Some((format!("/v1/directives/{high}?z=1"), None, "z")),
        ),
        (
            "GET",
            "/v1/policies".into(),
            None,
            "approver",
            Some("adapter"),
            Some(("/v1/policies?q=1".into(), None, "q")),
        ),
        (
            "POST",
            "/v1/policies".into(),
            Some(policy_body.clone()),
            "admin",
            Some("operator"),
            Some((
                "/v1/policies".into(),
                Some(json!({"id": "p", "nmae": 1})),
                "nmae",
            )),
        ),
        (
            "POST",
            "/v1/policies/custom/disable".into(),
            None,
            "operator",
            Some("viewer"),
            None,
        ),
        (
            "POST",
            "/v1/policies/custom/enable".into(),
            None,
            "admin",
            Some("approver"),
            None,
        ),
        (
            "GET",
            "/v1/recommendations".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/recommendations?x=1".into(), None, "x")),
        ),
        (
            "GET",
            "/v1/policies/custom/history".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/policies/custom/history?x=1".into(), None, "x")),
        ),
        (
            "POST",
            "/v1/policies/custom/reset".into(),
            Some(json!({"note": "the cause of its failures is fixed"})),
            "admin",
            Some("operator"),
            Some((
                "/v1/policies/custom/reset".into(),
                Some(json!({"note": " "})),
                "policy",
            )),
        ),
        (
            "GET",
            "/v1/ledger/records".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/ledger/records?from=-1".into(), None, "from")),
        ),
        (
            "GET",
            "/v1/ledger/checkpoints".into(),
            None,
            "viewer",
            Some("adapter"),
            Some(("/v1/ledger/checkpoints?limit=5000".into(), None, "limit")),
        ),
        (
            "POST",
            "/v1/events".into(),
            Some(json!([{"a": 1}, {"b": 2}])),
            "adapter",
            Some("admin"),
            None,
        ),
        (
            "POST",
            format!("/v1/directives/{high}/approve"),
            Some(json!({"note": "fine"})),
            "approver",
            Some("operator"),
            Some((
                format!("/v1/directives/{high}/approve"),
                Some(json!({"notes": "x"})),
                "notes",
            )),
        ),
    ];
    for (method, path, body, allowed, denied, bad) in cases {
        let (st, v) = s.req(method, &path, None, body.clone()).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token: {v}"
        );
        let (st, _) = s.req(method, &path, Some("nobody"), body.clone()).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with an unknown token"
        );
        if let Some(d) = denied {
            let (st, v) = s.req(method, &path, Some(d), body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path} as {d}: {v}");
        }
        if let Some((bad_path, bad_body, field)) = bad {
            let (st, v) = s.req(method, &bad_path, Some(allowed), bad_body).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {bad_path}: {v}");
            assert_eq!(v["field"], field, "{method} {bad_path}: {v}");
            assert!(v["message"].as_str().unwrap().contains(field), "{v}");
        }
        let (st, v) = s.req(method, &path, Some(allowed), body).await;
        assert!(st.is_success(), "{method} {path} as {allowed}: {st} {v}");
    }
    // 404s
    for (method, path, who) in [
        ("GET", "/v1/directives/nope", "viewer"),
        ("POST", "/v1/directives/nope/approve", "approver"),
        ("POST", "/v1/directives/nope/reject", "approver"),
        ("POST", "/v1/policies/nope/enable", "operator"),
        ("POST", "/v1/policies/nope/disable", "operator"),
        ("GET", "/v1/policies/nope/history", "viewer"),
        ("POST", "/v1/policies/nope/reset", "admin"),
        ("GET", "/v1/snapshots/latest", "viewer"),
        ("GET", "/v1/no-such-route", "viewer"),
    ] {
        let (st, v) = s.req(method, path, Some(who), None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}: {v}");
    }
    // unauthenticated routes
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (st, _) = s.req("GET", path, None, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_served() {
    let s = server().await;
    let (st, doc) = s.req("GET", "/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 18, "{}", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            // every success has a real schema and its content type
            for (status, resp) in op["responses"].as_object().unwrap() {
                if !status.starts_with('2') {
                    continue;
                }
                let content = resp["content"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                for (media, c) in content {
                    let schema = c["schema"].as_object().unwrap();
                    assert!(
                        !schema.is_empty(),
                        "{method} {path} {status} {media}: empty schema"
                    );
                }
                if path == "/healthz" || path == "/metrics" {
                    assert!(content.contains_key("text/plain"), "{path}: {content:?}");
                } else {
                    assert!(
                        content.contains_key("application/json"),
                        "{path}: {content:?}"
                    );
                }
            }
            for error in ["4XX", "5XX"] {
                assert_eq!(
                    op["responses"][error]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {error}"
                );
            }
            // and the server really serves it: not the fallback
            let path = path.replace("{id}", "x");
            let (st, v) = s
                .req(&method.to_uppercase(), &path, Some("admin"), None)
                .await;
            assert!(
                !(st == StatusCode::NOT_FOUND && v["message"] == "no such route")
                    && st != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served ({st})"
            );
        }
    }
    // a route the server does not document does not exist
    let (st, _) = s.req("GET", "/v1/secret", Some("admin"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Errors made by the HTTP layer itself carry the same JSON body as the API's own.
#[tokio::test]
async fn every_error_answer_is_the_json_error() {
    let s = server().await;
    let big = Value::String("x".repeat(3 * 1024 * 1024));
    for (method, path, who, body, status) in [
        (
            "GET",
            "/v1/directives/%FF%FE",
            Some("viewer"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/v1/directives?limit=%FF",
            Some("viewer"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/status",
            Some("viewer"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/v1/policies",
            Some("admin"),
            Some(big),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        ("GET", "/v1/status", None, None, StatusCode::UNAUTHORIZED),
    ] {
        let (st, v) = s.req(method, path, who, body).await;
        assert_eq!(st, status, "{method} {path}: {v}");
        assert!(
            v["error"].is_string(),
            "{method} {path}: not the JSON error: {v}"
        );
        assert!(
            !v["message"].as_str().unwrap_or("").is_empty(),
            "{method} {path}: {v}"
        );
    }
}

/// A browser's session with the dashboard, spoken with plain HTTP: cookies by hand, no
/// redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            http: metaloop::http::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        let resp = r.send().await.unwrap();
        let (st, h) = (resp.status(), resp.headers().clone());
        (st, h, resp.text().await.unwrap())
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let enc = |v: &str| -> String {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let resp = r.send().await.unwrap();
        let (st, h) = (resp.status(), resp.headers().clone());
        (st, h, resp.text().await.unwrap())
    }

    async fn sign_in(&mut self, who: &str) {
        let origin = self.base.clone();
        let (st, h, body) = self
            .post(
                "/signin",
                &[("token", &token(who)), ("next", "/approvals")],
                Some(&origin),
            )
            .await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(h["location"], "/approvals");
        let set = h["set-cookie"].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        self.cookie = Some(set.split(';').next().unwrap().to_string());
    }

    /// The CSRF token in the page's forms.
    async fn csrf(&self, path: &str) -> String {
        let (_, _, body) = self.get(path).await;
        let at = body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        body[at..at + 64].to_string()
    }
}

/// The dashboard signs in with the API's tokens, refuses a viewer's approval and forged posts,
/// and records an approver's decision with its principal, like the API.
#[tokio::test]
async fn the_dashboard_signs_in_with_api_tokens_and_decides_through_the_api_path() {
    let s = server().await;
    let (high, _critical) = s.make_pending().await;
    let mut viewer = Browser::new(&s.base);
    // no session: every page leads to the sign-in form
    let (st, h, _) = viewer.get("/approvals").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h["location"], "/signin?next=/approvals");
    let (st, h, body) = viewer.get("/signin").await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(body.contains("name=\"token\""));
    // a wrong token, an adapter's token (no reader role), a post from another site
    let origin = s.base.clone();
    let (st, _, body) = viewer
        .post("/signin", &[("token", "nope")], Some(&origin))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body.contains("unknown token"));
    let (st, _, _) = viewer
        .post("/signin", &[("token", &token("adapter"))], Some(&origin))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = viewer
        .post(
            "/signin",
            &[("token", &token("viewer"))],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // a viewer sees every page, and the pending directive
    viewer.sign_in("viewer").await;
    for page in [
        "/",
        "/approvals",
        "/directives",
        "/policies",
        "/ledger",
        "/alerts",
    ] {
        let (st, h, body) = viewer.get(page).await;
        assert_eq!(st, StatusCode::OK, "{page}: {body}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{page}"
        );
        assert!(h.contains_key("server-timing"), "{page}");
    }
    let (st, _, body) = viewer.get(&format!("/directives/{high}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains(&format!("pending-{high}")));
    let (_, _, inbox) = viewer.get("/approvals").await;
    assert!(inbox.contains(&format!("cannot-approve-{high}")));
    // and cannot approve it: 403, nothing recorded
    let csrf = viewer.csrf("/approvals").await;
    let (st, h, body) = viewer
        .post(
            &format!("/directives/{high}/approve"),
            &[("csrf", &csrf), ("note", "")],
            Some(&origin),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(body.contains("viewer has roles"));
    let (_, d) = s
        .req(
            "GET",
            &format!("/v1/directives/{high}"),
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(d["status"], "pending_approval");

    // an approver: a post without the session's CSRF token is refused
    let mut approver = Browser::new(&s.base);
    approver.sign_in("approver").await;
    let (st, _, body) = approver
        .post(
            &format!("/directives/{high}/approve"),
            &[("csrf", &csrf), ("note", "forged")],
            Some(&origin),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "another session's token: {body}");
    let csrf = approver.csrf("/approvals").await;
    let (st, _, _) = approver
        .post(
            &format!("/directives/{high}/approve"),
            &[("csrf", &csrf), ("note", "from the dashboard")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a post from another site");
    let (_, d) = s
        .req(
            "GET",
            &format!("/v1/directives/{high}"),
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(d["approvals"], json!([]));
    // with it, the approval goes through the API's path: published, recorded as the approver
    let (st, h, body) = approver
        .post(
            &format!("/directives/{high}/approve"),
            &[("csrf", &csrf), ("note", "from the dashboard")],
            Some(&origin),
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(h["location"], format!("/directives/{high}?decided=1"));
    let (_, d) = s
        .req(
            "GET",
            &format!("/v1/directives/{high}"),
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(d["status"], "published");
    assert_eq!(d["approvals"][0]["approver"], "approver");
    assert_eq!(d["approvals"][0]["note"], "from the dashboard");
    assert!(s.published.0.lock().unwrap().contains(&high));
    let (_, records) = s
        .req("GET", "/v1/ledger/records?limit=1000", Some("viewer"), None)
        .await;
    let approval = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "directive.approved" && r["resource"] == high.as_str())
        .expect("the approval is in the ledger");
    assert_eq!(approval["actor"], "approver");
    let (_, _, page) = approver.get(&format!("/directives/{high}")).await;
    assert!(
        page.contains("directive.approved"),
        "the ledger story is on the page"
    );

    // policies: an approver may not disable one, an admin may, recorded as the admin
    let csrf = approver.csrf("/policies").await;
    let (st, _, _) = approver
        .post(
            "/policies/high_policy/disable",
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let mut admin = Browser::new(&s.base);
    admin.sign_in("admin").await;
    let csrf = admin.csrf("/policies").await;
    let (st, _, _) = admin
        .post(
            "/policies/high_policy/disable",
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, p) = s.req("GET", "/v1/policies", Some("viewer"), None).await;
    let high_policy = p
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"]["id"] == "high_policy")
        .unwrap();
    assert_eq!(high_policy["policy"]["enabled"], false);
    let (_, records) = s
        .req("GET", "/v1/ledger/records?limit=1000", Some("viewer"), None)
        .await;
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "policy.enabled" && r["actor"] == "admin")
    );

    // signing out ends the session
    let csrf = admin.csrf("/").await;
    let (st, _, _) = admin
        .post("/signout", &[("csrf", &csrf)], Some(&origin))
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, _, _) = admin.get("/").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // the API's own errors stay JSON; the dashboard is not in the OpenAPI document
    let (st, v) = s.req("GET", "/no/such/page", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(v["error"].is_string());
    let (_, doc) = s.req("GET", "/openapi.json", None, None).await;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/v1/")
            || ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&p.as_str())),
        "{paths:?}"
    );
}

#[tokio::test]
async fn cel_policies_are_checked_and_every_change_is_in_the_policy_history() {
    let s = server().await;
    let mut p = serde_json::to_value(policy(
        "cel_policy",
        ImpactLevel::Low,
        "planner.exploration",
        "autonomy_rate",
    ))
    .unwrap();
    for (expr, want) in [
        (
            "global.kpis.autonomy_rate < 0.5 &&\n  nonsense > 1",
            "expression 2:3: unknown variable nonsense",
        ),
        ("global.kpis.autonomy_rate < ", "expression 1:"),
        (
            "global.coverage > 'high'",
            "a comparison cannot take double and string",
        ),
        (
            "domains.all(a, domains.all(b, domains.exists(c, domains[c].drift.x > domains[a].drift.x)))",
            "exceeds the budget",
        ),
    ] {
        p["condition"] = json!({ "expression": expr });
        let (st, v) = s
            .req("POST", "/v1/policies", Some("admin"), Some(p.clone()))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{expr}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(want) && msg.contains("cel_policy"),
            "{expr}: {v}"
        );
    }
    p["condition"] = json!({ "expression": "global.kpis.autonomy_rate < 0.5" });
    let (st, v) = s
        .req("POST", "/v1/policies", Some("admin"), Some(p.clone()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    p["condition"] = json!({ "expression": "global.kpis.autonomy_rate < 0.4" });
    p["mode"] = json!("shadow");
    let (st, v) = s
        .req("POST", "/v1/policies", Some("admin"), Some(p.clone()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = s
        .req(
            "POST",
            "/v1/policies/cel_policy/reset",
            Some("admin"),
            Some(json!({"note": "the planner bug is fixed"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["previous"]["failed"], 0);
    let (st, h) = s
        .req(
            "GET",
            "/v1/policies/cel_policy/history",
            Some("viewer"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{h}");
    let h = h.as_array().unwrap();
    let actions: Vec<&str> = h.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "policy.registered",
            "policy.registered",
            "policy.track_record_reset"
        ],
        "{h:?}"
    );
    assert!(h.iter().all(|r| r["actor"] == "admin"), "{h:?}");
    assert!(h[0]["payload"].get("changes").is_none(), "{:?}", h[0]);
    let changes = h[1]["payload"]["changes"].as_array().unwrap();
    let fields: Vec<&str> = changes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["condition.expression", "mode"], "{changes:?}");
    assert_eq!(changes[0]["before"], "global.kpis.autonomy_rate < 0.5");
    assert_eq!(changes[0]["after"], "global.kpis.autonomy_rate < 0.4");
    assert_eq!(changes[1]["before"], Value::Null);
    assert_eq!(changes[1]["after"], "shadow");
    assert_eq!(h[2]["payload"]["note"], "the planner bug is fixed");
}
