//! Three replicas of `metaloop run` on the local PostgreSQL and NATS, driven by the
//! simulated spine as a signed adapter over NATS, through the faults a production team will
//! have: the leader killed (SIGKILL), frozen past its lease (SIGSTOP, then SIGCONT), cut off
//! from the database (a TCP proxy the test cuts), and every replica restarted. After each:
//! exactly one leader; at the end: no directive published twice, one ledger chain that
//! verifies with the supervisor's key, and every event the bus acknowledged counted exactly
//! once. Failover times are printed.
//!
//! Needs PostgreSQL (`METALOOP_TEST_POSTGRES`, default postgres://root@127.0.0.1:5432/test)
//! and NATS (`METALOOP_TEST_NATS`, default nats://127.0.0.1:4222); skipped without them,
//! except under `CI=true`, where a missing service fails it.

use metaloop_core::protocol::SpineEvent;
use metaloop_core::time::Timestamp;
use metaloop_mesh::envelope::SizeLimits;
use metaloop_mesh::mesh::{Message, NatsConfig};
use metaloop_mesh::{
    AdapterKeys, EventSigner, KeyRegistry, Mesh, NatsMesh, SubjectPattern, SubjectPrefix,
    SubscribeOptions,
};
use metaloop_sim::{Scenario, Spine};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const ADAPTER: &str = "urn:spine:ha-test";
const TOKEN: &str = "ha-test-token";
/// Seconds: the cycle, the lease's TTL and its renewal.
const CYCLE: u64 = 2;
const TTL: u64 = 3;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn pg_url() -> String {
    std::env::var("METALOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

fn nats_url() -> String {
    std::env::var("METALOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Both services answer; otherwise skip (or, in CI, fail).
async fn services() -> bool {
    let pg = pg_url();
    let pg_ok = tokio::time::timeout(Duration::from_secs(5), async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&pg).await.is_ok()
    })
    .await
    .unwrap_or(false);
    let nats_ok = std::net::TcpStream::connect(nats_url().trim_start_matches("nats://")).is_ok();
    if pg_ok && nats_ok {
        return true;
    }
    let msg = format!(
        "HA fault-injection test: PostgreSQL at {pg} {} and NATS at {} {}",
        if pg_ok { "answers" } else { "does not answer" },
        nats_url(),
        if nats_ok {
            "answers"
        } else {
            "does not answer"
        }
    );
    if ci() {
        panic!("{msg} (CI=true requires both)");
    }
    eprintln!("skipping: {msg}");
    false
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP proxy in front of PostgreSQL that the test can cut: every connection through it
/// is dropped, and new ones are accepted and never answered (a half-open network).
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (c, g) = (c.clone(), g.clone());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if c.load(Ordering::SeqCst) {
                        // half-open: accepted, never answered, until the cut is over
                        while c.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let _ = client.shutdown().await;
                        return;
                    }
                    let born = g.load(Ordering::SeqCst);
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let watch = async {
                        while g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch => {}
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One replica: its configuration, its process (when running) and its log.
struct Replica {
    name: String,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    proxy: Proxy,
    child: Option<Child>,
}

impl Replica {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("METALOOP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.name);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the process to end.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("{} did not stop within 20 s of SIGTERM", self.name);
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/v1/status`: role and leader, or `None` when it does not answer.
    async fn status(&self, http: &reqwest::Client) -> Option<Value> {
        let r = http
            .get(format!("http://127.0.0.1:{}/v1/status", self.port))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_millis(800))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// The leaders now: (replica index, epoch), among the replicas that answer.
async fn leaders(replicas: &[Replica], http: &reqwest::Client) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        if r.child.is_none() {
            continue;
        }
        if let Some(s) = r.status(http).await
            && s["role"] == "leader"
        {
            out.push((i, s["leader"]["epoch"].as_u64().unwrap_or(0)));
        }
    }
    out
}

/// Waits until exactly one replica (other than `not`) leads with an epoch above `after`;
/// returns it and how long it took. Two leaders at once fail the test.
async fn one_leader(
    replicas: &[Replica],
    http: &reqwest::Client,
    not: Option<usize>,
    after: u64,
    within: Duration,
) -> (usize, u64, Duration) {
    let start = Instant::now();
    loop {
        let l = leaders(replicas, http).await;
        let fresh: Vec<&(usize, u64)> = l.iter().filter(|(_, e)| *e > after).collect();
        assert!(fresh.len() <= 1, "two leaders at once: {l:?}");
        if let [(i, e)] = fresh.as_slice()
            && Some(*i) != not
        {
            return (*i, *e, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "no single new leader within {within:?}: {l:?}\n{}",
            replicas
                .iter()
                .map(|r| format!("--- {}\n{}", r.name, tail(&r.log_text(), 25)))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the simulated spine has done: events the bus acknowledged, directives applied.
#[derive(Default)]
struct SpineLog {
    /// Asked to stop publishing incidents (acks still flow), and whether it has.
    pause: bool,
    parked: bool,
    /// Directives are left on the bus, unread and unacknowledged, while this holds.
    hold_directives: bool,
    /// Non-ack events published and acknowledged by the stream, by domain.
    events: BTreeMap<String, u64>,
    /// Deliveries of each directive id (a re-send under the same id counts again).
    deliveries: BTreeMap<String, u64>,
}

/// The simulated spine as a signed adapter on NATS: its incidents, in virtual time running
/// 150 times faster than the wall clock (a 5-minute cycle per 2 s), stamped with the wall
/// clock; it applies each directive id once and acknowledges every delivery.
async fn run_spine(
    mesh: Arc<NatsMesh>,
    signer: Arc<EventSigner>,
    directives: KeyRegistry,
    log: Arc<Mutex<SpineLog>>,
    stop: Arc<AtomicBool>,
) {
    let wall0 = Instant::now();
    let virtual0 = Timestamp::from_secs(1_767_225_600);
    let spine = Arc::new(Mutex::new(Spine::new(Scenario::Seed, 7, virtual0)));
    let virtual_now = move || virtual0.plus_millis(wall0.elapsed().as_millis() as i64 * 150);
    let counter = Arc::new(AtomicU64::new(0));
    let stamp = {
        let counter = counter.clone();
        let signer = signer.clone();
        move |ev: &SpineEvent| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let wall = metaloop::daemon::wall_clock();
            signer.spine_event(format!("e{n}-{}", ev.id), wall, &ev.data)
        }
    };
    // directives: applied once per id by the spine, every delivery acknowledged
    let mut sub = mesh
        .subscribe(
            SubjectPattern::new("meta.directive.*").unwrap(),
            SubscribeOptions::durable("ha-test-spine"),
        )
        .await
        .unwrap();
    let (m2, sp2, log2, stamp2, vn2) = (
        mesh.clone(),
        spine.clone(),
        log.clone(),
        stamp.clone(),
        virtual_now,
    );
    tokio::spawn(async move {
        loop {
            if log2.lock().unwrap().hold_directives {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let Ok(Some(d)) = sub.next().await else {
                break;
            };
            let subject = d.message.subject.as_str().to_string();
            if subject == "meta.directive.applied" || subject == "meta.directive.refused" {
                let _ = d.ack().await;
                continue;
            }
            let message = match metaloop_mesh::read_directive(
                &d.message.payload,
                &directives,
                &SizeLimits::default(),
            ) {
                Ok(m) => m,
                Err(r) => panic!("a directive on the bus does not verify: {}", r.message),
            };
            *log2
                .lock()
                .unwrap()
                .deliveries
                .entry(message.directive_id.clone())
                .or_default() += 1;
            let ack = sp2.lock().unwrap().deliver(&message, vn2());
            let event = stamp2(&ack);
            let _ = m2.publish(Message::for_event(&event).unwrap()).await;
            let _ = d.ack().await;
        }
    });
    while !stop.load(Ordering::SeqCst) {
        let paused = {
            let mut l = log.lock().unwrap();
            l.parked = l.pause;
            l.pause
        };
        if paused {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut out = Vec::new();
        spine.lock().unwrap().run_until(virtual_now(), &mut out);
        for ev in &out {
            let event = stamp(ev);
            let m = Message::for_event(&event).unwrap();
            // counted only once the stream holds it; retried while the bus refuses
            loop {
                match mesh.publish(m.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        eprintln!("spine: publishing: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            *log.lock()
                .unwrap()
                .events
                .entry(ev.data.domain().to_string())
                .or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Events counted in the ledger's closed cycles, by domain.
fn counted(url: &str) -> BTreeMap<String, u64> {
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for r in ledger_records(url)
        .iter()
        .filter(|r| r["action"] == "snapshot.built")
    {
        for (domain, w) in r["payload"]["windows"]["domains"].as_object().unwrap() {
            *counted.entry(domain.clone()).or_default() += w["events"].as_u64().unwrap();
        }
    }
    counted
}

/// After a fault: the spine pauses, and every event the bus acknowledged must be counted in
/// the ledger exactly once within the ack wait and a few cycles — never more at any look.
async fn settle(after: &str, url: &str, log: &Arc<Mutex<SpineLog>>) {
    log.lock().unwrap().pause = true;
    while !log.lock().unwrap().parked {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = log.lock().unwrap().events.clone();
    let start = Instant::now();
    loop {
        let now = counted(url);
        for (domain, n) in &now {
            let p = published.get(domain).copied().unwrap_or(0);
            assert!(
                *n <= p,
                "after {after}: {domain} has {n} events counted but the bus acknowledged {p}: counted twice"
            );
        }
        if now == published {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "after {after}: events lost: counted {now:?}, the bus acknowledged {published:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "HA: after {after}: all {} events counted once ({:.1} s to settle)",
        published.values().sum::<u64>(),
        start.elapsed().as_secs_f64()
    );
    let mut l = log.lock().unwrap();
    l.pause = false;
    l.parked = false;
}

fn write_config(
    dir: &Path,
    name: &str,
    port: u16,
    ledger: &str,
    prefix: &str,
    adapter_key: &str,
    domains: &[String],
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"environment = "staging"
cycle_interval = {CYCLE}
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[ha]
enabled = true
node = "{name}"
lease_ttl = {TTL}
renew_every = 1
jitter_ms = 100
tail_every_ms = 200

[ledger]
url = "{ledger}"
checkpoint_every = "5s"

[mesh]
url = "{nats}"
subject_prefix = "{prefix}"
ack_wait = 6

[signing]
key_file = "{key}"

[[adapters]]
source = "{ADAPTER}"
public_keys = ["{adapter_key}"]
domains = [{domains}]

[[tokens]]
principal = "test"
roles = ["admin", "approver", "viewer"]
sha256 = "{token}"
"#,
        data = dir.join(name).display(),
        nats = nats_url(),
        key = dir.join("supervisor.key").display(),
        domains = domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        token = hex(&Sha256::digest(TOKEN.as_bytes())),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The ledger's records, read as the auditor's CLI prints them.
fn ledger_records(url: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args(["ledger", "show", "--ledger", url, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_kill_freeze_partition_and_restart() {
    if !services().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let schema = unique("ha_test_");
    let prefix = unique("hat");
    let pg = pg_url();
    let pg_host = pg
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let with_port = |port: u16| {
        let at = pg.find('@').unwrap();
        let slash = pg[at..].find('/').unwrap() + at;
        format!(
            "{}127.0.0.1:{port}{}?schema={schema}",
            &pg[..at + 1],
            &pg[slash..]
        )
    };
    let direct = format!("{pg}?schema={schema}");

    // the adapter's key, the supervisor's key (shared by the replicas), the spine's domains
    let adapter = Arc::new(EventSigner::new(
        ADAPTER,
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    ));
    let sup_key =
        metaloop_ledger::keys::load_or_generate(dir.path().join("supervisor.key")).unwrap();
    let domains = Spine::new(Scenario::Seed, 7, Timestamp(0)).domains();
    let directive_registry = KeyRegistry::from_entries(&[AdapterKeys {
        source: "urn:metaloop:supervisor".into(),
        public_keys: vec![metaloop_mesh::keys::public_key_hex(
            &sup_key.verifying_key(),
        )],
        domains: None,
    }])
    .unwrap();

    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b", "replica-c"] {
        let proxy = Proxy::start(pg_host.clone()).await;
        let port = free_port();
        let config = write_config(
            dir.path(),
            name,
            port,
            &with_port(proxy.port),
            &prefix,
            &metaloop_mesh::keys::public_key_hex(&adapter.verifying_key()),
            &domains,
        );
        replicas.push(Replica {
            name: name.into(),
            config,
            log: dir.path().join(format!("{name}.log")),
            port,
            proxy,
            child: None,
        });
    }
    // the first start creates the schema: one replica first, then the others
    replicas[0].start();
    let http = metaloop::http::client();
    let (first, epoch, _) = one_leader(&replicas, &http, None, 0, Duration::from_secs(60)).await;
    assert_eq!(first, 0);
    replicas[1].start();
    replicas[2].start();

    // the spine, on the same NATS stream
    let mesh = Arc::new(
        NatsMesh::connect(NatsConfig {
            url: nats_url(),
            subject_prefix: SubjectPrefix::new(prefix.clone()).unwrap(),
            stream: format!("METALOOP_{}", prefix.to_uppercase()),
            ack_wait_ms: 6000,
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    // the spine leaves directives unacknowledged until the first failover is over
    let log = Arc::new(Mutex::new(SpineLog {
        hold_directives: true,
        ..Default::default()
    }));
    let stop_spine = Arc::new(AtomicBool::new(false));
    let spine = tokio::spawn(run_spine(
        mesh.clone(),
        adapter.clone(),
        directive_registry,
        log.clone(),
        stop_spine.clone(),
    ));
    // until the leader has published a directive (which the spine does not acknowledge)
    let start = Instant::now();
    let unacked = loop {
        if let Some(r) = ledger_records(&direct).into_iter().find(|r| {
            r["action"] == "directive.published"
                && r["payload"]["message"]["directive_type"] != "REQUEST_REVIEW"
        }) {
            break r["resource"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no directive published within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    settle("a quiet start", &direct, &log).await;
    let mut failovers: Vec<(&str, Duration)> = Vec::new();

    // 1. SIGKILL the leader: another takes over once its lease expires
    let (leader, epoch, _) =
        one_leader(&replicas, &http, None, epoch - 1, Duration::from_secs(10)).await;
    replicas[leader].kill();
    let (next, epoch, took) = one_leader(
        &replicas,
        &http,
        Some(leader),
        epoch,
        Duration::from_secs(30),
    )
    .await;
    let next_after_kill = next;
    failovers.push(("SIGKILL", took));
    log.lock().unwrap().hold_directives = false;
    replicas[leader].start();
    tokio::time::sleep(Duration::from_secs(3 * CYCLE)).await;
    settle("SIGKILL of the leader", &direct, &log).await;

    // 2. SIGSTOP the leader past its TTL, then SIGCONT: it is fenced and steps down
    let stopped = next;
    // the lease it holds, as it reports it (the holder is the node name and its run's tag)
    let before = replicas[stopped]
        .status(&http)
        .await
        .expect("the leader's status");
    assert_eq!(before["role"], "leader", "{before}");
    let stale_lease = metaloop_ledger::Lease {
        holder: before["leader"]["holder"].as_str().unwrap().to_string(),
        epoch: before["leader"]["epoch"].as_u64().unwrap(),
    };
    assert_eq!(stale_lease.epoch, epoch);
    replicas[stopped].signal("STOP");
    let (next, epoch, took) = one_leader(
        &replicas,
        &http,
        Some(stopped),
        epoch,
        Duration::from_secs(30),
    )
    .await;
    failovers.push(("SIGSTOP", took));
    tokio::time::sleep(Duration::from_secs(TTL)).await;
    replicas[stopped].signal("CONT");
    let start = Instant::now();
    loop {
        let s = replicas[stopped].status(&http).await;
        if s.as_ref().is_some_and(|s| s["role"] == "standby") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the stale leader did not step down: {s:?}\n{}",
            tail(&replicas[stopped].log_text(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stale_log = replicas[stopped].log_text();
    let why = stale_log
        .lines()
        .find(|l| l.starts_with("stepped down"))
        .unwrap_or_else(|| {
            panic!(
                "the stale leader did not step down:\n{}",
                tail(&stale_log, 30)
            )
        })
        .to_string();
    // whichever came first after SIGCONT: its cycle's append refused by the database
    // (fenced), its renewal refused (the lease was taken), or its own clock (a renewal that
    // did not answer before the TTL it had counted ran out)
    assert!(
        why.contains("fenced")
            || why.contains("expired or was taken")
            || why.contains("could not be renewed within its TTL"),
        "{why}"
    );
    eprintln!("HA: the stale leader after SIGCONT: {why}");
    // whichever came first in the process, its renewal or its next cycle's append, the
    // database refuses an append under the stale lease: shown here with that very lease
    {
        use metaloop_ledger::{LedgerError, LedgerStore, NewRecord, PgLedger};
        let stale = PgLedger::connect(&direct).await.unwrap();
        stale.set_fence(Some(stale_lease.clone()));
        let err = stale
            .append(vec![NewRecord::new(
                0,
                "metaloop",
                "cycle.completed",
                "cycle/stale",
                serde_json::json!({}),
            )])
            .await
            .expect_err("an append under the stale lease is refused");
        assert!(
            matches!(&err, LedgerError::Fenced(m) if m.contains("epoch")),
            "{err}"
        );
        eprintln!(
            "HA: an append under the stale lease ({}, epoch {}): {err}",
            stale_lease.holder, stale_lease.epoch
        );
    }
    let (still, _, _) = one_leader(&replicas, &http, None, epoch - 1, Duration::from_secs(5)).await;
    assert_eq!(still, next, "the replica that took over still leads");
    tokio::time::sleep(Duration::from_secs(3 * CYCLE)).await;
    settle("SIGSTOP past the lease, then SIGCONT", &direct, &log).await;

    // 3. cut the leader off from the database: it cannot renew, steps down; another leads
    let cut = next;
    replicas[cut].proxy.cut();
    let (next, epoch, took) =
        one_leader(&replicas, &http, Some(cut), epoch, Duration::from_secs(40)).await;
    failovers.push(("database cut", took));
    replicas[cut].proxy.restore();
    tokio::time::sleep(Duration::from_secs(4 * CYCLE)).await;
    let s = replicas[cut]
        .status(&http)
        .await
        .expect("the cut replica answers");
    assert_eq!(s["role"], "standby", "{s}");
    let _ = next;
    settle("the database cut", &direct, &log).await;

    // 4. restart all three (gracefully): one leads again
    for r in replicas.iter_mut() {
        r.stop();
    }
    for r in replicas.iter_mut() {
        r.start();
    }
    let (_, epoch_after, took) =
        one_leader(&replicas, &http, None, epoch, Duration::from_secs(30)).await;
    failovers.push(("restart all", took));
    tokio::time::sleep(Duration::from_secs(4 * CYCLE)).await;
    settle("restarting all three", &direct, &log).await;

    // the spine stops; the leader folds what is left (ack wait 6 s, two cycles)
    stop_spine.store(true, Ordering::SeqCst);
    spine.await.unwrap();
    tokio::time::sleep(Duration::from_secs(6 + 3 * CYCLE)).await;
    let (_, final_epoch, _) = one_leader(
        &replicas,
        &http,
        None,
        epoch_after - 1,
        Duration::from_secs(10),
    )
    .await;
    for r in replicas.iter_mut() {
        r.stop();
    }

    // one chain, verified with the supervisor's key
    let pubkey = dir.path().join("supervisor.pub");
    let verify = Command::new(env!("CARGO_BIN_EXE_metaloop"))
        .args([
            "ledger",
            "verify",
            "--ledger",
            &direct,
            "--pubkey",
            pubkey.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    let records = ledger_records(&direct);
    // each directive recorded as published once; the spine applied each id once (a re-send
    // under the same id is answered with the first ack)
    let mut published: BTreeMap<String, u64> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r["action"] == "directive.published")
    {
        *published
            .entry(r["resource"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
    let spine_log = std::mem::take(&mut *log.lock().unwrap());
    let resent = spine_log.deliveries.values().filter(|n| **n > 1).count();
    // the directive left unacknowledged when its leader died was sent again by the next
    // leader, under the same id (the bus may drop the copy as a duplicate of the one still
    // waiting for the spine: JetStream dedupes on the id), and applied once
    let resender = &replicas[next_after_kill];
    assert!(
        resender
            .log_text()
            .lines()
            .any(|l| l.contains("re-sent an unacknowledged directive") && l.contains(&unacked)),
        "{unacked} was not re-sent by {}:\n{}",
        resender.name,
        tail(&resender.log_text(), 40)
    );
    assert!(spine_log.deliveries.get(&unacked).copied().unwrap_or(0) >= 1);
    let applied = records
        .iter()
        .filter(|r| r["action"] == "directive.applied" && r["resource"] == unacked.as_str())
        .count();
    assert_eq!(applied, 1, "{unacked} applied once");
    // handovers in the ledger: one per leadership change, epochs growing
    let elected: Vec<u64> = records
        .iter()
        .filter(|r| r["action"] == "leader.elected")
        .map(|r| r["payload"]["epoch"].as_u64().unwrap())
        .collect();
    assert!(elected.windows(2).all(|w| w[0] < w[1]), "{elected:?}");
    // (stopping the leader hands over to a replica still running: epochs past the last seen)
    assert!(elected.last().copied() >= Some(final_epoch), "{elected:?}");

    // every event the stream acknowledged counted exactly once, in some cycle's window
    assert_eq!(
        counted(&direct),
        spine_log.events,
        "events counted in the ledger's cycles against events the bus acknowledged"
    );

    eprintln!(
        "HA: {} records, {} directives published ({} delivered to the spine more than once), {} handovers (epochs {:?}), {} events each counted once",
        records.len(),
        published.len(),
        resent,
        elected.len(),
        elected,
        spine_log.events.values().sum::<u64>()
    );
    for (fault, took) in &failovers {
        eprintln!("HA: failover after {fault}: {:.1} s", took.as_secs_f64());
    }
    let _ = mesh.delete_stream().await;
    let _ = Command::new("psql")
        .args([
            &pg,
            "-c",
            &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        ])
        .output();
}
