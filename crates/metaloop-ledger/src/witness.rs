//! A transparency-log witness (c2sp.org/tlog-witness): checks each new checkpoint of the logs
//! it knows against the last one it cosigned, with the consistency proof the log sends, and
//! cosigns it (c2sp.org/tlog-cosignature) only if the log only grew.
//!
//! This module is the protocol without I/O: [`AddCheckpoint::parse`] reads a request body,
//! [`WitnessState::add_checkpoint`] decides the answer and updates the state, and the caller
//! persists the state before answering (`metaloop witness` does, under one lock, so that two
//! requests cannot roll the state back). [`add_checkpoint_body`] and [`parse_cosignatures`]
//! are the log's side.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hex;
use crate::merkle::{Hash, empty_root, verify_consistency};
use crate::note::{CheckpointNote, Note, NoteSignature, NoteSigner, NoteVerifier, base64};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// An `add-checkpoint` request: the size the log believes the witness has, a consistency
/// proof from it, and the new checkpoint as a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The tree size of the previous checkpoint the witness cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint, signed by the log (and possibly others).
    pub note: Note,
    /// The checkpoint's text, parsed.
    pub checkpoint: CheckpointNote,
}

/// The witness's answer: an HTTP status, a content type and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Parses a decimal without leading zeros (`0` for zero).
fn parse_size(text: &str) -> Option<u64> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    ok.then(|| text.parse().ok()).flatten()
}

impl AddCheckpoint {
    /// Parses a request body; the error is the reason for a 400.
    pub fn parse(body: &str) -> Result<Self, String> {
        let (head, note) = body
            .split_once("\n\n")
            .ok_or("the body has no blank line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines.next().unwrap_or_default();
        let old_size = old
            .strip_prefix("old ")
            .and_then(parse_size)
            .ok_or_else(|| format!("the first line {old:?} is not `old <size>`"))?;
        let proof = lines
            .map(|line| {
                base64::decode(line)
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or_else(|| format!("proof line {line:?} is not a base64 hash"))
            })
            .collect::<Result<Vec<Hash>, String>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(format!("more than {MAX_PROOF_LINES} proof lines"));
        }
        let note = Note::parse(note).map_err(|e| e.to_string())?;
        let checkpoint = CheckpointNote::parse(&note.text).map_err(|e| e.to_string())?;
        Ok(Self {
            old_size,
            proof,
            note,
            checkpoint,
        })
    }
}

/// The body of an `add-checkpoint` request.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], signed_note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for h in proof {
        body.push_str(&base64::encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(signed_note);
    body
}

/// The cosignatures in a witness's `200` answer that `witness` made over `checkpoint_text`;
/// other lines are ignored, a line of the witness that does not verify is an error.
pub fn parse_cosignatures(
    body: &str,
    checkpoint_text: &str,
    witness: &NoteVerifier,
) -> Result<Vec<NoteSignature>, String> {
    let mut out = Vec::new();
    for line in body.split_terminator('\n') {
        let sig = NoteSignature::parse_line(line).map_err(|e| e.to_string())?;
        if sig.name != witness.name || sig.id != witness.id {
            continue;
        }
        if !witness.verify(checkpoint_text, &sig) {
            return Err(format!(
                "the cosignature of {} does not verify over the checkpoint sent",
                witness.name
            ));
        }
        out.push(sig);
    }
    if out.is_empty() {
        return Err(format!(
            "no cosignature from {} in the answer",
            witness.name
        ));
    }
    Ok(out)
}

/// What the witness remembers of one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    /// Tree size.
    pub size: u64,
    /// Root hash, 64 hex digits.
    pub root: String,
    /// The checkpoint as signed by the log, with the witness's cosignature.
    pub note: String,
}

/// Everything a witness persists: per origin, the latest checkpoint cosigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    /// By origin.
    pub logs: BTreeMap<String, LogState>,
}

impl WitnessState {
    /// Handles an `add-checkpoint` request body at `now` (POSIX seconds): checks it as
    /// c2sp.org/tlog-witness requires and, if it passes, records the checkpoint and answers
    /// with the cosignature. `logs` are the trusted log keys (name = origin).
    pub fn add_checkpoint(
        &mut self,
        body: &str,
        logs: &[NoteVerifier],
        witness: &NoteSigner,
        now: u64,
    ) -> Response {
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(why) => return Response::text(400, why),
        };
        let origin = &req.checkpoint.origin;
        let trusted: Vec<NoteVerifier> =
            logs.iter().filter(|v| v.name == *origin).cloned().collect();
        if trusted.is_empty() {
            return Response::text(404, format!("unknown log origin {origin:?}"));
        }
        let verified = match req.note.verify(&trusted) {
            Ok(v) => v.into_iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
            Err(e) => return Response::text(403, e.to_string()),
        };
        let size = req.checkpoint.size;
        if req.old_size > size {
            return Response::text(
                400,
                format!(
                    "old size {} is larger than the checkpoint's {size}",
                    req.old_size
                ),
            );
        }
        let latest = self.logs.get(origin);
        let latest_size = latest.map_or(0, |l| l.size);
        if req.old_size != latest_size {
            return Response {
                status: 409,
                content_type: "text/x.tlog.size",
                body: format!("{latest_size}\n"),
            };
        }
        if size == 0 && req.checkpoint.root != empty_root() {
            return Response::text(
                422,
                "a checkpoint of size 0 must have the empty tree's root",
            );
        }
        let old_root = match latest {
            Some(l) => match hex::decode_hash(&l.root) {
                Some(r) => r,
                None => return Response::text(500, "the witness's stored root is unreadable"),
            },
            None => empty_root(),
        };
        if req.old_size == 0 && !req.proof.is_empty() {
            return Response::text(422, "a proof from size 0 must be empty");
        }
        if req.old_size == size && req.checkpoint.root != old_root {
            return Response::text(
                422,
                format!("the root at size {size} differs from the one cosigned: a fork"),
            );
        }
        if req.old_size > 0
            && !verify_consistency(
                req.old_size,
                size,
                &old_root,
                &req.checkpoint.root,
                &req.proof,
            )
        {
            return Response::text(
                422,
                format!(
                    "the consistency proof from {} to {size} does not verify: the log was \
                     rewritten or forked",
                    req.old_size
                ),
            );
        }
        let text = req.checkpoint.text();
        let cosignature = witness.sign(&text, now.max(1));
        let mut kept = Note {
            text,
            signatures: verified,
        };
        kept.signatures.push(cosignature.clone());
        self.logs.insert(
            origin.clone(),
            LogState {
                size,
                root: hex::encode(&req.checkpoint.root),
                note: kept.format(),
            },
        );
        Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: cosignature.line(),
        }
    }

    /// The `GET <origin hash>/checkpoint` answer: the latest cosigned checkpoint of the log
    /// whose origin hashes (SHA-256, lower-case hex) to `origin_hash`.
    pub fn latest(&self, origin_hash: &str) -> Response {
        match self
            .logs
            .iter()
            .find(|(origin, _)| origin_hash_hex(origin) == origin_hash)
        {
            Some((_, log)) => Response {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: log.note.clone(),
            },
            None => Response::text(404, "no checkpoint cosigned for this log"),
        }
    }
}

/// SHA-256 of an origin, lower-case hex: its path on a witness's monitoring prefix.
pub fn origin_hash_hex(origin: &str) -> String {
    hex::encode(&Sha256::digest(origin.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, root};
    use ed25519_dalek::SigningKey;

    fn leaves(n: usize) -> Vec<[u8; 1]> {
        (0..n).map(|i| [i as u8]).collect()
    }

    fn signed(log: &NoteSigner, size: usize, leaves: &[[u8; 1]]) -> String {
        let cp = CheckpointNote {
            origin: log.verifier().name.clone(),
            size: size as u64,
            root: root(&leaves[..size]),
        };
        Note {
            text: cp.text(),
            signatures: vec![log.sign(&cp.text(), 0)],
        }
        .format()
    }

    #[test]
    fn the_witness_follows_the_protocol() {
        let log = NoteSigner::ed25519("example.com/log", SigningKey::from_bytes(&[1; 32])).unwrap();
        let w = NoteSigner::cosigner("example.com/w", SigningKey::from_bytes(&[2; 32])).unwrap();
        let logs = [log.verifier().clone()];
        let data = leaves(20);
        let mut state = WitnessState::default();
        let first = add_checkpoint_body(0, &[], &signed(&log, 5, &data));
        let r = state.add_checkpoint(&first, &logs, &w, 100);
        assert_eq!(r.status, 200, "{}", r.body);
        let cp5 = CheckpointNote::parse(&signed(&log, 5, &data)[..]).err();
        assert!(cp5.is_some(), "a whole note is not a checkpoint text");
        let text5 = Note::parse(&signed(&log, 5, &data)).unwrap().text;
        assert_eq!(
            parse_cosignatures(&r.body, &text5, w.verifier()).unwrap()[0].cosignature_time(),
            Some(100)
        );
        // The old size must be the one cosigned: 409 with the size.
        let r = state.add_checkpoint(&first, &logs, &w, 101);
        assert_eq!((r.status, r.body.as_str()), (409, "5\n"));
        assert_eq!(r.content_type, "text/x.tlog.size");
        // A consistent extension is cosigned.
        let proof = consistency_proof(&data, 5, 9).unwrap();
        let next = add_checkpoint_body(5, &proof, &signed(&log, 9, &data));
        assert_eq!(state.add_checkpoint(&next, &logs, &w, 102).status, 200);
        // Leaves after the cosigned size may be anything: 9 → 12 is cosigned.
        let mut fork = data.clone();
        fork[10] = [99];
        let proof = consistency_proof(&fork, 9, 12).unwrap();
        let forked = add_checkpoint_body(9, &proof, &signed(&log, 12, &fork));
        assert_eq!(state.add_checkpoint(&forked, &logs, &w, 103).status, 200);
        let mut other = data.clone();
        other[3] = [77];
        let proof = consistency_proof(&other, 12, 14).unwrap();
        let rewritten = add_checkpoint_body(12, &proof, &signed(&log, 14, &other));
        // A ledger whose leaf 3 changed is refused with 422, and the state stays at 12.
        let r = state.add_checkpoint(&rewritten, &logs, &w, 104);
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(state.logs["example.com/log"].size, 12);
        // Unknown origin 404, another key 403, old > size 400.
        let stranger =
            NoteSigner::ed25519("example.com/x", SigningKey::from_bytes(&[3; 32])).unwrap();
        let r = state.add_checkpoint(
            &add_checkpoint_body(0, &[], &signed(&stranger, 3, &data)),
            &logs,
            &w,
            105,
        );
        assert_eq!(r.status, 404);
        let impostor =
            NoteSigner::ed25519("example.com/log", SigningKey::from_bytes(&[4; 32])).unwrap();
        let r = state.add_checkpoint(
            &add_checkpoint_body(12, &[], &signed(&impostor, 12, &fork)),
            &logs,
            &w,
            106,
        );
        assert_eq!(r.status, 403);
        let r = state.add_checkpoint(
            &add_checkpoint_body(13, &[], &signed(&log, 12, &fork)),
            &logs,
            &w,
            107,
        );
        assert_eq!(r.status, 400);
        // The same size with another root: 422.
        let r = state.add_checkpoint(
            &add_checkpoint_body(12, &[], &signed(&log, 12, &data)),
            &logs,
            &w,
            108,
        );
        assert_eq!(r.status, 422);
        // The monitoring view serves the latest cosigned checkpoint.
        let latest = state.latest(&origin_hash_hex("example.com/log"));
        let note = Note::parse(&latest.body).unwrap();
        assert!(note.verify(std::slice::from_ref(w.verifier())).is_ok());
        assert_eq!(CheckpointNote::parse(&note.text).unwrap().size, 12);
    }
}
