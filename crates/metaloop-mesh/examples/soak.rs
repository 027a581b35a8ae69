//! `cargo run --release -p metaloop-mesh --example soak [-- --seconds N] [--pool N] [--warmup S]`
//!
//! Sustained end-to-end ingest through the in-process mesh, to show that memory stays flat:
//! a publisher task signs events from four adapters with ever-new ids (payloads cycle
//! through a pool built once) and publishes them; one consumer ingests each delivery with
//! the production path (`Ingestor::ingest` with the default `IngestConfig`: parse, verify,
//! dedupe), folds the accepted events into per-domain `DomainWindow`s rotated every 5 s like
//! cycles, and acknowledges. Ids never repeat, so the dedupe window fills to its capacity
//! and then evicts at its bound for the rest of the run.
//!
//! Every 10 s it prints the elapsed time, the events ingested, the rate over the last
//! interval and the resident set (`VmRSS` of `/proc/self/status`). At the end it prints the
//! RSS after the warm-up (60 s), the maximum after it, the final RSS and the growth, and
//! exits with status 1 when the RSS after the warm-up ever exceeds the warm-up RSS by more
//! than 10 % (or when an event was lost or rejected).

use ed25519_dalek::SigningKey;
use metaloop_core::kpi::DomainWindow;
use metaloop_core::protocol::{
    ComplianceScore, Decision, EventData, KpiReport, Recovery, SpineEvent,
};
use metaloop_core::time::Timestamp;
use metaloop_mesh::envelope::CloudEvent;
use metaloop_mesh::keys::spine_event_unsigned;
use metaloop_mesh::mesh::{MemoryConfig, WhenFull};
use metaloop_mesh::{
    EventSigner, IngestConfig, Ingestor, KeyRegistry, MemoryMesh, Mesh, MeshError, Message,
    RejectReason, SubjectPattern, SubscribeOptions,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DOMAINS: [&str; 4] = ["application", "infrastructure", "security", "data"];
/// How often the KPI windows are closed and new ones started (a cycle).
const ROTATE: Duration = Duration::from_secs(5);
/// How often the RSS is sampled.
const SAMPLE_SECS: u64 = 10;
/// Most RSS growth tolerated after the warm-up, percent.
const LIMIT_PCT: f64 = 10.0;
const DURABLE: &str = "soak";

struct Args {
    seconds: u64,
    pool: usize,
    warmup: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 600,
        pool: 50_000,
        warmup: 60,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a number"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = number("--seconds")?.max(1),
            "--pool" => a.pool = number("--pool")?.max(1) as usize,
            "--warmup" => a.warmup = number("--warmup")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --seconds N, --pool N, --warmup S)"
                ));
            }
        }
    }
    Ok(a)
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// `VmRSS` of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// An unsigned event of the pool: id and time are set, and the event signed, per publish.
struct Template {
    signer: usize,
    event: CloudEvent,
}

/// The payload mix of `metaloop_mesh::bench::workload`: recoveries (some failed),
/// decisions, compliance scores and custom KPIs over four domains.
fn payload(i: usize) -> EventData {
    let domain = DOMAINS[i % DOMAINS.len()].to_owned();
    match i % 5 {
        0 | 1 => {
            let r = Recovery {
                domain,
                incident_id: format!("inc-{i}"),
                playbook: ["restart-service", "failover", "scale-out"][i % 3].into(),
                duration_s: 5.0 + (i % 97) as f64,
                autonomous: !i.is_multiple_of(4),
                human_override: i.is_multiple_of(17),
                experiment: None,
            };
            if i.is_multiple_of(7) {
                EventData::RecoveryFailed(r)
            } else {
                EventData::RecoverySucceeded(r)
            }
        }
        2 => EventData::DecisionMade(Decision {
            domain,
            decision_id: format!("dec-{i}"),
            confidence: 0.5 + (i % 50) as f64 / 100.0,
            autonomous: !i.is_multiple_of(3),
            approved_by_human: i.is_multiple_of(3),
            overridden: i.is_multiple_of(11),
            experiment: None,
        }),
        3 => EventData::ComplianceScored(ComplianceScore {
            domain,
            score: 80.0 + (i % 20) as f64,
        }),
        _ => EventData::KpiReported(KpiReport {
            domain,
            name: "queue_depth".into(),
            value: (i % 1000) as f64,
        }),
    }
}

fn adapters() -> (Vec<EventSigner>, KeyRegistry) {
    let signers: Vec<EventSigner> = DOMAINS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            EventSigner::new(
                format!("urn:spine:{d}"),
                SigningKey::from_bytes(&[i as u8 + 1; 32]),
            )
        })
        .collect();
    let mut registry = KeyRegistry::new();
    for s in &signers {
        registry
            .register(s.source(), s.verifying_key())
            .expect("strong key");
    }
    (signers, registry)
}

fn pool(n: usize, signers: &[EventSigner]) -> Vec<Template> {
    let t0 = wall_clock();
    (0..n)
        .map(|i| {
            let signer = i % DOMAINS.len();
            let data = payload(i);
            let event =
                spine_event_unsigned(format!("pool-{i}"), signers[signer].source(), t0, &data);
            Template { signer, event }
        })
        .collect()
}

#[derive(Default)]
struct Stats {
    published: AtomicU64,
    delivered: AtomicU64,
    folded: AtomicU64,
    rotations: AtomicU64,
    dedupe_len: AtomicU64,
}

/// Signs and publishes events with ids `soak-<n>` until `stop`.
async fn publish(
    mesh: MemoryMesh,
    templates: Vec<Template>,
    signers: Vec<EventSigner>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<(), MeshError> {
    let mut seq: u64 = 0;
    let mut second = i64::MIN;
    let mut time = String::new();
    while !stop.load(Ordering::Relaxed) {
        let t = &templates[(seq % templates.len() as u64) as usize];
        let now = wall_clock().millis().div_euclid(1000);
        if now != second {
            second = now;
            time = Timestamp::from_secs(now).to_rfc3339();
        }
        let mut event = t.event.clone();
        event.id = format!("soak-{seq:012}");
        event.time = Some(time.clone());
        signers[t.signer]
            .sign(&mut event)
            .expect("an event of the signer's own source signs");
        mesh.publish(Message::for_event(&event)?).await?;
        stats.published.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        if seq.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// KPI windows per domain, folded in O(1) per event.
#[derive(Default)]
struct Windows(BTreeMap<String, DomainWindow>);

impl Windows {
    fn fold(&mut self, e: &SpineEvent) {
        let domain = e.data.domain();
        match self.0.get_mut(domain) {
            Some(w) => w.observe(&e.data),
            None => self
                .0
                .entry(domain.to_owned())
                .or_default()
                .observe(&e.data),
        }
    }
}

/// Ingests, folds and acknowledges every delivery until the mesh is closed; rotates the
/// windows every [`ROTATE`] (the closed window is kept until the next rotation, as a
/// cycle's previous window would be).
async fn consume(
    mut sub: Box<dyn metaloop_mesh::Subscription>,
    mut ing: Ingestor,
    stats: Arc<Stats>,
) -> Result<(), MeshError> {
    let mut current = Windows::default();
    let mut previous = Windows::default();
    let mut rotated = Instant::now();
    let mut n: u64 = 0;
    while let Some(d) = sub.next().await? {
        let outcome = ing.ingest(
            &d.message.payload,
            d.message.content_type.as_deref(),
            wall_clock(),
        );
        for e in outcome.accepted() {
            current.fold(&e);
            stats.folded.fetch_add(1, Ordering::Relaxed);
        }
        d.ack().await?;
        stats.delivered.fetch_add(1, Ordering::Relaxed);
        stats
            .dedupe_len
            .store(ing.dedupe().len() as u64, Ordering::Relaxed);
        if rotated.elapsed() >= ROTATE {
            previous = std::mem::take(&mut current);
            stats.rotations.fetch_add(1, Ordering::Relaxed);
            rotated += ROTATE;
        }
        n += 1;
        if n.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    drop(previous);
    Ok(())
}

struct Sample {
    at: u64,
    rss: f64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (signers, registry) = adapters();
    let templates = pool(args.pool, &signers);
    let config = IngestConfig::default();
    let mesh_config = MemoryConfig {
        capacity: 1024,
        when_full: WhenFull::Wait,
    };
    let mesh = MemoryMesh::new(mesh_config);
    let ing = Ingestor::new(config, registry);
    let counters = ing.counters();
    let sub =
        rt.block_on(mesh.subscribe(SubjectPattern::all(), SubscribeOptions::durable(DURABLE)))?;

    let samples_end = args.seconds;
    let warmup = if args.warmup < samples_end {
        (args.warmup - args.warmup % SAMPLE_SECS).max(SAMPLE_SECS)
    } else {
        SAMPLE_SECS.min(samples_end)
    };
    println!(
        "soak: {} s of signed events through the in-process mesh (capacity {}, {:?} when full); \
         pool of {} payloads, ids never repeat; dedupe window {} events / {} s; \
         KPI windows rotated every {} s; RSS sampled every {SAMPLE_SECS} s",
        args.seconds,
        mesh_config.capacity,
        mesh_config.when_full,
        args.pool,
        config.dedupe.capacity,
        config.dedupe.window_secs,
        ROTATE.as_secs(),
    );
    println!(
        "soak: RSS before load {:.1} MiB; baseline at {warmup} s; limit +{LIMIT_PCT} % after it",
        rss_mib()
    );
    println!(
        "{:>9} {:>12} {:>9} {:>9} {:>8} {:>8}",
        "elapsed_s", "ingested", "rate/s", "rss_MiB", "dedupe", "backlog"
    );

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // The publisher has a thread of its own: as a task, the consumer's acknowledgements would
    // wake it onto the consumer's worker and the two would mostly share one core.
    let publisher = {
        let (handle, mesh, stop, stats) = (
            rt.handle().clone(),
            mesh.clone(),
            Arc::clone(&stop),
            Arc::clone(&stats),
        );
        std::thread::Builder::new()
            .name("soak-publisher".into())
            .spawn(move || handle.block_on(publish(mesh, templates, signers, stop, stats)))?
    };
    let consumer = rt.spawn(consume(sub, ing, Arc::clone(&stats)));

    let mut samples: Vec<Sample> = Vec::new();
    let mut last_count = 0u64;
    let mut last_at = 0u64;
    let mut at = 0u64;
    while at < samples_end {
        at = (at + SAMPLE_SECS).min(samples_end);
        let due = start + Duration::from_secs(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if publisher.is_finished() || consumer.is_finished() {
            break;
        }
        let count = counters.accepted();
        let rss = rss_mib();
        let rate = (count - last_count) as f64 / (at - last_at).max(1) as f64;
        println!(
            "{:>9} {:>12} {:>9.0} {:>9.1} {:>8} {:>8}",
            at,
            count,
            rate,
            rss,
            stats.dedupe_len.load(Ordering::Relaxed),
            mesh.durable_backlog(DURABLE).unwrap_or(0),
        );
        samples.push(Sample { at, rss });
        last_count = count;
        last_at = at;
    }

    stop.store(true, Ordering::Relaxed);
    publisher
        .join()
        .map_err(|_| "the publisher thread panicked")??;
    // Let the consumer drain what is queued, then end its subscription.
    let drain = Instant::now();
    while mesh.durable_backlog(DURABLE).unwrap_or(0) > 0
        && drain.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    mesh.close();
    rt.block_on(consumer)??;
    let elapsed = start.elapsed().as_secs_f64();

    let snapshot = counters.snapshot();
    let published = stats.published.load(Ordering::Relaxed);
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let folded = stats.folded.load(Ordering::Relaxed);
    let duplicates = snapshot
        .rejected
        .get(&RejectReason::Duplicate)
        .copied()
        .unwrap_or(0);
    println!();
    println!(
        "summary: {:.0} s, {} published, {} delivered, {} accepted and folded ({:.0}/s), \
         {} rejected ({} duplicates), {} window rotations",
        elapsed,
        published,
        delivered,
        folded,
        folded as f64 / elapsed.max(1e-9),
        snapshot.rejected_total(),
        duplicates,
        stats.rotations.load(Ordering::Relaxed),
    );

    let mut ok = true;
    if published != delivered || delivered != snapshot.accepted || folded != snapshot.accepted {
        println!(
            "FAIL: events lost or rejected (published {published}, delivered {delivered}, accepted {}, folded {folded})",
            snapshot.accepted
        );
        ok = false;
    }
    let Some(base) = samples.iter().find(|s| s.at == warmup) else {
        println!("FAIL: no RSS sample at {warmup} s");
        return Ok(false);
    };
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at > base.at).collect();
    let last = samples.last().expect("the baseline is a sample");
    let max = after.iter().copied().max_by(|a, b| a.rss.total_cmp(&b.rss));
    let pct = |v: f64| (v - base.rss) / base.rss * 100.0;
    println!(
        "  RSS at {:>4} s                 {:>8.1} MiB",
        base.at, base.rss
    );
    match max {
        Some(m) => println!(
            "  max RSS after {:>4} s          {:>8.1} MiB (at {} s, {:+.1} %)",
            base.at,
            m.rss,
            m.at,
            pct(m.rss)
        ),
        None => println!(
            "  max RSS after {:>4} s          (no sample after it)",
            base.at
        ),
    }
    println!(
        "  final RSS ({:>4} s)            {:>8.1} MiB",
        last.at, last.rss
    );
    println!(
        "  growth {} s -> {} s           {:>+8.2} MiB ({:+.1} %)",
        base.at,
        last.at,
        last.rss - base.rss,
        pct(last.rss)
    );
    let worst = max.map_or(base.rss, |m| m.rss);
    if pct(worst) > LIMIT_PCT {
        println!(
            "FAIL: RSS grew by {:.1} % after {} s (limit {LIMIT_PCT} %)",
            pct(worst),
            base.at
        );
        ok = false;
    } else if ok {
        println!(
            "PASS: RSS stayed within {LIMIT_PCT} % of its {} s value (max {:+.1} %)",
            base.at,
            pct(worst)
        );
    }
    Ok(ok)
}
