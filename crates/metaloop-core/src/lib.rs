//! metaloop's sans-IO core.
//!
//! Plain data in, effects out, time passed in as an argument: no async, no threads, no I/O.
//! The same core runs under the async runtime, under the simulator and under replay.
#![forbid(unsafe_code)]

pub mod alert;
pub mod config;
pub mod directive;
pub mod goal;
pub mod health;
pub mod kpi;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod record;
pub mod snapshot;
pub mod summary;
pub mod supervisor;
pub mod time;
pub mod verify;

pub use config::SupervisorConfig;
pub use supervisor::{Effect, Notification, Supervisor};
