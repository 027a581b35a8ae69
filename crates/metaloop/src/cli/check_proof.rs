//! `metaloop ledger check-proof FILE --pubkey KEY`: checks an inclusion or consistency proof
//! offline, with nothing but the proof file and the supervisor's public key.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use metaloop_ledger::note::{NoteVerifier, TYPE_ED25519};
use metaloop_ledger::{ConsistencyProof, InclusionProof};

use crate::ledger_cmd::LedgerCmdError;

/// Reads the supervisor's public key: a `supervisor.pub` file, or a verifier key
/// (`supervisor.vkey`, the file or its text).
pub fn read_public_key(arg: &str) -> Result<VerifyingKey, LedgerCmdError> {
    let usage = |why: String| LedgerCmdError::Usage(format!("--pubkey {arg}: {why}"));
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(|e| usage(e.to_string()))?
    } else {
        arg.to_owned()
    };
    if text.starts_with(metaloop_ledger::keys::PUBLIC_KEY_TAG) {
        return metaloop_ledger::keys::load_public_key(path).map_err(|e| usage(e.to_string()));
    }
    let vkey = NoteVerifier::parse(text.trim()).map_err(|e| {
        usage(format!(
            "neither a metaloop public key file nor a verifier key ({e})"
        ))
    })?;
    if vkey.kind != TYPE_ED25519 {
        return Err(usage(format!(
            "verifier key {} is a witness's cosigner key, not the supervisor's",
            vkey.name
        )));
    }
    Ok(vkey.key)
}

/// Checks the proof in `file`; returns what it proves.
pub fn exec(file: &Path, pubkey: &str) -> Result<String, LedgerCmdError> {
    let key = read_public_key(pubkey)?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| LedgerCmdError::Usage(format!("reading {}: {e}", file.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LedgerCmdError::Usage(format!("{} is not JSON: {e}", file.display())))?;
    let not_a_proof = |kind: &str, e: serde_json::Error| {
        LedgerCmdError::Tampered(format!(
            "{} is not a well-formed {kind} proof: {e}",
            file.display()
        ))
    };
    if value.get("consistency_path").is_some() {
        let proof: ConsistencyProof =
            serde_json::from_value(value).map_err(|e| not_a_proof("consistency", e))?;
        proof
            .verify(&key)
            .map_err(|e| LedgerCmdError::Tampered(format!("the proof does not verify: {e}")))?;
        Ok(format!(
            "ok: the ledger signed at checkpoint {} extends the one signed at checkpoint {} \
             (records 1..={} unchanged)",
            proof.new_size, proof.old_size, proof.old_size
        ))
    } else {
        let proof: InclusionProof =
            serde_json::from_value(value).map_err(|e| not_a_proof("inclusion", e))?;
        proof
            .verify(&key)
            .map_err(|e| LedgerCmdError::Tampered(format!("the proof does not verify: {e}")))?;
        Ok(format!(
            "ok: record {} (hash {}) is in the ledger signed at checkpoint {}",
            proof.seq,
            metaloop_ledger::hex::encode(&proof.record_hash),
            proof.checkpoint.seq
        ))
    }
}
