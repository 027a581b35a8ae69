//! A reference spine adapter: signs CloudEvents with its Ed25519 key and posts them to
//! metaloop's `POST /v1/events`, printing the per-event result.
//!
//! ```sh
//! metaloop keys generate --out app-adapter --source urn:spine:application   # once
//! cargo run --example adapter -- --server http://127.0.0.1:7171 --token "$ADAPTER_TOKEN" \
//!     --key app-adapter.key --source urn:spine:application --domain application --count 50
//! ```
//!
//! Wire your spine in by replacing `sample_events` with your own recoveries, decisions,
//! health changes and directive acks (`metaloop_core::protocol::EventData`); see
//! docs/PROTOCOL.md for every event type and the signing rules.

use metaloop_core::protocol::{Decision, EventData, Recovery};
use metaloop_core::time::Timestamp;
use metaloop_mesh::EventSigner;

struct Args {
    server: String,
    token: String,
    key: String,
    source: String,
    domain: String,
    count: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        server: "http://127.0.0.1:7171".into(),
        token: std::env::var("METALOOP_TOKEN").unwrap_or_default(),
        key: String::new(),
        source: String::new(),
        domain: "application".into(),
        count: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => a.server = value()?,
            "--token" => a.token = value()?,
            "--key" => a.key = value()?,
            "--source" => a.source = value()?,
            "--domain" => a.domain = value()?,
            "--count" => {
                a.count = value()?
                    .parse()
                    .map_err(|_| "--count must be a number".to_string())?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.key.is_empty() || a.source.is_empty() || a.token.is_empty() {
        return Err("usage: adapter --key FILE --source URN --token TOKEN [--server URL] [--domain D] [--count N]".into());
    }
    Ok(a)
}

/// A recovery and the decision behind it, per incident.
fn sample_events(domain: &str, count: usize, seed: u64) -> Vec<EventData> {
    (0..count)
        .flat_map(|i| {
            let id = format!("{seed}-{i}");
            let ok = !(i * 7 + seed as usize).is_multiple_of(10);
            let r = Recovery {
                domain: domain.into(),
                incident_id: format!("inc-{id}"),
                playbook: "restart-service".into(),
                duration_s: 20.0 + (i % 13) as f64,
                autonomous: !i.is_multiple_of(4),
                human_override: false,
                experiment: None,
            };
            [
                EventData::DecisionMade(Decision {
                    domain: domain.into(),
                    decision_id: format!("dec-{id}"),
                    confidence: 0.8,
                    autonomous: !i.is_multiple_of(4),
                    approved_by_human: i.is_multiple_of(4),
                    overridden: false,
                    experiment: None,
                }),
                if ok {
                    EventData::RecoverySucceeded(r)
                } else {
                    EventData::RecoveryFailed(r)
                },
            ]
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let secret = std::fs::read_to_string(&a.key).unwrap_or_else(|e| {
        eprintln!("error: {}: {e}", a.key);
        std::process::exit(2)
    });
    let key = metaloop_mesh::keys::parse_secret_key(secret.trim()).unwrap_or_else(|e| {
        eprintln!("error: {}: {e}", a.key);
        std::process::exit(2)
    });
    let signer = EventSigner::new(a.source.clone(), key);
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let seed = now.millis() as u64;
    let events: Vec<_> = sample_events(&a.domain, a.count, seed)
        .iter()
        .enumerate()
        .map(|(i, data)| signer.spine_event(format!("{seed}-{i}"), now, data))
        .collect();
    let body = metaloop_mesh::envelope::batch_to_json(&events);
    let resp = metaloop::http::client()
        .post(format!("{}/v1/events", a.server.trim_end_matches('/')))
        .bearer_auth(&a.token)
        .header("content-type", "application/cloudevents-batch+json")
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            println!("{status}\n{text}");
            if !status.is_success() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("error: cannot reach {}: {e}", a.server);
            std::process::exit(1);
        }
    }
}
