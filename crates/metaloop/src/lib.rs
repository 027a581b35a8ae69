//! The metaloop binary's library: the demo driver and the ledger commands, so tests can
//! drive them in-process.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod cosign;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod evaluate;
pub mod history;
pub mod ingest_journal;
pub mod ledger_cmd;
pub mod metrics;
pub mod notify;
pub mod runtime;
pub mod store;
