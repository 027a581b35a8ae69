//! `metaloop ledger verify|show`.

use crate::outln;
use anyhow::{Context, Result};
use metaloop_ledger::LedgerStore;
use std::path::Path;

/// Why a ledger command stopped: usage (exit 2), tampering (exit 3) or anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum LedgerCmdError {
    #[error("{0}")]
    Usage(String),
    #[error("ledger verification failed: {0}")]
    Tampered(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl LedgerCmdError {
    /// The process exit code (DESIGN.md §7).
    pub fn exit_code(&self) -> i32 {
        match self {
            LedgerCmdError::Usage(_) => 2,
            LedgerCmdError::Tampered(_) => 3,
            LedgerCmdError::Other(_) => 1,
        }
    }
}

/// Which ledger a command reads: a data directory's SQLite file, or a URL.
#[derive(Debug, Clone)]
pub enum Target {
    Data(std::path::PathBuf),
    Url(String),
}

impl Target {
    fn location(&self) -> crate::store::LedgerLocation {
        match self {
            Target::Data(d) => crate::store::LedgerLocation::Sqlite(crate::demo::ledger_path(d)),
            Target::Url(u) => crate::store::LedgerLocation::parse(u),
        }
    }

    /// The public key file a data directory keeps, if this is one.
    pub fn default_pubkey(&self) -> Option<std::path::PathBuf> {
        match self {
            Target::Data(d) => Some(d.join("supervisor.pub")),
            Target::Url(_) => None,
        }
    }
}

/// Opens the ledger for appending note signatures (a SQLite file must exist already).
pub(crate) async fn open_writable(
    target: &Target,
) -> Result<std::sync::Arc<dyn LedgerStore>, LedgerCmdError> {
    let location = target.location();
    if let crate::store::LedgerLocation::Sqlite(path) = &location
        && !path.exists()
    {
        return Err(LedgerCmdError::Usage(format!(
            "no ledger at {} (is --data the right directory?)",
            path.display()
        )));
    }
    location.open().await.map_err(LedgerCmdError::Other)
}

pub(crate) async fn open(
    target: &Target,
) -> Result<std::sync::Arc<dyn LedgerStore>, LedgerCmdError> {
    let location = target.location();
    if let crate::store::LedgerLocation::Sqlite(path) = &location
        && !path.exists()
    {
        return Err(LedgerCmdError::Usage(format!(
            "no ledger at {} (is --data the right directory?)",
            path.display()
        )));
    }
    location
        .open_readonly()
        .await
        .map_err(LedgerCmdError::Other)
}

/// What verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub records: u64,
    pub head: String,
    pub checkpoints: u64,
    pub last_checkpoint: Option<u64>,
    pub unsigned_tail: u64,
    pub signatures_checked: bool,
    /// Checkpoints whose signed-note signature was checked.
    pub notes_checked: u64,
    /// Per witness required: its name and the newest checkpoint it cosigned.
    pub witnessed: Vec<(String, u64)>,
    /// Records after the newest checkpoint every required witness cosigned.
    pub unwitnessed_tail: u64,
    /// Witnesses whose current view was fetched and matched.
    pub witness_views: Vec<String>,
}

/// Witnesses `verify` requires: their cosigner keys, and URLs whose current view (the
/// latest checkpoint each cosigned) the ledger must contain.
#[derive(Debug, Clone, Default)]
pub struct WitnessChecks {
    /// Cosigner verifier keys (text or files).
    pub keys: Vec<String>,
    /// Witness URLs (monitoring prefixes).
    pub urls: Vec<String>,
}

/// Verifies every record and every checkpoint of a ledger; with `pubkey`, checkpoint
/// signatures too (which is what detects a chain re-computed without the key).
pub async fn verify_target(
    target: &Target,
    pubkey: Option<&Path>,
    progress: bool,
) -> Result<Verified, LedgerCmdError> {
    verify_with_witnesses(target, pubkey, &WitnessChecks::default(), progress).await
}

/// [`verify_target`], and cosignatures from each witness in `witnesses` (exit 3 without
/// one); with witness URLs, the ledger must contain each witness's latest cosigned
/// checkpoint (which catches a fork or a truncation made after the last stored
/// cosignature).
pub async fn verify_with_witnesses(
    target: &Target,
    pubkey: Option<&Path>,
    witnesses: &WitnessChecks,
    progress: bool,
) -> Result<Verified, LedgerCmdError> {
    let key = match pubkey {
        None => None,
        Some(p) => Some(
            metaloop_ledger::keys::load_public_key(p)
                .map_err(|e| LedgerCmdError::Usage(format!("--pubkey {}: {e}", p.display())))?,
        ),
    };
    let ledger = open(target).await?;
    let cosigners = witnesses
        .keys
        .iter()
        .map(|k| {
            let v = crate::cli::witness::read_vkey(k)
                .map_err(|e| LedgerCmdError::Usage(format!("--witness {e:#}")))?;
            if v.kind != metaloop_ledger::note::TYPE_COSIGNATURE {
                return Err(LedgerCmdError::Usage(format!(
                    "--witness {k}: {} is not a witness's cosigner key (signature type 0x04)",
                    v.name
                )));
            }
            Ok(v)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !witnesses.urls.is_empty() && cosigners.is_empty() {
        return Err(LedgerCmdError::Usage(
            "--witness-url needs the witness's key: --witness VKEY".into(),
        ));
    }
    let origin = match &key {
        Some(k) => Some(metaloop_ledger::note::ledger_origin(k)),
        None => ledger
            .latest_checkpoint()
            .await
            .context("reading the ledger")?
            .map(|cp| metaloop_ledger::note::origin_for_key_id(&cp.key_id)),
    };
    let mut expected_roots = Vec::new();
    let mut witness_views = Vec::new();
    for url in &witnesses.urls {
        let Some(origin) = &origin else { break };
        let view = fetch_witness_view(url, origin, &cosigners).await?;
        witness_views.push(format!("{} (size {})", view.source, view.size));
        expected_roots.push(view);
    }
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let requirements = metaloop_ledger::AuditRequirements {
        key,
        witnesses: cosigners,
        expected_roots,
        origin,
    };
    let report = metaloop_ledger::verify_audit(ledger.as_ref(), requirements, |checked, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(checked);
        }
    })
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report.map_err(|e| match e.exit_code() {
        3 => LedgerCmdError::Tampered(e.to_string()),
        _ => LedgerCmdError::Other(anyhow::Error::new(e).context("reading the ledger")),
    })?;
    Ok(Verified {
        records: report.chain.records,
        head: report
            .chain
            .head
            .map(|h| metaloop_ledger::hex::encode(&h))
            .unwrap_or_default(),
        checkpoints: report.checkpoints,
        last_checkpoint: report.last_checkpoint.map(|c| c.seq),
        unsigned_tail: report.unsigned_tail,
        signatures_checked: report.signatures_checked,
        notes_checked: report.notes_checked,
        witnessed: report.witnessed,
        unwitnessed_tail: report.unwitnessed_tail,
        witness_views,
    })
}

/// Fetches a witness's latest cosigned checkpoint of the ledger `origin` from its
/// monitoring prefix `url` (`GET <url>/<sha256(origin)>/checkpoint`); its cosignature must
/// verify with one of `cosigners`.
async fn fetch_witness_view(
    url: &str,
    origin: &str,
    cosigners: &[metaloop_ledger::note::NoteVerifier],
) -> Result<metaloop_ledger::ExpectedRoot, LedgerCmdError> {
    let address = format!(
        "{}/{}/checkpoint",
        url.trim_end_matches('/'),
        metaloop_ledger::witness::origin_hash_hex(origin)
    );
    let response = crate::http::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap_or_default()
        .get(&address)
        .send()
        .await
        .with_context(|| format!("asking the witness at {address}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status == 404 {
        return Err(LedgerCmdError::Tampered(format!(
            "the witness at {url} has cosigned no checkpoint of ledger {origin}"
        )));
    }
    if status != 200 {
        return Err(LedgerCmdError::Other(anyhow::anyhow!(
            "the witness at {address} answered {status}: {}",
            body.trim_end()
        )));
    }
    let note = metaloop_ledger::note::Note::parse(&body)
        .map_err(|e| LedgerCmdError::Other(anyhow::anyhow!("the witness at {url}: {e}")))?;
    let verified = note.verify(cosigners).map_err(|e| {
        LedgerCmdError::Other(anyhow::anyhow!(
            "the witness at {url} served a checkpoint without a valid cosignature of the \
             given witness keys: {e}"
        ))
    })?;
    let name = verified[0].0.name.clone();
    let cp = metaloop_ledger::note::CheckpointNote::parse(&note.text)
        .map_err(|e| LedgerCmdError::Other(anyhow::anyhow!("the witness at {url}: {e}")))?;
    if cp.origin != origin {
        return Err(LedgerCmdError::Other(anyhow::anyhow!(
            "the witness at {url} served a checkpoint of {}, not of {origin}",
            cp.origin
        )));
    }
    Ok(metaloop_ledger::ExpectedRoot {
        source: format!("witness {name} at {url}"),
        size: cp.size,
        root: cp.root,
    })
}

/// A proof that could not be made: the store failed, the records contradict the signed
/// checkpoint (tampering), or the request was wrong.
fn prove_error(e: metaloop_ledger::ProveError) -> LedgerCmdError {
    match e {
        metaloop_ledger::ProveError::Store(s) => LedgerCmdError::Other(anyhow::Error::new(s)),
        metaloop_ledger::ProveError::Mismatch { .. }
        | metaloop_ledger::ProveError::Truncated { .. } => LedgerCmdError::Tampered(e.to_string()),
        other => LedgerCmdError::Usage(other.to_string()),
    }
}

/// The `--pubkey` a proof is checked with.
fn check_key(p: &Path) -> Result<ed25519_dalek::VerifyingKey, LedgerCmdError> {
    metaloop_ledger::keys::load_public_key(p)
        .map_err(|e| LedgerCmdError::Usage(format!("--pubkey {}: {e}", p.display())))
}

/// A consistency proof between the checkpoints at `old` and `new`, checked with `pubkey`
/// when given.
pub async fn prove_consistency(
    target: &Target,
    old: u64,
    new: u64,
    pubkey: Option<&Path>,
) -> Result<String, LedgerCmdError> {
    let ledger = open(target).await?;
    let proof = metaloop_ledger::prove_consistency(ledger.as_ref(), old, new)
        .await
        .map_err(prove_error)?;
    if let Some(p) = pubkey {
        let key = check_key(p)?;
        proof
            .verify(&key)
            .map_err(|e| LedgerCmdError::Tampered(format!("the proof does not verify: {e}")))?;
    }
    serde_json::to_string_pretty(&proof).map_err(|e| LedgerCmdError::Other(e.into()))
}

/// Verifies the ledger in `data` (records and checkpoints, no signatures); returns (records, head).
pub async fn verify(data: &Path, progress: bool) -> Result<(u64, String), LedgerCmdError> {
    let v = verify_target(&Target::Data(data.to_path_buf()), None, progress).await?;
    Ok((v.records, v.head))
}

/// An inclusion proof for record `seq` against a checkpoint (the newest by default),
/// checked with `pubkey` when given.
pub async fn prove(
    target: &Target,
    seq: u64,
    checkpoint: Option<u64>,
    pubkey: Option<&Path>,
) -> Result<String, LedgerCmdError> {
    let ledger = open(target).await?;
    let proof = metaloop_ledger::prove(ledger.as_ref(), seq, checkpoint)
        .await
        .map_err(prove_error)?;
    if let Some(p) = pubkey {
        let key = check_key(p)?;
        proof
            .verify(&key)
            .map_err(|e| LedgerCmdError::Tampered(format!("the proof does not verify: {e}")))?;
    }
    serde_json::to_string_pretty(&proof).map_err(|e| LedgerCmdError::Other(e.into()))
}

/// Prints records from `from` on, optionally filtered by actor or action.
pub async fn show(
    target: &Target,
    from: u64,
    actor: Option<&str>,
    action: Option<&str>,
    json: bool,
) -> Result<(), LedgerCmdError> {
    let ledger = open(target).await?;
    let mut next = from.max(1);
    loop {
        let page = ledger
            .read(next, 1000)
            .await
            .context("reading the ledger")?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for r in &page {
            if actor.is_some_and(|a| a != r.actor) || action.is_some_and(|a| a != r.action) {
                continue;
            }
            if json {
                outln!("{}", serde_json::to_string(r).context("encoding a record")?);
            } else {
                let time = metaloop_core::time::Timestamp(r.time_ms).to_rfc3339();
                outln!(
                    "{:>6}  {time}  {:<18} {:<28} {}",
                    r.seq,
                    r.actor,
                    r.action,
                    r.resource
                );
            }
        }
    }
    Ok(())
}

/// Every record of the ledger in `data`, in order.
async fn all_records(target: &Target) -> Result<Vec<metaloop_ledger::Record>, LedgerCmdError> {
    let ledger = open(target).await?;
    Ok(ledger.read_all().await.context("reading the ledger")?)
}

/// The whole story of one directive, from the records: what triggered it, the policy and its
/// condition values, confidence factors, approvals, publication, ack, verdict, rollback.
pub async fn explain(target: &Target, id: &str, json: bool) -> Result<(), LedgerCmdError> {
    let records = all_records(target).await?;
    if json {
        let doc = explain_json(&records, id)?;
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).context("encoding")?
        );
    } else {
        for line in explain_lines(&records, id)? {
            outln!("{line}");
        }
    }
    Ok(())
}

/// The records a directive's story is told from, found among `records`.
struct Story<'a> {
    id: String,
    prop: &'a metaloop_ledger::Record,
    snapshot: Option<&'a serde_json::Value>,
    evaluation: Option<serde_json::Value>,
    story: Vec<&'a metaloop_ledger::Record>,
}

fn story<'a>(
    records: &'a [metaloop_ledger::Record],
    id: &str,
) -> Result<Story<'a>, LedgerCmdError> {
    let proposed: Vec<&metaloop_ledger::Record> = records
        .iter()
        .filter(|r| r.action == "directive.proposed" && r.resource.starts_with(id))
        .collect();
    let prop = match proposed.as_slice() {
        [one] => *one,
        [] => {
            return Err(LedgerCmdError::Usage(format!(
                "no directive {id} in the ledger"
            )));
        }
        many => {
            return Err(LedgerCmdError::Usage(format!(
                "{id} matches {} directives; give more of the id",
                many.len()
            )));
        }
    };
    let id = prop.resource.clone();
    let directive = &prop.payload["directive"];
    let snapshot_id = directive["snapshot_id"].as_str().unwrap_or_default();
    let cycle = directive["issued_cycle"].as_u64().unwrap_or(0);
    let policy_id = directive["policy_id"].as_str();
    let snapshot = records
        .iter()
        .find(|r| r.action == "snapshot.built" && r.resource == snapshot_id)
        .map(|r| &r.payload["snapshot"]);
    let evaluation = records
        .iter()
        .find(|r| r.action == "strategy.evaluated" && r.payload["cycle"].as_u64() == Some(cycle))
        .and_then(|r| {
            metaloop_core::record::strategy_evaluations(&r.payload)
                .find(|e| e.entry["policy_id"].as_str() == policy_id)
                .map(|e| e.inline())
        });
    let rollback_id = records
        .iter()
        .find(|r| r.action == "directive.rolled_back" && r.resource == id)
        .and_then(|r| r.payload["rollback_id"].as_str().map(str::to_string));
    let story: Vec<&metaloop_ledger::Record> = records
        .iter()
        .filter(|r| {
            r.resource == id
                || r.resource == format!("alert/directive_no_ack:{id}")
                || (r.action == "learning.track_record" && r.payload["directive_id"] == id.as_str())
                || rollback_id.as_deref().is_some_and(|rb| r.resource == rb)
        })
        .collect();
    Ok(Story {
        id,
        prop,
        snapshot,
        evaluation,
        story,
    })
}

/// [`explain`]'s JSON document, from `records` (the whole ledger, or every record from the
/// directive's cycle on).
pub fn explain_json(
    records: &[metaloop_ledger::Record],
    id: &str,
) -> Result<serde_json::Value, LedgerCmdError> {
    let s = story(records, id)?;
    let prop = s.prop;
    let directive = &prop.payload["directive"];
    let domain = directive["target_domain"].as_str().unwrap_or_default();
    let (snapshot, evaluation, story) = (s.snapshot, &s.evaluation, &s.story);
    {
        let doc = serde_json::json!({
            "directive": directive,
            "snapshot": snapshot.map(|s| serde_json::json!({
                "id": s["id"], "cycle": s["cycle"], "time": s["time"],
                "global_kpis": s["global_kpis"], "goal_gaps": s["goal_gaps"],
                "target_domain": s["domains"][domain],
                "patterns": s["patterns"],
            })),
            "policy_evaluation": evaluation,
            "records": story.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect::<Vec<_>>(),
        });
        Ok(doc)
    }
}

/// [`explain`]'s text, line by line, from `records` (the whole ledger, or every record from
/// the directive's cycle on).
pub fn explain_lines(
    records: &[metaloop_ledger::Record],
    id: &str,
) -> Result<Vec<String>, LedgerCmdError> {
    let s = story(records, id)?;
    let mut out: Vec<String> = Vec::new();
    macro_rules! say {
        ($($arg:tt)*) => { out.push(format!($($arg)*)) };
    }
    let prop = s.prop;
    let directive = &prop.payload["directive"];
    let domain = directive["target_domain"].as_str().unwrap_or_default();
    let (id, snapshot, evaluation, story) = (s.id, s.snapshot, s.evaluation, s.story);
    let snapshot_id = directive["snapshot_id"].as_str().unwrap_or_default();
    let policy_id = directive["policy_id"].as_str();
    let t = |ms: i64| metaloop_core::time::Timestamp(ms).to_rfc3339();
    say!("directive {id}");
    say!(
        "  {} {} in {} ({}), action {}, impact {}",
        directive["type"].as_str().unwrap_or("?"),
        directive["knob"].as_str().unwrap_or("?"),
        domain,
        directive["target_subsystem"].as_str().unwrap_or("?"),
        directive["action"],
        directive["impact"].as_str().unwrap_or("?"),
    );
    say!(
        "  target KPI: {}",
        directive["target_kpi"].as_str().unwrap_or("?")
    );
    say!(
        "  justification: {}",
        directive["justification"].as_str().unwrap_or("")
    );
    if let Some(of) = directive["rollback_of"].as_str() {
        say!("  rolls back: {of}");
    }
    if let Some(s) = snapshot {
        say!(
            "\ntriggered by snapshot {} (cycle {}, {})",
            snapshot_id,
            s["cycle"],
            s["time"].as_i64().map(t).unwrap_or_default()
        );
        say!("  global KPIs: {}", s["global_kpis"]);
        say!("  goal gaps (positive = worse): {}", s["goal_gaps"]);
        say!(
            "  {domain}: KPIs {} over {}",
            s["domains"][domain]["kpis"],
            s["domains"][domain]["samples"]
        );
        if s["patterns"].as_array().is_some_and(|p| !p.is_empty()) {
            say!("  patterns: {}", s["patterns"]);
        }
    }
    match &evaluation {
        Some(e) => {
            say!(
                "\npolicy {}: condition held {} cycle(s)",
                policy_id.unwrap_or("?"),
                e["streak"]
            );
            say!("  condition values: {}", e["condition"]["values"]);
            say!(
                "  confidence {:.3} = evidence {:.3} × track record {:.3} × coverage {:.3}",
                e["factors"]["confidence"].as_f64().unwrap_or(0.0),
                e["factors"]["evidence"].as_f64().unwrap_or(0.0),
                e["factors"]["track_record"].as_f64().unwrap_or(0.0),
                e["factors"]["coverage"].as_f64().unwrap_or(0.0),
            );
        }
        None => say!("\nno policy: issued by the verification layer"),
    }
    say!(
        "\nrequirement: {} (effective impact {})",
        prop.payload["requirement"],
        prop.payload["effective_impact"]
    );
    say!("\nhistory:");
    for r in story {
        let detail = match r.action.as_str() {
            "directive.proposed" if r.resource != id => format!("rollback {} proposed", r.resource),
            "directive.proposed" => format!("pre window: {} cycles", r.payload["pre_cycles"]),
            "directive.approval_requested" => format!(
                "{} approval(s) needed, review note {}, expires {}",
                r.payload["approvals_needed"],
                r.payload["review_note_required"],
                r.payload["expires_at"].as_i64().map(t).unwrap_or_default()
            ),
            "directive.approved" | "directive.rejected" => {
                format!(
                    "by {}: {}",
                    r.payload["approver"].as_str().unwrap_or("?"),
                    r.payload["note"]
                )
            }
            "directive.applied" => format!(
                "previous {} → current {}",
                r.payload["previous"], r.payload["current"]
            ),
            "directive.refused" => format!("reason: {}", r.payload["reason"]),
            "verification.verdict" => {
                let v = &r.payload["verdict"];
                let tt = &v["target"];
                let mut s = format!(
                    "{} ({}): {} {} n={} → {} n={}, {} p={} effect={}; {}",
                    v["outcome"].as_str().unwrap_or("?"),
                    v["method"].as_str().unwrap_or("?"),
                    tt["kpi"].as_str().unwrap_or("?"),
                    tt["pre"],
                    tt["n_pre"],
                    tt["post"],
                    tt["n_post"],
                    tt["test"].as_str().unwrap_or("?"),
                    tt["p_value"],
                    tt["effect"],
                    v["reason"].as_str().unwrap_or("")
                );
                for g in v["guardrails"].as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "\n      guardrail {}: {} → {} (tolerance {}, p={}, adjusted {}){}",
                        g["kpi"].as_str().unwrap_or("?"),
                        g["pre"],
                        g["post"],
                        g["tolerance"],
                        g["p_value"],
                        g["p_adjusted"],
                        if g["failed"].as_bool() == Some(true) {
                            " FAILED"
                        } else {
                            ""
                        }
                    ));
                }
                s
            }
            "directive.rolled_back" => format!(
                "restored {} by rollback {}",
                r.payload["restored"], r.payload["rollback_id"]
            ),
            "learning.track_record" => format!(
                "policy track record now {} (score {:.3})",
                r.payload["track_record"],
                r.payload["score"].as_f64().unwrap_or(0.0)
            ),
            _ => String::new(),
        };
        let who = if r.resource == id || r.action == "learning.track_record" {
            ""
        } else {
            "  [rollback]"
        };
        say!(
            "  #{:<6} {}  {:<28} {:<16} {detail}{who}",
            r.seq,
            t(r.time_ms),
            r.action,
            r.actor
        );
    }
    Ok(out)
}
