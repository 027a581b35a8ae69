//! Opening the ledger a supervisor writes: the store (SQLite file or PostgreSQL URL), the
//! group-commit writer, and the supervisor's signing key for checkpoints.

use anyhow::{Context, Result, bail};
use metaloop_ledger::{
    Checkpoint, LedgerStore, LedgerWriter, PgLedger, SqliteLedger, WriterOptions, keys,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The ledger record of a supervisor's entry.
pub fn new_record(e: metaloop_core::record::Entry) -> metaloop_ledger::NewRecord {
    metaloop_ledger::NewRecord::new(
        e.time.millis(),
        e.actor,
        e.action,
        e.resource,
        e.payload.into_value(),
    )
}

/// A ledger opened for appending.
#[derive(Clone)]
pub struct OpenLedger {
    /// For reads (API, reports, verification).
    pub store: Arc<dyn LedgerStore>,
    /// For appends: one writer task, group commit, signed checkpoints.
    pub writer: LedgerWriter,
    /// Where it lives, for humans.
    pub location: String,
    /// The public key checkpoints are signed with, as written next to the secret key.
    pub public_key_file: PathBuf,
}

/// Where a ledger is: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl LedgerLocation {
    /// From `sqlite://PATH`, `postgres://…` or a plain path.
    pub fn parse(url: &str) -> LedgerLocation {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            LedgerLocation::Postgres(url.to_string())
        } else {
            LedgerLocation::Sqlite(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
    }

    /// Opens the store for appending (creating a SQLite file and its schema if absent).
    pub async fn open(&self) -> Result<Arc<dyn LedgerStore>> {
        Ok(match self {
            LedgerLocation::Sqlite(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                Arc::new(
                    SqliteLedger::open(p)
                        .await
                        .with_context(|| format!("opening ledger {}", p.display()))?,
                )
            }
            LedgerLocation::Postgres(url) => Arc::new(
                PgLedger::connect(url)
                    .await
                    .with_context(|| format!("connecting to ledger {}", redact(url)))?,
            ),
        })
    }

    /// Opens the store for reading only (verification, show, explain).
    pub async fn open_readonly(&self) -> Result<Arc<dyn LedgerStore>> {
        Ok(match self {
            LedgerLocation::Sqlite(p) => Arc::new(SqliteLedger::open_readonly(p).await?),
            LedgerLocation::Postgres(url) => Arc::new(PgLedger::connect_readonly(url).await?),
        })
    }

    /// For humans, without a password.
    pub fn describe(&self) -> String {
        match self {
            LedgerLocation::Sqlite(p) => p.display().to_string(),
            LedgerLocation::Postgres(u) => redact(u),
        }
    }
}

/// A URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Loads the supervisor's key, creating it (mode 0600) on first start, and writes its public
/// half next to it (`.pub`, and as a C2SP verifier key, `.vkey`). Refuses to create a new key for a ledger that already holds
/// checkpoints: they could never be verified again.
pub async fn supervisor_key(
    key_file: &Path,
    store: &dyn LedgerStore,
) -> Result<ed25519_dalek::SigningKey> {
    if !key_file.exists() && store.latest_checkpoint().await?.is_some() {
        bail!(
            "{} is missing but the ledger holds checkpoints signed by the supervisor's key: restore the key file (a new key would make every earlier checkpoint fail verification)",
            key_file.display()
        );
    }
    if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = keys::load_or_generate(key_file)?;
    let public = public_key_file(key_file);
    let current = keys::load_public_key(&public).ok();
    if current != Some(key.verifying_key()) {
        keys::write_public_key(&public, &key.verifying_key())
            .with_context(|| format!("writing {}", public.display()))?;
    }
    // The same key as a C2SP verifier key, for signed-note tooling and witnesses.
    let vkey_file = verifier_key_file(key_file);
    let vkey = format!(
        "{}\n",
        metaloop_ledger::note::ledger_verifier(&key.verifying_key()).to_vkey()
    );
    if std::fs::read_to_string(&vkey_file).ok().as_deref() != Some(vkey.as_str()) {
        std::fs::write(&vkey_file, vkey)
            .with_context(|| format!("writing {}", vkey_file.display()))?;
    }
    Ok(key)
}

/// `supervisor.key` → `supervisor.vkey`.
pub fn verifier_key_file(key_file: &Path) -> PathBuf {
    key_file.with_extension("vkey")
}

/// `supervisor.key` → `supervisor.pub`.
pub fn public_key_file(key_file: &Path) -> PathBuf {
    key_file.with_extension("pub")
}

/// Opens a ledger for a supervisor: store, key, writer with checkpoints every
/// `every_records` records or `interval`, and at shutdown; `on_checkpoint` hears each one.
pub async fn open_for_supervisor(
    location: &LedgerLocation,
    key_file: &Path,
    every_records: u64,
    interval: Duration,
    on_checkpoint: impl FnMut(&Checkpoint) + Send + 'static,
) -> Result<OpenLedger> {
    let store = location.open().await?;
    let key = supervisor_key(key_file, store.as_ref()).await?;
    let writer = LedgerWriter::spawn(
        store.clone(),
        WriterOptions::new()
            .signing_key(key)
            .checkpoint_every(every_records)
            .checkpoint_interval(interval)
            .on_checkpoint(on_checkpoint),
    )
    .await
    .context("starting the ledger writer")?;
    Ok(OpenLedger {
        store,
        writer,
        location: location.describe(),
        public_key_file: public_key_file(key_file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_redaction() {
        assert_eq!(
            LedgerLocation::parse("sqlite:///tmp/x.db"),
            LedgerLocation::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            LedgerLocation::parse("data/ledger.db"),
            LedgerLocation::Sqlite("data/ledger.db".into())
        );
        assert!(matches!(
            LedgerLocation::parse("postgres://u@h/db"),
            LedgerLocation::Postgres(_)
        ));
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn the_verifier_key_is_written_beside_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = metaloop_ledger::SqliteLedger::open(dir.path().join("ledger.db"))
            .await
            .unwrap();
        let key_file = dir.path().join("supervisor.key");
        let key = supervisor_key(&key_file, &store).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("supervisor.vkey")).unwrap();
        let vkey = metaloop_ledger::note::NoteVerifier::parse(text.trim()).unwrap();
        assert_eq!(vkey.key, key.verifying_key());
        assert_eq!(
            vkey.name,
            metaloop_ledger::note::ledger_origin(&key.verifying_key())
        );
        assert_eq!(vkey.kind, metaloop_ledger::note::TYPE_ED25519);
    }
}
