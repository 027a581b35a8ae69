//! One test suite for every `Mesh` backend (the quickwit metastore-test-suite pattern): the
//! `mesh_test_suite!` macro instantiates each test for the in-process bus and for NATS
//! JetStream. Backend-specific behaviour (back-pressure of the bounded in-process queues,
//! JetStream's server-side dedupe and stream limits) follows below the suite.

mod common;

use common::*;
use metaloop_mesh::envelope::{self, MEDIA_TYPE_BATCH, MEDIA_TYPE_EVENT};
use metaloop_mesh::mesh::{
    MemoryConfig, MemoryMesh, Mesh, MeshError, Message, NatsConfig, NatsMesh, StorageKind,
    SubscribeOptions, Subscription, WhenFull, publish_event,
};
use metaloop_mesh::{
    Delivery, IngestOutcome, RejectReason, Subject, SubjectPattern, SubjectPrefix,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A mesh under test, cleaned up when dropped (for NATS: its stream is deleted).
pub struct MeshUnderTest {
    pub mesh: Arc<dyn Mesh>,
    /// How long to wait for a message that should come; also longer than a redelivery.
    pub patience: Duration,
    /// How long silence must last to conclude nothing more will come (longer than NATS's
    /// ack wait, so redeliveries would have shown up).
    pub quiet: Duration,
    nats: Option<NatsMesh>,
}

impl Drop for MeshUnderTest {
    fn drop(&mut self) {
        if let Some(nats) = self.nats.take() {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    if let Err(e) = nats.delete_stream().await {
                        eprintln!("cleanup: {e}");
                    }
                })
            });
        }
    }
}

pub async fn open_memory() -> Option<MeshUnderTest> {
    Some(MeshUnderTest {
        mesh: Arc::new(MemoryMesh::new(MemoryConfig::default())),
        patience: Duration::from_secs(2),
        quiet: Duration::from_millis(200),
        nats: None,
    })
}

pub fn nats_test_config(url: String) -> NatsConfig {
    let id = unique();
    NatsConfig {
        url,
        stream: format!("MLTEST_{}", id.to_uppercase()),
        subject_prefix: SubjectPrefix::new(format!("mltest{id}")).unwrap(),
        ack_wait_ms: 1000,
        confirm_acks: true,
        storage: StorageKind::Memory,
        connect_attempts: 2,
        pull_batch: 16,
        max_age_secs: 600,
        ..NatsConfig::default()
    }
}

pub async fn open_nats() -> Option<MeshUnderTest> {
    let url = nats_url().await?;
    let nats = NatsMesh::connect(nats_test_config(url))
        .await
        .expect("connect to NATS");
    Some(MeshUnderTest {
        mesh: Arc::new(nats.clone()),
        patience: Duration::from_secs(5),
        quiet: Duration::from_millis(2500),
        nats: Some(nats),
    })
}

fn subject(s: &str) -> Subject {
    Subject::new(s).unwrap()
}

fn pattern(p: &str) -> SubjectPattern {
    SubjectPattern::new(p).unwrap()
}

/// The next delivery within `wait`, `None` on silence.
async fn next_within(sub: &mut Box<dyn Subscription>, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(r) => r.expect("receive"),
        Err(_) => None,
    }
}

/// Every delivery until `quiet` passes without one; each is acknowledged.
async fn drain(sub: &mut Box<dyn Subscription>, quiet: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(d) = next_within(sub, quiet).await {
        out.push(d.message.clone());
        d.ack().await.unwrap();
    }
    out
}

pub mod suite {
    use super::*;

    pub async fn routes_by_pattern_with_nats_semantics(m: &MeshUnderTest) {
        let mut recovery = m
            .mesh
            .subscribe(pattern("recovery.*"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let mut decision = m
            .mesh
            .subscribe(pattern("decision.>"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let mut meta = m
            .mesh
            .subscribe(pattern("meta.*"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let mut all = m
            .mesh
            .subscribe(pattern(">"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let published = [
            "recovery.succeeded",
            "recovery.a.b",
            "decision.made",
            "decision.a.b",
            "metadata.x",
            "meta.summary",
            "health.changed",
        ];
        for s in published {
            m.mesh
                .publish(Message::new(subject(s), s.as_bytes().to_vec()))
                .await
                .unwrap();
        }
        let subjects = |msgs: Vec<Message>| -> Vec<String> {
            msgs.into_iter().map(|m| m.subject.to_string()).collect()
        };
        assert_eq!(
            subjects(drain(&mut recovery, m.quiet).await),
            ["recovery.succeeded"]
        );
        assert_eq!(
            subjects(drain(&mut decision, m.quiet).await),
            ["decision.made", "decision.a.b"]
        );
        assert_eq!(subjects(drain(&mut meta, m.quiet).await), ["meta.summary"]);
        let everything = drain(&mut all, m.quiet).await;
        assert_eq!(subjects(everything.clone()), published);
        for msg in everything {
            assert_eq!(
                msg.payload,
                msg.subject.as_str().as_bytes(),
                "payload intact"
            );
        }
    }

    pub async fn carries_content_type_and_dedupe_id(m: &MeshUnderTest) {
        let keys = keys();
        let mut sub = m
            .mesh
            .subscribe(pattern(">"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let event = signed(&keys, "ct-1", 0);
        publish_event(m.mesh.as_ref(), &event).await.unwrap();
        let d = next_within(&mut sub, m.patience).await.expect("delivered");
        assert_eq!(d.message.subject.as_str(), event.event_type);
        assert_eq!(d.message.content_type.as_deref(), Some(MEDIA_TYPE_EVENT));
        assert_eq!(
            d.message.msg_id.as_deref(),
            Some(format!("{SOURCE}/ct-1").as_str())
        );
        assert_eq!(d.message.payload, event.to_json());
        assert_eq!(d.attempt, 1);
        d.ack().await.unwrap();
    }

    pub async fn every_rejection_reason_through_the_mesh(m: &MeshUnderTest) {
        let keys = keys();
        let mut ing = ingestor(&keys);
        let counters = ing.counters();
        let mut sub = m
            .mesh
            .subscribe(
                pattern(">"),
                SubscribeOptions::durable(format!("reasons{}", unique())),
            )
            .await
            .unwrap();
        let cases = cases(&keys);
        for case in &cases {
            let mut msg = Message::new(subject("recovery.succeeded"), case.bytes.clone())
                .with_msg_id(case.label);
            if let Some(ct) = case.content_type {
                msg = msg.with_content_type(ct);
            }
            m.mesh.publish(msg).await.unwrap();
        }
        let mut seen = BTreeMap::new();
        while seen.len() < cases.len() {
            let d = next_within(&mut sub, m.patience)
                .await
                .expect("every case is delivered");
            let label = d.message.msg_id.clone().expect("label");
            let before = counters.snapshot();
            let outcome = ing.ingest(&d.message.payload, d.message.content_type.as_deref(), now());
            let after = counters.snapshot();
            d.ack().await.unwrap();
            let result = match outcome {
                IngestOutcome::Single(r) => r.map(|_| ()).map_err(|r| r.reason),
                IngestOutcome::Refused(r) => Err(r.reason),
                IngestOutcome::Batch(_) => panic!("{label}: not a batch"),
            };
            if let Err(reason) = result {
                assert_eq!(
                    after.rejected[&reason],
                    before.rejected[&reason] + 1,
                    "{label}: counted"
                );
                assert_eq!(after.accepted, before.accepted, "{label}: nothing accepted");
            }
            seen.insert(label, result);
        }
        for case in &cases {
            let got = &seen[case.label];
            match case.expect {
                None => assert!(got.is_ok(), "{}: {got:?}", case.label),
                Some(reason) => assert_eq!(got, &Err(reason), "{}", case.label),
            }
        }
        assert_eq!(counters.accepted(), 1);
        assert!(
            drain(&mut sub, m.quiet).await.is_empty(),
            "each case delivered once"
        );
    }

    pub async fn a_batch_through_the_mesh_gives_per_event_results(m: &MeshUnderTest) {
        let keys = keys();
        let mut ing = ingestor(&keys);
        let mut sub = m
            .mesh
            .subscribe(pattern("batch.>"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        let good = signed(&keys, "bm1", 0);
        let unsigned = metaloop_mesh::keys::spine_event_unsigned("bm2", SOURCE, T0, &payload(1));
        let doc = envelope::batch_to_json(&[good.clone(), unsigned, good]);
        m.mesh
            .publish(Message::for_batch(subject("batch.application"), doc))
            .await
            .unwrap();
        let d = next_within(&mut sub, m.patience).await.expect("delivered");
        assert_eq!(d.message.content_type.as_deref(), Some(MEDIA_TYPE_BATCH));
        let outcome = ing.ingest(&d.message.payload, d.message.content_type.as_deref(), now());
        d.ack().await.unwrap();
        let IngestOutcome::Batch(results) = outcome else {
            panic!("batch")
        };
        let reasons: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().err().map(|r| r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                None,
                Some(RejectReason::Unsigned),
                Some(RejectReason::Duplicate)
            ]
        );
    }

    pub async fn nak_redelivers(m: &MeshUnderTest) {
        let mut sub = m
            .mesh
            .subscribe(pattern("kpi.*"), SubscribeOptions::ephemeral())
            .await
            .unwrap();
        m.mesh
            .publish(Message::new(subject("kpi.reported"), b"x".to_vec()))
            .await
            .unwrap();
        let first = next_within(&mut sub, m.patience).await.expect("delivered");
        assert_eq!(first.attempt, 1);
        first.nak().await.unwrap();
        let again = next_within(&mut sub, m.patience)
            .await
            .expect("redelivered");
        assert_eq!(again.message.payload, b"x".as_slice());
        assert!(again.attempt >= 2, "attempt {}", again.attempt);
        again.ack().await.unwrap();
        assert!(drain(&mut sub, m.quiet).await.is_empty());
    }

    /// A consumer stops mid-stream (some messages acked, some delivered but not acked, some
    /// not yet delivered) and restarts under the same durable name: redelivery plus the
    /// ingest dedupe count every event exactly once.
    pub async fn durable_consumer_resumes_without_loss_or_double_counting(m: &MeshUnderTest) {
        const N: usize = 30;
        let keys = keys();
        let mut ing = ingestor(&keys);
        let durable = format!("resume{}", unique());
        let p = pattern(">");
        let mut counted: BTreeMap<String, usize> = BTreeMap::new();

        let mut sub = m
            .mesh
            .subscribe(p.clone(), SubscribeOptions::durable(&durable))
            .await
            .unwrap();
        for i in 0..N {
            publish_event(m.mesh.as_ref(), &signed(&keys, &format!("r{i:02}"), i))
                .await
                .unwrap();
        }
        // First run: ack 10, take 5 more without acking, then stop.
        let mut unacked = Vec::new();
        for k in 0..15 {
            let d = next_within(&mut sub, m.patience).await.expect("delivered");
            let e = ing
                .ingest_event(&d.message.payload, now())
                .expect("first sight is accepted");
            *counted.entry(e.id).or_default() += 1;
            if k < 10 {
                d.ack().await.unwrap();
            } else {
                unacked.push(d);
            }
        }
        drop(unacked);
        drop(sub);

        // Second run, same durable name.
        let mut sub = m
            .mesh
            .subscribe(p, SubscribeOptions::durable(&durable))
            .await
            .unwrap();
        let mut redelivered_duplicates = 0;
        while let Some(d) = next_within(&mut sub, m.quiet.max(m.patience)).await {
            match ing.ingest_event(&d.message.payload, now()) {
                Ok(e) => *counted.entry(e.id).or_default() += 1,
                Err(r) => {
                    assert_eq!(r.reason, RejectReason::Duplicate, "{r}");
                    assert!(
                        d.attempt >= 2,
                        "a duplicate is a redelivery (attempt {})",
                        d.attempt
                    );
                    redelivered_duplicates += 1;
                }
            }
            d.ack().await.unwrap();
            if counted.len() == N && redelivered_duplicates >= 5 {
                // Everything arrived; whatever else comes within `quiet` is a fault.
                assert!(
                    drain(&mut sub, m.quiet).await.is_empty(),
                    "nothing more after all were acked"
                );
                break;
            }
        }
        let expected: BTreeMap<String, usize> = (0..N).map(|i| (format!("r{i:02}"), 1)).collect();
        assert_eq!(counted, expected, "every event counted exactly once");
        assert_eq!(
            redelivered_duplicates, 5,
            "the 5 delivered-but-unacked came back once"
        );
        let c = ing.counters().snapshot();
        assert_eq!(c.accepted, N as u64);
        assert_eq!(c.rejected[&RejectReason::Duplicate], 5);
    }
}

macro_rules! mesh_test_suite {
    ($open:path) => {
        mesh_test_suite!(@tests $open;
            routes_by_pattern_with_nats_semantics,
            carries_content_type_and_dedupe_id,
            every_rejection_reason_through_the_mesh,
            a_batch_through_the_mesh_gives_per_event_results,
            nak_redelivers,
            durable_consumer_resumes_without_loss_or_double_counting
        );
    };
    (@tests $open:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(m) = $open().await else { return };
                $crate::suite::$name(&m).await;
            }
        )*
    };
}

mod memory {
    mesh_test_suite!(crate::open_memory);
}

mod nats {
    mesh_test_suite!(crate::open_nats);
}

// --- in-process only: bounded queues and back-pressure -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_full_subscription_refuses_publishes_when_set_to_reject() {
    let mesh = MemoryMesh::new(MemoryConfig {
        capacity: 4,
        when_full: WhenFull::Reject,
    });
    let mut sub = mesh
        .subscribe(pattern(">"), SubscribeOptions::ephemeral())
        .await
        .unwrap();
    for i in 0..4 {
        mesh.publish(Message::new(subject("a.b"), vec![i]))
            .await
            .unwrap();
    }
    let err = mesh
        .publish(Message::new(subject("a.b"), vec![4]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MeshError::Full(m) if m.contains("capacity")),
        "{err}"
    );
    // Delivered but unacknowledged still counts against the capacity.
    let d = next_within(&mut sub, Duration::from_secs(1)).await.unwrap();
    assert!(matches!(
        mesh.publish(Message::new(subject("a.b"), vec![4])).await,
        Err(MeshError::Full(_))
    ));
    d.ack().await.unwrap();
    mesh.publish(Message::new(subject("a.b"), vec![4]))
        .await
        .unwrap();
    // Subjects nobody subscribes to are not held back.
    let other = MemoryMesh::new(MemoryConfig {
        capacity: 1,
        when_full: WhenFull::Reject,
    });
    for _ in 0..10 {
        other
            .publish(Message::new(subject("nobody.listens"), vec![]))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_publisher_waits_for_a_slow_subscriber() {
    let mesh = MemoryMesh::new(MemoryConfig {
        capacity: 2,
        when_full: WhenFull::Wait,
    });
    let mut sub = mesh
        .subscribe(pattern(">"), SubscribeOptions::ephemeral())
        .await
        .unwrap();
    mesh.publish(Message::new(subject("a"), vec![0]))
        .await
        .unwrap();
    mesh.publish(Message::new(subject("a"), vec![1]))
        .await
        .unwrap();
    let publisher = {
        let mesh = mesh.clone();
        tokio::spawn(async move { mesh.publish(Message::new(subject("a"), vec![2])).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !publisher.is_finished(),
        "the third publish waits while the queue is full"
    );
    let d = next_within(&mut sub, Duration::from_secs(1)).await.unwrap();
    d.ack().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), publisher)
        .await
        .expect("the publish completes once there is room")
        .unwrap()
        .unwrap();
    let got: Vec<u8> = drain(&mut sub, Duration::from_millis(100))
        .await
        .iter()
        .map(|m| m.payload[0])
        .collect();
    assert_eq!(got, [1, 2], "in order, nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_durable_names_are_exclusive_and_keep_their_pattern() {
    let mesh = MemoryMesh::default();
    let _sub = mesh
        .subscribe(pattern("a.*"), SubscribeOptions::durable("d"))
        .await
        .unwrap();
    assert!(matches!(
        mesh.subscribe(pattern("a.*"), SubscribeOptions::durable("d"))
            .await,
        Err(MeshError::Subscribe { .. })
    ));
    drop(_sub);
    assert!(matches!(
        mesh.subscribe(pattern("b.*"), SubscribeOptions::durable("d"))
            .await,
        Err(MeshError::Subscribe { .. })
    ));
    mesh.publish(Message::new(subject("a.x"), vec![]))
        .await
        .unwrap();
    assert_eq!(
        mesh.durable_backlog("d"),
        Some(1),
        "a durable keeps its queue while away"
    );
    assert!(mesh.delete_durable("d"));
    mesh.close();
    assert_eq!(
        mesh.publish(Message::new(subject("a.x"), vec![])).await,
        Err(MeshError::Closed)
    );
}

// --- NATS only: server-side dedupe and stream limits --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_drops_a_republished_msg_id_server_side() {
    let Some(m) = open_nats().await else { return };
    let keys = keys();
    let mut sub = m
        .mesh
        .subscribe(pattern(">"), SubscribeOptions::ephemeral())
        .await
        .unwrap();
    let event = signed(&keys, "once", 0);
    let first = publish_event(m.mesh.as_ref(), &event).await.unwrap();
    let second = publish_event(m.mesh.as_ref(), &event).await.unwrap();
    assert!(!first.duplicate);
    assert!(
        second.duplicate,
        "Nats-Msg-Id {SOURCE}/once seen within the duplicate window"
    );
    assert_eq!(drain(&mut sub, m.quiet).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_full_stream_gives_a_clear_full_error() {
    let Some(url) = nats_url().await else { return };
    let nats = NatsMesh::connect(NatsConfig {
        max_messages: 3,
        ..nats_test_config(url)
    })
    .await
    .unwrap();
    let m = MeshUnderTest {
        mesh: Arc::new(nats.clone()),
        patience: Duration::from_secs(5),
        quiet: Duration::from_millis(2500),
        nats: Some(nats),
    };
    for i in 0..3u8 {
        m.mesh
            .publish(Message::new(subject("a.b"), vec![i]))
            .await
            .unwrap();
    }
    let err = m
        .mesh
        .publish(Message::new(subject("a.b"), vec![3]))
        .await
        .unwrap_err();
    assert!(matches!(&err, MeshError::Full(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_durable_with_another_pattern_is_refused() {
    let Some(m) = open_nats().await else { return };
    let name = format!("pat{}", unique());
    drop(
        m.mesh
            .subscribe(pattern("a.*"), SubscribeOptions::durable(&name))
            .await
            .unwrap(),
    );
    let err = m
        .mesh
        .subscribe(pattern("b.*"), SubscribeOptions::durable(&name))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, MeshError::Subscribe { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_server_fails_with_a_connect_error() {
    // A closed port on this machine; two quick attempts.
    let err = NatsMesh::connect(NatsConfig {
        url: "nats://127.0.0.1:1".into(),
        connect_attempts: 2,
        connect_timeout_ms: 200,
        reconnect_min_delay_ms: 10,
        reconnect_max_delay_ms: 20,
        ..NatsConfig::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, MeshError::Connect { url, .. } if url == "nats://127.0.0.1:1"),
        "{err}"
    );
}

/// A TCP proxy in front of NATS whose connections can be cut, to watch the client reconnect.
struct Proxy {
    url: String,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(nats_url: &str) -> Proxy {
        let target = nats_url.trim_start_matches("nats://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, connections) = (Arc::clone(&up), Arc::clone(&connections));
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // refused: dropped at once
                    }
                    let target = target.clone();
                    connections.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            })
        };
        Proxy {
            url,
            up,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_reconnects_with_backoff_and_nothing_is_lost() {
    let Some(url) = nats_url().await else { return };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("metaloop_mesh=debug")
        .with_test_writer()
        .try_init();
    let proxy = Proxy::start(&url).await;
    let nats = NatsMesh::connect(NatsConfig {
        reconnect_min_delay_ms: 50,
        reconnect_max_delay_ms: 400,
        ..nats_test_config(proxy.url.clone())
    })
    .await
    .unwrap();
    let m = MeshUnderTest {
        mesh: Arc::new(nats.clone()),
        patience: Duration::from_secs(5),
        quiet: Duration::from_millis(2500),
        nats: Some(nats),
    };
    let keys = keys();
    let mut ing = ingestor(&keys);
    let mut sub = m
        .mesh
        .subscribe(pattern(">"), SubscribeOptions::durable("reconnect"))
        .await
        .unwrap();
    let mut counted = BTreeMap::new();
    for i in 0..3 {
        publish_event(m.mesh.as_ref(), &signed(&keys, &format!("rc{i}"), i))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let d = next_within(&mut sub, m.patience)
            .await
            .expect("delivered before the cut");
        let e = ing.ingest_event(&d.message.payload, now()).unwrap();
        *counted.entry(e.id).or_insert(0) += 1;
        d.ack().await.unwrap();
    }

    proxy.cut();
    let publisher = {
        let mesh = Arc::clone(&m.mesh);
        let events: Vec<_> = (3..6)
            .map(|i| signed(&keys, &format!("rc{i}"), i))
            .collect();
        tokio::spawn(async move {
            for e in events {
                publish_event(mesh.as_ref(), &e).await?;
            }
            Ok::<(), MeshError>(())
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    tokio::time::timeout(Duration::from_secs(30), publisher)
        .await
        .expect("publishes finish after the reconnect")
        .unwrap()
        .unwrap();
    while counted.len() < 6 {
        let d = next_within(&mut sub, Duration::from_secs(20))
            .await
            .expect("delivered after the reconnect");
        match ing.ingest_event(&d.message.payload, now()) {
            Ok(e) => *counted.entry(e.id).or_insert(0) += 1,
            Err(r) => assert_eq!(r.reason, RejectReason::Duplicate, "{r}"),
        }
        d.ack().await.unwrap();
    }
    assert!(counted.values().all(|n| *n == 1), "{counted:?}");
    assert_eq!(ing.counters().accepted(), 6);
}
