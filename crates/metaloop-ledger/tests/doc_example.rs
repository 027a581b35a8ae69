//! Keeps the worked example in `docs/LEDGER.md` true: the bytes and hashes printed there are
//! recomputed here. `cargo test -p metaloop-ledger --test doc_example -- --ignored --nocapture`
//! prints them afresh.

use metaloop_ledger::{HashInput, ZERO_HASH, hex, to_canonical_json};
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/LEDGER.md");

/// The example's payload as a caller might write it: keys unsorted, spaces, `1e2`.
const PAYLOAD_INPUT: &str = r#"{"reason": "success rate 0.87 < goal 0.95", "delta": -0.05, "n": 1e2, "é": ["x\ty", null, true]}"#;

struct Example {
    payload: String,
    encoding: Vec<u8>,
    fields: Vec<(&'static str, String, Vec<u8>)>,
    hash: [u8; 32],
}

fn example(seq: u64, prev_hash: &[u8; 32]) -> Example {
    let value: Value = serde_json::from_str(PAYLOAD_INPUT).unwrap();
    let payload = to_canonical_json(&value).unwrap();
    let (time_ms, actor, action, resource) = (
        1_767_225_900_000_i64,
        "supervisor",
        "directive.issued",
        "directive/7",
    );
    let input = HashInput {
        seq,
        time_ms,
        actor: actor.as_bytes(),
        action: action.as_bytes(),
        resource: resource.as_bytes(),
        payload: payload.as_bytes(),
        prev_hash,
    };
    let len = |s: &str| (s.len() as u64).to_be_bytes().to_vec();
    let fields = vec![
        (
            "domain",
            "`metaloop-ledger/v1` NUL".to_string(),
            metaloop_ledger::DOMAIN.to_vec(),
        ),
        ("seq", seq.to_string(), seq.to_be_bytes().to_vec()),
        (
            "time_ms",
            time_ms.to_string(),
            time_ms.to_be_bytes().to_vec(),
        ),
        ("actor length", actor.len().to_string(), len(actor)),
        ("actor", format!("`{actor}`"), actor.as_bytes().to_vec()),
        ("action length", action.len().to_string(), len(action)),
        ("action", format!("`{action}`"), action.as_bytes().to_vec()),
        ("resource length", resource.len().to_string(), len(resource)),
        (
            "resource",
            format!("`{resource}`"),
            resource.as_bytes().to_vec(),
        ),
        ("payload length", payload.len().to_string(), len(&payload)),
        (
            "payload",
            "canonical JSON above".to_string(),
            payload.as_bytes().to_vec(),
        ),
        ("prev_hash", "32 bytes".to_string(), prev_hash.to_vec()),
    ];
    Example {
        encoding: input.encode(),
        hash: input.hash(),
        payload,
        fields,
    }
}

/// The contents of the first fenced block after `marker`, whitespace removed.
fn block_after(marker: &str) -> String {
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("docs/LEDGER.md lacks {marker}"));
    let rest = &DOC[start..];
    let open = rest.find("```").unwrap();
    let body = &rest[open + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close].split_whitespace().collect()
}

/// The hex cells (last column) of the table between `marker` and the next blank line.
fn table_after(marker: &str) -> Vec<String> {
    let start = DOC.find(marker).unwrap() + marker.len();
    DOC[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
            cells
                .last()
                .unwrap()
                .trim()
                .trim_matches('`')
                .replace(' ', "")
        })
        .collect()
}

#[test]
fn doc_example_matches_the_code() {
    let first = example(1, &ZERO_HASH);
    assert_eq!(
        block_after("<!-- example:payload -->"),
        first.payload.replace(' ', "")
    );
    assert!(DOC.contains(&format!("\n{}\n", first.payload)));
    let cells = table_after("<!-- example:fields -->");
    let expected: Vec<String> = first.fields.iter().map(|f| hex::encode(&f.2)).collect();
    assert_eq!(
        cells, expected,
        "the field table in docs/LEDGER.md is stale"
    );
    assert_eq!(
        block_after("<!-- example:encoding -->"),
        hex::encode(&first.encoding),
        "the encoded bytes in docs/LEDGER.md are stale"
    );
    assert_eq!(
        block_after("<!-- example:hash -->"),
        hex::encode(&first.hash),
        "the hash in docs/LEDGER.md is stale"
    );
    let second = example(2, &first.hash);
    assert_eq!(
        block_after("<!-- example:hash2 -->"),
        hex::encode(&second.hash),
        "the second record's hash in docs/LEDGER.md is stale"
    );
}

/// Prints the example's values for pasting into docs/LEDGER.md.
#[test]
#[ignore]
fn print_doc_example() {
    let first = example(1, &ZERO_HASH);
    println!("payload: {}\n", first.payload);
    println!("| Field | Value | Bytes (hex) |\n|---|---|---|");
    for (name, value, bytes) in &first.fields {
        let hex = hex::encode(bytes);
        let spaced: Vec<String> = hex
            .as_bytes()
            .chunks(16)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        println!("| {name} | {value} | `{}` |", spaced.join(" "));
    }
    println!("\nencoding ({} bytes):", first.encoding.len());
    for line in hex::encode(&first.encoding).as_bytes().chunks(64) {
        println!("{}", String::from_utf8(line.to_vec()).unwrap());
    }
    println!("\nhash: {}", hex::encode(&first.hash));
    let second = example(2, &first.hash);
    println!("hash2: {}", hex::encode(&second.hash));
}
