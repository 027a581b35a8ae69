//! The policy test file: what the tests feed the supervisor and what they expect of it.

use crate::config::{ConfigError, FileConfig, parse_toml};
use metaloop_core::config::SupervisorConfig;
use metaloop_core::goal::Goal;
use metaloop_core::policy::MetaPolicy;
use metaloop_core::protocol::HealthState;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A policy test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// A `metaloop.toml` whose environment, goals, policies, approval matrix and verification
    /// settings the tests run under, relative to the test file (default: the built-ins).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Files of `[[policies]]` that replace the configuration's policies.
    #[serde(default)]
    pub policy_files: Vec<PathBuf>,
    /// Policies under test, inline; with `policy_files`, they replace the configuration's.
    #[serde(default)]
    pub policies: Vec<MetaPolicy>,
    /// Goals, replacing the configuration's.
    #[serde(default)]
    pub goals: Option<Vec<Goal>>,
    /// The environment the approval matrix is read for (default: the configuration's).
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

/// A file of policies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policies: Vec<MetaPolicy>,
}

/// What the spine does with a published directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpineMode {
    /// Applies it and acknowledges with the knob's previous value.
    #[default]
    Apply,
    /// Refuses it.
    Refuse,
    /// Never answers.
    Silent,
}

/// One test: input series, cycle by cycle, and expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// Cycles to run (default: the longest series, or the last cycle an expectation names).
    #[serde(default)]
    pub cycles: Option<u64>,
    /// Events per series, per domain and cycle (default 100).
    #[serde(default = "default_incidents")]
    pub incidents: u32,
    /// A simulated approver approves every request at once (default: requests wait).
    #[serde(default)]
    pub approve: bool,
    /// What the spine does with published directives.
    #[serde(default)]
    pub spine: SpineMode,
    /// Knob values before the test, by `domain/knob` (numbers default to 0.7 for
    /// `planner.confidence_threshold`, otherwise 0; booleans to the opposite of what is set).
    #[serde(default)]
    pub knobs: BTreeMap<String, serde_json::Value>,
    /// KPI series by domain, then by KPI (see [`super::series`] for the notation).
    #[serde(default)]
    pub series: BTreeMap<String, BTreeMap<String, String>>,
    /// Health changes, at the start of the cycle named.
    #[serde(default)]
    pub health: Vec<HealthStep>,
    /// The directives each named cycle must issue (cycles not named are not checked).
    #[serde(default)]
    pub expect: Vec<ExpectCycle>,
    /// Verdicts the test's directives must reach.
    #[serde(default)]
    pub expect_verdicts: Vec<ExpectVerdict>,
}

fn default_incidents() -> u32 {
    100
}

/// A node's health changes at the start of `cycle`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthStep {
    pub cycle: u64,
    pub domain: String,
    pub node: String,
    pub state: HealthState,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// The directives issued in one cycle; an empty list expects none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectCycle {
    pub cycle: u64,
    pub directives: Vec<ExpectDirective>,
}

/// How a directive went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPath {
    /// Published without approval.
    Auto,
    /// Sent for approval.
    Required,
    /// A would-have directive of a shadow policy.
    Shadow,
}

impl ApprovalPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalPath::Auto => "auto",
            ApprovalPath::Required => "required",
            ApprovalPath::Shadow => "shadow",
        }
    }
}

/// A directive's expected fields; a field left out matches anything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDirective {
    #[serde(rename = "type")]
    pub directive_type: Option<String>,
    pub domain: Option<String>,
    pub knob: Option<String>,
    /// The impact it was gated at (after the policy's approval override).
    pub impact: Option<String>,
    pub approval: Option<ApprovalPath>,
    pub policy: Option<String>,
    /// The value it sets or the adjustment it adds.
    pub value: Option<serde_json::Value>,
}

/// A verdict a directive must reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectVerdict {
    /// Which directive: the first that matches these fields (and `issued`, when given).
    #[serde(flatten)]
    pub directive: ExpectDirective,
    /// The cycle it was issued in.
    pub issued: Option<u64>,
    /// `verified`, `no_effect`, `degraded` or `inconclusive`.
    pub outcome: String,
    /// The cycle the verdict must be reached in (default: any).
    pub cycle: Option<u64>,
    /// Its status when the test ends, e.g. `rolled_back`.
    pub status: Option<String>,
}

/// A test file with everything it names loaded.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub config: SupervisorConfig,
    pub tests: Vec<TestCase>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))
}

/// Reads a test file and what it names; errors carry `file:line:column`.
pub fn load(path: &Path) -> Result<LoadedFile, ConfigError> {
    let name = path.display().to_string();
    let text = read(path)?;
    let file: TestFile = parse_toml(&text, &name)?;
    crate::config::check_expressions(&text, &name, &file.policies)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut config = match &file.config {
        Some(c) => FileConfig::load(&dir.join(c))?.supervisor(),
        None => SupervisorConfig::default(),
    };
    let mut policies: Vec<MetaPolicy> = Vec::new();
    for p in &file.policy_files {
        let p = dir.join(p);
        let text = read(&p)?;
        let f: PolicyFile = parse_toml(&text, &p.display().to_string())?;
        crate::config::check_expressions(&text, &p.display().to_string(), &f.policies)?;
        for policy in f.policies {
            policy
                .validate()
                .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
            policies.push(policy);
        }
    }
    for policy in &file.policies {
        policy
            .validate()
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
    }
    policies.extend(file.policies.iter().cloned());
    if !policies.is_empty() {
        config.policies = policies;
    }
    if let Some(goals) = &file.goals {
        config.goals = goals.clone();
    }
    if let Some(env) = &file.environment {
        config.environment = env.clone();
    }
    config
        .validate()
        .map_err(|e| ConfigError(format!("{name}: {e}")))?;
    if file.tests.is_empty() {
        return Err(ConfigError(format!("{name}: no [[tests]]")));
    }
    for t in &file.tests {
        check_test(t).map_err(|e| ConfigError(format!("{name}: test {:?}: {e}", t.name)))?;
    }
    Ok(LoadedFile {
        path: path.to_path_buf(),
        config,
        tests: file.tests,
    })
}

/// Checks what serde cannot: series notation and ranges, cycle numbers.
fn check_test(t: &TestCase) -> Result<(), String> {
    if t.incidents == 0 {
        return Err("incidents must be at least 1".into());
    }
    for (domain, kpis) in &t.series {
        for (kpi, text) in kpis {
            let points =
                super::series::parse(text).map_err(|e| format!("series {domain}.{kpi}: {e}"))?;
            super::events::check_series(kpi, &points)
                .map_err(|e| format!("series {domain}.{kpi}: {e}"))?;
        }
    }
    for e in &t.expect {
        if e.cycle == 0 {
            return Err("expect: cycles are numbered from 1".into());
        }
    }
    for h in &t.health {
        if h.cycle == 0 {
            return Err("health: cycles are numbered from 1".into());
        }
    }
    for v in &t.expect_verdicts {
        if !["verified", "no_effect", "degraded", "inconclusive"].contains(&v.outcome.as_str()) {
            return Err(format!(
                "expect_verdicts: unknown outcome {:?}: expected verified, no_effect, degraded or inconclusive",
                v.outcome
            ));
        }
    }
    Ok(())
}

/// The policies of a file: a file of `[[policies]]` only, or a whole `metaloop.toml` (its
/// policies, the built-in ones when it sets none). Errors carry `file:line:column`.
pub fn load_policies(path: &Path) -> Result<Vec<MetaPolicy>, ConfigError> {
    let name = path.display().to_string();
    let text = read(path)?;
    let table: toml::Table = parse_toml(&text, &name)?;
    if table.keys().all(|k| k == "policies") {
        let f: PolicyFile = parse_toml(&text, &name)?;
        crate::config::check_expressions(&text, &name, &f.policies)?;
        for p in &f.policies {
            p.validate()
                .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        }
        return Ok(f.policies);
    }
    Ok(FileConfig::load(path)?.supervisor().policies)
}
