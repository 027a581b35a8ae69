//! Subcommands, one file each.

pub mod evaluate;
