//! `docs/PROTOCOL.md` §9 is a worked example an adapter author checks their code against:
//! every value in it is recomputed here from the fixed key, so the document cannot drift
//! from the implementation.

mod common;

use metaloop_core::protocol::EventData;
use metaloop_mesh::dsse::{self, pae};
use metaloop_mesh::envelope::{CloudEvent, Data, JsonData};
use metaloop_mesh::keys::{EventSigner, KeyId, KeyRegistry, parse_secret_key, public_key_hex};
use metaloop_mesh::verifiability::{self, PAYLOAD_TYPE};
use metaloop_mesh::{IngestConfig, Ingestor, RejectReason};
use sha2::{Digest, Sha256};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md")
}

/// The fenced block right after `<!-- example:NAME -->`.
fn block(doc: &str, name: &str) -> String {
    let marker = format!("<!-- example:{name} -->\n");
    let start = doc.find(&marker).unwrap_or_else(|| panic!("marker {name}")) + marker.len();
    let rest = &doc[start..];
    let body_start = rest.find('\n').expect("fence line") + 1;
    let body_end = rest[body_start..].find("\n```").expect("closing fence") + body_start;
    rest[body_start..body_end].to_owned()
}

/// `name value` lines.
fn table(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            let value = parts.next_back().unwrap().to_owned();
            (name, value)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_worked_example_is_what_the_implementation_computes() {
    let doc = doc();
    let keys = table(&block(&doc, "keys"));
    let seed = &keys.iter().find(|(n, _)| n == "secret").unwrap().1;
    let signer = EventSigner::new("urn:spine:application", parse_secret_key(seed).unwrap());
    let public = public_key_hex(&signer.verifying_key());
    assert_eq!(keys[1].1, public, "public key");
    assert_eq!(
        keys[2].1,
        KeyId::of(&signer.verifying_key()).as_str(),
        "key id"
    );

    let data = block(&doc, "data");
    let mut event = CloudEvent::new("evt-0001", "urn:spine:application", "recovery.succeeded")
        .with_time("2026-01-01T00:05:00Z");
    event.datacontenttype = Some("application/json".into());
    event.data = Some(Data::Json(JsonData::from_json_text(data.clone()).unwrap()));

    let expected_inputs: [(&str, &[u8]); 9] = [
        ("id", b"evt-0001"),
        ("source", b"urn:spine:application"),
        ("specversion", b"1.0"),
        ("type", b"recovery.succeeded"),
        ("datacontenttype", b"application/json"),
        ("dataschema", b""),
        ("subject", b""),
        ("time", b"2026-01-01T00:05:00Z"),
        ("data", data.as_bytes()),
    ];
    let digests = table(&block(&doc, "digests"));
    let mut concatenation = Vec::new();
    for ((name, input), (doc_name, doc_hex)) in expected_inputs.iter().zip(&digests) {
        assert_eq!(name, doc_name);
        let d = Sha256::digest(input);
        assert_eq!(&hex(&d), doc_hex, "digest of {name}");
        concatenation.extend_from_slice(&d);
    }
    let material = verifiability::verification_material(&event, &[]).unwrap();
    assert_eq!(
        material.as_slice(),
        Sha256::digest(&concatenation).as_slice()
    );
    let m = table(&block(&doc, "material"));
    assert_eq!(m[0].1, hex(&material));
    assert_eq!(m[1].1, dsse::encode_base64(&material));

    let p = pae(PAYLOAD_TYPE.as_bytes(), &material);
    assert_eq!(p.len(), 92);
    assert_eq!(block(&doc, "pae"), hex(&p));

    signer.sign(&mut event).unwrap();
    let material_attr = event.extensions["dssematerial"]
        .as_str()
        .unwrap()
        .to_owned();
    let envelope = String::from_utf8(dsse::decode_base64(&material_attr).unwrap()).unwrap();
    assert_eq!(block(&doc, "envelope"), envelope);
    let parsed: dsse::Envelope = serde_json::from_str(&envelope).unwrap();
    assert_eq!(block(&doc, "signature"), parsed.signatures[0].sig);
    let wire = block(&doc, "event");
    assert_eq!(
        wire.as_bytes(),
        event.to_json().as_slice(),
        "the event as sent"
    );
}

#[test]
fn the_example_event_is_accepted_and_pretty_printing_breaks_it() {
    let doc = doc();
    let wire = block(&doc, "event");
    let public = &table(&block(&doc, "keys"))[1].1;
    let mut registry = KeyRegistry::new();
    registry
        .register(
            "urn:spine:application",
            metaloop_mesh::keys::parse_public_key(public).unwrap(),
        )
        .unwrap();
    let mut ing = Ingestor::new(IngestConfig::default(), registry);
    let e = ing.ingest_event(wire.as_bytes(), common::now()).unwrap();
    assert_eq!(e.id, "evt-0001");
    assert!(matches!(e.data, EventData::RecoverySucceeded(ref r) if r.duration_s == 42.5));

    let value: serde_json::Value = serde_json::from_str(&wire).unwrap();
    // Same attributes, same data, only re-formatted: the data bytes differ, so does M.
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let r = ing
        .ingest_event(pretty.as_bytes(), common::now())
        .unwrap_err();
    assert_eq!(r.reason, RejectReason::BadSignature);
}

/// Every reason an event can be rejected for is in §6's table, with its check; the table
/// names no reason the implementation does not have.
#[test]
fn every_rejection_reason_is_in_the_table() {
    let doc = doc();
    let start = doc.find("## 6. What metaloop checks").expect("§6");
    let end = doc[start..].find("\n### 6.1").expect("§6.1") + start;
    let table = &doc[start..end];
    let mut documented = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for word in cells.get(3).unwrap_or(&"").split('/') {
            let word = word.trim().trim_matches('`');
            if !word.is_empty() && word != "Reason" && !word.starts_with("---") {
                documented.push(word.to_string());
            }
        }
    }
    for r in RejectReason::ALL {
        assert!(
            documented.iter().any(|d| d == r.as_str()),
            "{} is not in the table of §6",
            r.as_str()
        );
    }
    for d in &documented {
        assert!(
            RejectReason::ALL.iter().any(|r| r.as_str() == d),
            "§6 names {d}, which is not a reason"
        );
    }
}
