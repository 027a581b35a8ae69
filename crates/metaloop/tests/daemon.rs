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
    let http = reqwest::Client::new();
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
