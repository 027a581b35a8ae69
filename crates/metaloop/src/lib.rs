//! The metaloop binary's library: the demo driver and the ledger commands, so tests can
//! drive them in-process.
#![forbid(unsafe_code)]

pub mod api;
pub mod backtest;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod cosign;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod evaluate;
pub mod ha;
pub mod history;
pub mod http;
pub mod ingest_journal;
pub mod ledger_cmd;
pub mod metrics;
pub mod notify;
pub mod policy_test;
pub mod runtime;
pub mod store;
pub mod workers;

/// The first 8 characters of an id, for text.
pub fn short_id(id: &str) -> &str {
    metaloop_core::supervisor::short(id)
}
