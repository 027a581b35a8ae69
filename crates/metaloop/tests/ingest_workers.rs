//! Ingest workers end to end on the local NATS: a `metaloop run` daemon that leaves the mesh
//! to two `metaloop ingest-worker` processes, a leader killed and restarted while partials
//! are merged into an open cycle, a worker killed while it holds deliveries, duplicates
//! published under other message ids, and events signed by an unknown key. Every unique
//! event is counted exactly once in the ledger's cycle windows; the unknown key's events
//! are not counted. Workers sign their partials with a key the leader accepts; a partial
//! signed by another key, or not signed, is refused and adds nothing.
//!
//! Needs NATS (`METALOOP_TEST_NATS`, default nats://127.0.0.1:4222): skipped without it,
//! except under `CI=true`, where a missing server fails the test.

use metaloop_core::protocol::{EventData, KpiReport};
use metaloop_core::time::Timestamp;
use metaloop_mesh::mesh::{Message, NatsConfig};
use metaloop_mesh::{EventSigner, Mesh, NatsMesh, SubjectPrefix};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCE: &str = "urn:test:spine";
const EVENTS: usize = 1200;

fn nats_url() -> String {
    std::env::var("METALOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn nats_answers() -> bool {
    if std::net::TcpStream::connect(nats_url().trim_start_matches("nats://")).is_ok() {
        return true;
    }
    let msg = format!(
        "ingest workers test: NATS at {} does not answer",
        nats_url()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true requires it)");
    }
    eprintln!("skipping: {msg}");
    false
}

fn spawn(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(args)
        .env("METALOOP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// (queue_depth observations, sum of their values) over every recorded cycle.
fn recorded(ledger: &str) -> (u64, f64) {
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(["ledger", "show", "--ledger", ledger, "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return (0, 0.0);
    }
    let (mut n, mut sum) = (0u64, 0.0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if r["action"] != "snapshot.built" {
            continue;
        }
        if let Some(domains) = r["payload"]["windows"]["domains"].as_object() {
            for w in domains.values() {
                let q = &w["custom"]["queue_depth"];
                n += q["count"].as_u64().unwrap_or(0);
                sum += q["sum"].as_f64().unwrap_or(0.0);
            }
        }
    }
    (n, sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_count_every_event_once_across_leader_and_worker_kills() {
    if !nats_answers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!(
        "iw{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    let signer = EventSigner::new(SOURCE, ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    let stranger = EventSigner::new(SOURCE, ed25519_dalek::SigningKey::from_bytes(&[10; 32]));
    let worker_key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ledger = format!("sqlite://{}/ledger.db", dir.path().display());
    let config = dir.path().join("metaloop.toml");
    std::fs::write(
        &config,
        format!(
            r#"environment = "staging"
cycle_interval = 2
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[ledger]
url = "{ledger}"

[mesh]
url = "{nats}"
subject_prefix = "{prefix}"
ack_wait = 5
leader_consumes = false
worker_flush_ms = 100
worker_keys = ["{worker_pub}"]
worker_key_file = "{worker_key}"

[[adapters]]
source = "{SOURCE}"
public_keys = ["{key}"]
"#,
            data = dir.path().display(),
            nats = nats_url(),
            key = metaloop_mesh::keys::public_key_hex(&signer.verifying_key()),
            worker_pub = metaloop_mesh::keys::public_key_hex(&worker_key.verifying_key()),
            worker_key = dir.path().join("worker.key").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("worker.key"),
        metaloop_ledger::hex::encode(&worker_key.to_bytes()),
    )
    .unwrap();
    let cfg = config.to_string_lossy().to_string();
    let mesh = Arc::new(
        NatsMesh::connect(NatsConfig {
            url: nats_url(),
            subject_prefix: SubjectPrefix::new(prefix.clone()).unwrap(),
            stream: format!("METALOOP_{}", prefix.to_uppercase()),
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    let event = |signer: &EventSigner, i: usize| {
        signer.spine_event(
            format!("e{i}"),
            Timestamp(metaloop::daemon::wall_clock().millis()),
            &EventData::KpiReported(KpiReport {
                domain: format!("d{}", i % 5),
                name: "queue_depth".into(),
                value: (i % 10) as f64,
            }),
        )
    };
    let publish = |range: std::ops::Range<usize>| {
        let mesh = mesh.clone();
        let events: Vec<_> = range.map(|i| event(&signer, i)).collect();
        async move {
            for ev in events {
                metaloop_mesh::mesh::publish_event(mesh.as_ref(), &ev)
                    .await
                    .unwrap();
            }
        }
    };
    let expected_sum: f64 = (0..EVENTS).map(|i| (i % 10) as f64).sum();

    let mut leader = spawn(&["run", "--config", &cfg], &dir.path().join("leader-1.log"));
    let mut workers: Vec<Child> = (0..2)
        .map(|i| {
            spawn(
                &[
                    "ingest-worker",
                    "--config",
                    &cfg,
                    "--name",
                    &format!("w{i}"),
                ],
                &dir.path().join(format!("worker-{i}.log")),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // a third of the events; the leader dies with an open cycle holding some of them
    publish(0..EVENTS / 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill(&mut leader);
    leader = spawn(&["run", "--config", &cfg], &dir.path().join("leader-2.log"));

    // the rest, a worker killed while it holds deliveries, duplicates under other message
    // ids, and events signed by a key nobody registered
    publish(EVENTS / 3..2 * EVENTS / 3).await;
    kill(&mut workers[0]);
    publish(2 * EVENTS / 3..EVENTS).await;
    for i in (0..EVENTS).step_by(10) {
        let ev = event(&signer, i);
        let m = Message::for_event(&ev)
            .unwrap()
            .with_msg_id(format!("copy-{i}"));
        mesh.publish(m).await.unwrap();
    }
    for i in 0..20 {
        metaloop_mesh::mesh::publish_event(mesh.as_ref(), &event(&stranger, EVENTS + i))
            .await
            .unwrap();
    }
    workers.push(spawn(
        &["ingest-worker", "--config", &cfg, "--name", "w2"],
        &dir.path().join("worker-2.log"),
    ));

    // partials of 500 forged observations, signed by a key the leader does not accept, or
    // not signed: refused, and nothing of them counted
    let forged = {
        let mut partial = metaloop_core::supervisor::Partial::default();
        for i in 0..500 {
            partial
                .observe(&metaloop_core::protocol::SpineEvent {
                    id: format!("forged-{i}"),
                    source: SOURCE.into(),
                    time: Timestamp(metaloop::daemon::wall_clock().millis()),
                    data: EventData::KpiReported(KpiReport {
                        domain: "d0".into(),
                        name: "queue_depth".into(),
                        value: 1000.0,
                    }),
                })
                .unwrap();
        }
        serde_json::to_vec(&metaloop::workers::PartialRequest {
            worker: "forger".into(),
            stream: format!("METALOOP_{}", prefix.to_uppercase()),
            seqs: Vec::new(),
            keys: Vec::new(),
            partial,
        })
        .unwrap()
    };
    let subject = metaloop::config::FileConfig::load(&config)
        .unwrap()
        .mesh
        .workers_subject();
    let forger = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    // asks until a leader answers (the restarted one may not be up yet) and the answer is
    // not `until`
    let ask = |headers: async_nats::HeaderMap, body: Vec<u8>, until: &'static str| {
        let (mesh, subject) = (mesh.clone(), subject.clone());
        async move {
            let start = Instant::now();
            loop {
                let answer = tokio::time::timeout(
                    Duration::from_secs(5),
                    mesh.client().request_with_headers(
                        subject.clone(),
                        headers.clone(),
                        body.clone().into(),
                    ),
                )
                .await;
                if let Ok(Ok(m)) = answer {
                    let v: Value = serde_json::from_slice(&m.payload).unwrap();
                    if v["outcome"] != "not_leading" && v["outcome"] != until {
                        break v;
                    }
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no leader answered other than {until}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for headers in [
        metaloop::workers::sign_partial(&forger, &forged),
        async_nats::HeaderMap::new(),
    ] {
        let reply = ask(headers, forged.clone(), "").await;
        assert_eq!(reply["outcome"], "unauthenticated", "{reply}");
        eprintln!("a forged partial: {}", reply["why"]);
    }

    // a worker key added at run time is accepted after SIGHUP, without a restart, and
    // refused again once revoked (an empty partial: it adds nothing)
    let empty = serde_json::to_vec(&metaloop::workers::PartialRequest {
        worker: "newcomer".into(),
        stream: format!("METALOOP_{}", prefix.to_uppercase()),
        seqs: Vec::new(),
        keys: Vec::new(),
        partial: metaloop_core::supervisor::Partial::default(),
    })
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let one = format!(
        "worker_keys = [\"{}\"]",
        metaloop_mesh::keys::public_key_hex(&worker_key.verifying_key())
    );
    let newcomer = metaloop_mesh::keys::public_key_hex(&forger.verifying_key());
    let two = one.replace("\"]", &format!("\", \"{newcomer}\"]"));
    assert!(text.contains(&one));
    let hup = |leader: &Child| {
        let ok = Command::new("kill")
            .args(["-HUP", &leader.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "SIGHUP to the leader");
    };
    std::fs::write(&config, text.replace(&one, &two)).unwrap();
    hup(&leader);
    let signed = || metaloop::workers::sign_partial(&forger, &empty);
    let reply = ask(signed(), empty.clone(), "unauthenticated").await;
    assert_eq!(reply["outcome"], "merged", "{reply}");
    std::fs::write(&config, &text).unwrap();
    hup(&leader);
    let reply = ask(signed(), empty.clone(), "merged").await;
    assert_eq!(reply["outcome"], "unauthenticated", "{reply}");
    eprintln!("a revoked worker key: {}", reply["why"]);

    // every event once: the killed leader's open cycle comes back through the workers, the
    // killed worker's deliveries through another after their ack wait
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0, 0.0);
    while Instant::now() < deadline {
        last = recorded(&ledger);
        if last.0 >= EVENTS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // long enough for any late redelivery to be counted again, if it were
    tokio::time::sleep(Duration::from_secs(8)).await;
    let settled = recorded(&ledger);
    kill(&mut leader);
    for w in &mut workers {
        kill(w);
    }
    let _ = mesh.delete_stream().await;
    let logs = || {
        let mut s = String::new();
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                s.push_str(&format!(
                    "--- {}\n{}\n",
                    f.path().display(),
                    std::fs::read_to_string(f.path())
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        s
    };
    assert_eq!(
        last.0,
        EVENTS as u64,
        "every event counted once when first complete\n{}",
        logs()
    );
    assert_eq!(
        settled.0,
        EVENTS as u64,
        "nothing counted twice afterwards\n{}",
        logs()
    );
    assert!(
        (settled.1 - expected_sum).abs() < 1e-6 * expected_sum,
        "the values are the published ones: {} vs {expected_sum}",
        settled.1
    );
    // both reloads are in the ledger, naming the worker key
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(["ledger", "show", "--ledger", &ledger, "--json"])
        .output()
        .unwrap();
    let reloads: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "adapters.reloaded")
        .map(|r| r["payload"].clone())
        .collect();
    let named = serde_json::json!([format!("worker/{newcomer}")]);
    assert!(
        reloads.iter().any(|p| p["added"] == named)
            && reloads.iter().any(|p| p["removed"] == named),
        "the reloads recorded: {reloads:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("worker-1.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("worker-2.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("worker-0.log")).unwrap_or_default();
    assert!(
        log.contains("bad_signature")
            || log.contains("unknown_key")
            || log.contains("event rejected"),
        "the stranger's events were rejected by a worker\n{}",
        logs()
    );
}
