//! Simulates one day of every scenario at each named volume and prints how fast:
//! `cargo run --release -p metaloop-sim --example day`. Below `High` the day has its daily
//! cycle and bursts (`SpineOptions::for_volume`).

use metaloop_core::protocol::EventData;
use metaloop_core::time::Timestamp;
use metaloop_sim::{Scenario, Spine, SpineOptions, Volume};
use std::time::Instant;

fn main() {
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid time");
    for volume in Volume::NAMED {
        for scenario in Scenario::ALL {
            let options = SpineOptions::for_volume(volume);
            let mut spine = Spine::with_options(scenario, 1, start, &options);
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
                "{:<7} {:<14} one simulated day: {recoveries} incidents, {total} events in {:.4} s ({:.0} events/s, {:.0}x real time)",
                volume.name(),
                scenario.name(),
                elapsed,
                total as f64 / elapsed,
                86_400.0 / elapsed
            );
        }
    }
}
