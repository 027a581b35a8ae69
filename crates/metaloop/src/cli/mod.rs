//! Subcommands, one file each.

pub mod bench_cycle;
pub mod bench_dashboard;
pub mod bench_ingest;
pub mod bench_policies;
pub mod check_proof;
pub mod evaluate;
pub mod ledger_checkpoint;
pub mod output;
pub mod policy_backtest;
pub mod policy_test;
pub mod witness;
