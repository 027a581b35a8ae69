//! The human team: handles escalations and overrides, slower and better than the planner.

/// The humans of one domain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HumanTeam {
    /// Success probability of a human-handled incident.
    pub(crate) success: f64,
    /// Mean execution time of a human-handled incident, seconds.
    pub(crate) exec_mean_s: f64,
    /// Probability that a human overrides an autonomous decision.
    pub(crate) override_prob: f64,
    /// How the team breaks down when it gets too much work, if it does.
    pub(crate) overload: Option<Overload>,
}

/// A small team overloads when the planner escalates too much.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Overload {
    /// The team copes while the planner threshold is at most this.
    pub(crate) threshold_limit: f64,
    /// How long after the threshold rises above the limit the team falls behind, ms.
    pub(crate) delay_ms: i64,
    /// Human success probability while overloaded.
    pub(crate) success: f64,
    /// Human execution time multiplier while overloaded.
    pub(crate) exec_factor: f64,
}

impl HumanTeam {
    /// Success probability, overloaded or not.
    pub(crate) fn success(&self, overloaded: bool) -> f64 {
        match (&self.overload, overloaded) {
            (Some(o), true) => o.success,
            _ => self.success,
        }
    }

    /// Mean execution time, overloaded or not.
    pub(crate) fn exec_mean_s(&self, overloaded: bool) -> f64 {
        match (&self.overload, overloaded) {
            (Some(o), true) => self.exec_mean_s * o.exec_factor,
            _ => self.exec_mean_s,
        }
    }
}
