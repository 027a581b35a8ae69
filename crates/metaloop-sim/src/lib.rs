//! The simulated spine metaloop supervises in demos, tests and benchmarks.
//!
//! Domains receive incidents as Poisson processes; a planner acts alone when its confidence
//! reaches the domain's threshold and otherwise escalates to a slower, better human team;
//! playbooks have latent true qualities, probes speed up detection, humans sometimes
//! override. Everything runs on virtual time from a seed, and the spine talks to metaloop
//! only through the protocol of `metaloop_core::protocol`.
//!
//! The model is also solved in closed form ([`Spine::expected_kpis`]), which gives the
//! ground truth of every directive ([`Truth`]) so tests can score the supervisor against
//! what really happened rather than against what it observed.
//!
//! [`Spine::new`] sees the scenarios' native volume, 9,600 incidents an hour, steady and
//! independent. [`Spine::with_options`] scales the volume ([`Volume`]) and can add two
//! features of real operations data ([`SpineOptions`]): a daily cycle of rate and difficulty
//! (`DIURNAL_*`) and bursts of incidents that share their fate (`BURST_*`), which make
//! success counts overdispersed ([`Spine::success_dispersion`]) without moving any
//! expectation.
//!
//! # Model conventions
//!
//! - An incident starts, is detected after the detection delay (`decision.made` is stamped
//!   then) and resolves after the execution time (`recovery.*`, whose `duration_s` counts
//!   from the start). Knob changes affect incidents that start after them.
//! - `decision.made.autonomous` is the planner's choice (confidence ≥ threshold), so an
//!   overridden decision is `autonomous` and `overridden`; `recovery.*.autonomous` is true only
//!   when no human was involved.
//! - A disabled playbook's incidents run its fallback. The spine refuses to disable a playbook
//!   when that would leave some incidents with no enabled playbook (its fallback is disabled
//!   too).
//! - The failover playbook of health-graph node `N` is `failover-N` in `N`'s domain
//!   ([`failover_playbook`]); it is disabled by default and never picked by incidents.
//!   Enabled while `N` is degraded (or when `N` degrades), it heals `N` one minute later and
//!   `N`'s dependents one minute after that.
//! - `bad-directive`: a threshold above 0.70 overloads the human team five minutes after it
//!   was raised; bringing it back to 0.70 or below clears the overload immediately.
//! - Truth compares steady states at the moment of application (see [`Truth`]); under the
//!   daily cycle both take the hour's difficulty at that moment, so a change's effect on
//!   success is scaled by at most 4 % and never changes sign.
//! - With the daily cycle, [`Spine::expected_kpis`] is that of incidents starting at the
//!   current hour; long-run rates are those expectations weighted by the hour's incident rate.
//! - The options draw from random streams of their own: without them the spine draws exactly
//!   as it always did, and turning a knob never moves an arrival or a cluster.
#![forbid(unsafe_code)]

mod agenda;
mod burst;
mod directive;
mod diurnal;
mod domain;
mod health;
mod human;
mod incident;
mod kpis;
mod options;
mod planner;
mod playbook;
mod scenario;
mod spine;
mod truth;

pub use burst::{BURST_GAP_MEAN_S, BURST_HARD_PROBABILITY, BURST_MEAN_SIZE, BURST_SHARED_FATE};
pub use directive::Refusal;
pub use diurnal::{
    DIURNAL_EXEC_RISE, DIURNAL_HARDEST_HOUR, DIURNAL_PEAK_HOUR, DIURNAL_RATE_AMPLITUDE,
    DIURNAL_SUCCESS_DROP,
};
pub use domain::PROBE_SYNTHETIC;
pub use kpis::{ExpectedKpis, higher_is_better, names};
pub use options::{HIGH_INCIDENTS_PER_HOUR, SpineOptions, UnknownVolume, Volume};
pub use planner::THRESHOLD_RANGE;
pub use playbook::failover_playbook;
pub use scenario::{Scenario, UnknownScenario};
pub use spine::{
    HUMAN_QUEUE_DEPTH, MANUAL_PLAYBOOK, REPORT_PERIOD_MS, SPINE_SOURCE, Spine, arm_hash,
};
pub use truth::{HARM_RATE, HARM_RECOVERY_RISE, HARM_SECONDS, HARM_SUCCESS_DROP, Truth};
