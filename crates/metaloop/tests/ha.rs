//! Three replicas of `metaloop run` on the local PostgreSQL and NATS, driven by the
//! simulated spine as a signed adapter over NATS, through the faults a production team will
//! have: the leader killed (SIGKILL), frozen past its lease (SIGSTOP, then SIGCONT), cut off
//! from the database (a TCP proxy the test cuts), an ingest worker killed while it holds a
//! cycle's deliveries, and every replica restarted. Two `metaloop ingest-worker` processes
//! read the mesh and hand the leader partial windows (the replicas read nothing themselves),
//! through every fault; the undisturbed run is a replica reading the mesh alone. After each:
//! exactly one leader; after every cycle: every event the bus acknowledged counted exactly
//! once; at the end: no directive published twice, one ledger chain that verifies with the
//! supervisor's key, and the same decisions, record for record and bit for bit, as an
//! undisturbed run of the same seed. The replicas run on a driven clock (`[clock] mode = "driven"`) that the
//! test advances in step with the spine's virtual time, so a cycle holds the same events
//! whatever the faults and however long a failover takes. Failover times are printed.
//!
//! Needs PostgreSQL (`METALOOP_TEST_POSTGRES`, default postgres://root@127.0.0.1:5432/test)
//! and NATS (`METALOOP_TEST_NATS`, default nats://127.0.0.1:4222); skipped without them,
//! except under `CI=true`, where a missing service fails it.

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
/// Seconds: the lease's TTL.
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

    /// Waits (at most 20 s) until it answers as a standby; otherwise fails with `what`.
    async fn until_standby(&self, http: &reqwest::Client, what: &str) {
        let start = Instant::now();
        loop {
            let s = self.status(http).await;
            if s.as_ref().is_some_and(|s| s["role"] == "standby") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: {s:?}\n{}",
                tail(&self.log_text(), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
            logs(replicas)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The logs of the ingest workers started so far.
static WORKER_LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The last lines of every replica's and ingest worker's log.
fn logs(replicas: &[Replica]) -> String {
    let workers = WORKER_LOGS.lock().unwrap().clone();
    replicas
        .iter()
        .map(|r| format!("--- {}\n{}", r.name, tail(&r.log_text(), 25)))
        .chain(workers.iter().map(|(name, log)| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            format!("--- {name}\n{}", tail(&text, 25))
        }))
        .collect()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the simulated spine has done: events the bus acknowledged, directives applied.
#[derive(Default)]
struct SpineLog {
    /// Directives are left on the bus, unread and unacknowledged, while this holds.
    hold_directives: bool,
    /// The spine's virtual time: the end of the last cycle the supervisor closed.
    now: Timestamp,
    /// Messages the stream took (not dropped as duplicates) since the last closed cycle:
    /// what the open cycle must fold before it closes.
    open: u64,
    /// Non-ack events the stream took, by domain.
    events: BTreeMap<String, u64>,
    /// Deliveries of each directive id (a re-send under the same id counts again).
    deliveries: BTreeMap<String, u64>,
}

/// Publishes until the stream holds it; whether it took it (false: a duplicate it dropped).
async fn publish(mesh: &NatsMesh, m: Message) -> bool {
    loop {
        match mesh.publish(m.clone()).await {
            Ok(p) => return !p.duplicate,
            Err(e) => {
                eprintln!("spine: publishing: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The simulated spine as a signed adapter on NATS, in a virtual time the test drives: it
/// publishes a cycle's incidents, has the leader's driven clock advanced past the cycle's
/// end once the leader folded them, and applies the directives of each closed cycle (each
/// id once, every delivery acknowledged) before the next cycle's incidents. Whatever the
/// faults, the supervisor sees the same events in the same cycles as in an undisturbed run.
struct Driver {
    spine: Arc<Mutex<Spine>>,
    mesh: Arc<NatsMesh>,
    signer: Arc<EventSigner>,
    log: Arc<Mutex<SpineLog>>,
    /// Cycles closed.
    cycle: u64,
    /// The ledger, read as it grows: every record, and the directives published.
    ledger: metaloop_ledger::PgLedger,
    records: Vec<metaloop_ledger::Record>,
    published: Vec<String>,
    counted: BTreeMap<String, u64>,
}

const START: i64 = 1_767_225_600;
/// Virtual seconds per cycle.
const CYCLE_SECS: u64 = 300;

impl Driver {
    async fn start(
        mesh: Arc<NatsMesh>,
        signer: Arc<EventSigner>,
        directives: KeyRegistry,
        ledger_url: &str,
        hold_directives: bool,
    ) -> Driver {
        let spine = Arc::new(Mutex::new(Spine::new(
            Scenario::Seed,
            7,
            Timestamp::from_secs(START),
        )));
        let log = Arc::new(Mutex::new(SpineLog {
            hold_directives,
            now: Timestamp::from_secs(START),
            ..Default::default()
        }));
        let mut sub = mesh
            .subscribe(
                SubjectPattern::new("meta.directive.*").unwrap(),
                SubscribeOptions::durable("ha-test-spine"),
            )
            .await
            .unwrap();
        let (m2, sp2, log2, signer2) = (mesh.clone(), spine.clone(), log.clone(), signer.clone());
        tokio::spawn(async move {
            loop {
                if log2.lock().unwrap().hold_directives {
                    tokio::time::sleep(Duration::from_millis(20)).await;
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
                let now = log2.lock().unwrap().now;
                let ack = sp2.lock().unwrap().deliver(&message, now);
                let event = signer2.spine_event(ack.id.clone(), ack.time, &ack.data);
                let took = publish(&m2, Message::for_event(&event).unwrap()).await;
                {
                    let mut l = log2.lock().unwrap();
                    l.open += u64::from(took);
                    *l.deliveries
                        .entry(message.directive_id.clone())
                        .or_default() += 1;
                }
                let _ = d.ack().await;
            }
        });
        Driver {
            spine,
            mesh,
            signer,
            log,
            cycle: 0,
            ledger: metaloop_ledger::PgLedger::connect(ledger_url)
                .await
                .unwrap(),
            records: Vec::new(),
            published: Vec::new(),
            counted: BTreeMap::new(),
        }
    }

    /// The open cycle's end.
    fn next_end(&self) -> Timestamp {
        Timestamp::from_secs(START + (self.cycle as i64 + 1) * CYCLE_SECS as i64)
    }

    /// Publishes the open cycle's incidents.
    async fn publish_cycle(&self) {
        let mut out = Vec::new();
        self.spine
            .lock()
            .unwrap()
            .run_until(self.next_end(), &mut out);
        for ev in &out {
            let event = self.signer.spine_event(ev.id.clone(), ev.time, &ev.data);
            if publish(&self.mesh, Message::for_event(&event).unwrap()).await {
                let mut l = self.log.lock().unwrap();
                l.open += 1;
                *l.events.entry(ev.data.domain().to_string()).or_default() += 1;
            }
        }
    }

    /// Has the leader (whichever replica it is, through failovers) fold what the open
    /// cycle holds and close it; then reads what it recorded and, unless directives are
    /// held, waits until the spine has applied every directive published.
    async fn close_cycle(&mut self, replicas: &[Replica], http: &reqwest::Client) {
        let to = self.next_end();
        let want = self.cycle + 1;
        let sent = self.log.lock().unwrap().open;
        let start = Instant::now();
        'closed: loop {
            // the leader of the highest epoch (one that lost its lease may not know yet)
            let mut lead: Option<(u64, &Replica, Value)> = None;
            for r in replicas.iter().filter(|r| r.child.is_some()) {
                if let Some(s) = r.status(http).await
                    && s["role"] == "leader"
                {
                    let epoch = s["leader"]["epoch"].as_u64().unwrap_or(0);
                    if lead.as_ref().is_none_or(|(e, _, _)| epoch > *e) {
                        lead = Some((epoch, r, s));
                    }
                }
            }
            if let Some((_, r, s)) = lead {
                if s["cycle"].as_u64().unwrap_or(0) >= want {
                    break 'closed;
                }
                let answer = http
                    .post(format!("http://127.0.0.1:{}/v1/admin/clock", r.port))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"to": to.to_rfc3339(), "deliveries": sent}))
                    .timeout(Duration::from_secs(70))
                    .send()
                    .await;
                if let Ok(a) = answer {
                    let ok = a.status().is_success();
                    let body: Value = a.json().await.unwrap_or_default();
                    if ok {
                        assert_eq!(body["cycle"], want, "{body}");
                        break 'closed;
                    }
                    eprintln!("HA: advancing {}'s clock to {to}: {body}", r.name);
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "cycle {want} did not close within 120 s\n{}",
                logs(replicas)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.cycle = want;
        {
            let mut l = self.log.lock().unwrap();
            l.open -= sent;
            l.now = to;
        }
        self.read_ledger().await;
        // every event the stream took is counted once, in a closed cycle
        let events = self.log.lock().unwrap().events.clone();
        assert_eq!(
            self.counted, events,
            "after cycle {want}: events counted in the ledger's cycles against events the bus acknowledged"
        );
        if self.log.lock().unwrap().hold_directives {
            return;
        }
        self.applied_all().await;
    }

    /// Waits until the spine has applied every directive published so far.
    async fn applied_all(&mut self) {
        let start = Instant::now();
        loop {
            let missing: Vec<String> = {
                let l = self.log.lock().unwrap();
                self.published
                    .iter()
                    .filter(|id| !l.deliveries.contains_key(*id))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "directives published and never delivered to the spine: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.read_ledger().await;
        }
    }

    async fn step(&mut self, replicas: &[Replica], http: &reqwest::Client) {
        self.publish_cycle().await;
        self.close_cycle(replicas, http).await;
    }

    async fn read_ledger(&mut self) {
        use metaloop_ledger::LedgerStore;
        loop {
            let from = self.records.len() as u64 + 1;
            let page = self.ledger.read(from, 1000).await.unwrap();
            if page.is_empty() {
                return;
            }
            for r in &page {
                if r.action == "directive.published" {
                    self.published.push(r.resource.clone());
                }
                if r.action == "snapshot.built" {
                    for (domain, w) in r.payload["windows"]["domains"].as_object().unwrap() {
                        *self.counted.entry(domain.clone()).or_default() +=
                            w["events"].as_u64().unwrap();
                    }
                }
            }
            self.records.extend(page);
        }
    }

    /// The decisions in the ledger: every record but those of the supervisor's own
    /// operation (starts, handovers, the stream sequences a cycle folded), which differ
    /// between a disturbed and an undisturbed run by design. Each as its time, action and
    /// resource, and its payload.
    fn decisions(&self) -> Vec<(String, Value)> {
        self.records
            .iter()
            .filter(|r| {
                !matches!(
                    r.action.as_str(),
                    "supervisor.started" | "leader.elected" | "ingest.folded"
                )
            })
            .map(|r| {
                (
                    format!("{} {} {}", Timestamp(r.time_ms), r.action, r.resource),
                    r.payload.clone(),
                )
            })
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    name: &str,
    port: u16,
    ledger: &str,
    prefix: &str,
    adapter_key: &str,
    domains: &[String],
    leader_consumes: bool,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"environment = "staging"
cycle_interval = {CYCLE_SECS}
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[clock]
mode = "driven"
start = "{start}"

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
leader_consumes = {leader_consumes}

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
        start = Timestamp::from_secs(START).to_rfc3339(),
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

/// An `metaloop ingest-worker` process and its log.
struct Worker {
    name: String,
    child: Child,
}

impl Worker {
    fn start(name: &str, config: &Path, dir: &Path) -> Worker {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut logs = WORKER_LOGS.lock().unwrap();
        if !logs.iter().any(|(_, l)| *l == log) {
            logs.push((name.to_string(), log.clone()));
        }
        drop(logs);
        let child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args([
                "ingest-worker",
                "--config",
                config.to_str().unwrap(),
                "--name",
                name,
            ])
            .env("METALOOP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Worker {
            name: name.into(),
            child,
        }
    }

    /// SIGTERM (it hands back what it holds), then waits for it to end.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{} did not stop within 20 s of SIGTERM", self.name);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run's replicas, mesh and ledger: `n` replicas on a fresh schema and stream, and the
/// ingest workers that read the mesh for them (none: the leader reads it).
struct Setup {
    dir: tempfile::TempDir,
    schema: String,
    direct: String,
    replicas: Vec<Replica>,
    /// How many ingest workers read the mesh (started with the replicas).
    worker_count: usize,
    workers: Vec<Worker>,
    mesh: Arc<NatsMesh>,
    adapter: Arc<EventSigner>,
    directives: KeyRegistry,
}

impl Setup {
    async fn new(n: usize, worker_count: usize) -> Setup {
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
        // the adapter's key, the supervisor's key (shared by the replicas), the domains
        let adapter = Arc::new(EventSigner::new(
            ADAPTER,
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        ));
        let sup_key =
            metaloop_ledger::keys::load_or_generate(dir.path().join("supervisor.key")).unwrap();
        let domains = Spine::new(Scenario::Seed, 7, Timestamp(0)).domains();
        let directives = KeyRegistry::from_entries(&[AdapterKeys {
            source: "urn:metaloop:supervisor".into(),
            public_keys: vec![metaloop_mesh::keys::public_key_hex(
                &sup_key.verifying_key(),
            )],
            domains: None,
        }])
        .unwrap();
        let mut replicas = Vec::new();
        for name in ["replica-a", "replica-b", "replica-c"].into_iter().take(n) {
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
                worker_count == 0,
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
        Setup {
            dir,
            schema,
            direct,
            replicas,
            worker_count,
            workers: Vec::new(),
            mesh,
            adapter,
            directives,
        }
    }

    /// Starts the replicas (the first alone until it leads: it creates the schema).
    async fn start(&mut self, http: &reqwest::Client) -> u64 {
        self.replicas[0].start();
        let (first, epoch, _) =
            one_leader(&self.replicas, http, None, 0, Duration::from_secs(60)).await;
        assert_eq!(first, 0);
        for r in self.replicas.iter_mut().skip(1) {
            r.start();
        }
        for i in 0..self.worker_count {
            let name = format!("worker-{}", i + 1);
            let w = Worker::start(&name, &self.replicas[0].config, self.dir.path());
            self.workers.push(w);
        }
        epoch
    }

    async fn driver(&self, hold_directives: bool) -> Driver {
        Driver::start(
            self.mesh.clone(),
            self.adapter.clone(),
            self.directives.clone(),
            &self.direct,
            hold_directives,
        )
        .await
    }

    async fn clean_up(mut self) {
        for w in self.workers.iter_mut() {
            w.stop();
        }
        for r in self.replicas.iter_mut() {
            r.stop();
        }
        let _ = self.mesh.delete_stream().await;
        let _ = Command::new("psql")
            .args([
                &pg_url(),
                "-c",
                &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
            ])
            .output();
    }
}

/// Cycles run between faults, and after the last.
const BETWEEN: usize = 4;
const AFTER: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_kill_freeze_partition_and_restart() {
    if !services().await {
        return;
    }
    let http = metaloop::http::client();
    // two ingest workers read the mesh (the leader reads nothing itself): every event
    // counted below came through a worker's partial
    let mut setup = Setup::new(3, 2).await;
    let epoch = setup.start(&http).await;
    // the spine leaves directives unacknowledged until the first failover is over
    let mut driver = setup.driver(true).await;
    let replicas = &mut setup.replicas;
    let direct = setup.direct.clone();

    // cycles until the leader has published a directive (which the spine leaves unread)
    while driver.published.is_empty() {
        assert!(driver.cycle < 200, "no directive published in 200 cycles");
        driver.step(replicas, &http).await;
    }
    let unacked = driver.published[0].clone();
    eprintln!(
        "HA: first directive {unacked} published in cycle {}",
        driver.cycle
    );
    let mut failovers: Vec<(&str, Duration)> = Vec::new();

    // 1. SIGKILL the leader: another takes over once its lease expires, and re-sends the
    //    directive the spine never acknowledged
    let (leader, epoch, _) =
        one_leader(replicas, &http, None, epoch - 1, Duration::from_secs(10)).await;
    replicas[leader].kill();
    let (next, epoch, took) = one_leader(
        replicas,
        &http,
        Some(leader),
        epoch,
        Duration::from_secs(30),
    )
    .await;
    let next_after_kill = next;
    failovers.push(("SIGKILL", took));
    driver.log.lock().unwrap().hold_directives = false;
    driver.applied_all().await;
    replicas[leader].start();
    for _ in 0..BETWEEN {
        driver.step(replicas, &http).await;
    }

    // 2. mid-cycle (its events on the bus, folded by the leader), SIGSTOP the leader past
    //    its TTL, then SIGCONT: it is fenced and steps down; the next leader folds the
    //    cycle's events again from the bus
    let stopped = next;
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
    driver.publish_cycle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas[stopped].signal("STOP");
    let (next, epoch, took) = one_leader(
        replicas,
        &http,
        Some(stopped),
        epoch,
        Duration::from_secs(30),
    )
    .await;
    failovers.push(("SIGSTOP", took));
    driver.close_cycle(replicas, &http).await;
    replicas[stopped].signal("CONT");
    replicas[stopped]
        .until_standby(&http, "the stale leader did not step down")
        .await;
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
    // whichever came first after SIGCONT: an append refused by the database (fenced), its
    // renewal refused (the lease was taken), or its own clock (a renewal that did not
    // answer before the TTL it had counted ran out)
    assert!(
        why.contains("fenced")
            || why.contains("expired or was taken")
            || why.contains("could not be renewed within its TTL"),
        "{why}"
    );
    eprintln!("HA: the stale leader after SIGCONT: {why}");
    // the database refuses an append under the stale lease: shown here with that very lease
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
    let (still, _, _) = one_leader(replicas, &http, None, epoch - 1, Duration::from_secs(5)).await;
    assert_eq!(still, next, "the replica that took over still leads");
    for _ in 0..BETWEEN {
        driver.step(replicas, &http).await;
    }

    // 3. mid-cycle, cut the leader off from the database: it cannot renew and steps down;
    //    another leads and folds the cycle's events again
    let cut = next;
    driver.publish_cycle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas[cut].proxy.cut();
    let (_, epoch, took) =
        one_leader(replicas, &http, Some(cut), epoch, Duration::from_secs(40)).await;
    failovers.push(("database cut", took));
    driver.close_cycle(replicas, &http).await;
    replicas[cut].proxy.restore();
    replicas[cut]
        .until_standby(&http, "the cut replica is not a standby")
        .await;
    for _ in 0..BETWEEN {
        driver.step(replicas, &http).await;
    }

    // 4. mid-cycle, SIGKILL an ingest worker holding the cycle's deliveries and start it
    //    again: what it held comes back from the stream after mesh.ack_wait, once
    driver.publish_cycle().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let config = replicas[0].config.clone();
    let mut killed = setup.workers.remove(0);
    let name = killed.name.clone();
    let _ = killed.child.kill();
    let _ = killed.child.wait();
    drop(killed);
    setup
        .workers
        .insert(0, Worker::start(&name, &config, setup.dir.path()));
    driver.close_cycle(replicas, &http).await;
    for _ in 0..BETWEEN {
        driver.step(replicas, &http).await;
    }

    // 5. restart all three (gracefully): one leads again
    for r in replicas.iter_mut() {
        r.stop();
    }
    for r in replicas.iter_mut() {
        r.start();
    }
    let (_, epoch_after, took) =
        one_leader(replicas, &http, None, epoch, Duration::from_secs(30)).await;
    failovers.push(("restart all", took));
    // then long enough for directives decided since the faults to reach their verdicts
    for _ in 0..AFTER {
        driver.step(replicas, &http).await;
    }
    let (_, final_epoch, _) = one_leader(
        replicas,
        &http,
        None,
        epoch_after - 1,
        Duration::from_secs(10),
    )
    .await;
    for r in replicas.iter_mut() {
        r.stop();
    }
    let cycles = driver.cycle;

    // one chain, verified with the supervisor's key
    let pubkey = setup.dir.path().join("supervisor.pub");
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
    let spine_log = std::mem::take(&mut *driver.log.lock().unwrap());
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
    assert!(elected.last().copied() >= Some(final_epoch), "{elected:?}");
    eprintln!(
        "HA: {cycles} cycles, {} records, {} directives published ({} delivered to the spine more than once), {} handovers (epochs {:?}), {} events each counted once",
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
    let disturbed = driver.decisions();
    // the workers did the ingest (the replicas read nothing from the mesh): each merged
    // events into leaders' cycles, as its summary on SIGTERM says
    for w in setup.workers.iter_mut() {
        w.stop();
    }
    for (name, log) in WORKER_LOGS.lock().unwrap().iter() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let summary = text
            .lines()
            .rfind(|l| l.contains(" stopped: "))
            .unwrap_or_else(|| panic!("{name} printed no summary:\n{}", tail(&text, 20)));
        eprintln!("HA: {summary}");
        let merged: u64 = summary
            .split(", ")
            .find_map(|part| part.strip_suffix(" merged by leaders"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{summary}"));
        assert!(merged > 0, "{name} merged nothing: {summary}");
    }
    setup.workers.clear();
    setup.clean_up().await;

    // the same seed, undisturbed: one replica, directives applied as they come
    let mut calm = Setup::new(1, 0).await;
    calm.start(&http).await;
    let mut undisturbed = calm.driver(false).await;
    while undisturbed.cycle < cycles {
        undisturbed.step(&calm.replicas, &http).await;
    }
    let expected = undisturbed.decisions();
    calm.clean_up().await;
    // the same records, bit for bit: a cycle cut by a fault folds its events again in the
    // order the bus hands them out again, and workers' partials split them otherwise, but a
    // closed cycle's sums are its exact sums rounded once (docs/HA.md). Numbers that differ
    // in their last bits only are told apart from other differences, and fail too.
    let mut last_bits = Diff::default();
    let differ = expected
        .iter()
        .zip(&disturbed)
        .position(|((ta, a), (tb, b))| ta != tb || !same(a, b, &mut last_bits))
        .or((expected.len() != disturbed.len()).then(|| expected.len().min(disturbed.len())));
    if let Some(i) = differ {
        let show = |d: &[(String, Value)]| {
            d.get(i)
                .map_or("(none)".to_string(), |(t, v)| format!("{t} {v}"))
        };
        panic!(
            "the decisions differ from an undisturbed run of the same seed at record {i} of {} (undisturbed) and {} (disturbed):\nundisturbed: {}\ndisturbed:   {}",
            expected.len(),
            disturbed.len(),
            show(&expected),
            show(&disturbed),
        );
    }
    let records_differing = expected
        .iter()
        .zip(&disturbed)
        .filter(|((_, a), (_, b))| a != b)
        .count();
    assert!(
        last_bits.numbers == 0 && records_differing == 0,
        "{} numbers in {records_differing} records differ from the undisturbed run in their last bits (relative difference at most {:.1e}): a closed cycle's sums should not depend on the order of its events",
        last_bits.numbers,
        last_bits.worst
    );
    let kinds = |action: &str| expected.iter().filter(|(t, _)| t.contains(action)).count();
    eprintln!(
        "HA: decisions identical, bit for bit, to an undisturbed run of the same seed: {} records over {cycles} cycles ({} directives proposed, {} published, {} verdicts, {} rollbacks)",
        expected.len(),
        kinds(" directive.proposed "),
        kinds(" directive.published "),
        kinds(" verification.verdict "),
        kinds(" directive.rolled_back "),
    );
}

/// Numbers that differ only in their last bits.
#[derive(Default)]
struct Diff {
    numbers: usize,
    worst: f64,
}

/// Equal JSON, but for numbers within a relative 1e-9 of each other (counted in `diff`).
fn same(a: &Value, b: &Value, diff: &mut Diff) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let rel = (x - y).abs() / x.abs().max(y.abs());
            if rel > 1e-9 {
                return false;
            }
            diff.numbers += 1;
            diff.worst = diff.worst.max(rel);
            true
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y, diff))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy, diff))
        }
        _ => a == b,
    }
}

#[test]
fn numbers_within_a_relative_billionth_are_the_same_and_counted() {
    let mut d = Diff::default();
    let a = serde_json::json!({"s": 18777.811999999976, "n": [1, "x"], "t": true});
    let b = serde_json::json!({"s": 18777.811999999987, "n": [1, "x"], "t": true});
    assert!(same(&a, &b, &mut d));
    assert_eq!(d.numbers, 1);
    assert!(d.worst > 0.0 && d.worst < 1e-15);
    for c in [
        serde_json::json!({"s": 18777.9, "n": [1, "x"], "t": true}),
        serde_json::json!({"s": 18777.811999999976, "n": [1, "y"], "t": true}),
        serde_json::json!({"s": 18777.811999999976, "n": [1], "t": true}),
        serde_json::json!({"s": 18777.811999999976, "n": [1, "x"], "u": true}),
    ] {
        assert!(!same(&a, &c, &mut Diff::default()), "{c}");
    }
}
