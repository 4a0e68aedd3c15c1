//! Differential privacy for public reports, with the vetted OpenDP library.
//!
//! Every count of a table gets independent discrete Laplace noise from OpenDP's
//! `make_laplace` over a vector of integer counts (L1 distance, pure epsilon-differential
//! privacy); the noise is sampled by OpenDP from OpenSSL's private random generator. A person
//! changes a table's counts by at most the definition's `max_contributions` in total (the
//! aggregation bounds each person's units, and a person-level table counts a person once), so
//! that is the sensitivity, and the scale is sensitivity / epsilon, checked against OpenDP's
//! own privacy map. Margins are the sums of the noisy cells and a negative noisy count shows
//! as 0: post-processing, which costs no privacy. The cell-size suppression then runs on the
//! noisy table as on any other.
//!
//! The budget is kept in millionths of epsilon, rounded up when charged and down for the
//! budget, so rounding never lets a series spend more than its budget.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;
use serde::Serialize;

/// The mechanism, as published with the numbers.
pub const MECHANISM: &str = "discrete Laplace noise (OpenDP 0.16 make_laplace on integer counts), \
     pure epsilon-differential privacy per person";

/// The noise added to one table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    /// The table's share of the run's epsilon.
    pub epsilon: f64,
    /// The most one person changes the table's counts (L1).
    pub sensitivity: u32,
    /// The discrete Laplace scale: a count's noise k has probability proportional to
    /// exp(-|k| / scale).
    pub scale: f64,
    /// 95% of the noise falls within plus or minus this many units.
    pub margin_95: i64,
}

/// Differential privacy could not be applied; nothing is released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("differential privacy: {0}")]
pub struct PrivacyError(String);

fn odp(e: impl std::fmt::Debug) -> PrivacyError {
    PrivacyError(format!("{e:?}"))
}

/// The noise for `epsilon` and `sensitivity`: scale = sensitivity / epsilon, nudged up until
/// OpenDP's privacy map confirms the loss is at most `epsilon`.
pub fn calibrate(epsilon: f64, sensitivity: u32) -> Result<Noise, PrivacyError> {
    if !(epsilon.is_finite() && epsilon > 0.0) || sensitivity == 0 {
        return Err(PrivacyError(format!(
            "epsilon {epsilon} and sensitivity {sensitivity} must be positive"
        )));
    }
    let mut scale = f64::from(sensitivity) / epsilon;
    for _ in 0..64 {
        let m = make_laplace::<_, _, MaxDivergence>(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
        .map_err(odp)?;
        let loss = m.map(&i64::from(sensitivity)).map_err(odp)?;
        if loss <= epsilon {
            return Ok(Noise {
                epsilon,
                sensitivity,
                scale,
                margin_95: margin(scale, 0.95),
            });
        }
        scale *= 1.0 + 1e-12;
    }
    Err(PrivacyError(format!(
        "no scale found for epsilon {epsilon} and sensitivity {sensitivity}"
    )))
}

/// The smallest `a` with P(|noise| <= a) >= `level` for discrete Laplace noise of `scale`:
/// P(|X| > a) = 2 q^(a+1) / (1 + q) with q = exp(-1/scale).
pub fn margin(scale: f64, level: f64) -> i64 {
    let q = (-1.0 / scale).exp();
    if !(q > 0.0 && q < 1.0) {
        return 0;
    }
    let a = ((1.0 - level) * (1.0 + q) / 2.0).ln() / q.ln() - 1.0;
    a.ceil().max(0.0) as i64
}

/// `counts` with independent noise of `noise.scale` on each, negative results shown as 0.
pub fn add_noise(noise: &Noise, counts: &[i64]) -> Result<Vec<i64>, PrivacyError> {
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        noise.scale,
        None,
    )
    .map_err(odp)?;
    let noisy = m.invoke(&counts.to_vec()).map_err(odp)?;
    if noisy.len() != counts.len() {
        return Err(PrivacyError(
            "the mechanism changed the table's size".into(),
        ));
    }
    Ok(noisy.into_iter().map(|v| v.max(0)).collect())
}

/// Epsilon in millionths, rounded up (what a run is charged).
pub fn charge_micros(epsilon: f64) -> i64 {
    (epsilon * 1e6).ceil() as i64
}

/// Epsilon in millionths, rounded down (what a budget allows).
pub fn budget_micros(epsilon: f64) -> i64 {
    (epsilon * 1e6).floor() as i64
}

/// Millionths of epsilon as epsilon.
pub fn from_micros(m: i64) -> f64 {
    m as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_sensitivity_over_epsilon_and_opendp_agrees() {
        let n = calibrate(0.5, 2).unwrap();
        assert!((n.scale - 4.0).abs() < 1e-9, "{n:?}");
        assert!(calibrate(0.0, 1).is_err());
        assert!(calibrate(1.0, 0).is_err());
    }

    /// Over many draws, the noise's mean absolute value and variance match the discrete
    /// Laplace distribution of the stated scale: E|X| = 2q/(1-q^2) and Var X = 2q/(1-q)^2 with
    /// q = exp(-1/scale) (both close to the scale and to 2 scale^2 for large scales).
    #[test]
    fn the_empirical_scale_matches_the_stated_one() {
        for (epsilon, sensitivity) in [(0.5, 2), (1.0, 1), (0.25, 3)] {
            let noise = calibrate(epsilon, sensitivity).unwrap();
            let n = 40_000;
            // Centre the counts high enough that clamping at 0 never bites.
            let base = 10_000i64;
            let noisy = add_noise(&noise, &vec![base; n]).unwrap();
            let draws: Vec<f64> = noisy.iter().map(|v| (v - base) as f64).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let mean_abs = draws.iter().map(|d| d.abs()).sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
            let q = (-1.0 / noise.scale).exp();
            let want_abs = 2.0 * q / (1.0 - q * q);
            let want_var = 2.0 * q / (1.0 - q).powi(2);
            assert!(mean.abs() < 0.1 * noise.scale, "mean {mean} for {noise:?}");
            assert!(
                (mean_abs / want_abs - 1.0).abs() < 0.03,
                "E|X| {mean_abs}, expected {want_abs} for {noise:?}"
            );
            assert!(
                (var / want_var - 1.0).abs() < 0.06,
                "Var {var}, expected {want_var} for {noise:?}"
            );
            // At least 95% of the noise falls within the published margin, in theory and
            // in the draws.
            let a = noise.margin_95 as f64;
            let exact = 1.0 - 2.0 * q.powf(a + 1.0) / (1.0 + q);
            assert!(exact >= 0.95, "{exact} for {noise:?}");
            let inside = draws.iter().filter(|d| d.abs() <= a).count() as f64 / n as f64;
            assert!(
                (inside - exact).abs() < 0.01,
                "{inside} vs {exact} for {noise:?}"
            );
        }
    }

    #[test]
    fn negative_noisy_counts_show_as_zero() {
        let noise = calibrate(0.1, 1).unwrap();
        let noisy = add_noise(&noise, &[0; 1000]).unwrap();
        assert!(noisy.iter().all(|v| *v >= 0));
        assert!(noisy.iter().any(|v| *v > 0));
    }

    #[test]
    fn the_budget_rounds_against_the_series() {
        assert_eq!(charge_micros(0.1), 100_000);
        assert_eq!(charge_micros(1.0 / 3.0), 333_334);
        assert_eq!(budget_micros(1.0 / 3.0), 333_333);
        assert!(charge_micros(1.0 / 3.0) > budget_micros(1.0 / 3.0));
    }
}
