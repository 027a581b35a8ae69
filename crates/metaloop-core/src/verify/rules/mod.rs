//! The verification rules of the tools users would pick instead of metaloop, re-implemented
//! faithfully so that `metaloop evaluate` can compare decisions with theirs:
//! Argo Rollouts' and Flagger's threshold count ([`argo`]) and Kayenta's Mann–Whitney judge
//! ([`kayenta`]). Both work on one measurement per cycle, as those tools work on one metric
//! query per analysis interval.

pub mod argo;
pub mod kayenta;

pub use argo::ThresholdCount;
pub use kayenta::{Classification, KayentaJudge};

/// What a rule decides at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleDecision {
    /// Keep measuring.
    Wait,
    /// The change passed: keep it (promote).
    Pass,
    /// The change failed: roll it back.
    Fail,
}
