//! Systemic patterns and cross-domain correlations.

use crate::health::Cascade;
use serde::{Deserialize, Serialize};

/// A pattern that spans domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemicPattern {
    /// One unhealthy node whose dependents in other domains are unhealthy too.
    DependencyCascade(Cascade),
    /// The same KPI worse than its baseline in several domains.
    MultiDomainDrift { kpi: String, domains: Vec<String> },
}

impl SystemicPattern {
    /// The pattern's kind, as policies name it.
    pub fn kind(&self) -> &'static str {
        match self {
            SystemicPattern::DependencyCascade(_) => "dependency_cascade",
            SystemicPattern::MultiDomainDrift { .. } => "multi_domain_drift",
        }
    }

    /// A stable key identifying this pattern across cycles.
    pub fn key(&self) -> String {
        match self {
            SystemicPattern::DependencyCascade(c) => format!("dependency_cascade:{}", c.root),
            SystemicPattern::MultiDomainDrift { kpi, .. } => format!("multi_domain_drift:{kpi}"),
        }
    }

    /// Domains involved.
    pub fn domains(&self) -> &[String] {
        match self {
            SystemicPattern::DependencyCascade(c) => &c.domains,
            SystemicPattern::MultiDomainDrift { domains, .. } => domains,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            SystemicPattern::DependencyCascade(c) => format!(
                "{} is unhealthy and {} dependent node(s) in {} degrade with it",
                c.root,
                c.dependents.len(),
                c.domains[1..].join(", ")
            ),
            SystemicPattern::MultiDomainDrift { kpi, domains } => {
                format!("{kpi} is worse than its baseline in {}", domains.join(", "))
            }
        }
    }
}

/// Pearson correlation of one KPI between two domains over recent cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    pub kpi: String,
    pub a: String,
    pub b: String,
    pub r: f64,
    pub cycles: usize,
}

/// Pearson's r of two equally long series, `None` when undefined (fewer than 3 points or
/// a constant series).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_known_values() {
        // perfectly linear
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // x = 1..5, y = [2, 4, 5, 4, 5]: r = 6 / sqrt(10 * 6) = 0.7745966692
        let r = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 4.0, 5.0]).unwrap();
        assert!((r - 0.774_596_669_2).abs() < 1e-9, "{r}");
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }
}
