//! `metaloop witness`: a transparency-log witness (c2sp.org/tlog-witness) for metaloop
//! ledgers, meant to run on another machine than the supervisor. It cosigns each checkpoint
//! that is consistent with the last one it cosigned for that ledger and keeps that one in a
//! state file; a rewritten, forked or truncated ledger then cannot get a cosignature.
//!
//! `POST /add-checkpoint` takes the protocol's request; `GET /<sha256(origin) in hex>/checkpoint`
//! serves the latest cosigned checkpoint (the monitoring view `ledger verify --witness-url`
//! reads).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metaloop_ledger::note::{NoteSigner, NoteVerifier};
use metaloop_ledger::witness::WitnessState;
use tokio::sync::Mutex;

/// `metaloop witness` options.
#[derive(clap::Args, Debug)]
pub struct WitnessArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub listen: String,
    /// The witness's name, its key name in cosignatures (e.g. witness.example.com/w1).
    #[arg(long)]
    pub name: String,
    /// The witness's secret key file (created, mode 0600, if missing); its verifier key is
    /// written beside it with the extension `.vkey`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where the witness keeps the latest checkpoint it cosigned per ledger (JSON).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// A ledger to witness: its verifier key (`supervisor.vkey`, the file or its text).
    #[arg(long = "log", value_name = "VKEY", required = true)]
    pub logs: Vec<String>,
}

struct Shared {
    signer: NoteSigner,
    logs: Vec<NoteVerifier>,
    state_file: PathBuf,
    /// Held from the check to the persisted update, so that no request rolls another back.
    state: Mutex<WitnessState>,
}

/// Reads a verifier key given as text or as the path of a file holding it.
pub fn read_vkey(arg: &str) -> Result<NoteVerifier> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    } else {
        arg.to_owned()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| anyhow!("{arg}: {e}"))
}

/// Runs the witness until Ctrl-C or SIGTERM.
pub async fn exec(args: WitnessArgs) -> Result<()> {
    let key = metaloop_ledger::keys::load_or_generate(&args.key)
        .with_context(|| format!("the witness key {}", args.key.display()))?;
    let signer = NoteSigner::cosigner(&args.name, key).map_err(|e| anyhow!("--name: {e}"))?;
    let vkey_file = args.key.with_extension("vkey");
    std::fs::write(&vkey_file, format!("{}\n", signer.verifier().to_vkey()))
        .with_context(|| format!("writing {}", vkey_file.display()))?;
    let logs = args
        .logs
        .iter()
        .map(|l| read_vkey(l))
        .collect::<Result<Vec<_>>>()?;
    let state = match std::fs::read_to_string(&args.state) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("reading the witness state {}", args.state.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => WitnessState::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.state.display())),
    };
    let shared = Arc::new(Shared {
        signer,
        logs,
        state_file: args.state.clone(),
        state: Mutex::new(state),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "witness {} listening on http://{addr}",
        shared.signer.verifier().name
    );
    println!("verifier key: {}", shared.signer.verifier().to_vkey());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn add_checkpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut state = shared.state.lock().await;
    let mut next = state.clone();
    let answer = next.add_checkpoint(body, &shared.logs, &shared.signer, now);
    if answer.status == 200 {
        // Persisted before answering; on failure nothing changes and nothing is cosigned.
        if let Err(e) = persist(&shared.state_file, &next) {
            tracing::error!(error = %format!("{e:#}"), "storing the witness state failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storing the witness state failed\n",
            )
                .into_response();
        }
        *state = next;
    } else {
        tracing::info!(status = answer.status, reason = %answer.body.trim_end(), "checkpoint not cosigned");
    }
    respond(answer)
}

async fn latest(
    State(shared): State<Arc<Shared>>,
    UrlPath(origin_hash): UrlPath<String>,
) -> Response {
    respond(shared.state.lock().await.latest(&origin_hash))
}

fn respond(r: metaloop_ledger::witness::Response) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response()
}

/// Writes the state to a temporary file, syncs it and renames it over `path`.
fn persist(path: &Path, state: &WitnessState) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    let temp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
