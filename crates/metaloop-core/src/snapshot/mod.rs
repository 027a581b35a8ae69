//! The cross-domain snapshot: what the supervisor sees at the end of a cycle.

mod builder;
mod pattern;
mod recent;

pub use builder::{SnapshotBuilder, SnapshotInputs};
pub use pattern::{Correlation, SystemicPattern};
pub use recent::RecentWindows;

use crate::kpi::DomainWindow;
use crate::protocol::HealthState;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One playbook's record in the snapshot window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookSummary {
    pub runs: u64,
    pub success_rate: Option<f64>,
    pub autonomous_runs: u64,
    pub autonomous_success_rate: Option<f64>,
}

/// One domain's view.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainSnapshot {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// Change against the domain's baseline (value − baseline), per KPI.
    pub drift: BTreeMap<String, f64>,
    /// Signed gaps against the goals (positive = worse).
    pub goal_gaps: BTreeMap<String, f64>,
    pub health: HealthState,
    /// KPI values over the domain's window; a KPI with no data is absent (missing, not 0).
    pub kpis: BTreeMap<String, f64>,
    pub playbooks: BTreeMap<String, PlaybookSummary>,
    /// Observations behind each KPI.
    pub samples: BTreeMap<String, u64>,
    pub trust_exceptions: u64,
    /// Nodes not healthy.
    pub unhealthy_nodes: Vec<String>,
    /// The merged statistics behind the values (not part of the record: it is rebuilt from
    /// the per-cycle windows).
    #[serde(skip)]
    pub window: DomainWindow,
    /// Cycles merged into the window (shorter right after a change in the domain).
    pub window_cycles: u32,
}

/// Under- and over-performing domains.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Analysis {
    /// Domains missing a goal by more than its margin, with the KPIs concerned.
    pub underperforming: BTreeMap<String, Vec<String>>,
    /// Domains meeting every goal they have data for.
    pub overperforming: Vec<String>,
}

/// The snapshot of one cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CrossDomainSnapshot {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    pub analysis: Analysis,
    pub correlations: Vec<Correlation>,
    /// Fraction of known domains that reported KPI data in the window.
    pub coverage: f64,
    pub cycle: u64,
    pub domains: BTreeMap<String, DomainSnapshot>,
    /// KPIs pooled over every domain.
    pub global_kpis: BTreeMap<String, f64>,
    pub global_samples: BTreeMap<String, u64>,
    /// The pooled statistics behind the global values (not recorded).
    #[serde(skip)]
    pub global_window: DomainWindow,
    /// Signed global gaps (positive = worse than target).
    pub goal_gaps: BTreeMap<String, f64>,
    pub id: String,
    pub patterns: Vec<SystemicPattern>,
    pub time: Timestamp,
}
