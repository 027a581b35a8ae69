//! Mutation fuzzing of everything that parses untrusted bytes, on stable Rust: the event
//! envelope with its DSSE signature (through the whole ingest pipeline), the batch decoder,
//! the configuration parser, canonical JSON, the ledger record decoder and verifier, and the
//! ingest journal's lines.
//!
//! Each target starts from a corpus of valid inputs and applies random byte- and token-level
//! mutations, checking per input: no panic, no input slower than a second, and a property that
//! says an input was not accepted while invalid (below, per target). Findings are written to
//! `target/fuzz-findings/` and fail the test.
//!
//! `METALOOP_FUZZ_SECS` sets each target's time (default 3 s, the CI run);
//! `METALOOP_FUZZ_SEED` replays a run. For a long run of one target:
//! `METALOOP_FUZZ_SECS=600 cargo test --release -p metaloop --test fuzz -- ingest --nocapture`.

use metaloop_core::protocol::{
    DirectiveApplied, EventData, HealthChange, HealthState, KpiReport, Recovery, SpineEvent,
};
use metaloop_core::time::Timestamp;
use metaloop_ledger::canonical_json::{canonicalize, is_canonical};
use metaloop_ledger::{Record, StoredRecord, Verifier};
use metaloop_mesh::keys::{EventSigner, parse_secret_key};
use metaloop_mesh::{AdapterKeys, IngestConfig, Ingestor, KeyRegistry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

const INTERESTING: &[&[u8]] = &[
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1.5",
    b"-1",
    b"18446744073709551616",
    b"9223372036854775807",
    b"\"\"",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\\uDFFF\"",
    b"[]",
    b"{}",
    b"[[[[[[[[",
    b"{\"a\":",
    b"\"\\\"",
    b"\xff",
    b"\xc3\x28",
    b"\"data\"",
    b"\"data_base64\"",
    b"\"dssematerial\"",
    b"\"signedextattrs\"",
    b"\"time\"",
    b"\"id\"",
    b"\"source\"",
    b"\"1.0\"",
    b",",
    b":",
    b"\\",
    b"=",
    b"\n",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b" ",
    b"#",
    b"'''",
    b"\"\"\"",
    b"[[adapters]]",
    b"[ingest]",
    b"[dedupe]",
    b"=\"1h\"",
    b"2026-01-01T00:05:00Z",
    b"9999-12-31T23:59:59+23:59",
    b"0000-01-01T00:00:00Z",
];

/// One fuzz target's run: how long, how many inputs, what was found.
fn run(name: &str, corpus: Vec<Vec<u8>>, mut exec: impl FnMut(&[u8]) -> Result<(), String>) {
    assert!(!corpus.is_empty());
    let secs: u64 = std::env::var("METALOOP_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("METALOOP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-findings");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut execs, mut findings) = (0u64, Vec::new());
    let mut slowest = Duration::ZERO;
    // the corpus itself first, then mutations of it
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    while Instant::now() < deadline || !queue.is_empty() {
        let input = queue.pop().unwrap_or_else(|| mutate(&mut rng, &corpus));
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| exec(&input)));
        let took = started.elapsed();
        slowest = slowest.max(took);
        execs += 1;
        let problem = match outcome {
            Ok(Ok(())) if took > Duration::from_secs(1) => Some(format!("slow input: {took:?}")),
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!(
                "panic: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Some(p) = problem {
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{}.bin", findings.len()));
            let _ = std::fs::write(&file, &input);
            eprintln!("fuzz {name}: {p} (input in {})", file.display());
            findings.push(p);
            if findings.len() >= 20 {
                break;
            }
        }
    }
    eprintln!(
        "fuzz {name}: {execs} executions in {secs} s, slowest input {slowest:?}, {} findings, seed {seed}",
        findings.len()
    );
    assert!(findings.is_empty(), "fuzz {name}: {findings:?}");
}

/// One to four mutations of a corpus input: bit flips, byte changes, insertions, deletions,
/// duplicated ranges, splices with another input, interesting tokens.
fn mutate(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..8) {
            0 if len > 0 => b[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => b[at] = rng.random(),
            2 => b.insert(at.min(len), rng.random()),
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                b.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=32)).min(len);
                let chunk = b[at..end].to_vec();
                let to = rng.random_range(0..=b.len());
                b.splice(to..to, chunk);
            }
            5 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let end = (from + rng.random_range(1..=64)).min(other.len());
                    let cut = at.min(b.len());
                    b.truncate(cut);
                    b.extend_from_slice(&other[from..end]);
                }
            }
            6 => {
                let token = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let end = (at + rng.random_range(0..=8)).min(len);
                b.splice(at.min(len)..end, token.iter().copied());
            }
            _ => {
                // replace a JSON value: from a `:` to the next `,` or `}`
                if let Some(colon) = b.iter().skip(at).position(|&c| c == b':') {
                    let start = at + colon + 1;
                    let end = b[start..]
                        .iter()
                        .position(|&c| c == b',' || c == b'}')
                        .map_or(b.len(), |p| start + p);
                    let token = INTERESTING[rng.random_range(0..INTERESTING.len())];
                    b.splice(start..end, token.iter().copied());
                }
            }
        }
    }
    b
}

const SOURCE: &str = "urn:spine:application";
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const T0: Timestamp = Timestamp::from_secs(1_767_225_900);

fn spine_events() -> Vec<SpineEvent> {
    let datas = vec![
        EventData::RecoverySucceeded(Recovery {
            domain: "application".into(),
            incident_id: "inc-42".into(),
            playbook: "restart-service".into(),
            duration_s: 42.5,
            autonomous: true,
            human_override: false,
            experiment: None,
        }),
        EventData::KpiReported(KpiReport {
            domain: "application".into(),
            name: "queue_depth".into(),
            value: -3.25e7,
        }),
        EventData::HealthChanged(HealthChange {
            domain: "infrastructure".into(),
            node: "db-1".into(),
            state: HealthState::Degraded,
            depends_on: vec!["infrastructure/net-1".into()],
        }),
        EventData::DirectiveApplied(DirectiveApplied {
            directive_id: "0190f0f0-0000-7000-8000-000000000000".into(),
            domain: "application".into(),
            knob: "planner.confidence_threshold".into(),
            previous: serde_json::json!({"v": [0.7, null, "é\u{1F600}"]}),
            current: serde_json::json!(0.75),
        }),
    ];
    datas
        .into_iter()
        .enumerate()
        .map(|(i, data)| SpineEvent {
            id: format!("evt-{i}"),
            source: SOURCE.into(),
            time: T0.plus_millis(i as i64 * 1000),
            data,
        })
        .collect()
}

fn signer() -> EventSigner {
    EventSigner::new(SOURCE, parse_secret_key(SEED).unwrap())
}

fn ingestor() -> Ingestor {
    let registry = KeyRegistry::from_entries(&[AdapterKeys {
        source: SOURCE.into(),
        public_keys: vec![metaloop_mesh::keys::public_key_hex(
            &signer().verifying_key(),
        )],
        domains: None,
    }])
    .unwrap();
    Ingestor::new(IngestConfig::default(), registry)
}

fn signed_corpus() -> Vec<Vec<u8>> {
    let signer = signer();
    let mut out: Vec<Vec<u8>> = spine_events()
        .iter()
        .map(|e| signer.spine_event(e.id.clone(), e.time, &e.data).to_json())
        .collect();
    // one with signed extension attributes
    let e = &spine_events()[0];
    let mut ev = signer.spine_event("evt-ext", e.time, &e.data);
    ev.extensions.insert(
        "traceparent".into(),
        metaloop_mesh::ExtensionValue::String("00-abc-01".into()),
    );
    ev.extensions.insert(
        "partitionkey".into(),
        metaloop_mesh::ExtensionValue::Integer(-42),
    );
    signer
        .sign_with_extensions(&mut ev, &["traceparent", "partitionkey"])
        .unwrap();
    out.push(ev.to_json());
    out
}

/// Envelope, DSSE and the whole ingest pipeline. Property: an accepted event carries exactly
/// the signed content of one of the corpus events (a mutation may only touch what the
/// signature does not cover: whitespace, unsigned extensions).
#[test]
fn ingest() {
    let corpus = signed_corpus();
    let mut allowed: Vec<SpineEvent> = Vec::new();
    for bytes in &corpus {
        let e = ingestor()
            .ingest_event(bytes, T0.plus_millis(10_000))
            .unwrap_or_else(|r| panic!("the corpus is valid: {r}"));
        allowed.push(e);
    }
    run("ingest", corpus, |bytes| {
        let mut ing = ingestor();
        for ct in [Some("application/cloudevents+json"), None] {
            let outcome = ing.ingest(bytes, ct, T0.plus_millis(10_000));
            for e in outcome.accepted() {
                if !allowed.contains(&e) {
                    return Err(format!("accepted an event nobody signed: {e:?}"));
                }
            }
        }
        Ok(())
    });
}

/// A `\uD800`–`\uDFFF` escape somewhere in `bytes`.
fn lone_surrogate(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && (w[2] == b'd' || w[2] == b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

/// The batch decoder. Property: what it splits is a JSON array of that many elements, each
/// element the text of one of them, never more than the limit.
#[test]
fn batch() {
    let events = signed_corpus();
    let mut corpus = vec![b"[]".to_vec()];
    let mut all = b"[".to_vec();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            all.extend_from_slice(b" ,\n ");
        }
        all.extend_from_slice(e);
    }
    all.push(b']');
    corpus.push(all);
    corpus.push(format!("[{}]", String::from_utf8_lossy(&events[0])).into_bytes());
    run("batch", corpus, |bytes| {
        let max = 3;
        if let Ok(elements) = metaloop_mesh::envelope::split_batch(bytes, max) {
            if elements.len() > max {
                return Err(format!("{} elements over the limit {max}", elements.len()));
            }
            let parsed: Vec<serde_json::Value> = match serde_json::from_slice(bytes) {
                Ok(p) => p,
                // valid JSON text that serde_json declines: numbers beyond f64 and lone
                // surrogate escapes; the elements are judged one by one (malformed)
                Err(e)
                    if e.to_string().contains("number out of range")
                        || e.to_string().contains("surrogate")
                        || (e.to_string().contains("hex escape") && lone_surrogate(bytes)) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(format!("split an input that is not a JSON array: {e}")),
            };
            if parsed.len() != elements.len() {
                return Err(format!(
                    "split {} elements from an array of {}",
                    elements.len(),
                    parsed.len()
                ));
            }
            for (text, value) in elements.iter().zip(&parsed) {
                let v: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| format!("element {text:?} is not JSON: {e}"))?;
                if &v != value {
                    return Err(format!("element {text:?} is not the array's element"));
                }
            }
        }
        let mut ing = ingestor();
        let _ = ing.ingest_batch(bytes, T0.plus_millis(10_000));
        Ok(())
    });
}

/// The configuration parser and its checks. Property: a parse error names the file, line
/// and column; a file that passes reads back the same after writing it out.
#[test]
fn config() {
    let example = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/metaloop.toml"
    ))
    .unwrap();
    let corpus = vec![
        example,
        b"cycle_interval = \"5m\"\n[ingest]\nmax_event_age = \"1h\"\n[dedupe]\nwindow_secs = 3600\n[mesh]\nurl = \"nats://127.0.0.1:4222\"\nsubject_prefix = \"prod\"\nstream = \"S\"\n".to_vec(),
        b"".to_vec(),
    ];
    run("config", corpus, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Ok(());
        };
        match metaloop::config::FileConfig::parse(text, "f.toml") {
            Err(e) => {
                if !e.0.starts_with("f.toml") {
                    return Err(format!("error without its file: {}", e.0));
                }
            }
            Ok(cfg) => {
                let _ = cfg.validate();
                let _ = cfg.ingest_config();
                let _ = cfg.mesh.stream_name();
            }
        }
        Ok(())
    });
}

/// Canonical JSON. Properties: the canonical form is a fixed point and recognised as
/// canonical; a text recognised as canonical is its own canonical form.
#[test]
fn canonical_json() {
    let corpus: Vec<Vec<u8>> = vec![
        br#"{"b":[1,2.5,-0.0,1e21,1e-7,123456789012345678901234567890],"a":{"z":null,"y":true,"x":"\u00e9\ud83d\ude00\n\t\"\\"}}"#.to_vec(),
        br#"[{"k":"v"},[],{},"",0,-1,3.141592653589793,5e-324,1.7976931348623157e308]"#.to_vec(),
        serde_json::to_vec(&spine_events()).unwrap(),
    ];
    run("canonical_json", corpus, |bytes| {
        if let Ok(c) = canonicalize(bytes) {
            match canonicalize(c.as_bytes()) {
                Ok(again) if again == c => {}
                other => return Err(format!("not a fixed point: {c:?} -> {other:?}")),
            }
            if !is_canonical(c.as_bytes()) {
                // allowed to be unsure, never wrong: the slow path must agree
                if canonicalize(c.as_bytes()).ok().as_deref() != Some(c.as_str()) {
                    return Err(format!("canonical form not recognised: {c:?}"));
                }
            }
        }
        if is_canonical(bytes) {
            match canonicalize(bytes) {
                Ok(c) if c.as_bytes() == bytes => {}
                other => {
                    return Err(format!(
                        "is_canonical accepted {:?}, whose canonical form is {other:?}",
                        String::from_utf8_lossy(bytes)
                    ));
                }
            }
        }
        Ok(())
    });
}

fn chain() -> Vec<StoredRecord> {
    let mut prev = [0u8; 32];
    let mut out = Vec::new();
    for (i, e) in spine_events().iter().enumerate() {
        let mut r = Record {
            seq: i as u64 + 1,
            time_ms: e.time.millis(),
            actor: e.source.clone(),
            action: "event.accepted".into(),
            resource: e.id.clone(),
            payload: serde_json::to_value(e).unwrap(),
            prev_hash: prev,
            hash: [0; 32],
        };
        r.hash = r.compute_hash().unwrap();
        prev = r.hash;
        let payload = r.canonical_payload().unwrap().into_bytes();
        out.push(StoredRecord {
            seq: r.seq as i64,
            time_ms: r.time_ms,
            actor: r.actor.into_bytes(),
            action: r.action.into_bytes(),
            resource: r.resource.into_bytes(),
            payload,
            prev_hash: r.prev_hash.to_vec(),
            hash: r.hash.to_vec(),
            defect: None,
        });
    }
    out
}

/// The ledger's record decoder and verifier. The input is laid over one field of one record
/// of a valid chain. Property: verification fails exactly when a stored byte changed.
#[test]
fn ledger_records() {
    let original = chain();
    let mut verifier = Verifier::new();
    for r in &original {
        verifier.check(r).expect("the chain is valid");
    }
    // inputs: a selector byte then the new field bytes
    let corpus: Vec<Vec<u8>> = original
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            [
                [vec![(i * 8) as u8], r.payload.clone()].concat(),
                [vec![(i * 8 + 1) as u8], r.actor.clone()].concat(),
                [vec![(i * 8 + 5) as u8], r.hash.clone()].concat(),
                [vec![(i * 8 + 6) as u8], r.seq.to_be_bytes().to_vec()].concat(),
            ]
        })
        .collect();
    run("ledger_records", corpus, |bytes| {
        let Some((&sel, field)) = bytes.split_first() else {
            return Ok(());
        };
        let mut records = original.clone();
        let n = records.len();
        let r = &mut records[(sel as usize / 8) % n];
        let int = || {
            let mut b = [0u8; 8];
            for (d, s) in b.iter_mut().zip(field) {
                *d = *s;
            }
            i64::from_be_bytes(b)
        };
        match sel % 8 {
            0 => r.payload = field.to_vec(),
            1 => r.actor = field.to_vec(),
            2 => r.action = field.to_vec(),
            3 => r.resource = field.to_vec(),
            4 => r.prev_hash = field.to_vec(),
            5 => r.hash = field.to_vec(),
            6 => r.seq = int(),
            _ => r.time_ms = int(),
        }
        let changed = records != original;
        let mut v = Verifier::new();
        let verified = records.iter().all(|r| v.check(r).is_ok());
        for r in &records {
            let _ = r.clone().decode();
        }
        match (changed, verified) {
            (true, true) => Err("a changed record verified".into()),
            (false, false) => Err("an unchanged chain failed verification".into()),
            _ => Ok(()),
        }
    });
}

/// The ingest journal's lines (read back at start-up). Property: an event line read back
/// writes out to an equivalent line.
#[test]
fn journal_lines() {
    let corpus: Vec<Vec<u8>> = spine_events()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "E {} {i} {}",
                e.time.millis(),
                serde_json::to_string(e).unwrap()
            )
            .into_bytes()
        })
        .chain([b"D 1767225900000 000102030405060708090a0b0c0d0e0f".to_vec()])
        .collect();
    run("journal_lines", corpus, |bytes| {
        let Ok(line) = std::str::from_utf8(bytes) else {
            return Ok(());
        };
        if line.contains('\n') {
            return Ok(());
        }
        if let Ok(metaloop::ingest_journal::Line::Event { at, cycle, event }) =
            metaloop::ingest_journal::parse_line(line)
        {
            let again = format!(
                "E {} {cycle} {}",
                at.millis(),
                serde_json::to_string(&event).map_err(|e| e.to_string())?
            );
            match metaloop::ingest_journal::parse_line(&again) {
                Ok(metaloop::ingest_journal::Line::Event { event: e2, .. }) if e2 == event => {}
                other => return Err(format!("{line:?} does not read back: {other:?}")),
            }
        }
        Ok(())
    });
}
