//! The health graph: nodes per domain with cross-domain dependencies, the scripted fault of
//! the `correlated` scenario and its repair by a failover playbook.
//!
//! Convention: the failover playbook of node `N` (in `N`'s domain) is `failover-N`. Enabling
//! it while `N` is degraded (or having it enabled when `N` degrades) heals `N` after
//! `failover_delay_ms`; each dependent then heals `cascade_delay_ms` later, once all of its
//! own dependencies are healthy.

use metaloop_core::protocol::HealthState;
use metaloop_core::time::Timestamp;

/// A node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSpec {
    pub(crate) domain: String,
    pub(crate) name: String,
    /// `domain/node` ids of the nodes this one depends on.
    pub(crate) depends_on: Vec<String>,
}

impl NodeSpec {
    pub(crate) fn new(domain: &str, name: &str, depends_on: &[&str]) -> Self {
        NodeSpec {
            domain: domain.to_string(),
            name: name.to_string(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// `domain/node`.
    pub(crate) fn id(&self) -> String {
        format!("{}/{}", self.domain, self.name)
    }
}

/// A root node that degrades at a fixed moment and drags its dependents with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultScript {
    /// `domain/node` of the root.
    pub(crate) root: String,
    /// When the root degrades.
    pub(crate) at: Timestamp,
}

/// The graph's shape and the effect of faults on domains.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthSpec {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) fault: Option<FaultScript>,
    /// Delay between a node changing state and its dependents following, ms.
    pub(crate) cascade_delay_ms: i64,
    /// Delay between a failover starting and its node being healthy again, ms.
    pub(crate) failover_delay_ms: i64,
    /// Fraction of success lost in a domain with an unhealthy node.
    pub(crate) fault_penalty: f64,
    /// Incident rate multiplier in a domain with an unhealthy node.
    pub(crate) fault_rate_factor: f64,
}

/// A scheduled change of a node's state, checked again when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The scripted fault hits the node.
    Fault(usize),
    /// The node follows an unhealthy dependency (if it still is unhealthy).
    CascadeDegrade(usize),
    /// The node's failover completes.
    FailoverHeal(usize),
    /// The node recovers now that its dependencies are healthy (if they all are).
    CascadeHeal(usize),
}

/// The live state of the graph.
#[derive(Debug, Clone)]
pub(crate) struct HealthGraph {
    pub(crate) spec: HealthSpec,
    states: Vec<HealthState>,
    heal_pending: Vec<bool>,
}

impl HealthGraph {
    /// All nodes healthy.
    pub(crate) fn new(spec: HealthSpec) -> Self {
        let n = spec.nodes.len();
        HealthGraph {
            spec,
            states: vec![HealthState::Healthy; n],
            heal_pending: vec![false; n],
        }
    }

    pub(crate) fn nodes(&self) -> &[NodeSpec] {
        &self.spec.nodes
    }

    pub(crate) fn state(&self, node: usize) -> HealthState {
        self.states[node]
    }

    /// Index of a node by `domain/node` id.
    pub(crate) fn index_of_id(&self, id: &str) -> Option<usize> {
        self.spec.nodes.iter().position(|n| n.id() == id)
    }

    /// Index of a node by domain and name.
    pub(crate) fn index_of(&self, domain: &str, name: &str) -> Option<usize> {
        self.spec
            .nodes
            .iter()
            .position(|n| n.domain == domain && n.name == name)
    }

    fn dependencies(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        self.spec.nodes[node]
            .depends_on
            .iter()
            .filter_map(|d| self.index_of_id(d))
    }

    fn dependents(&self, node: usize) -> Vec<usize> {
        let id = self.spec.nodes[node].id();
        (0..self.spec.nodes.len())
            .filter(|&i| self.spec.nodes[i].depends_on.contains(&id))
            .collect()
    }

    /// True when some node of `domain` is not healthy now.
    pub(crate) fn domain_unhealthy(&self, domain: &str) -> bool {
        self.spec
            .nodes
            .iter()
            .zip(&self.states)
            .any(|(n, s)| n.domain == domain && *s != HealthState::Healthy)
    }

    /// True when some node of `domain` will stay unhealthy once every transition already
    /// set in motion (cascades, failovers in progress) has played out.
    pub(crate) fn domain_unhealthy_steady(&self, domain: &str) -> bool {
        (0..self.spec.nodes.len())
            .any(|i| self.spec.nodes[i].domain == domain && self.unhealthy_steady(i, 0))
    }

    fn unhealthy_steady(&self, node: usize, depth: usize) -> bool {
        if depth > self.spec.nodes.len() {
            return false; // a dependency cycle: nothing cascades around it
        }
        let deps: Vec<usize> = self.dependencies(node).collect();
        if deps.is_empty() {
            self.states[node] != HealthState::Healthy && !self.heal_pending[node]
        } else {
            deps.into_iter()
                .any(|d| self.unhealthy_steady(d, depth + 1))
        }
    }

    /// The scripted fault, if any: the root node and when it degrades.
    pub(crate) fn fault(&self) -> Option<(usize, Timestamp)> {
        let f = self.spec.fault.as_ref()?;
        Some((self.index_of_id(&f.root)?, f.at))
    }

    /// Starts a failover of `node` if it is unhealthy and not already being healed; returns
    /// the transition to schedule after `failover_delay_ms`.
    pub(crate) fn start_failover(&mut self, node: usize) -> Option<Transition> {
        if self.states[node] == HealthState::Healthy || self.heal_pending[node] {
            return None;
        }
        self.heal_pending[node] = true;
        Some(Transition::FailoverHeal(node))
    }

    /// Applies a due transition. Returns the node whose state changed (if any) and the
    /// follow-up transitions to schedule after `cascade_delay_ms`.
    pub(crate) fn apply(&mut self, transition: Transition) -> (Option<usize>, Vec<Transition>) {
        match transition {
            Transition::Fault(node) => {
                if self.states[node] != HealthState::Healthy {
                    return (None, Vec::new());
                }
                self.states[node] = HealthState::Degraded;
                let follow = self
                    .dependents(node)
                    .into_iter()
                    .map(Transition::CascadeDegrade)
                    .collect();
                (Some(node), follow)
            }
            Transition::CascadeDegrade(node) => {
                let dependency_unhealthy = self
                    .dependencies(node)
                    .any(|d| self.states[d] != HealthState::Healthy);
                if !dependency_unhealthy || self.states[node] != HealthState::Healthy {
                    return (None, Vec::new());
                }
                self.states[node] = HealthState::Degraded;
                let follow = self
                    .dependents(node)
                    .into_iter()
                    .map(Transition::CascadeDegrade)
                    .collect();
                (Some(node), follow)
            }
            Transition::FailoverHeal(node) | Transition::CascadeHeal(node) => {
                if let Transition::FailoverHeal(_) = transition {
                    self.heal_pending[node] = false;
                }
                let dependency_unhealthy = self
                    .dependencies(node)
                    .any(|d| self.states[d] != HealthState::Healthy);
                if dependency_unhealthy || self.states[node] == HealthState::Healthy {
                    return (None, Vec::new());
                }
                self.states[node] = HealthState::Healthy;
                let follow = self
                    .dependents(node)
                    .into_iter()
                    .map(Transition::CascadeHeal)
                    .collect();
                (Some(node), follow)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> HealthGraph {
        HealthGraph::new(HealthSpec {
            nodes: vec![
                NodeSpec::new("infrastructure", "db-primary", &[]),
                NodeSpec::new("application", "api-gateway", &["infrastructure/db-primary"]),
            ],
            fault: None,
            cascade_delay_ms: 60_000,
            failover_delay_ms: 60_000,
            fault_penalty: 0.25,
            fault_rate_factor: 1.5,
        })
    }

    #[test]
    fn fault_cascades_and_failover_heals_in_order() {
        let mut g = graph();
        let (changed, follow) = g.apply(Transition::Fault(0));
        assert_eq!(changed, Some(0));
        assert_eq!(follow, vec![Transition::CascadeDegrade(1)]);
        assert!(g.domain_unhealthy("infrastructure"));
        assert!(!g.domain_unhealthy("application"));
        assert!(
            g.domain_unhealthy_steady("application"),
            "the cascade is under way"
        );
        let heal = g.start_failover(0).unwrap();
        assert!(g.start_failover(0).is_none(), "one failover at a time");
        assert!(!g.domain_unhealthy_steady("application"));
        assert_eq!(g.apply(Transition::CascadeDegrade(1)).0, Some(1));
        let (changed, follow) = g.apply(heal);
        assert_eq!(changed, Some(0));
        assert_eq!(follow, vec![Transition::CascadeHeal(1)]);
        assert_eq!(g.apply(Transition::CascadeHeal(1)).0, Some(1));
        assert!(!g.domain_unhealthy("application"));
    }

    #[test]
    fn cascade_is_skipped_when_the_root_healed_first() {
        let mut g = graph();
        g.apply(Transition::Fault(0));
        let heal = g.start_failover(0).unwrap();
        g.apply(heal);
        assert_eq!(g.apply(Transition::CascadeDegrade(1)).0, None);
        assert_eq!(g.state(1), HealthState::Healthy);
    }
}
