//! Simulates one day of every scenario and prints how fast:
//! `cargo run --release -p metaloop-sim --example day`.

use metaloop_core::protocol::EventData;
use metaloop_core::time::Timestamp;
use metaloop_sim::{Scenario, Spine};
use std::time::Instant;

fn main() {
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid time");
    for scenario in Scenario::ALL {
        let mut spine = Spine::new(scenario, 1, start);
        let mut events = Vec::new();
        let (mut total, mut recoveries) = (0usize, 0usize);
        let began = Instant::now();
        for cycle in 1..=288 {
            spine.run_until(start.plus_millis(cycle * 300_000), &mut events);
            total += events.len();
            recoveries += events
                .iter()
                .filter(|e| {
                    matches!(
                        e.data,
                        EventData::RecoverySucceeded(_) | EventData::RecoveryFailed(_)
                    )
                })
                .count();
            events.clear();
        }
        let elapsed = began.elapsed().as_secs_f64();
        println!(
            "{:<14} one simulated day: {recoveries} incidents, {total} events in {:.3} s ({:.0} events/s, {:.0}x real time)",
            scenario.name(),
            elapsed,
            total as f64 / elapsed,
            86_400.0 / elapsed
        );
    }
}
