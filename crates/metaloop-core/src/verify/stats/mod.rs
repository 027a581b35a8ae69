//! Hypothesis tests and estimators used to verify whether a change moved a KPI.
//!
//! Convention throughout: sample or group 1 is "pre" (before the change) and sample or
//! group 2 is "post". `p_greater` is the one-sided p-value for the alternative "post is
//! greater than pre (plus a margin, where there is one)", `p_less` the one for "post is
//! less", and `p_two_sided` the two-sided one. No function returns NaN: degenerate inputs
//! get documented, finite answers or `None`.
//!
//! Everything here depends only on `std` and on `statrs` for the normal, Student's t and
//! beta distribution functions. statrs's own Mann-Whitney test is deliberately not used
//! (its small-sample p-values are wrong in statrs 0.19).

mod beta;
mod hodges_lehmann;
mod holm;
mod mann_whitney;
mod normal;
pub mod sequential;
mod two_proportion;
mod weighted_sample;
mod welch;

pub use beta::beta_cdf;
pub use hodges_lehmann::hodges_lehmann;
pub use holm::holm_adjust;
pub use mann_whitney::{MannWhitney, mann_whitney};
pub use normal::{normal_cdf, normal_sf};
pub use two_proportion::{TwoProportion, two_proportion, two_proportion_margin};
pub use welch::{Welch, welch};
