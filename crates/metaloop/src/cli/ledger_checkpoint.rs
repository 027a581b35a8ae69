//! `metaloop ledger checkpoint`: a stored checkpoint as its C2SP signed note (with the
//! witnesses' cosignatures stored beside it), and `metaloop ledger cosign`: ask witnesses to
//! cosign the newest checkpoint now.

use metaloop_ledger::note::{CheckpointNote, Note, origin_for_key_id};
use metaloop_ledger::{Checkpoint, LedgerStore};

use crate::ledger_cmd::{LedgerCmdError, Target, open, open_writable};

/// The checkpoint at `seq` (the newest by default) as a signed note.
pub async fn exec(target: &Target, seq: Option<u64>) -> Result<String, LedgerCmdError> {
    let ledger = open(target).await?;
    let cp = pick(ledger.as_ref(), seq).await?;
    let signatures = signatures_of(ledger.as_ref(), cp.seq).await?;
    let origin = origin_for_key_id(&cp.key_id);
    let text = CheckpointNote {
        origin: origin.clone(),
        size: cp.seq,
        root: cp.merkle_root,
    }
    .text();
    if !signatures.iter().any(|s| s.name == origin) {
        return Err(LedgerCmdError::Usage(format!(
            "checkpoint {} has no signed-note signature (it was made before checkpoints were \
             also signed as notes); the next checkpoint will have one",
            cp.seq
        )));
    }
    Ok(Note { text, signatures }.format())
}

async fn pick(ledger: &dyn LedgerStore, seq: Option<u64>) -> Result<Checkpoint, LedgerCmdError> {
    let store_error =
        |e: metaloop_ledger::LedgerError| LedgerCmdError::Other(anyhow::Error::new(e));
    match seq {
        Some(seq) => metaloop_ledger::checkpoint_at(ledger, seq)
            .await
            .map_err(|e| match e {
                metaloop_ledger::ProveError::Store(s) => store_error(s),
                other => LedgerCmdError::Usage(other.to_string()),
            }),
        None => ledger
            .latest_checkpoint()
            .await
            .map_err(store_error)?
            .ok_or_else(|| LedgerCmdError::Usage("the ledger has no checkpoint yet".into())),
    }
}

async fn signatures_of(
    ledger: &dyn LedgerStore,
    seq: u64,
) -> Result<Vec<metaloop_ledger::note::NoteSignature>, LedgerCmdError> {
    let page = ledger
        .note_signatures(seq - 1, 1_000)
        .await
        .map_err(|e| LedgerCmdError::Other(anyhow::Error::new(e)))?;
    Ok(page
        .into_iter()
        .take_while(|(s, _)| *s == seq)
        .map(|(_, sig)| sig)
        .collect())
}

/// Sends the newest checkpoint to the witness at `url` (verifier key `vkey`) and stores its
/// cosignature; needs the supervisor's secret key (the data directory's `supervisor.key`).
pub async fn cosign(
    target: &Target,
    key_file: &std::path::Path,
    url: &str,
    vkey: &str,
) -> Result<String, LedgerCmdError> {
    let witness_key = crate::cli::witness::read_vkey(vkey)
        .map_err(|e| LedgerCmdError::Usage(format!("--witness {e:#}")))?;
    let witness = crate::cosign::Witness::new(url, &witness_key.to_vkey())
        .map_err(|e| LedgerCmdError::Usage(format!("{e:#}")))?;
    let key = metaloop_ledger::keys::load_secret_key(key_file)
        .map_err(|e| LedgerCmdError::Usage(format!("{e}")))?;
    let ledger = open_writable(target).await?;
    let cp = pick(ledger.as_ref(), None).await?;
    if cp.key_id != metaloop_ledger::checkpoint::key_id(&key.verifying_key()) {
        return Err(LedgerCmdError::Usage(format!(
            "the newest checkpoint is signed by key {}, not by {}",
            cp.key_id,
            key_file.display()
        )));
    }
    let mut cosigner = crate::cosign::Cosigner::new(ledger.clone(), key, vec![witness]);
    let outcome = cosigner.submit(&cp).await;
    ledger.close().await;
    match outcome.into_iter().next() {
        Some((name, Ok(size))) => Ok(format!("witness {name} cosigned checkpoint {size}")),
        // A refusal says the ledger is not what the witness saw (exit 3); anything else is
        // an error reaching it (exit 1).
        Some((name, Err(e))) if e.downcast_ref::<crate::cosign::Refused>().is_some() => {
            Err(LedgerCmdError::Tampered(format!(
                "witness {name} refused to cosign checkpoint {}: {e:#}",
                cp.seq
            )))
        }
        Some((name, Err(e))) => Err(LedgerCmdError::Other(
            e.context(format!("witness {name}: cosigning checkpoint {}", cp.seq)),
        )),
        None => Err(LedgerCmdError::Usage("no witness".into())),
    }
}
