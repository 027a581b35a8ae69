//! The threshold count of Argo Rollouts' AnalysisRun and Flagger's canary analysis.
//!
//! Both tools take one measurement per analysis interval, compare it with a fixed threshold
//! (Argo's `successCondition: result[0] >= 0.95`, Flagger's `thresholdRange: {min: 99}`),
//! and count: enough failed measurements roll the change back, enough successful ones
//! promote it. Here a cycle (5 minutes) is the interval, the cycle's value of the target KPI
//! is the measurement, and the threshold is the baseline: the mean of the cycles before the
//! change, moved by `tolerance` in the worse direction. A measurement succeeds when it is at
//! least as good as the threshold, as Flagger's `val < min` / `val > max` fail and equality
//! passes. A missing (NaN) or infinite value is a failed measurement: Flagger's providers
//! return `ErrNoValuesFound` for NaN and the check fails, and Argo's condition on NaN is
//! false, which with only a `successCondition` makes the measurement Failed.
//!
//! # How the tools count (sources followed)
//!
//! - **Argo Rollouts** (`argoproj/argo-rollouts`, `analysis/analysis.go`): the measurement
//!   loop in `runMeasurements` increments `Failed` on every failed measurement and never
//!   resets it, while `ConsecutiveSuccess` is reset by any failed, inconclusive or errored
//!   one. `assessMetricFailureInconclusiveOrError` fails the metric when
//!   `Failed > failureLimit` (default 0), before `assessMetricStatus` looks at successes:
//!   `ConsecutiveSuccess >= consecutiveSuccessLimit` (added in v1.8, default 0 = disabled)
//!   passes, and so does reaching `count` measurements without having failed.
//!   `consecutiveErrorLimit` (default 4) and `inconclusiveLimit` count measurements whose
//!   query errored or matched neither condition; a comparison with one threshold is never
//!   inconclusive, and a missing value is counted as failed (above), so neither applies
//!   here. Types and defaults: `pkg/apis/rollouts/v1alpha1/analysis_types.go`, `Metric`.
//! - **Flagger** (`fluxcd/flagger`, `pkg/controller/scheduler.go`, `advanceCanary`): a failed
//!   `runAnalysis` increments `Status.FailedChecks`, which is reset only when a new revision
//!   starts; the canary is rolled back when `FailedChecks >= threshold`
//!   (`Canary.GetAnalysisThreshold`, a threshold of 0 meaning 1). A failed check returns
//!   before `runAB` / `runBlueGreen`, so only successful checks advance `Status.Iterations`,
//!   and failures do not reset it; promotion follows once `iterations` have been reached.
//!   The docs state the same arithmetic: rollback takes `interval * threshold`
//!   (`docs/gitbook/usage/deployment-strategies.md`).
//!
//! So **both tools count failures in total, not in a row**: four failures, a success and one
//! more failure reach a limit of five. The issue this rule was specified from phrased it as
//! "failureLimit consecutive failures"; that reading is offered as
//! [`FailureCount::ConsecutiveFailures`], but the default is the tools' own counting.
//!
//! # Interpretations
//!
//! - `failure_limit` is the number of failed measurements that rolls back, as Flagger's
//!   `threshold`; Argo's `failureLimit` is one less ([`ThresholdCount::argo`] converts).
//! - The decision is taken at the look whose measurement reaches a limit. Flagger acts on it
//!   at its next tick (the threshold is checked before the next analysis), and its
//!   A/B and blue/green promotions spend one or two more successful checks on traffic
//!   switching; those actuation steps are not modelled.
//! - A decision is final, as a completed AnalysisRun or a promoted or rolled-back canary is:
//!   `judge` scans the measurements in order and returns the first limit reached, so later
//!   cycles cannot undo it.
//! - Argo with both `count` and `consecutiveSuccessLimit` ends Inconclusive when the count
//!   is reached without the run of successes (a pause for a human); that combination is not
//!   offered.
//! - `tolerance` is in the KPI's own units, as the tools' thresholds are absolute values.
//! - Flagger's progressive-traffic canary promotes on reaching `maxWeight` after
//!   `maxWeight / stepWeight` successful checks; that is the same count with
//!   `success_limit = maxWeight / stepWeight`.

use super::RuleDecision;

/// How failed measurements are counted towards `failure_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCount {
    /// Every failed measurement counts, whatever came between (Argo `failureLimit`, Flagger `threshold`).
    Failures,
    /// Only failures in a row count; a success resets the count (the phrasing).
    ConsecutiveFailures,
}

/// How measurements are counted towards `success_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessCount {
    /// Successful measurements in all; failures neither advance nor reset it (Flagger `iterations`).
    Successes,
    /// Successful measurements in a row; a failure resets it (Argo `consecutiveSuccessLimit`).
    ConsecutiveSuccesses,
    /// Measurements of any outcome, once the failure limit has not been reached (Argo `count`).
    Measurements,
}

/// Argo Rollouts' / Flagger's rule: count measurements against a threshold until a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdCount {
    /// Failed measurements that roll the change back (Flagger `threshold`, Argo `failureLimit + 1`); 0 never fails.
    pub failure_limit: u32,
    /// Measurements, counted as `successes` says, that promote the change; 0 never promotes.
    pub success_limit: u32,
    /// How far, in KPI units, a measurement may be worse than the baseline mean and still succeed (>= 0).
    pub tolerance: f64,
    /// How failed measurements are counted.
    pub failures: FailureCount,
    /// How measurements towards promotion are counted.
    pub successes: SuccessCount,
}

impl Default for ThresholdCount {
    /// Flagger's documented example: `threshold: 5`, `iterations: 10`
    /// (`docs/gitbook/tutorials/istio-progressive-delivery.md`, traffic mirroring; the same
    /// pair in the Contour, Gloo and Gateway API tutorials), with no tolerance.
    fn default() -> Self {
        Self::flagger(5, 10)
    }
}

impl ThresholdCount {
    /// Flagger's counting: `threshold` failed checks in all roll back (0 means 1, as
    /// `GetAnalysisThreshold`), `iterations` successful checks in all promote.
    pub fn flagger(threshold: u32, iterations: u32) -> Self {
        Self {
            failure_limit: threshold.max(1),
            success_limit: iterations,
            tolerance: 0.0,
            failures: FailureCount::Failures,
            successes: SuccessCount::Successes,
        }
    }

    /// Argo's counting with `consecutiveSuccessLimit`: more than `failure_limit` failed
    /// measurements in all fail (`None` is Argo's `-1`, never), `consecutive_success_limit`
    /// successes in a row pass.
    pub fn argo(failure_limit: Option<u32>, consecutive_success_limit: u32) -> Self {
        Self {
            failure_limit: failure_limit.map_or(0, |limit| limit.saturating_add(1)),
            success_limit: consecutive_success_limit,
            tolerance: 0.0,
            failures: FailureCount::Failures,
            successes: SuccessCount::ConsecutiveSuccesses,
        }
    }

    /// Argo's counting with `count`: more than `failure_limit` failed measurements in all
    /// fail, and `count` measurements taken without that pass.
    pub fn argo_count(failure_limit: u32, count: u32) -> Self {
        Self {
            failure_limit: failure_limit.saturating_add(1),
            success_limit: count,
            tolerance: 0.0,
            failures: FailureCount::Failures,
            successes: SuccessCount::Measurements,
        }
    }

    /// The threshold a measurement must reach: the mean of the finite `pre` values moved by
    /// `tolerance` in the worse direction; `None` without a finite baseline value.
    pub fn threshold(&self, pre: &[f64], higher_is_better: bool) -> Option<f64> {
        let (sum, n) = pre
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0, 0u32), |(sum, n), &v| (sum + v, n + 1));
        if n == 0 {
            return None;
        }
        let mean = sum / f64::from(n);
        let tolerance = self.tolerance.abs();
        Some(if higher_is_better {
            mean - tolerance
        } else {
            mean + tolerance
        })
    }

    /// The decision after the measurements in `post` (oldest first), against the baseline `pre`.
    pub fn judge(&self, pre: &[f64], post: &[f64], higher_is_better: bool) -> RuleDecision {
        let Some(threshold) = self.threshold(pre, higher_is_better) else {
            return RuleDecision::Wait;
        };
        let mut tally = Tally::default();
        for &value in post {
            // NaN compares false either way: a missing value is a failed measurement.
            let succeeded = if higher_is_better {
                value >= threshold
            } else {
                value <= threshold
            } && value.is_finite();
            tally.record(succeeded);
            // Failure first, as Argo's assessMetricStatus checks failureLimit before any
            // success criterion.
            if self.failure_limit > 0 && tally.failures(self.failures) >= self.failure_limit {
                return RuleDecision::Fail;
            }
            if self.success_limit > 0 && tally.successes(self.successes) >= self.success_limit {
                return RuleDecision::Pass;
            }
        }
        RuleDecision::Wait
    }
}

/// The counters Argo keeps in a `MetricResult`, plus the consecutive failures of the reading.
#[derive(Debug, Default)]
struct Tally {
    measurements: u32,
    failed: u32,
    successful: u32,
    consecutive_failed: u32,
    consecutive_successful: u32,
}

impl Tally {
    fn record(&mut self, succeeded: bool) {
        self.measurements += 1;
        if succeeded {
            self.successful += 1;
            self.consecutive_successful += 1;
            self.consecutive_failed = 0;
        } else {
            self.failed += 1;
            self.consecutive_failed += 1;
            self.consecutive_successful = 0;
        }
    }

    fn failures(&self, count: FailureCount) -> u32 {
        match count {
            FailureCount::Failures => self.failed,
            FailureCount::ConsecutiveFailures => self.consecutive_failed,
        }
    }

    fn successes(&self, count: SuccessCount) -> u32 {
        match count {
            SuccessCount::Successes => self.successful,
            SuccessCount::ConsecutiveSuccesses => self.consecutive_successful,
            SuccessCount::Measurements => self.measurements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuleDecision::{Fail, Pass, Wait};

    /// Baseline mean 100; a KPI where higher is better.
    const PRE: [f64; 4] = [98.0, 102.0, 99.0, 101.0];
    const GOOD: f64 = 100.0;
    const BAD: f64 = 99.5;

    /// The decision at every look: after 1, 2, ..., n cycles of `post`.
    fn looks(rule: &ThresholdCount, post: &[f64], higher_is_better: bool) -> Vec<RuleDecision> {
        (1..=post.len())
            .map(|n| rule.judge(&PRE, &post[..n], higher_is_better))
            .collect()
    }

    fn series(pattern: &str) -> Vec<f64> {
        pattern
            .chars()
            .map(|c| if c == 'S' { GOOD } else { BAD })
            .collect()
    }

    #[test]
    fn defaults_are_flaggers_documented_example() {
        let rule = ThresholdCount::default();
        assert_eq!(rule.failure_limit, 5);
        assert_eq!(rule.success_limit, 10);
        assert_eq!(rule.tolerance, 0.0);
        assert_eq!(rule.failures, FailureCount::Failures);
        assert_eq!(rule.successes, SuccessCount::Successes);
    }

    #[test]
    fn failures_are_counted_in_total_by_default() {
        // 4 failures, a success, 5 failures; limit 5. The tools count in total, so the
        // 5th failure overall (look 6) rolls back.
        let post = series("FFFFSFFFFF");
        let decisions = looks(&ThresholdCount::default(), &post, true);
        assert_eq!(decisions[..5], [Wait; 5]);
        assert_eq!(decisions[5], Fail);
        // Final: every later look says Fail too.
        assert!(decisions[5..].iter().all(|&d| d == Fail));
    }

    #[test]
    fn consecutive_failures_reset_on_a_success() {
        // The same series under the reading: the success resets the count, and the
        // 5th failure in a row is at look 10.
        let rule = ThresholdCount {
            failures: FailureCount::ConsecutiveFailures,
            ..ThresholdCount::default()
        };
        let decisions = looks(&rule, &series("FFFFSFFFFF"), true);
        assert_eq!(decisions[..9], [Wait; 9]);
        assert_eq!(decisions[9], Fail);
    }

    #[test]
    fn flagger_promotes_after_iterations_successes_in_total() {
        // Failures do not reset Flagger's iterations: 10 successes with 4 failures among
        // them promote at look 14, the 10th success.
        let post = series("SSFSSFSSFSSFSS");
        let decisions = looks(&ThresholdCount::default(), &post, true);
        assert_eq!(decisions[..13], [Wait; 13]);
        assert_eq!(decisions[13], Pass);
        // A 5th failure before the 10th success rolls back instead (look 13 here).
        let post = series("SSFSSFSSFSSFFS");
        let decisions = looks(&ThresholdCount::default(), &post, true);
        assert_eq!(decisions[..12], [Wait; 12]);
        assert_eq!(decisions[12], Fail);
    }

    #[test]
    fn argo_failure_limit_is_exceeded_not_reached() {
        // Argo's docs example `failureLimit: 3`: the 4th failed measurement fails the run
        // (`Failed > failureLimit`), as in TestAssessMetricStatusFailureLimit (failed 3,
        // limit 2 -> Failed; limit 3 -> Running).
        let rule = ThresholdCount::argo(Some(3), 0);
        let decisions = looks(&rule, &series("FSFSFSF"), true);
        assert_eq!(decisions[..6], [Wait; 6]);
        assert_eq!(decisions[6], Fail);
        assert_eq!(
            looks(&ThresholdCount::argo(Some(2), 0), &series("FFF"), true)[2],
            Fail
        );
        assert_eq!(
            looks(&ThresholdCount::argo(Some(3), 0), &series("FFF"), true)[2],
            Wait
        );
        // Argo's default failureLimit 0: the first failure fails.
        assert_eq!(
            looks(&ThresholdCount::argo(Some(0), 0), &series("F"), true),
            [Fail]
        );
    }

    #[test]
    fn argo_consecutive_success_limit() {
        // TestAssessMetricStatusConsecutiveSuccessLimit: failureLimit -1 (disabled),
        // consecutiveSuccessLimit 3; 3 successes in a row pass whatever failed before.
        let rule = ThresholdCount::argo(None, 3);
        let decisions = looks(&rule, &series("FSFFSSFSSS"), true);
        assert_eq!(decisions[..9], [Wait; 9]);
        assert_eq!(decisions[9], Pass);
        // TestAssessMetricStatusFailureLimitAndConsecutiveSuccessLimit: failureLimit 4 and
        // consecutiveSuccessLimit 4; the 5th failure fails before 4 successes in a row.
        let rule = ThresholdCount::argo(Some(4), 4);
        let decisions = looks(&rule, &series("SSSFSSSFFSFF"), true);
        assert_eq!(decisions[..11], [Wait; 11]);
        assert_eq!(decisions[11], Fail);
    }

    #[test]
    fn argo_count_passes_after_count_measurements_without_failing() {
        // count 5, failureLimit 1: two failures would fail; one failure among five passes.
        let rule = ThresholdCount::argo_count(1, 5);
        let decisions = looks(&rule, &series("SFSSS"), true);
        assert_eq!(decisions, [Wait, Wait, Wait, Wait, Pass]);
        // The second failure on the 5th measurement: failure is checked first.
        let decisions = looks(&rule, &series("SFSSF"), true);
        assert_eq!(decisions, [Wait, Wait, Wait, Wait, Fail]);
    }

    #[test]
    fn tolerance_moves_the_threshold_in_the_worse_direction() {
        // Baseline mean 100. With tolerance 1, 99.0 passes when higher is better and 101.0
        // passes when lower is better; 98.9 and 101.1 fail.
        let rule = ThresholdCount {
            tolerance: 1.0,
            ..ThresholdCount::flagger(1, 1)
        };
        assert_eq!(rule.threshold(&PRE, true), Some(99.0));
        assert_eq!(rule.threshold(&PRE, false), Some(101.0));
        assert_eq!(rule.judge(&PRE, &[99.0], true), Pass);
        assert_eq!(rule.judge(&PRE, &[98.9], true), Fail);
        assert_eq!(rule.judge(&PRE, &[101.0], false), Pass);
        assert_eq!(rule.judge(&PRE, &[101.1], false), Fail);
        // Without tolerance 99.0 fails.
        assert_eq!(
            ThresholdCount::flagger(1, 1).judge(&PRE, &[99.0], true),
            Fail
        );
    }

    #[test]
    fn direction_decides_which_side_fails() {
        let rule = ThresholdCount::flagger(1, 1);
        // Equal to the baseline passes both ways (Flagger fails only val < min / val > max).
        assert_eq!(rule.judge(&PRE, &[100.0], true), Pass);
        assert_eq!(rule.judge(&PRE, &[100.0], false), Pass);
        assert_eq!(rule.judge(&PRE, &[120.0], true), Pass);
        assert_eq!(rule.judge(&PRE, &[120.0], false), Fail);
        assert_eq!(rule.judge(&PRE, &[80.0], true), Fail);
        assert_eq!(rule.judge(&PRE, &[80.0], false), Pass);
    }

    #[test]
    fn missing_values_fail_and_missing_baseline_waits() {
        let rule = ThresholdCount::flagger(2, 3);
        assert_eq!(rule.judge(&PRE, &[f64::NAN], true), Wait);
        assert_eq!(rule.judge(&PRE, &[f64::NAN, f64::NAN], true), Fail);
        assert_eq!(rule.judge(&PRE, &[f64::INFINITY, f64::NAN], true), Fail);
        // Empty or all-missing baseline: nothing to compare with.
        assert_eq!(rule.judge(&[], &[1.0, 2.0, 3.0], true), Wait);
        assert_eq!(rule.judge(&[f64::NAN], &[1.0, 2.0, 3.0], true), Wait);
        // NaN in the baseline is skipped: mean of 98, 102 is 100.
        assert_eq!(rule.threshold(&[98.0, f64::NAN, 102.0], true), Some(100.0));
        // No measurement yet.
        assert_eq!(rule.judge(&PRE, &[], true), Wait);
    }

    #[test]
    fn zero_limits_disable_that_outcome() {
        let never_fails = ThresholdCount::argo(None, 0);
        assert_eq!(never_fails.judge(&PRE, &[BAD; 50], true), Wait);
        let never_passes = ThresholdCount::flagger(3, 0);
        assert_eq!(never_passes.judge(&PRE, &[GOOD; 50], true), Wait);
        // Flagger's threshold 0 means 1.
        assert_eq!(ThresholdCount::flagger(0, 10).failure_limit, 1);
    }
}
