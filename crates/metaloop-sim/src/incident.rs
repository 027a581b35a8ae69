//! One incident: how the planner, the playbook and the humans handle it, sampled exactly as
//! `kpis::expected` integrates it.

use crate::burst::Stratum;
use crate::domain::{DURATION_CV, Situation};
use rand::Rng;
use rand_distr::StandardNormal;

/// The fate of one incident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    /// Index of the playbook that ran (under the planner or a human); `None` when no
    /// playbook was available and a human recovered by hand.
    pub(crate) playbook: Option<usize>,
    /// The planner's confidence.
    pub(crate) confidence: f64,
    /// The planner decided alone (it may still have been overridden).
    pub(crate) autonomous_decision: bool,
    /// A human overrode the planner's autonomous decision.
    pub(crate) overridden: bool,
    /// The recovery resolved the incident.
    pub(crate) succeeded: bool,
    /// Onset to detection, milliseconds.
    pub(crate) detection_ms: i64,
    /// Onset to resolution (or giving up), milliseconds.
    pub(crate) duration_ms: i64,
}

impl Outcome {
    /// True when the recovery ran without a human.
    pub(crate) fn ran_autonomously(&self) -> bool {
        self.autonomous_decision && !self.overridden
    }
}

/// A lognormal draw with the given mean and the model's coefficient of variation, from a
/// standard normal draw `z`.
pub(crate) fn lognormal(mean: f64, z: f64) -> f64 {
    let sigma2 = (1.0 + DURATION_CV * DURATION_CV).ln();
    (mean.ln() - sigma2 / 2.0 + sigma2.sqrt() * z).exp()
}

/// Samples one incident. Always consumes the same number of random draws, whatever the
/// path, so that runs with different knobs share their random numbers incident by incident.
/// An incident that shares its cluster's fate has its success draw moved into the cluster's
/// stratum.
pub(crate) fn sample<R: Rng>(s: &Situation<'_>, rng: &mut R, fate: Option<Stratum>) -> Outcome {
    let u_playbook: f64 = rng.random();
    let u_band: f64 = rng.random();
    let u_override: f64 = rng.random();
    let u_success: f64 = rng.random();
    let u_success = fate.map_or(u_success, |stratum| stratum.remap(u_success));
    let z_detection: f64 = rng.sample(StandardNormal);
    let z_exec: f64 = rng.sample(StandardNormal);

    let planned = pick_playbook(s, u_playbook);
    let band = &s.spec.planner.bands[s.spec.planner.band_for(u_band)];
    let playbook = s.knobs.effective_playbook(s.spec, planned);
    let autonomous_decision = playbook.is_some() && s.acts_autonomously(band);
    let overridden = autonomous_decision && u_override < s.override_prob();
    let (success_p, exec_mean) = match playbook {
        Some(run) if autonomous_decision && !overridden => (
            s.autonomous_success(band, run),
            s.autonomous_exec_mean_s(run),
        ),
        // in the review band: the planner's playbook, after a human's approval
        Some(run) if !autonomous_decision && s.reviewed(band) => (
            s.autonomous_success(band, run),
            s.autonomous_exec_mean_s(run) + s.review_delay_s(),
        ),
        _ => (s.human_success(), s.human_exec_mean_s()),
    };
    let detection_ms = to_millis(lognormal(s.detection_mean_s(), z_detection));
    let exec_ms = to_millis(lognormal(exec_mean, z_exec));
    Outcome {
        playbook,
        confidence: band.confidence,
        autonomous_decision,
        overridden,
        succeeded: u_success < success_p,
        detection_ms,
        duration_ms: detection_ms + exec_ms,
    }
}

/// The planned playbook of an incident from a uniform draw, by share.
fn pick_playbook(s: &Situation<'_>, u: f64) -> usize {
    let mut acc = 0.0;
    let mut last = 0;
    for (i, p) in s.spec.incident_playbooks() {
        acc += p.share;
        if u < acc {
            return i;
        }
        last = i;
    }
    last
}

/// Seconds to whole milliseconds.
pub(crate) fn to_millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sampled_incidents_follow_the_expectation_including_the_manual_path() {
        let spec = crate::domain::toy::spec();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for (enabled, review_band) in [
            (vec![true, true], 0.0),
            (vec![true, false], 0.0),
            (vec![false, false], 0.0),
            (vec![true, true], 0.1),
            (vec![false, true], 0.1),
        ] {
            let knobs = crate::domain::Knobs {
                playbook_enabled: enabled.clone(),
                review_band,
                ..spec.default_knobs()
            };
            let conditions = crate::domain::Conditions {
                fault_penalty: 0.1,
                ..crate::domain::Conditions::calm(metaloop_core::time::Timestamp(0))
            };
            let s = Situation {
                spec: &spec,
                knobs: &knobs,
                conditions,
            };
            let want = crate::kpis::expected(&s);
            let n = 100_000;
            let (mut ok, mut auto, mut over, mut dur) = (0.0, 0.0, 0.0, 0.0);
            for _ in 0..n {
                let o = sample(&s, &mut rng, None);
                assert_eq!(o.playbook.is_none(), enabled == [false, false]);
                ok += o.succeeded as u8 as f64;
                auto += o.autonomous_decision as u8 as f64;
                over += o.overridden as u8 as f64;
                dur += o.duration_ms as f64 / 1000.0;
            }
            let n = n as f64;
            let se = |p: f64| (p * (1.0 - p) / n).sqrt().max(1e-9);
            assert!(
                (ok / n - want.overall_success_rate).abs() < 4.0 * se(want.overall_success_rate),
                "{enabled:?}"
            );
            assert!(
                (auto / n - want.autonomy_rate).abs() < 4.0 * se(want.autonomy_rate),
                "{enabled:?}"
            );
            assert!(
                (over / n - want.human_intervention_rate).abs()
                    < 4.0 * se(want.human_intervention_rate),
                "{enabled:?}"
            );
            // durations: cv 0.5 around means of at most 55 s bounds the standard error by 0.1 s
            assert!(
                (dur / n - want.mean_recovery_time_seconds).abs() < 0.4,
                "{enabled:?}"
            );
        }
    }

    #[test]
    fn shared_fates_keep_the_success_rate_and_correlate_a_cluster() {
        let spec = crate::domain::toy::spec();
        let knobs = spec.default_knobs();
        let s = Situation {
            spec: &spec,
            knobs: &knobs,
            conditions: crate::domain::Conditions::calm(metaloop_core::time::Timestamp(0)),
        };
        let want = crate::kpis::expected(&s).overall_success_rate;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut shocks = ChaCha8Rng::seed_from_u64(12);
        // pairs of incidents of one cluster, both sharing its fate
        let n = 100_000;
        let (mut ok, mut both) = (0.0, 0.0);
        for _ in 0..n {
            let stratum = Stratum::draw(&mut shocks);
            let a = sample(&s, &mut rng, Some(stratum)).succeeded;
            let b = sample(&s, &mut rng, Some(stratum)).succeeded;
            ok += (a as u8 + b as u8) as f64;
            both += (a && b) as u8 as f64;
        }
        let rate = ok / (2.0 * n as f64);
        // the two halves of a pair are correlated, so the pair is the unit: se ≤ √(p(1−p)/n)
        let se = (want * (1.0 - want) / n as f64).sqrt();
        assert!((rate - want).abs() < 4.0 * se, "{rate} vs {want}");
        // covariance of a pair against the profile's: H(1−H)(E[G_easy] − E[G_hard])²
        let profile = crate::kpis::success_profile(&s);
        let correlation = crate::burst::success_correlation(&profile)
            / (crate::burst::BURST_SHARED_FATE * crate::burst::BURST_SHARED_FATE);
        let covariance = both / n as f64 - rate * rate;
        let want_cov = correlation * want * (1.0 - want);
        assert!(
            // the product of two indicators has variance ≤ 0.25: se ≤ 0.0016
            (covariance - want_cov).abs() < 0.0064,
            "covariance {covariance} vs {want_cov}"
        );
        assert!(want_cov > 0.03, "{want_cov}");
    }

    #[test]
    fn lognormal_has_the_requested_mean_and_cv() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n)
            .map(|_| lognormal(18.0, rng.sample(StandardNormal)))
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = var.sqrt() / (n as f64).sqrt();
        assert!((mean - 18.0).abs() < 4.0 * se, "mean {mean}");
        assert!(
            (var.sqrt() / mean - DURATION_CV).abs() < 0.01,
            "cv {}",
            var.sqrt() / mean
        );
    }
}
