//! The demo over NATS JetStream — signed events and directives on the real bus — reaches the
//! same decisions as in-process for the same seed. Needs NATS (`METALOOP_TEST_NATS`, default
//! nats://127.0.0.1:4222): with CI=true a missing server fails the test, otherwise it skips.

use metaloop::demo::{self, DemoOptions, Sink};
use metaloop_sim::Scenario;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn nats_url() -> Option<String> {
    let url =
        std::env::var("METALOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let addr = url.trim_start_matches("nats://").to_string();
    match std::net::TcpStream::connect(&addr) {
        Ok(_) => Some(url),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but NATS at {url} is unreachable: {e}"
            );
            eprintln!(
                "skipping the demo-over-NATS test: cannot connect to {url} ({e}); set METALOOP_TEST_NATS"
            );
            None
        }
    }
}

fn decisions(opts: &DemoOptions) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(demo::run(
            opts,
            Sink::Memory(Default::default()),
            Arc::new(AtomicBool::new(false)),
            None,
        ))
        .unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let directives: Vec<serde_json::Value> = v["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::json!([
                d["id"],
                d["type"],
                d["target_domain"],
                d["status"],
                d["lifecycle"],
                d["previous"],
                d["current"],
                d["verdict"]["details"]
            ])
        })
        .collect();
    let kpis: Vec<&serde_json::Value> = v["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["global_kpis"])
        .collect();
    serde_json::json!({ "directives": directives, "kpis": kpis, "events": v["totals"]["events_ingested"] })
}

#[test]
fn demo_over_nats_decides_as_in_process() {
    let Some(url) = nats_url() else { return };
    let local = DemoOptions {
        cycles: 20,
        auto_approve_as: Some("ops".into()),
        ..DemoOptions::new(Scenario::BadDirective, 2)
    };
    let over_bus = DemoOptions {
        mesh: Some(url),
        ..local.clone()
    };
    let a = decisions(&local);
    let b = decisions(&over_bus);
    assert!(
        a["directives"].as_array().unwrap().len() >= 3,
        "the run must decide something"
    );
    assert_eq!(a, b, "over NATS the supervisor decided differently");
}
