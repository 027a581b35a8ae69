//! Subcommands, one file each.

pub mod evaluate;
pub mod output;
