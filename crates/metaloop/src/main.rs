//! `metaloop`: the meta-loop supervisor.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use metaloop::demo::{self, DemoOptions, Sink};
use metaloop::ledger_cmd;
use metaloop::outln;
use metaloop_core::verify::Method;
use metaloop_sim::Scenario;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// mimalloc: the ledger's read and append paths allocate several small buffers per record,
/// and with the system allocator `malloc`/`free` took about a tenth of verification's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "metaloop",
    version,
    about = "The meta-loop supervisor: keeps an autonomous remediation spine honest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole loop against the simulated spine, embedded, on virtual time.
    Demo(DemoArgs),
    /// Inspect and verify the ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Goals vs KPIs at a glance, from a running daemon or demo.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// List, show, approve and reject directives on a running daemon or demo.
    Directives {
        #[command(subcommand)]
        command: DirectivesCommand,
    },
    /// List, register, enable and disable policies on a running daemon or demo.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// A transparency-log witness (c2sp.org/tlog-witness) for metaloop ledgers: cosigns each
    /// checkpoint consistent with the last one it cosigned.
    Witness(metaloop::cli::witness::WitnessArgs),
    /// The daemon: supervise a real spine (signed events in, directives out) per metaloop.toml.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Shadow mode: decide and record would-have directives, publish nothing (the same
        /// as `shadow = true` in the file).
        #[arg(long)]
        shadow: bool,
    },
    /// An ingest worker: reads the mesh beside the leader (one shared JetStream consumer),
    /// checks signatures and folds events into partial windows that the leader merges
    /// (docs/HA.md). Start as many as the event volume needs, on any machine.
    IngestWorker {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Its name in logs (default: worker-<pid>).
        #[arg(long)]
        name: Option<String>,
    },
    /// Key pairs for spine adapters.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the HTTP API's OpenAPI document.
    Openapi,
    /// Benchmarks that print figures and ratios.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Decision quality of each verification method against the simulator's ground truth:
    /// scenarios × volumes × seeds × methods, and an A/A harness.
    Evaluate(metaloop::cli::evaluate::EvaluateArgs),
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Test policies like code, and replay them over a recorded ledger.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run policy test files: input KPI series, expected directives and verdicts.
    Test(metaloop::cli::policy_test::Args),
    /// Replay a recorded ledger through candidate policies: what they would have decided,
    /// cycle by cycle, against what was decided.
    Backtest(metaloop::cli::policy_backtest::Args),
}

/// How to reach a running metaloop.
#[derive(clap::Args, Clone)]
struct ServerArgs {
    /// The server (default http://127.0.0.1:7171, or $METALOOP_SERVER).
    #[arg(long, env = "METALOOP_SERVER", default_value = "http://127.0.0.1:7171")]
    server: String,
    /// Bearer token (or $METALOOP_TOKEN).
    #[arg(long, env = "METALOOP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DirectivesCommand {
    /// Directives, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One directive with its whole lifecycle.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a directive waiting for approval.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Reject a directive waiting for approval; it is never published.
    Reject {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum PoliciesCommand {
    /// Policies with their track records.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Register (or replace) a policy from a JSON or TOML file.
    Register {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a policy.
    Enable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a policy.
    Disable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One policy with its state; with --history, every change to it (who, when, which
    /// fields), its enables and disables, track-record updates and resets.
    Show {
        id: String,
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Clear a policy's track record (admin), with a note saying why.
    Reset {
        id: String,
        #[arg(long)]
        note: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// CEL policy conditions: compiling N policies, and evaluating them all against a
    /// D-domain snapshot per cycle (p50/p99).
    Policies(metaloop::cli::bench_policies::Args),
    /// One supervisor cycle (snapshot → strategy → pipeline → alerts → summary) for a grid
    /// of domains × policies, with events ingested between cycles (p50/p99, growth ratios).
    Cycle(metaloop::cli::bench_cycle::Args),
    /// Events per second end to end through a `metaloop run` daemon on NATS, with the leader
    /// reading the mesh alone and with ingest workers (needs a NATS server).
    Ingest(metaloop::cli::bench_ingest::Args),
    /// The ledger: raw batched insert (no hashing), durable append with 1, 8 and 64
    /// concurrent writers, full verification, and the ratios between them.
    Ledger {
        /// Where: sqlite://DIR_OR_FILE (scratch files beside it) or postgres://… (scratch
        /// schemas). Default: SQLite in the temporary directory.
        #[arg(long)]
        ledger: Option<String>,
        /// Records inserted and verified.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Concurrent writers of the durable-append runs, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64",
              value_parser = clap::value_parser!(u16).range(1..=4096))]
        writers: Vec<u16>,
    },
    /// The mesh: Ed25519 verifications/s on one core, and end-to-end ingest through the
    /// in-process mesh and NATS, with the ratios.
    Mesh {
        /// Events per end-to-end run.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// NATS to measure against (default nats://127.0.0.1:4222); --no-nats skips it.
        #[arg(long)]
        nats: Option<String>,
        #[arg(long)]
        no_nats: bool,
    },
    /// The dashboard: the overview's server time for a demo history of 30 days of cycles.
    Dashboard(metaloop::cli::bench_dashboard::BenchDashboardArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an Ed25519 key pair for an adapter: OUT.key (secret, mode 0600) and OUT.pub,
    /// and print the [[adapters]] entry for metaloop.toml.
    Generate {
        /// Path prefix of the two files.
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
        /// The CloudEvents source the adapter will sign as.
        #[arg(long, default_value = "urn:spine:my-domain")]
        source: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a metaloop.toml; exit 2 naming the first problem.
    Check { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Metaloop,
    Fixed,
    Naive,
    ThresholdCount,
    Kayenta,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Scenario: seed, drift, noise, bad-directive, correlated, approver-away.
    #[arg(long, default_value = "seed")]
    scenario: String,
    /// Seed of the simulated spine and of directive ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run until this cycle (5 virtual minutes each).
    #[arg(long, default_value_t = 24)]
    cycles: u64,
    /// Run virtual time as fast as possible (default: one cycle per second, see --speed).
    #[arg(long)]
    fast: bool,
    /// Incident volume of the simulated spine: high (today's 9,600 an hour), medium (1/10) or
    /// low (1/100); below high the spine has a daily cycle and bursts.
    #[arg(long, default_value = "high", conflicts_with = "incidents_per_hour")]
    volume: String,
    /// Incidents an hour across the whole simulated spine (any number; every domain scaled in
    /// proportion); below 9,600 the spine has a daily cycle and bursts.
    #[arg(long, value_name = "N")]
    incidents_per_hour: Option<f64>,
    /// Cycles per wall-clock second when not --fast.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Directory for the ledger (default: a fresh temporary directory, named on stderr). A
    /// directory holding an interrupted run of the same options resumes it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// text: each cycle's summary on stdout; json: one JSON document on stdout at the end.
    #[arg(long, value_enum, default_value = "text")]
    report: ReportFormat,
    /// Let the simulated approver NAME approve directives that need approval.
    #[arg(long, value_name = "NAME")]
    auto_approve_as: Option<String>,
    /// Verification method: metaloop (statistics) or naive (the seed's rule, for comparison).
    #[arg(long, value_enum, default_value = "metaloop")]
    method: MethodArg,
    /// Environment the approval matrix applies to (default: the --config file's, else production).
    #[arg(long)]
    environment: Option<String>,
    /// Take goals, policies, the approval matrix, verification and alert settings from a
    /// metaloop.toml instead of the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve the HTTP API on ADDR (e.g. 127.0.0.1:7171) while the demo runs; API tokens are
    /// written to the data directory and named on stderr.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Run the simulated spine over NATS JetStream (nats://HOST:PORT): signed events and
    /// directives on the bus, as with any adapter. Default: in-process.
    #[arg(long, value_name = "URL")]
    mesh: Option<String>,
    /// Keep the ledger here instead of in the data directory: sqlite://PATH or
    /// postgres://…[?schema=NAME]. The supervisor's key stays in the data directory.
    #[arg(long, value_name = "URL")]
    ledger: Option<String>,
    /// Shadow mode: every decision is recorded as a would-have directive with an estimated
    /// verdict; nothing is published to the spine.
    #[arg(long)]
    shadow: bool,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every record's hash and link and every checkpoint; with --pubkey, checkpoint
    /// signatures too. Exit 3 at the first problem.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
        /// The supervisor's public key (supervisor.pub): checks checkpoint signatures, which
        /// is what detects a chain re-computed by someone without the key.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// A witness whose cosignature the ledger must carry: its verifier key (text or
        /// file, `name+id+key`, type 0x04). Repeatable.
        #[arg(long = "witness", value_name = "VKEY")]
        witnesses: Vec<String>,
        /// A witness's URL: its latest cosigned checkpoint is fetched and the ledger must
        /// contain it (detects a fork or truncation after the last stored cosignature).
        #[arg(long = "witness-url", value_name = "URL")]
        witness_urls: Vec<String>,
    },
    /// Print a checkpoint (the newest by default) as a C2SP signed note, with the stored
    /// witness cosignatures.
    Checkpoint {
        #[command(flatten)]
        target: TargetArgs,
        /// The checkpoint at this seq.
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Check an inclusion or consistency proof offline: nothing but the proof file and the
    /// supervisor's key. Exit 3 if it does not hold.
    CheckProof {
        /// The proof (JSON, as `ledger prove` prints it).
        file: PathBuf,
        /// The supervisor's public key: supervisor.pub, or supervisor.vkey (file or text).
        #[arg(long, value_name = "KEY")]
        pubkey: String,
    },
    /// Ask a witness to cosign the newest checkpoint now and store its cosignature.
    Cosign {
        #[command(flatten)]
        target: TargetArgs,
        /// The supervisor's secret key (default: supervisor.key in --data).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The witness's submission URL.
        #[arg(long = "witness-url", value_name = "URL")]
        url: String,
        /// The witness's verifier key (text or file).
        #[arg(long = "witness", value_name = "VKEY")]
        witness: String,
    },
    /// The whole story of one directive: trigger, policy, confidence, approvals, ack, verdict, rollback.
    Explain {
        /// The directive id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// The story as one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print records.
    Show {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// An inclusion proof of record SEQ against a signed checkpoint (the newest by default),
    /// or with --consistency OLD NEW a consistency proof between two checkpoints, as JSON;
    /// checked with --pubkey when given.
    Prove {
        /// The record to prove.
        #[arg(
            required_unless_present = "consistency",
            conflicts_with = "consistency"
        )]
        seq: Option<u64>,
        /// Prove that the ledger signed at checkpoint NEW extends the one at checkpoint OLD.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "checkpoint")]
        consistency: Option<Vec<u64>>,
        #[command(flatten)]
        target: TargetArgs,
        /// Prove against the checkpoint at this seq.
        #[arg(long)]
        checkpoint: Option<u64>,
        /// The supervisor's public key (supervisor.pub): check the proof and the checkpoint's
        /// signature before printing it.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
    },
}

/// Which ledger: a data directory, or a URL.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A data directory (its ledger.db).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A ledger URL: sqlite://PATH or postgres://…
    #[arg(long)]
    ledger: Option<String>,
}

impl TargetArgs {
    fn target(self) -> ledger_cmd::Target {
        match (self.data, self.ledger) {
            (Some(d), _) => ledger_cmd::Target::Data(d),
            (None, Some(u)) => ledger_cmd::Target::Url(u),
            (None, None) => unreachable!("clap requires one of --data and --ledger"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("METALOOP_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => run_demo(args).await,
            Command::Ledger { command } => run_ledger(command).await,
            Command::Config {
                command: ConfigCommand::Check { file },
            } => config_check(&file),
            Command::Run { config, shadow } => run_daemon(&config, shadow).await,
            Command::IngestWorker { config, name } => metaloop::workers::exec(&config, name).await,
            Command::Witness(args) => match metaloop::cli::witness::exec(args).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            },
            Command::Bench { command } => run_bench(command).await,
            Command::Evaluate(args) => {
                match tokio::task::spawn_blocking(move || metaloop::cli::evaluate::exec(&args))
                    .await
                {
                    Ok(Ok(_)) => 0,
                    Ok(Err(e)) => {
                        eprintln!("error: {e:#}");
                        2
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        1
                    }
                }
            }
            Command::Policy { command } => match command {
                PolicyCommand::Test(args) => metaloop::cli::policy_test::exec(&args) as u8,
                PolicyCommand::Backtest(args) => {
                    match metaloop::cli::policy_backtest::exec(&args).await {
                        Ok(code) => code as u8,
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            e.exit_code() as u8
                        }
                    }
                }
            },
            Command::Openapi => {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&metaloop::api::openapi::document())
                        .unwrap_or_default()
                );
                0
            }
            Command::Keys {
                command: KeysCommand::Generate { out, source },
            } => keys_generate(&out, &source),
            Command::Status { server, json } => client_call(&server, json, ClientOp::Status).await,
            Command::Directives { command } => match command {
                DirectivesCommand::List {
                    server,
                    status,
                    policy,
                    domain,
                    json,
                } => {
                    client_call(
                        &server,
                        json,
                        ClientOp::List {
                            status,
                            policy,
                            domain,
                        },
                    )
                    .await
                }
                DirectivesCommand::Show { id, server } => {
                    client_call(&server, true, ClientOp::Show(id)).await
                }
                DirectivesCommand::Approve { id, note, server } => {
                    client_call(
                        &server,
                        false,
                        ClientOp::Decide {
                            id,
                            note,
                            approve: true,
                        },
                    )
                    .await
                }
                DirectivesCommand::Reject { id, note, server } => {
                    client_call(
                        &server,
                        false,
                        ClientOp::Decide {
                            id,
                            note,
                            approve: false,
                        },
                    )
                    .await
                }
            },
            Command::Policies { command } => match command {
                PoliciesCommand::List { server, json } => {
                    client_call(&server, json, ClientOp::Policies).await
                }
                PoliciesCommand::Register { file, server } => {
                    client_call(&server, false, ClientOp::Register(file)).await
                }
                PoliciesCommand::Enable { id, server } => {
                    client_call(&server, false, ClientOp::Enable(id, true)).await
                }
                PoliciesCommand::Disable { id, server } => {
                    client_call(&server, false, ClientOp::Enable(id, false)).await
                }
                PoliciesCommand::Show {
                    id,
                    history,
                    server,
                    json,
                } => client_call(&server, json, ClientOp::ShowPolicy { id, history }).await,
                PoliciesCommand::Reset { id, note, server } => {
                    client_call(&server, false, ClientOp::Reset { id, note }).await
                }
            },
        }
    });
    ExitCode::from(code)
}

async fn run_demo(args: DemoArgs) -> u8 {
    let scenario: Scenario = match args.scenario.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --scenario: {e}");
            return 2;
        }
    };
    let volume = match args.incidents_per_hour {
        Some(n) if n.is_finite() && n >= 0.0 => metaloop_sim::Volume::PerHour(n),
        Some(n) => {
            eprintln!("error: --incidents-per-hour must be a finite number >= 0, got {n}");
            return 2;
        }
        None => match args.volume.parse::<metaloop_sim::Volume>() {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: --volume: {e}");
                return 2;
            }
        },
    };
    if let Some(m) = &args.mesh
        && !m.starts_with("nats://")
    {
        eprintln!("error: --mesh must be a nats://HOST:PORT URL, got {m:?}");
        return 2;
    }
    if args.cycles == 0 {
        eprintln!("error: --cycles must be at least 1");
        return 2;
    }
    if !(args.speed.is_finite() && args.speed > 0.0) {
        eprintln!(
            "error: --speed must be a positive number of cycles per second, got {}",
            args.speed
        );
        return 2;
    }
    if args
        .auto_approve_as
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        eprintln!("error: --auto-approve-as needs a non-empty name");
        return 2;
    }
    let json = matches!(args.report, ReportFormat::Json);
    let file_cfg = match &args.config {
        None => None,
        Some(path) => match metaloop::config::FileConfig::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    };
    let opts = DemoOptions {
        cycles: args.cycles,
        fast: args.fast,
        speed: args.speed,
        method: match args.method {
            MethodArg::Metaloop => Method::Metaloop,
            MethodArg::Fixed => Method::Fixed,
            MethodArg::Naive => Method::Naive,
            MethodArg::ThresholdCount => Method::ThresholdCount,
            MethodArg::Kayenta => Method::Kayenta,
        },
        environment: args
            .environment
            .clone()
            .or_else(|| file_cfg.as_ref().map(|c| c.environment.clone()))
            .unwrap_or_else(|| "production".into()),
        base: file_cfg.as_ref().map(|c| c.supervisor()),
        mesh: args.mesh.clone(),
        spine: metaloop_sim::SpineOptions::for_volume(volume),
        auto_approve_as: args.auto_approve_as,
        shadow: args.shadow,
        print_summaries: true,
        summaries_to_stderr: json,
        ..DemoOptions::new(scenario, args.seed)
    };
    if let Err(e) = opts.supervisor_config().validate() {
        eprintln!("error: invalid configuration: {e}");
        return 2;
    }
    let (data, _tmp) = match args.data {
        Some(d) => (d, None),
        None => match tempfile::Builder::new().prefix("metaloop-demo-").tempdir() {
            Ok(t) => {
                let p = t.path().to_path_buf();
                eprintln!(
                    "data directory: {} (temporary; pass --data DIR to keep it)",
                    p.display()
                );
                (p, Some(t))
            }
            Err(e) => {
                eprintln!("error: creating a temporary data directory: {e}");
                return 1;
            }
        },
    };
    let ledger = match demo::open_ledger(&data, args.ledger.as_deref()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let api = match args.listen {
        None => None,
        Some(listen) => match demo_tokens(&data) {
            Ok(tokens) => Some(demo::DemoApi {
                listen,
                tokens: Arc::new(tokens),
            }),
            Err(e) => {
                eprintln!("error: writing API tokens: {e:#}");
                return 1;
            }
        },
    };
    let report = match demo::run(&opts, Sink::Ledger(ledger), stop, api).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return if e.downcast_ref::<demo::ResumeMismatch>().is_some() {
                2
            } else {
                1
            };
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => outln!("{s}"),
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                return 1;
            }
        }
    } else {
        let t = &report.totals;
        outln!(
            "\n{} cycles, {} directives ({} verified, {} no effect, {} degraded, {} inconclusive, {} rolled back, {} expired), {} events ingested, {} rejected.",
            report.cycles.len(),
            t.directives,
            t.verified,
            t.no_effect,
            t.degraded,
            t.inconclusive,
            t.rolled_back,
            t.expired,
            t.events_ingested,
            t.events_rejected
        );
        outln!(
            "ledger: {} records, head {}",
            report.ledger.records,
            report.ledger.head
        );
    }
    0
}

async fn run_bench(command: BenchCommand) -> u8 {
    match command {
        BenchCommand::Policies(args) => metaloop::cli::bench_policies::exec(&args),
        BenchCommand::Cycle(args) => metaloop::cli::bench_cycle::exec(&args),
        BenchCommand::Ingest(args) => match metaloop::cli::bench_ingest::exec(&args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        BenchCommand::Dashboard(args) => match metaloop::cli::bench_dashboard::exec(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        BenchCommand::Ledger {
            ledger,
            records,
            writers,
        } => {
            let target = ledger.as_deref().map_or_else(
                metaloop_ledger::bench::BenchTarget::temporary,
                metaloop_ledger::bench::BenchTarget::parse,
            );
            let mut options = metaloop_ledger::bench::BenchOptions::new(records);
            options.writers = writers.into_iter().map(usize::from).collect();
            let progress = |step: &str| eprintln!("  {step}…");
            match metaloop_ledger::bench::run_with_progress(&target, &options, progress).await {
                Ok(report) => {
                    outln!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        BenchCommand::Mesh {
            events,
            nats,
            no_nats,
        } => {
            let mut options = metaloop_mesh::bench::BenchOptions {
                events,
                ..Default::default()
            };
            if no_nats {
                options.nats_url = None;
            } else if let Some(url) = nats {
                options.nats_url = Some(url);
            }
            let mut out = std::io::stdout();
            match metaloop_mesh::bench::run(&options, &mut out).await {
                Ok(_) => 0,
                Err(metaloop_mesh::bench::BenchError::Io(e)) => {
                    metaloop::cli::output::exit_on_write_error(&e)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}

async fn run_daemon(path: &std::path::Path, shadow: bool) -> u8 {
    let cfg = match metaloop::config::FileConfig::load(path) {
        Ok(mut c) => {
            c.shadow |= shadow;
            c
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match metaloop::daemon::run(cfg, Some(path.to_path_buf())).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn keys_generate(out: &std::path::Path, source: &str) -> u8 {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = metaloop_mesh::keys::generate_signing_key();
    let secret: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let public = metaloop_mesh::keys::public_key_hex(&key.verifying_key());
    let secret_path = out.with_extension("key");
    let public_path = out.with_extension("pub");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)?;
        writeln!(f, "{secret}")?;
        let mut p = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&public_path)?;
        writeln!(p, "{public}")?;
        Ok(())
    };
    if let Err(e) = write() {
        eprintln!(
            "error: writing {} / {}: {e} (existing key files are never overwritten)",
            secret_path.display(),
            public_path.display()
        );
        return if e.kind() == std::io::ErrorKind::AlreadyExists {
            2
        } else {
            1
        };
    }
    outln!(
        "secret key: {} (mode 0600; give it to the adapter only)",
        secret_path.display()
    );
    outln!("public key: {}", public_path.display());
    outln!(
        "\n# add to metaloop.toml:\n[[adapters]]\nsource = \"{source}\"\npublic_keys = [\"{public}\"]"
    );
    0
}

enum ClientOp {
    Status,
    List {
        status: Option<String>,
        policy: Option<String>,
        domain: Option<String>,
    },
    Show(String),
    Decide {
        id: String,
        note: String,
        approve: bool,
    },
    Policies,
    Register(PathBuf),
    Enable(String, bool),
    ShowPolicy {
        id: String,
        history: bool,
    },
    Reset {
        id: String,
        note: String,
    },
}

async fn client_call(server: &ServerArgs, json: bool, op: ClientOp) -> u8 {
    let token = match (&server.token, &server.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                eprintln!("error: --token-file {}: {e}", f.display());
                return 2;
            }
        },
        (None, None) => {
            eprintln!("error: no token: pass --token, --token-file or set METALOOP_TOKEN");
            return 2;
        }
    };
    let c = metaloop::client::Client::new(&server.server, &token);
    let result = match op {
        ClientOp::Status => c.get("/v1/status", &[]).await.map(|v| {
            if json {
                v.to_string()
            } else {
                metaloop::client::render_status(&v)
            }
        }),
        ClientOp::List {
            status,
            policy,
            domain,
        } => {
            let mut q = Vec::new();
            for (k, v) in [("status", status), ("policy", policy), ("domain", domain)] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            c.get("/v1/directives", &q).await.map(|v| {
                if json {
                    v.to_string()
                } else {
                    metaloop::client::render_directives(&v)
                }
            })
        }
        ClientOp::Show(id) => c
            .get(&format!("/v1/directives/{id}"), &[])
            .await
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()),
        ClientOp::Decide { id, note, approve } => {
            let verb = if approve { "approve" } else { "reject" };
            c.post(
                &format!("/v1/directives/{id}/{verb}"),
                &serde_json::json!({ "note": note }),
            )
            .await
            .map(|v| {
                format!(
                    "directive {} is now {}",
                    v["id"].as_str().unwrap_or(&id),
                    v["status"].as_str().unwrap_or("?")
                )
            })
        }
        ClientOp::Policies => c.get("/v1/policies", &[]).await.map(|v| {
            if json {
                v.to_string()
            } else {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{:<32} {:<8} track record {:.2} ({} verified, {} failed)\n",
                            p["policy"]["id"].as_str().unwrap_or("?"),
                            if p["policy"]["enabled"].as_bool() == Some(true) {
                                "enabled"
                            } else {
                                "disabled"
                            },
                            p["track_record_score"].as_f64().unwrap_or(0.0),
                            p["track_record"]["verified"],
                            p["track_record"]["failed"]
                        )
                    })
                    .collect()
            }
        }),
        ClientOp::Register(file) => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return 2;
                }
            };
            let parsed: Result<serde_json::Value, String> =
                if file.extension().is_some_and(|e| e == "toml") {
                    toml::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string())
                } else {
                    serde_json::from_str(&text).map_err(|e| e.to_string())
                };
            let body = match parsed {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return 2;
                }
            };
            c.post("/v1/policies", &body)
                .await
                .map(|v| format!("registered policy {}", v["registered"]))
        }
        ClientOp::ShowPolicy { id, history } => {
            let all = c.get("/v1/policies", &[]).await;
            let one = all.and_then(|v| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["policy"]["id"].as_str() == Some(id.as_str()))
                    .cloned()
                    .ok_or_else(|| {
                        metaloop::client::ClientError::Refused(format!("unknown policy {id}"))
                    })
            });
            match (one, history) {
                (Err(e), _) => Err(e),
                (Ok(p), false) if json => Ok(p.to_string()),
                (Ok(p), false) => Ok(serde_json::to_string_pretty(&p).unwrap_or_default()),
                (Ok(p), true) => c
                    .get(&format!("/v1/policies/{id}/history"), &[])
                    .await
                    .map(|h| {
                        if json {
                            serde_json::json!({ "policy": p, "history": h }).to_string()
                        } else {
                            format!(
                                "{}\n{}",
                                serde_json::to_string_pretty(&p).unwrap_or_default(),
                                metaloop::client::render_policy_history(&h)
                            )
                        }
                    }),
            }
        }
        ClientOp::Reset { id, note } => c
            .post(
                &format!("/v1/policies/{id}/reset"),
                &serde_json::json!({ "note": note }),
            )
            .await
            .map(|v| {
                format!(
                    "track record of {id} cleared (it had {} verified, {} failed, {} inconclusive)",
                    v["previous"]["verified"],
                    v["previous"]["failed"],
                    v["previous"]["inconclusive"]
                )
            }),
        ClientOp::Enable(id, on) => {
            let verb = if on { "enable" } else { "disable" };
            c.post(&format!("/v1/policies/{id}/{verb}"), &serde_json::json!({}))
                .await
                .map(|_| format!("policy {id} {verb}d"))
        }
    };
    match result {
        Ok(text) => {
            outln!("{}", text.trim_end());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn config_check(file: &std::path::Path) -> u8 {
    match metaloop::config::FileConfig::load(file) {
        Ok(cfg) => {
            let sup = cfg.supervisor();
            outln!(
                "{}: ok — environment {}, cycle every {}s, {} goals, {} policies ({} enabled), {} adapters, {} tokens, ledger {}, mesh {}, listen {}",
                file.display(),
                cfg.environment,
                cfg.cycle_interval.0,
                sup.goals.len(),
                sup.policies.len(),
                sup.policies.iter().filter(|p| p.enabled).count(),
                cfg.adapters.len(),
                cfg.tokens.len(),
                cfg.ledger_url(),
                cfg.mesh.url,
                cfg.listen
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Three API tokens for a demo: `ops` (admin, approver), `ops2` (approver, so CRITICAL
/// directives can get their second approver) and `viewer` (sees, cannot act). Written with
/// mode 0600 into the data directory.
fn demo_tokens(data: &std::path::Path) -> anyhow::Result<metaloop::api::auth::Tokens> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut entries = Vec::new();
    for (name, roles) in [
        (
            "ops",
            vec![
                metaloop::config::Role::Admin,
                metaloop::config::Role::Approver,
            ],
        ),
        (
            "ops2",
            vec![
                metaloop::config::Role::Approver,
                metaloop::config::Role::Viewer,
            ],
        ),
        ("viewer", vec![metaloop::config::Role::Viewer]),
    ] {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let path = data.join(format!("api-token-{name}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(f, "{token}")?;
        eprintln!("API token for {name} ({roles:?}) in {}", path.display());
        let sha256 = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        entries.push(metaloop::config::TokenEntry {
            principal: name.into(),
            roles,
            sha256,
        });
    }
    metaloop::api::auth::Tokens::from_config(&entries).map_err(anyhow::Error::msg)
}

async fn run_ledger(command: LedgerCommand) -> u8 {
    let result = match command {
        LedgerCommand::Verify {
            target,
            pubkey,
            witnesses,
            witness_urls,
        } => {
            let target = target.target();
            let checks = ledger_cmd::WitnessChecks {
                keys: witnesses,
                urls: witness_urls,
            };
            ledger_cmd::verify_with_witnesses(&target, pubkey.as_deref(), &checks, true).await.map(|v| {
                outln!("ledger ok: {} records verified, head {}", v.records, v.head);
                match v.last_checkpoint {
                    Some(seq) => outln!(
                        "{} signed checkpoint(s), the last at record {seq}; {} record(s) after it are covered by the hash chain only",
                        v.checkpoints, v.unsigned_tail
                    ),
                    None => outln!("no signed checkpoint yet: the records are covered by the hash chain only"),
                }
                if !v.signatures_checked {
                    let hint = target
                        .default_pubkey()
                        .map(|p| format!(" (e.g. --pubkey {})", p.display()))
                        .unwrap_or_default();
                    outln!("checkpoint signatures were not checked: pass --pubkey FILE{hint} to authenticate the chain");
                }
                if v.notes_checked > 0 {
                    println!("{} checkpoint note signature(s) checked", v.notes_checked);
                }
                for (name, seq) in &v.witnessed {
                    println!("witness {name} cosigned up to record {seq}");
                }
                if !v.witnessed.is_empty() {
                    println!(
                        "{} record(s) after the last witnessed checkpoint are not witnessed yet",
                        v.unwitnessed_tail
                    );
                    if v.witness_views.is_empty() {
                        println!("the witnesses' current views were not fetched: pass --witness-url URL to detect a fork or truncation after the last stored cosignature");
                    }
                }
                for view in &v.witness_views {
                    println!("the ledger contains the latest checkpoint cosigned by {view}");
                }
            })
        }
        LedgerCommand::Checkpoint { target, seq } => {
            metaloop::cli::ledger_checkpoint::exec(&target.target(), seq)
                .await
                .map(|note| print!("{note}"))
        }
        LedgerCommand::CheckProof { file, pubkey } => {
            metaloop::cli::check_proof::exec(&file, &pubkey).map(|ok| println!("{ok}"))
        }
        LedgerCommand::Cosign {
            target,
            key,
            url,
            witness,
        } => {
            let key = match (key, &target.data) {
                (Some(k), _) => Some(k),
                (None, Some(d)) => Some(d.join("supervisor.key")),
                (None, None) => None,
            };
            match key {
                None => Err(ledger_cmd::LedgerCmdError::Usage(
                    "--key FILE is needed with --ledger".into(),
                )),
                Some(key) => {
                    metaloop::cli::ledger_checkpoint::cosign(&target.target(), &key, &url, &witness)
                        .await
                        .map(|ok| println!("{ok}"))
                }
            }
        }
        LedgerCommand::Explain { id, target, json } => {
            ledger_cmd::explain(&target.target(), &id, json).await
        }
        LedgerCommand::Show {
            target,
            from,
            actor,
            action,
            json,
        } => {
            ledger_cmd::show(
                &target.target(),
                from,
                actor.as_deref(),
                action.as_deref(),
                json,
            )
            .await
        }
        LedgerCommand::Prove {
            consistency: Some(sizes),
            target,
            pubkey,
            ..
        } => ledger_cmd::prove_consistency(&target.target(), sizes[0], sizes[1], pubkey.as_deref())
            .await
            .map(|proof| {
                println!("{proof}");
                if pubkey.is_some() {
                    eprintln!(
                        "the proof verifies: checkpoint {} extends checkpoint {}",
                        sizes[1], sizes[0]
                    );
                }
            }),
        LedgerCommand::Prove {
            seq,
            target,
            checkpoint,
            pubkey,
            ..
        } => {
            let seq = seq.unwrap_or_default();
            ledger_cmd::prove(&target.target(), seq, checkpoint, pubkey.as_deref())
            .await
            .map(|proof| {
                outln!("{proof}");
                if pubkey.is_some() {
                    eprintln!(
                        "the proof verifies: record {seq} is included under the signed checkpoint"
                    );
                }
            })
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            e.exit_code() as u8
        }
    }
}
