//! Bursts: incidents arrive in clusters that share a cause, so their fates are correlated
//! and per-cycle success counts vary more than independent incidents would make them.
//!
//! Clusters start as a Poisson process at `λ / m` (λ the domain's incident rate, `m` =
//! [`BURST_MEAN_SIZE`]); a cluster has `1 + G` incidents with `G` geometric on {0, 1, …} of
//! mean `m − 1`, so the long-run incident rate stays λ; its incidents follow one another at
//! exponential gaps of mean [`BURST_GAP_MEAN_S`].
//!
//! A cluster is hard with probability `H` = [`BURST_HARD_PROBABILITY`], easy otherwise. Each
//! of its incidents shares the cluster's fate with probability [`BURST_SHARED_FATE`]: its
//! success draw `u` (uniform on [0, 1), compared with its success probability `p`) is moved
//! into the worst `H` of outcomes in a hard cluster (`1 − H + H·u`) and into the best `1 − H`
//! in an easy one (`(1 − H)·u`). Averaged over clusters the draw is still uniform, so every
//! incident succeeds with exactly probability `p` whatever `p` is (no clamping, and the
//! analytic KPIs hold unchanged); only incidents of the same cluster become correlated.

use rand::Rng;

/// Mean number of incidents in a cluster.
pub const BURST_MEAN_SIZE: f64 = 3.0;

/// Mean gap between consecutive incidents of a cluster, seconds.
pub const BURST_GAP_MEAN_S: f64 = 30.0;

/// Probability that a cluster is hard: its incidents that share its fate draw their success
/// from the worst quarter of outcomes.
pub const BURST_HARD_PROBABILITY: f64 = 0.25;

/// Probability that an incident shares its cluster's fate rather than having its own.
pub const BURST_SHARED_FATE: f64 = 0.9;

/// Whether a cluster is hard or easy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stratum {
    /// The worst `H` of outcomes.
    Hard,
    /// The best `1 − H` of outcomes.
    Easy,
}

impl Stratum {
    /// Draws a cluster's stratum.
    pub(crate) fn draw<R: Rng>(rng: &mut R) -> Stratum {
        if rng.random::<f64>() < BURST_HARD_PROBABILITY {
            Stratum::Hard
        } else {
            Stratum::Easy
        }
    }

    /// Moves a uniform success draw into this stratum's share of outcomes.
    pub(crate) fn remap(self, u: f64) -> f64 {
        let h = BURST_HARD_PROBABILITY;
        match self {
            Stratum::Hard => 1.0 - h + h * u,
            Stratum::Easy => (1.0 - h) * u,
        }
    }

    /// Success probability, in this stratum, of an incident sharing the cluster's fate whose
    /// success probability is `p` on average.
    pub(crate) fn success(self, p: f64) -> f64 {
        let h = BURST_HARD_PROBABILITY;
        match self {
            Stratum::Hard => ((p - (1.0 - h)) / h).clamp(0.0, 1.0),
            Stratum::Easy => (p / (1.0 - h)).clamp(0.0, 1.0),
        }
    }
}

/// Number of incidents a cluster has after its first (geometric, mean `m − 1`).
pub(crate) fn draw_followers<R: Rng>(rng: &mut R) -> u32 {
    // P(G ≥ k) = q^k with q = 1 − 1/m
    let q = 1.0 - 1.0 / BURST_MEAN_SIZE;
    let u: f64 = rng.random();
    ((1.0 - u).ln() / q.ln()).floor().min(u32::MAX as f64) as u32
}

/// Gap before the next incident of a cluster, milliseconds.
pub(crate) fn draw_gap_ms<R: Rng>(rng: &mut R) -> i64 {
    let u: f64 = rng.random();
    (-(1.0 - u).ln() * BURST_GAP_MEAN_S * 1000.0).round() as i64
}

/// Whether an incident shares its cluster's fate.
pub(crate) fn draw_shared<R: Rng>(rng: &mut R) -> bool {
    rng.random::<f64>() < BURST_SHARED_FATE
}

/// Correlation of the success of two incidents of the same cluster, given the distribution of
/// an incident's success probability (`(weight, p)` pairs, weights summing to 1): their
/// covariance `ρ²·H(1 − H)·(E[G_easy(P)] − E[G_hard(P)])²` over the binomial variance
/// `p̄(1 − p̄)`, where `ρ` = [`BURST_SHARED_FATE`] and `G` is [`Stratum::success`].
pub(crate) fn success_correlation(profile: &[(f64, f64)]) -> f64 {
    let mean = |f: &dyn Fn(f64) -> f64| profile.iter().map(|&(w, p)| w * f(p)).sum::<f64>();
    let p = mean(&|p| p);
    let binomial = p * (1.0 - p);
    if binomial <= 0.0 {
        return 0.0;
    }
    let h = BURST_HARD_PROBABILITY;
    let spread = mean(&|p| Stratum::Easy.success(p)) - mean(&|p| Stratum::Hard.success(p));
    BURST_SHARED_FATE * BURST_SHARED_FATE * h * (1.0 - h) * spread * spread / binomial
}

/// Expected number of other incidents of its cluster that start in the same window of
/// `window_ms` as an incident (windows at a uniformly random phase), averaged over incidents.
///
/// Two incidents `k` places apart in a cluster are a Gamma(k, gap) time `d` apart and share
/// a window with probability `(1 − d/T)⁺`, whose mean is `F_k(x) − (k/x)·F_{k+1}(x)` with
/// `x = T/gap` and `F_k` the Erlang CDF; a cluster has on average `2(K − k)⁺` ordered pairs
/// `k` apart, `E[(K − k)⁺] = q^k·m` with `q = 1 − 1/m`. Tends to `E[K(K − 1)]/E[K] = 2(m − 1)`
/// for long windows.
pub(crate) fn window_pairs_per_incident(window_ms: i64) -> f64 {
    let m = BURST_MEAN_SIZE;
    let q = 1.0 - 1.0 / m;
    let x = window_ms as f64 / (BURST_GAP_MEAN_S * 1000.0);
    if x <= 0.0 {
        return 0.0;
    }
    // erlang(k) = P(Poisson(x) ≥ k)
    let mut term = (-x).exp(); // P(Poisson(x) = 0)
    let mut below = term; // P(Poisson(x) < 1)
    let mut total = 0.0;
    let mut k = 1u32;
    loop {
        let erlang_k = 1.0 - below;
        term *= x / k as f64; // P(Poisson(x) = k)
        below += term;
        let erlang_next = 1.0 - below;
        let share = (erlang_k - k as f64 / x * erlang_next).max(0.0);
        let pairs = 2.0 * q.powi(k as i32) * m;
        total += pairs * share;
        if pairs < 1e-15 {
            break;
        }
        k += 1;
    }
    total / m
}

/// Variance of a window's success count over the binomial variance of its incidents, when
/// two incidents of a cluster have success correlation `correlation`.
pub(crate) fn dispersion(correlation: f64, window_ms: i64) -> f64 {
    1.0 + correlation * window_pairs_per_incident(window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cluster_sizes_and_gaps_have_the_stated_means() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 200_000;
        let sizes: Vec<f64> = (0..n)
            .map(|_| 1.0 + draw_followers(&mut rng) as f64)
            .collect();
        let mean = sizes.iter().sum::<f64>() / n as f64;
        // geometric with p = 1/3: variance (1 − p)/p² = 6
        let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (6.0 / n as f64).sqrt();
        assert!((mean - 3.0).abs() < 4.0 * se, "mean size {mean}");
        assert!((var - 6.0).abs() < 0.2, "size variance {var}");
        let gaps = (0..n).map(|_| draw_gap_ms(&mut rng) as f64).sum::<f64>() / n as f64;
        let se = 30_000.0 / (n as f64).sqrt();
        assert!((gaps - 30_000.0).abs() < 4.0 * se, "mean gap {gaps}");
    }

    #[test]
    fn strata_keep_every_success_probability() {
        let h = BURST_HARD_PROBABILITY;
        for p in [0.0, 0.1, 0.3, 0.5, 0.75, 0.87, 0.97, 1.0] {
            let mean = h * Stratum::Hard.success(p) + (1.0 - h) * Stratum::Easy.success(p);
            assert!((mean - p).abs() < 1e-12, "{p}: {mean}");
        }
        // a remapped uniform stays in its stratum and succeeds as `success` says
        assert!((Stratum::Hard.remap(0.0) - 0.75).abs() < 1e-12);
        assert!((Stratum::Easy.remap(0.999_999) - 0.75).abs() < 1e-5);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 200_000;
        let hits = (0..n)
            .filter(|_| Stratum::Hard.remap(rng.random()) < 0.87)
            .count() as f64
            / n as f64;
        let want = Stratum::Hard.success(0.87);
        assert!((want - 0.48).abs() < 1e-12);
        let se = (want * (1.0 - want) / n as f64).sqrt();
        assert!((hits - want).abs() < 4.0 * se, "{hits}");
    }

    #[test]
    fn correlation_by_hand() {
        // p = 0.87 everywhere: easy 1, hard (0.87 − 0.75)/0.25 = 0.48
        let rho = BURST_SHARED_FATE;
        let want = rho * rho * 0.25 * 0.75 * 0.52 * 0.52 / (0.87 * 0.13);
        assert!((success_correlation(&[(1.0, 0.87)]) - want).abs() < 1e-12);
        // a half-and-half mix of 0.5 and 1: easy 0.5·(2/3) + 0.5 = 5/6, hard 0.5
        let want = rho * rho * 0.25 * 0.75 * (1.0f64 / 3.0).powi(2) / (0.75 * 0.25);
        let got = success_correlation(&[(0.5, 0.5), (0.5, 1.0)]);
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        assert_eq!(success_correlation(&[(1.0, 1.0)]), 0.0);
    }

    #[test]
    fn window_pairs_tend_to_the_pair_count_and_match_a_brute_force_count() {
        // long windows hold whole clusters: E[K(K − 1)]/E[K] = 12/3, less what the spread of
        // a cluster loses at the edges, Σ 2q^k·k/x = 2·6/x with x = T/gap
        let x = 1e9 / 30_000.0;
        assert!((window_pairs_per_incident(1_000_000_000) - (4.0 - 12.0 / x)).abs() < 1e-9);
        assert_eq!(window_pairs_per_incident(0), 0.0);
        // brute force: clusters at random phases against 300 s windows
        let window = 300_000;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut incidents, mut pairs) = (0.0, 0.0);
        for _ in 0..200_000 {
            let phase = rng.random::<f64>() * window as f64;
            let mut times = vec![phase];
            for _ in 0..draw_followers(&mut rng) {
                let last = *times.last().unwrap();
                times.push(last + draw_gap_ms(&mut rng) as f64);
            }
            let windows: Vec<i64> = times
                .iter()
                .map(|t| (t / window as f64).floor() as i64)
                .collect();
            incidents += times.len() as f64;
            for (i, a) in windows.iter().enumerate() {
                pairs += windows
                    .iter()
                    .enumerate()
                    .filter(|&(j, b)| i != j && a == b)
                    .count() as f64;
            }
        }
        let brute = pairs / incidents;
        let analytic = window_pairs_per_incident(window);
        // the brute-force mean has a standard error near 0.02 (pairs per cluster have sd ≈ 20)
        assert!((brute - analytic).abs() < 0.06, "{brute} vs {analytic}");
        assert!(analytic > 2.5 && analytic < 3.2, "{analytic}");
    }
}
