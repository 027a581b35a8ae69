//! The health graph: node states and dependencies per domain.

use crate::protocol::{HealthChange, HealthState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub state: HealthState,
    /// Fully qualified ids (`domain/node`) of the nodes this one depends on.
    pub depends_on: Vec<String>,
}

/// Node states keyed by `domain/node`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthGraph {
    pub nodes: BTreeMap<String, Node>,
}

/// A degraded or down node with degraded dependents in other domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cascade {
    /// `domain/node` of the root.
    pub root: String,
    pub root_domain: String,
    pub root_node: String,
    /// Degraded nodes that (transitively) depend on the root.
    pub dependents: Vec<String>,
    /// Every domain touched, root's first.
    pub domains: Vec<String>,
}

/// Splits `domain/node` into its parts.
pub fn split_id(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or(("", id))
}

impl HealthGraph {
    /// Applies a `health.changed` event. Dependencies given as bare node names are taken to
    /// be in the event's own domain.
    pub fn apply(&mut self, change: &HealthChange) {
        let id = format!("{}/{}", change.domain, change.node);
        let depends_on = change
            .depends_on
            .iter()
            .map(|d| {
                if d.contains('/') {
                    d.clone()
                } else {
                    format!("{}/{d}", change.domain)
                }
            })
            .collect();
        self.nodes.insert(
            id,
            Node {
                state: change.state,
                depends_on,
            },
        );
    }

    /// Nodes not healthy, per domain.
    pub fn unhealthy_by_domain(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, n) in &self.nodes {
            if n.state != HealthState::Healthy {
                let (d, node) = split_id(id);
                out.entry(d.to_string()).or_default().push(node.to_string());
            }
        }
        out
    }

    /// Worst state of a domain's nodes (healthy when it has none).
    pub fn domain_state(&self, domain: &str) -> HealthState {
        self.nodes
            .iter()
            .filter(|(id, _)| split_id(id).0 == domain)
            .map(|(_, n)| n.state)
            .max()
            .unwrap_or(HealthState::Healthy)
    }

    /// Unhealthy roots (unhealthy nodes whose own dependencies are all healthy) with the
    /// unhealthy nodes that depend on them, when those span more than one domain.
    pub fn cascades(&self) -> Vec<Cascade> {
        let unhealthy = |id: &str| {
            self.nodes
                .get(id)
                .is_some_and(|n| n.state != HealthState::Healthy)
        };
        let mut out = Vec::new();
        for (id, node) in &self.nodes {
            if node.state == HealthState::Healthy || node.depends_on.iter().any(|d| unhealthy(d)) {
                continue;
            }
            // everything unhealthy that reaches `id` through depends_on edges
            let mut dependents = BTreeSet::new();
            let mut frontier = vec![id.clone()];
            while let Some(cur) = frontier.pop() {
                for (other, n) in &self.nodes {
                    if n.state != HealthState::Healthy
                        && n.depends_on.contains(&cur)
                        && dependents.insert(other.clone())
                    {
                        frontier.push(other.clone());
                    }
                }
            }
            let (root_domain, root_node) = split_id(id);
            let mut domains = vec![root_domain.to_string()];
            for d in &dependents {
                let dom = split_id(d).0.to_string();
                if !domains.contains(&dom) {
                    domains.push(dom);
                }
            }
            if domains.len() > 1 {
                out.push(Cascade {
                    root: id.clone(),
                    root_domain: root_domain.to_string(),
                    root_node: root_node.to_string(),
                    dependents: dependents.into_iter().collect(),
                    domains,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(domain: &str, node: &str, state: HealthState, deps: &[&str]) -> HealthChange {
        HealthChange {
            domain: domain.into(),
            node: node.into(),
            state,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn finds_the_root_of_a_cross_domain_cascade() {
        let mut g = HealthGraph::default();
        g.apply(&change(
            "infrastructure",
            "db-primary",
            HealthState::Degraded,
            &[],
        ));
        g.apply(&change(
            "infrastructure",
            "network",
            HealthState::Healthy,
            &[],
        ));
        g.apply(&change(
            "application",
            "api-gateway",
            HealthState::Degraded,
            &["infrastructure/db-primary"],
        ));
        g.apply(&change(
            "security",
            "authz",
            HealthState::Degraded,
            &["infrastructure/db-primary"],
        ));
        let c = g.cascades();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].root, "infrastructure/db-primary");
        assert_eq!(
            c[0].domains,
            vec!["infrastructure", "application", "security"]
        );
        assert_eq!(g.domain_state("application"), HealthState::Degraded);
        g.apply(&change(
            "infrastructure",
            "db-primary",
            HealthState::Healthy,
            &[],
        ));
        assert!(
            g.cascades().is_empty(),
            "dependents alone are no cascade: their root is healthy"
        );
    }
}
