//! `metaloop bench dashboard`: the overview's server time for a demo state of many cycles
//! (30 days at 5 minutes by default). The demo runs once into a data directory (kept with
//! `--data`, so later runs start at once); the supervisor is rebuilt from its ledger, the
//! dashboard is served on a local port, and the overview is requested repeatedly, each
//! answer's `Server-Timing` giving the server's time to make it.

use crate::api::ApiState;
use crate::api::auth::{Principal, Tokens};
use crate::config::Role;
use crate::dashboard::DashState;
use crate::demo::{self, DemoOptions, Sink};
use crate::outln;
use crate::runtime::{MemoryRecords, NotificationSink, Publisher, Runtime};
use anyhow::{Context, Result, anyhow};
use metaloop_core::Supervisor;
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::record::RecordBody;
use metaloop_core::supervisor::Notification;
use metaloop_core::time::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// `metaloop bench dashboard` options.
#[derive(clap::Args, Debug)]
pub struct BenchDashboardArgs {
    /// Cycles of demo history behind the overview (8,640 = 30 days at 5 minutes).
    #[arg(long, default_value_t = 8_640)]
    pub cycles: u64,
    /// Incident volume of the simulated spine while the history is made (the overview's cost
    /// does not depend on it; low makes the history quickly).
    #[arg(long, default_value = "low")]
    pub volume: String,
    /// Keep the demo's data here (a second run reuses it); default: a temporary directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Overview requests timed.
    #[arg(long, default_value_t = 30)]
    pub requests: usize,
}

struct NoPublish;

impl Publisher for NoPublish {
    fn publish(&mut self, _: DirectiveMessage) -> crate::runtime::BoxFuture<Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

struct NoNotes;

impl NotificationSink for NoNotes {
    fn notify(&mut self, _: Notification) {}
}

/// Runs the benchmark and prints its figures.
pub async fn exec(args: BenchDashboardArgs) -> Result<()> {
    if args.cycles == 0 || args.requests == 0 {
        anyhow::bail!("--cycles and --requests must be at least 1");
    }
    let volume: metaloop_sim::Volume = args.volume.parse().map_err(|e| anyhow!("--volume: {e}"))?;
    let (data, _tmp) = match &args.data {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("metaloop-bench-dashboard-")
                .tempdir()
                .context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let opts = DemoOptions {
        cycles: args.cycles,
        fast: true,
        auto_approve_as: Some("ops".into()),
        spine: metaloop_sim::SpineOptions::for_volume(volume),
        ..DemoOptions::new(metaloop_sim::Scenario::Seed, 1)
    };
    // the history: the demo, run (or resumed) to the last cycle
    let started = std::time::Instant::now();
    let ledger = demo::open_ledger(&data, None).await?;
    let report = demo::run(
        &opts,
        Sink::Ledger(ledger),
        Arc::new(AtomicBool::new(false)),
        None,
    )
    .await?;
    eprintln!(
        "demo history: {} cycles, {} directives, {} ledger records in {:.1} s ({})",
        report.cycles.len(),
        report.directives.len(),
        report.ledger.records,
        started.elapsed().as_secs_f64(),
        data.display()
    );

    // the supervisor and the history, rebuilt from the ledger as a restart would
    let ledger = demo::open_ledger(&data, None).await?;
    let records = ledger
        .store
        .read_all()
        .await
        .context("reading the ledger")?;
    let history = crate::history::History::new();
    history.observe_all(records.iter().map(|r| {
        (
            Timestamp(r.time_ms),
            r.action.as_str(),
            r.resource.as_str(),
            &r.payload,
        )
    }));
    let mut bodies = Vec::new();
    for r in records.iter().filter(|r| r.actor != demo::DEMO_ACTOR) {
        bodies.push((
            Timestamp(r.time_ms),
            RecordBody::from_entry(&r.action, &r.payload)
                .with_context(|| format!("decoding record {}", r.seq))?,
        ));
    }
    let last = bodies.last().map_or(Timestamp(0), |(t, _)| *t);
    let sup = Supervisor::restore(opts.supervisor_config(), &bodies, last)
        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
    let (runtime, _task) =
        Runtime::start(sup, MemoryRecords(Arc::default()), NoPublish, NoNotes).await?;
    let api = ApiState {
        runtime,
        tokens: Arc::new(Tokens::default()),
        ledger: ledger.store.clone(),
        snapshots: Default::default(),
        ingest: None,
        clock: Arc::new(move || last),
        metrics: None,
        history,
        truth: None,
        checkpoint_key: metaloop_ledger::keys::load_public_key(&ledger.public_key_file).ok(),
        role: Default::default(),
        reload: None,
        drive_clock: None,
    };
    let dash = DashState::new(api);
    let session = dash
        .sessions
        .open(Principal {
            name: "bench".into(),
            roles: vec![Role::Viewer],
        })
        .map_err(|e| anyhow!("no randomness: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app: axum::Router = crate::dashboard::router_with(dash);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // the overview, requested again and again
    let http = crate::http::client();
    let mut server_ms = Vec::with_capacity(args.requests);
    let mut bytes = 0;
    for i in 0..=args.requests {
        let resp = http
            .get(format!("{base}/"))
            .header("cookie", format!("metaloop_session={session}"))
            .send()
            .await
            .context("requesting the overview")?;
        if !resp.status().is_success() {
            anyhow::bail!("the overview answered {}", resp.status());
        }
        let timing = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("app;dur="))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("no Server-Timing header"))?;
        let body = resp.text().await?;
        if !body.contains("class=\"chart\"") {
            anyhow::bail!("the overview has no chart");
        }
        bytes = body.len();
        if i > 0 {
            // the first request warms caches; it is not counted
            server_ms.push(timing);
        }
    }
    server.abort();
    server_ms.sort_by(f64::total_cmp);
    let q = |p: f64| server_ms[((server_ms.len() - 1) as f64 * p).round() as usize];
    outln!(
        "dashboard overview of {} cycles ({} directives, {} ledger records): server time median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} requests; page {:.0} KiB (target: under 200 ms)",
        report.cycles.len(),
        report.directives.len(),
        report.ledger.records,
        q(0.5),
        q(0.95),
        server_ms.last().copied().unwrap_or_default(),
        server_ms.len(),
        bytes as f64 / 1024.0
    );
    Ok(())
}
