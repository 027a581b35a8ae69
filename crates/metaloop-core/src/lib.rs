//! metaloop's sans-IO core.
//!
//! Plain data in, effects out, time passed in as an argument: no async, no threads, no I/O.
//! The same core runs under the async runtime, under the simulator and under replay.
#![forbid(unsafe_code)]

pub mod protocol;
pub mod time;
