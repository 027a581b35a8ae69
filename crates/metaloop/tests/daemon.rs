//! `metaloop run` as an operator runs it: signed events posted by an adapter are accepted,
//! replayed and forged ones rejected with their reason and change no KPI; SIGTERM stops it with
//! a final signed checkpoint; a restart rebuilds the supervisor from its ledger.

use metaloop_core::protocol::{EventData, Recovery};
use metaloop_core::time::Timestamp;
use metaloop_mesh::EventSigner;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start(config: &std::path::Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon(child)
}

fn recovery(i: usize, ok: bool) -> EventData {
    let r = Recovery {
        domain: "application".into(),
        incident_id: format!("inc-{i}"),
        playbook: "restart-service".into(),
        duration_s: 30.0,
        autonomous: true,
        human_override: false,
        experiment: None,
    };
    if ok {
        EventData::RecoverySucceeded(r)
    } else {
        EventData::RecoveryFailed(r)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_ingests_signed_events_and_restarts_from_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = EventSigner::new(
        "urn:spine:application".to_string(),
        metaloop_mesh::keys::generate_signing_key(),
    );
    let stranger = EventSigner::new(
        "urn:spine:application".to_string(),
        metaloop_mesh::keys::generate_signing_key(),
    );
    let port = free_port();
    let config = dir.path().join("metaloop.toml");
    std::fs::write(
        &config,
        format!(
            r#"cycle_interval = "2s"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
[[adapters]]
source = "urn:spine:application"
public_keys = ["{pk}"]
[[tokens]]
principal = "adapter"
roles = ["adapter"]
sha256 = "{a}"
[[tokens]]
principal = "viewer"
roles = ["viewer"]
sha256 = "{v}"
"#,
            data = dir.path().join("data").display(),
            pk = metaloop_mesh::keys::public_key_hex(&adapter.verifying_key()),
            a = hash("adapter-token"),
            v = hash("viewer-token"),
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = metaloop::http::client();
    let mut daemon = start(&config);
    let ready = Instant::now();
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "the daemon did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let good: Vec<_> = (0..20)
        .map(|i| adapter.spine_event(format!("ev-{i}"), now, &recovery(i, i % 4 != 0)))
        .collect();
    let forged = stranger.spine_event("ev-forged".to_string(), now, &recovery(99, false));
    let post = |events: Vec<metaloop_mesh::CloudEvent>| {
        let http = http.clone();
        let url = format!("{base}/v1/events");
        async move {
            let body = metaloop_mesh::envelope::batch_to_json(&events);
            let r = http
                .post(url)
                .bearer_auth("adapter-token")
                .header("content-type", "application/cloudevents-batch+json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let v = post(good.clone()).await;
    let results = v["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["result"] == "accepted"), "{v}");
    // the same events again, and one signed with a key nobody registered
    let mut again = vec![good[0].clone()];
    again.push(forged);
    let v = post(again).await;
    assert_eq!(v["results"][0]["result"], "duplicate", "{v}");
    assert_eq!(v["results"][1]["result"], "rejected", "{v}");
    assert_eq!(v["results"][1]["reason"], "unknown_key", "{v}");

    // after a cycle, the KPIs count the 20 good events only: 15 of 20 succeeded
    let kpis = loop {
        let s: Value = http
            .get(format!("{base}/v1/status"))
            .bearer_auth("viewer-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let g = s["goals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["kpi"] == "overall_success_rate")
            .cloned()
            .unwrap();
        if !g["value"].is_null() {
            break s;
        }
        assert!(ready.elapsed() < Duration::from_secs(30), "no cycle closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let success = kpis["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kpi"] == "overall_success_rate")
        .unwrap()["value"]
        .as_f64()
        .unwrap();
    assert!((success - 0.75).abs() < 1e-9, "{kpis}");
    let cycle_before = kpis["cycle"].as_u64().unwrap();

    // SIGTERM: a graceful stop with a final checkpoint
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "SIGTERM did not stop the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "ledger",
            "verify",
            "--data",
            data.to_str().unwrap(),
            "--pubkey",
            data.join("supervisor.pub").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 record(s) after it"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // a restart rebuilds the state from the ledger: the cycle count goes on
    let _daemon = start(&config);
    let restarted = Instant::now();
    let cycle_after = loop {
        if let Ok(r) = http
            .get(format!("{base}/v1/status"))
            .bearer_auth("viewer-token")
            .send()
            .await
            && let Ok(s) = r.json::<Value>().await
        {
            break s["cycle"].as_u64().unwrap();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "the daemon did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        cycle_after >= cycle_before,
        "state rebuilt: cycle {cycle_after} after {cycle_before}"
    );
}

/// A daemon on a fresh data directory with one adapter and two tokens (`adapter-token`,
/// `viewer-token`), `extra` appended to its configuration.
struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    base: String,
    adapter: EventSigner,
    http: reqwest::Client,
}

impl Setup {
    fn new(cycle_interval: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let adapter = EventSigner::new(
            "urn:spine:application".to_string(),
            metaloop_mesh::keys::generate_signing_key(),
        );
        let port = free_port();
        let config = dir.path().join("metaloop.toml");
        std::fs::write(
            &config,
            format!(
                r#"cycle_interval = "{cycle_interval}"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
{extra}
[[adapters]]
source = "urn:spine:application"
public_keys = ["{pk}"]
[[tokens]]
principal = "adapter"
roles = ["adapter"]
sha256 = "{a}"
[[tokens]]
principal = "viewer"
roles = ["viewer"]
sha256 = "{v}"
[[tokens]]
principal = "driver"
roles = ["admin"]
sha256 = "{ad}"
"#,
                data = dir.path().join("data").display(),
                pk = metaloop_mesh::keys::public_key_hex(&adapter.verifying_key()),
                a = hash("adapter-token"),
                v = hash("viewer-token"),
                ad = hash("driver-token"),
            ),
        )
        .unwrap();
        Setup {
            dir,
            config,
            base: format!("http://127.0.0.1:{port}"),
            adapter,
            http: metaloop::http::client(),
        }
    }

    async fn start(&self) -> Daemon {
        let mut d = start(&self.config);
        let t = Instant::now();
        while self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_err()
        {
            if let Some(status) = d.0.try_wait().unwrap() {
                panic!("the daemon exited: {status}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the daemon did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    async fn post(&self, events: &[metaloop_mesh::CloudEvent]) -> Vec<Value> {
        let r = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth("adapter-token")
            .header("content-type", "application/cloudevents-batch+json")
            .body(metaloop_mesh::envelope::batch_to_json(events))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let v: Value = r.json().await.unwrap();
        v["results"].as_array().unwrap().clone()
    }

    /// Events folded into closed cycles, from the ledger's snapshot records.
    async fn folded(&self) -> u64 {
        let mut total = 0;
        let mut from = 1;
        loop {
            let records: Vec<Value> = self
                .http
                .get(format!(
                    "{}/v1/ledger/records?from={from}&limit=1000",
                    self.base
                ))
                .bearer_auth("viewer-token")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if records.is_empty() {
                return total;
            }
            for r in &records {
                from = r["seq"].as_u64().unwrap() + 1;
                if r["action"] == "snapshot.built" {
                    for d in r["payload"]["windows"]["domains"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.values())
                    {
                        total += d["events"].as_u64().unwrap();
                    }
                }
            }
        }
    }

    /// `POST /v1/admin/clock {"to": to}` as the admin: the status and the JSON answer.
    async fn advance_to(&self, to: &str) -> (u16, Value) {
        self.advance("driver-token", serde_json::json!({ "to": to }))
            .await
    }

    /// `POST /v1/admin/clock` as `token`: the status and the JSON answer.
    async fn advance(&self, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/admin/clock", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

fn sigterm(daemon: &mut Daemon) {
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            assert!(s.success(), "{s}");
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "SIGTERM did not stop the daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_event_is_neither_lost_nor_counted_twice_across_a_restart() {
    // cycles long enough that the first events are still in the open cycle at SIGTERM
    let s = Setup::new("4s", "");
    let mut daemon = s.start().await;
    let t = now();
    let first: Vec<_> = (0..10)
        .map(|i| {
            s.adapter
                .spine_event(format!("a-{i}"), t, &recovery(i, true))
        })
        .collect();
    let r = s.post(&first).await;
    assert!(r.iter().all(|r| r["result"] == "accepted"), "{r:?}");
    sigterm(&mut daemon);

    let _daemon = s.start().await;
    // the same bytes again: remembered across the restart
    let r = s.post(&first).await;
    assert!(r.iter().all(|r| r["result"] == "duplicate"), "{r:?}");
    let second: Vec<_> = (10..15)
        .map(|i| {
            s.adapter
                .spine_event(format!("a-{i}"), now(), &recovery(i, true))
        })
        .collect();
    let r = s.post(&second).await;
    assert!(r.iter().all(|r| r["result"] == "accepted"), "{r:?}");
    let t = Instant::now();
    while s.folded().await < 15 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "only {} of 15 events folded",
            s.folded().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // another cycle closes: nothing is counted twice
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.folded().await, 15);
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_have_their_reason_are_counted_and_are_not_remembered() {
    let s = Setup::new("1h", "");
    let _daemon = s.start().await;
    let t = now();
    let mut huge = Recovery {
        domain: "application".into(),
        incident_id: "inc-1".into(),
        playbook: "restart-service".into(),
        duration_s: 1e200,
        autonomous: true,
        human_override: false,
        experiment: None,
    };
    let bad = s.adapter.spine_event(
        "r-1".to_string(),
        t,
        &EventData::RecoverySucceeded(huge.clone()),
    );
    let r = s.post(&[bad]).await;
    assert_eq!(r[0]["reason"], "wrong_schema", "{r:?}");
    assert!(
        r[0]["message"].as_str().unwrap().contains("duration_s"),
        "{r:?}"
    );
    // the corrected event with the same id is taken
    huge.duration_s = 30.0;
    let fixed = s
        .adapter
        .spine_event("r-1".to_string(), t, &EventData::RecoverySucceeded(huge));
    let r = s.post(&[fixed]).await;
    assert_eq!(r[0]["result"], "accepted", "{r:?}");

    // an acknowledgement of a directive the supervisor never issued: refused by it, counted,
    // and not remembered (the same id is refused for the same reason, not as a duplicate)
    let ack = EventData::DirectiveApplied(metaloop_core::protocol::DirectiveApplied {
        directive_id: "0190f0f0-0000-7000-8000-000000000000".into(),
        domain: "application".into(),
        knob: "planner.confidence_threshold".into(),
        previous: serde_json::json!(0.7),
        current: serde_json::json!(0.75),
    });
    for _ in 0..2 {
        let e = s.adapter.spine_event("ack-1".to_string(), t, &ack);
        let r = s.post(&[e]).await;
        assert_eq!(r[0]["result"], "rejected", "{r:?}");
        assert_eq!(r[0]["reason"], "refused_by_supervisor", "{r:?}");
    }

    // event time: two days old is stale, two days ahead is future
    let day = 86_400_000;
    let old = s.adapter.spine_event(
        "old".to_string(),
        Timestamp(t.millis() - 2 * day),
        &recovery(1, true),
    );
    let ahead = s.adapter.spine_event(
        "ahead".to_string(),
        Timestamp(t.millis() + 2 * day),
        &recovery(2, true),
    );
    let r = s.post(&[old, ahead]).await;
    assert_eq!(r[0]["reason"], "stale", "{r:?}");
    assert_eq!(r[1]["reason"], "future", "{r:?}");

    let m = s.metrics().await;
    for (reason, n) in [
        ("wrong_schema", 1),
        ("refused_by_supervisor", 2),
        ("stale", 1),
        ("future", 1),
    ] {
        let line = format!("metaloop_events_rejected_total{{reason=\"{reason}\"}} {n}\n");
        assert!(m.contains(&line), "{line} not in\n{m}");
    }
    assert!(m.contains("metaloop_events_ingested_total 1\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_ingest_and_dedupe_keys_are_accepted_and_enforced() {
    let s = Setup::new(
        "1h",
        "[ingest]\nmax_event_age = \"10m\"\nmax_clock_skew = \"1m\"\nmax_batch_events = 2\n[dedupe]\nwindow_secs = 900\ncapacity = 1000\n",
    );
    let _daemon = s.start().await;
    let t = now();
    let old = s.adapter.spine_event(
        "old".to_string(),
        Timestamp(t.millis() - 11 * 60_000),
        &recovery(1, true),
    );
    let ahead = s.adapter.spine_event(
        "ahead".to_string(),
        Timestamp(t.millis() + 2 * 60_000),
        &recovery(2, true),
    );
    let r = s.post(&[old, ahead]).await;
    assert_eq!(r[0]["reason"], "stale", "{r:?}");
    assert_eq!(r[1]["reason"], "future", "{r:?}");
    let three: Vec<_> = (0..3)
        .map(|i| {
            s.adapter
                .spine_event(format!("b-{i}"), t, &recovery(i, true))
        })
        .collect();
    let r = s.post(&three).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["reason"], "oversized", "{r:?}");
}

fn nats_url() -> Option<String> {
    let url =
        std::env::var("METALOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let addr = url.trim_start_matches("nats://").to_string();
    match std::net::TcpStream::connect(&addr) {
        Ok(_) => Some(url),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but NATS at {url} is unreachable: {e}"
            );
            eprintln!("skipping: cannot connect to NATS at {url} ({e}); set METALOOP_TEST_NATS");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deployments_with_different_prefixes_share_a_nats_server() {
    let Some(url) = nats_url() else { return };
    let tag = format!("{:08x}", rand::random::<u32>());
    let prefixes = [format!("ta{tag}"), format!("tb{tag}")];
    let setups: Vec<Setup> = prefixes
        .iter()
        .map(|p| {
            Setup::new(
                "1h",
                &format!("[mesh]\nurl = \"{url}\"\nsubject_prefix = \"{p}\"\n"),
            )
        })
        .collect();
    let mut daemons = Vec::new();
    for s in &setups {
        daemons.push(s.start().await);
        // each takes its events
        let e = s
            .adapter
            .spine_event("n-1".to_string(), now(), &recovery(1, true));
        assert_eq!(s.post(&[e]).await[0]["result"], "accepted");
    }
    drop(daemons);
    for p in &prefixes {
        let mesh = metaloop_mesh::NatsMesh::connect(metaloop_mesh::mesh::NatsConfig {
            url: url.clone(),
            stream: format!("METALOOP_{}", p.to_uppercase()),
            subject_prefix: metaloop_mesh::SubjectPrefix::new(p.clone()).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
        mesh.delete_stream().await.unwrap();
    }
}

fn recovery_in(domain: &str, i: usize) -> EventData {
    EventData::RecoverySucceeded(Recovery {
        domain: domain.into(),
        incident_id: format!("{domain}-{i}"),
        playbook: "restart-service".into(),
        duration_s: 12.0,
        autonomous: true,
        human_override: false,
        experiment: None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_are_bound_to_their_domains_and_reload_without_a_restart() {
    let s = Setup::new("2s", "");
    // bind the adapter to its domain, and give an admin token
    let bound = std::fs::read_to_string(&s.config).unwrap().replace(
        "public_keys = [",
        "domains = [\"application\"]\npublic_keys = [",
    ) + &format!(
        "[[tokens]]\nprincipal = \"root\"\nroles = [\"admin\"]\nsha256 = \"{}\"\n",
        hash("admin-token")
    );
    std::fs::write(&s.config, &bound).unwrap();
    let mut daemon = s.start().await;

    // an event and an ack for another domain: forbidden, with the reason, nothing folded
    let elsewhere = s
        .adapter
        .spine_event("fd-1", now(), &recovery_in("security", 1));
    let ack = s.adapter.spine_event(
        "fd-2",
        now(),
        &EventData::DirectiveRefused(metaloop_core::protocol::DirectiveRefused {
            directive_id: "d-1".into(),
            domain: "payments".into(),
            reason: "not ours".into(),
        }),
    );
    let r = s.post(&[elsewhere.clone(), ack]).await;
    for x in &r {
        assert_eq!(x["reason"], "forbidden_domain", "{r:?}");
        assert!(
            x["message"]
                .as_str()
                .unwrap()
                .contains("may speak for [application]"),
            "{r:?}"
        );
    }
    let own = s
        .adapter
        .spine_event("ok-1", now(), &recovery_in("application", 1));
    assert_eq!(s.post(&[own]).await[0]["result"], "accepted");

    // a new adapter, added to the file: refused until the reload, accepted after it
    let newcomer = EventSigner::new(
        "urn:spine:security".to_string(),
        metaloop_mesh::keys::generate_signing_key(),
    );
    let first = newcomer.spine_event("n-1", now(), &recovery_in("security", 2));
    assert_eq!(
        s.post(std::slice::from_ref(&first)).await[0]["reason"],
        "unknown_source"
    );
    let with_newcomer = format!(
        "{bound}[[adapters]]\nsource = \"urn:spine:security\"\ndomains = [\"security\"]\npublic_keys = [\"{}\"]\n",
        metaloop_mesh::keys::public_key_hex(&newcomer.verifying_key())
    );
    std::fs::write(&s.config, &with_newcomer).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &daemon.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    loop {
        let r = s.post(std::slice::from_ref(&first)).await;
        if r[0]["result"] == "accepted" {
            break;
        }
        assert_eq!(r[0]["reason"], "unknown_source", "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // revoked through the admin API: refused again at once; a bad file changes nothing
    std::fs::write(&s.config, &bound).unwrap();
    let reload = |token: &'static str| {
        s.http
            .post(format!("{}/v1/admin/reload", s.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(reload("viewer-token").await.unwrap().status(), 403);
    let r: Value = reload("admin-token").await.unwrap().json().await.unwrap();
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    assert!(
        r["removed"][0]
            .as_str()
            .unwrap()
            .starts_with("urn:spine:security/"),
        "{r}"
    );
    let second = newcomer.spine_event("n-2", now(), &recovery_in("security", 3));
    assert_eq!(s.post(&[second]).await[0]["reason"], "unknown_source");
    std::fs::write(&s.config, "this is = not [toml").unwrap();
    let bad = reload("admin-token").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("kept"), "{body}");
    // so does a worker key that is not one
    std::fs::write(
        &s.config,
        format!("{bound}[mesh]\nworker_keys = [\"not a key\"]\n"),
    )
    .unwrap();
    let bad = reload("admin-token").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("mesh.worker_keys[0]") && message.contains("kept"),
        "{body}"
    );
    let still = s
        .adapter
        .spine_event("ok-2", now(), &recovery_in("application", 2));
    assert_eq!(s.post(&[still]).await[0]["result"], "accepted");
    sigterm(&mut daemon);

    // each reload that changed something is in the ledger, with what changed and who asked
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "ledger",
            "show",
            "--data",
            s.dir.path().join("data").to_str().unwrap(),
            "--action",
            "adapters.reloaded",
            "--json",
        ])
        .output()
        .unwrap();
    let reloads: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert_eq!(reloads[0]["payload"]["by"], "signal");
    assert_eq!(reloads[0]["payload"]["added"].as_array().unwrap().len(), 1);
    assert_eq!(reloads[1]["payload"]["by"], "root");
    assert_eq!(
        reloads[1]["payload"]["removed"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driven_clock_closes_cycles_when_advanced_and_only_forward() {
    let start = Timestamp::from_secs(1_767_225_600);
    let s = Setup::new(
        "5m",
        "[clock]\nmode = \"driven\"\nstart = \"2026-01-01T00:00:00Z\"\n",
    );
    let _daemon = s.start().await;
    // events in the driven time, months behind the wall clock, are on time
    let events: Vec<_> = (0..5)
        .map(|i| {
            s.adapter.spine_event(
                format!("d-{i}"),
                start.plus_millis(10_000 * (i as i64 + 1)),
                &recovery(i, true),
            )
        })
        .collect();
    let r = s.post(&events).await;
    assert!(r.iter().all(|r| r["result"] == "accepted"), "{r:?}");
    // hours of wall time would pass; the cycle stays open until the clock is advanced
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.folded().await, 0);

    let (code, body) = s
        .advance(
            "viewer-token",
            serde_json::json!({"to": "2026-01-01T00:05:00Z"}),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = s.advance_to("2026-01-01T00:05:00Z").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["cycle"], 1, "{body}");
    assert_eq!(body["now"], "2026-01-01T00:05:00Z");
    assert_eq!(body["next_cycle_at"], "2026-01-01T00:10:00Z");
    // answered once the cycle is recorded
    assert_eq!(s.folded().await, 5);

    // within the open cycle: nothing closes
    let (code, body) = s.advance_to("2026-01-01T00:07:00Z").await;
    assert_eq!((code, &body["cycle"]), (200, &Value::from(1)), "{body}");
    // three cycles' ends at once: all three close
    let (code, body) = s.advance_to("2026-01-01T00:20:00Z").await;
    assert_eq!((code, &body["cycle"]), (200, &Value::from(4)), "{body}");

    // refused, and the clock stays where it was
    for (bad, field, says) in [
        (
            serde_json::json!({"to": "2026-01-01T00:19:00Z"}),
            "to",
            "only moves forward",
        ),
        (
            serde_json::json!({"to": "soon"}),
            "to",
            "not an RFC 3339 time",
        ),
        (
            serde_json::json!({"to": "2026-01-01T00:25:00Z", "by": "me"}),
            "body",
            "unknown field",
        ),
        (serde_json::json!({}), "body", "missing field"),
    ] {
        let (code, body) = s.advance("driver-token", bad.clone()).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(body["field"], field, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(says),
            "{bad}: {body}"
        );
    }
    let (_, body) = s.advance_to("2026-01-01T00:20:00Z").await;
    assert_eq!(body["cycle"], 4, "{body}");

    // a supervisor on the wall clock has no time to move
    let wall = Setup::new("5m", "");
    let _d2 = wall.start().await;
    let (code, body) = wall.advance_to("2026-01-01T00:05:00Z").await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("wall clock"),
        "{body}"
    );
}
