//! Playbooks: the recovery procedures the planner runs, with their latent true quality.

use metaloop_core::time::Timestamp;

/// How a playbook's latent quality evolves over virtual time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Quality {
    /// The same quality forever.
    Constant(f64),
    /// Linear change from `from` (at `begin`) to `to` (at `end`), flat outside.
    Linear {
        from: f64,
        to: f64,
        begin: Timestamp,
        end: Timestamp,
    },
}

impl Quality {
    /// The quality at time `t`.
    pub(crate) fn at(&self, t: Timestamp) -> f64 {
        match *self {
            Quality::Constant(q) => q,
            Quality::Linear {
                from,
                to,
                begin,
                end,
            } => {
                if t <= begin {
                    from
                } else if t >= end {
                    to
                } else {
                    let span = (end.millis() - begin.millis()) as f64;
                    let done = (t.millis() - begin.millis()) as f64 / span;
                    from + (to - from) * done
                }
            }
        }
    }
}

/// A recovery procedure of one domain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Playbook {
    /// Name, as in the knob `playbook.<name>.enabled`.
    pub(crate) name: String,
    /// Fraction of the domain's incidents whose planned playbook this is (0 for playbooks
    /// that incidents never pick, such as failovers).
    pub(crate) share: f64,
    /// Multiplies the autonomous success probability.
    pub(crate) quality: Quality,
    /// Mean execution time when run autonomously, seconds.
    pub(crate) exec_mean_s: f64,
    /// The playbook that runs instead when this one is disabled.
    pub(crate) fallback: Option<String>,
    /// Whether the playbook is enabled when the simulation starts.
    pub(crate) enabled: bool,
}

impl Playbook {
    /// An enabled playbook with a constant quality.
    pub(crate) fn new(
        name: &str,
        share: f64,
        quality: f64,
        exec_mean_s: f64,
        fallback: &str,
    ) -> Self {
        Playbook {
            name: name.to_string(),
            share,
            quality: Quality::Constant(quality),
            exec_mean_s,
            fallback: Some(fallback.to_string()),
            enabled: true,
        }
    }

    /// The failover playbook of a health-graph node: never picked by incidents, disabled by
    /// default; enabling it heals the node when it is degraded.
    pub(crate) fn failover(node: &str) -> Self {
        Playbook {
            name: failover_playbook(node),
            share: 0.0,
            quality: Quality::Constant(1.0),
            exec_mean_s: 60.0,
            fallback: None,
            enabled: false,
        }
    }
}

/// The name of the failover playbook of a health-graph node: `failover-<node>`.
pub fn failover_playbook(node: &str) -> String {
    format!("failover-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_quality_interpolates_and_is_flat_outside() {
        let q = Quality::Linear {
            from: 1.0,
            to: 0.45,
            begin: Timestamp::from_secs(1200),
            end: Timestamp::from_secs(3000),
        };
        assert_eq!(q.at(Timestamp::from_secs(0)), 1.0);
        assert_eq!(q.at(Timestamp::from_secs(1200)), 1.0);
        assert!((q.at(Timestamp::from_secs(2100)) - 0.725).abs() < 1e-12);
        assert_eq!(q.at(Timestamp::from_secs(3000)), 0.45);
        assert_eq!(q.at(Timestamp::from_secs(9000)), 0.45);
    }
}
