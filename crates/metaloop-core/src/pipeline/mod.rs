//! The directive pipeline: approval gating before publication.

pub mod approval;

pub use approval::{ApprovalMatrix, ApprovalRule, Requirement};
