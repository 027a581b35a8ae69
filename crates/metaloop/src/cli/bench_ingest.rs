//! `metaloop bench ingest`: events per second end to end through a real `metaloop run`
//! daemon on NATS JetStream, with the leader reading the mesh alone (0 workers) and with 1, 2…
//! `metaloop ingest-worker` processes beside a leader that only merges their partials.
//!
//! For each setting: a fresh stream is filled with signed events (`kpi.reported` and
//! recoveries over 100 domains), then the daemon (SQLite ledger in a temporary directory) and
//! the workers are started as processes of this binary, and the clock runs from the start of
//! the processes until the daemon's `metaloop_events_ingested_total` reaches the count. The
//! steady rate is taken between 10 % and 90 % of the events, so start-up is left out of it.

use crate::outln;
use anyhow::{Context, Result, anyhow, bail};
use metaloop_core::protocol::{EventData, KpiReport, Recovery};
use metaloop_mesh::mesh::{NatsConfig, publish_event};
use metaloop_mesh::{EventSigner, NatsMesh, SubjectPrefix};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `metaloop bench ingest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Events published per setting.
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Ingest worker counts, comma-separated (0: the leader reads the mesh itself).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub workers: Vec<usize>,
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
}

const SOURCE: &str = "urn:bench:spine";

/// One setting's figures.
#[derive(Debug)]
struct Run {
    workers: usize,
    total: Duration,
    steady: f64,
}

pub async fn exec(args: &Args) -> Result<()> {
    if args.events < 100 {
        bail!("--events must be at least 100");
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    let key = metaloop_mesh::keys::generate_signing_key();
    let signer = EventSigner::new(SOURCE, key);
    outln!(
        "bench ingest: {} signed events per setting, daemon + ingest workers as processes, NATS {}",
        args.events,
        args.nats
    );
    let mut runs = Vec::new();
    for &workers in &args.workers {
        let run = one(&exe, &signer, args, workers).await?;
        outln!(
            "  {} worker(s){}: all folded {:.2} s after start → {:.0} events/s overall, {:.0} events/s steady",
            workers,
            if workers == 0 {
                " (leader reads the mesh)"
            } else {
                " (leader merges partials)"
            },
            run.total.as_secs_f64(),
            args.events as f64 / run.total.as_secs_f64(),
            run.steady
        );
        runs.push(run);
    }
    outln!();
    outln!("| ingest workers | events/s steady | events/s incl. start-up |");
    outln!("|---|---|---|");
    for r in &runs {
        outln!(
            "| {} | {:.0} | {:.0} |",
            r.workers,
            r.steady,
            args.events as f64 / r.total.as_secs_f64()
        );
    }
    outln!(
        "(this machine: {} cores, shared by NATS, the daemon and the workers)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

async fn one(
    exe: &std::path::Path,
    signer: &EventSigner,
    args: &Args,
    workers: usize,
) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let prefix = format!("bi{:08x}", rand::random::<u32>());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config = dir.path().join("metaloop.toml");
    std::fs::write(
        &config,
        format!(
            r#"environment = "staging"
cycle_interval = 5
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[ledger]
url = "sqlite://{data}/ledger.db"

[mesh]
url = "{nats}"
subject_prefix = "{prefix}"
leader_consumes = {leader_consumes}

[ingest]
max_event_age = "1h"

[dedupe]
capacity = {capacity}

[[adapters]]
source = "{SOURCE}"
public_keys = ["{key}"]
"#,
            data = dir.path().display(),
            nats = args.nats,
            leader_consumes = workers == 0,
            capacity = (args.events * 2).max(100_000),
            key = metaloop_mesh::keys::public_key_hex(&signer.verifying_key()),
        ),
    )?;
    let nats_config = NatsConfig {
        url: args.nats.clone(),
        subject_prefix: SubjectPrefix::new(prefix.clone()).map_err(|e| anyhow!("{e}"))?,
        stream: format!("METALOOP_{}", prefix.to_uppercase()),
        ..Default::default()
    };
    let mesh = std::sync::Arc::new(
        NatsMesh::connect(nats_config)
            .await
            .with_context(|| format!("connecting to {}", args.nats))?,
    );
    // fill the stream: signed events over 100 domains, published 64 at a time
    let now = crate::daemon::wall_clock();
    let published = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..args.events)
        .collect::<Vec<_>>()
        .chunks(args.events.div_ceil(64))
    {
        let events: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let domain = format!("d{:03}", i % 100);
                let data = if i % 2 == 0 {
                    EventData::KpiReported(KpiReport {
                        domain,
                        name: "queue_depth".into(),
                        value: (i % 97) as f64,
                    })
                } else {
                    EventData::RecoverySucceeded(Recovery {
                        domain,
                        incident_id: format!("i{i}"),
                        playbook: "restart".into(),
                        duration_s: 10.0 + (i % 50) as f64,
                        autonomous: true,
                        human_override: false,
                        experiment: None,
                    })
                };
                signer.spine_event(format!("e{i}"), now, &data)
            })
            .collect();
        let mesh = mesh.clone();
        tasks.spawn(async move {
            for ev in events {
                publish_event(mesh.as_ref(), &ev).await?;
            }
            Ok::<_, metaloop_mesh::MeshError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    tracing::info!(
        events = args.events,
        seconds = published.elapsed().as_secs_f64(),
        "stream filled"
    );

    let started = Instant::now();
    let spawn = |args: &[&str]| -> Result<Child> {
        Command::new(exe)
            .args(args)
            .env("METALOOP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a process")
    };
    let config_arg = config.to_string_lossy().to_string();
    let mut children = vec![spawn(&["run", "--config", &config_arg])?];
    for i in 0..workers {
        let name = format!("w{i}");
        children.push(spawn(&[
            "ingest-worker",
            "--config",
            &config_arg,
            "--name",
            &name,
        ])?);
    }
    let http = crate::http::client();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (mut t10, mut t90) = (None, None);
    let deadline = started + Duration::from_secs(600);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow!("not all events folded within 10 minutes"));
        }
        if let Some(c) = children
            .iter_mut()
            .find_map(|c| c.try_wait().ok().flatten())
        {
            break Err(anyhow!("a process exited early: {c}"));
        }
        let n = match http.get(&url).send().await {
            Ok(r) => r.text().await.ok().and_then(|t| ingested(&t)).unwrap_or(0),
            Err(_) => 0,
        };
        let at = started.elapsed();
        if t10.is_none() && n as usize >= args.events / 10 {
            t10 = Some((at, n));
        }
        if t90.is_none() && n as usize >= args.events * 9 / 10 {
            t90 = Some((at, n));
        }
        if n as usize >= args.events {
            break Ok(at);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = mesh.delete_stream().await;
    let total = result?;
    let steady = match (t10, t90) {
        (Some((a, na)), Some((b, nb))) if b > a => (nb - na) as f64 / (b - a).as_secs_f64(),
        _ => args.events as f64 / total.as_secs_f64(),
    };
    Ok(Run {
        workers,
        total,
        steady,
    })
}

/// `metaloop_events_ingested_total` in a Prometheus text page.
fn ingested(page: &str) -> Option<u64> {
    page.lines()
        .find(|l| l.starts_with("metaloop_events_ingested_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}
