//! The log's side of c2sp.org/tlog-witness: send each new checkpoint, with a consistency
//! proof from the last size the witness cosigned, to the configured witnesses, and store the
//! cosignatures they return in the ledger beside the checkpoint.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ed25519_dalek::SigningKey;
use metaloop_ledger::note::{CheckpointNote, Note, NoteVerifier, ledger_signer};
use metaloop_ledger::witness::{add_checkpoint_body, parse_cosignatures};
use metaloop_ledger::{Checkpoint, LedgerStore, checkpoint_at, consistency_path};

/// A witness refused to cosign: it answered with an error status (a 409 after the retry,
/// a 422 for an inconsistent checkpoint, …).
#[derive(Debug, thiserror::Error)]
#[error("the witness answered {status}: {body}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// The answer's body.
    pub body: String,
}

/// One witness: where its submission prefix is and its cosigner key.
#[derive(Debug, Clone)]
pub struct Witness {
    /// The submission prefix, e.g. `http://witness.example:7380`.
    pub url: String,
    /// Its cosigner verifier key (type 0x04).
    pub key: NoteVerifier,
    /// The size it last cosigned, as far as this process knows.
    known_size: Option<u64>,
}

impl Witness {
    /// A witness at `url` with verifier key `vkey` (`name+id+base64`, signature type 0x04).
    pub fn new(url: &str, vkey: &str) -> Result<Self> {
        let key = NoteVerifier::parse(vkey).map_err(|e| anyhow!("witness key: {e}"))?;
        if key.kind != metaloop_ledger::note::TYPE_COSIGNATURE {
            bail!(
                "witness key {}: signature type 0x{:02x} is not an Ed25519 cosigner key (0x04)",
                key.name,
                key.kind
            );
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("witness url {url:?} must start with http:// or https://");
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            known_size: None,
        })
    }
}

/// Sends checkpoints to witnesses and stores their cosignatures.
pub struct Cosigner {
    store: Arc<dyn LedgerStore>,
    key: SigningKey,
    witnesses: Vec<Witness>,
    http: reqwest::Client,
}

impl Cosigner {
    /// A cosigner for the ledger in `store`, whose checkpoints `key` signs.
    pub fn new(store: Arc<dyn LedgerStore>, key: SigningKey, witnesses: Vec<Witness>) -> Self {
        let http = crate::http::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self {
            store,
            key,
            witnesses,
            http,
        }
    }

    /// Sends `checkpoint` to every witness; returns, per witness, its cosigned size or why
    /// it did not cosign.
    pub async fn submit(&mut self, checkpoint: &Checkpoint) -> Vec<(String, Result<u64>)> {
        let mut out = Vec::new();
        for i in 0..self.witnesses.len() {
            let name = self.witnesses[i].key.name.clone();
            let result = self.submit_to(i, checkpoint).await;
            match &result {
                Ok(size) => tracing::info!(witness = %name, size, "checkpoint cosigned"),
                Err(e) => {
                    tracing::warn!(witness = %name, error = %format!("{e:#}"), "a witness did not cosign the checkpoint")
                }
            }
            out.push((name, result));
        }
        out
    }

    async fn submit_to(&mut self, i: usize, checkpoint: &Checkpoint) -> Result<u64> {
        let origin = metaloop_ledger::note::ledger_origin(&self.key.verifying_key());
        let cp = CheckpointNote {
            origin,
            size: checkpoint.seq,
            root: checkpoint.merkle_root,
        };
        let text = cp.text();
        let note = Note {
            text: text.clone(),
            signatures: vec![ledger_signer(&self.key).sign(&text, 0)],
        }
        .format();
        let mut old = match self.witnesses[i].known_size {
            Some(size) => size,
            None => self.stored_size(i).await?,
        };
        // At most twice: a 409 tells the size the witness has; retry from it once.
        for attempt in 0..2 {
            if old > checkpoint.seq {
                bail!(
                    "the witness has cosigned {old} records, more than checkpoint {}: \
                     the ledger was truncated or this is another ledger",
                    checkpoint.seq
                );
            }
            let proof =
                if old == 0 {
                    Vec::new()
                } else {
                    let old_cp = checkpoint_at(self.store.as_ref(), old).await.with_context(|| {
                    format!("the witness has cosigned size {old}, which is not a checkpoint here")
                })?;
                    consistency_path(
                        self.store.as_ref(),
                        (old, old_cp.merkle_root),
                        (checkpoint.seq, checkpoint.merkle_root),
                    )
                    .await
                    .context("building the consistency proof")?
                };
            let w = &self.witnesses[i];
            let response = self
                .http
                .post(format!("{}/add-checkpoint", w.url))
                .body(add_checkpoint_body(old, &proof, &note))
                .send()
                .await
                .with_context(|| format!("sending the checkpoint to {}", w.url))?;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match status {
                200 => {
                    let sigs = parse_cosignatures(&body, &text, &w.key).map_err(|e| anyhow!(e))?;
                    self.store
                        .append_note_signatures(checkpoint.seq, sigs)
                        .await
                        .context("storing the cosignature")?;
                    self.witnesses[i].known_size = Some(checkpoint.seq);
                    return Ok(checkpoint.seq);
                }
                409 if attempt == 0 => {
                    old = body.trim_end().parse().with_context(|| {
                        format!("the witness answered 409 with {body:?}, not a size")
                    })?;
                    self.witnesses[i].known_size = Some(old);
                }
                _ => {
                    return Err(Refused {
                        status,
                        body: body.trim_end().to_owned(),
                    }
                    .into());
                }
            }
        }
        bail!("the witness kept answering 409")
    }

    /// The newest size the witness cosigned according to the ledger (0 if none).
    async fn stored_size(&self, i: usize) -> Result<u64> {
        let w = &self.witnesses[i].key;
        let mut after = 0;
        let mut newest = 0;
        loop {
            let page = self
                .store
                .note_signatures(after, 10_000)
                .await
                .context("reading the stored cosignatures")?;
            let Some((last, _)) = page.last() else { break };
            let last = *last;
            newest = page
                .iter()
                .filter(|(_, s)| s.name == w.name && s.id == w.id)
                .map(|(seq, _)| *seq)
                .fold(newest, u64::max);
            if page.len() < 10_000 || last == after {
                break;
            }
            after = last;
        }
        Ok(newest)
    }
}

/// Runs a cosigner over the checkpoints received on `checkpoints` until the channel closes.
pub fn spawn(
    mut cosigner: Cosigner,
    mut checkpoints: tokio::sync::mpsc::UnboundedReceiver<Checkpoint>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut cp) = checkpoints.recv().await {
            // Behind: only the newest checkpoint needs cosigning.
            while let Ok(newer) = checkpoints.try_recv() {
                cp = newer;
            }
            cosigner.submit(&cp).await;
        }
    })
}
