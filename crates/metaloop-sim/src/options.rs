//! Options of a simulated spine: how many incidents it sees, and whether they follow a daily
//! cycle and arrive in bursts as real operations data does.

use std::fmt;
use std::str::FromStr;

/// Incidents per hour across the whole spine at [`Volume::High`]: the scenarios' native rates
/// (infrastructure 250, application 400, security 150 per 300 s).
pub const HIGH_INCIDENTS_PER_HOUR: f64 = 9_600.0;

/// How many incidents the spine sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Volume {
    /// The scenarios' native rates: 9,600 incidents an hour across the spine.
    High,
    /// A tenth of `High`: 960 an hour.
    Medium,
    /// A hundredth of `High`: 96 an hour.
    Low,
    /// This many incidents an hour across the whole spine, averaged over a day; every domain is
    /// scaled in proportion. Must be finite and not negative.
    PerHour(f64),
}

impl Volume {
    /// `High`, `Medium` and `Low`, from most to fewest incidents.
    pub const NAMED: [Volume; 3] = [Volume::High, Volume::Medium, Volume::Low];

    /// What every domain's native incident rate is multiplied by.
    pub fn factor(&self) -> f64 {
        match *self {
            Volume::High => 1.0,
            Volume::Medium => 0.1,
            Volume::Low => 0.01,
            Volume::PerHour(n) => n / HIGH_INCIDENTS_PER_HOUR,
        }
    }

    /// Incidents per hour across the whole spine, averaged over a day (healthy domains).
    pub fn incidents_per_hour(&self) -> f64 {
        match *self {
            Volume::PerHour(n) => n,
            _ => self.factor() * HIGH_INCIDENTS_PER_HOUR,
        }
    }

    /// `high`, `medium`, `low`, or `per-hour`.
    pub fn name(&self) -> &'static str {
        match self {
            Volume::High => "high",
            Volume::Medium => "medium",
            Volume::Low => "low",
            Volume::PerHour(_) => "per-hour",
        }
    }

    /// True for a usable volume: a finite rate that is not negative.
    pub fn is_valid(&self) -> bool {
        let f = self.factor();
        f.is_finite() && f >= 0.0
    }
}

impl fmt::Display for Volume {
    /// `high`, `medium`, `low`, or `<n>/h` for `PerHour(n)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Volume::PerHour(n) => write!(f, "{n}/h"),
            named => f.write_str(named.name()),
        }
    }
}

/// Text that names no volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown volume '{0}' (valid: high, medium, low, or incidents per hour as <n>/h, e.g. 200/h)"
)]
pub struct UnknownVolume(pub String);

impl FromStr for Volume {
    type Err = UnknownVolume;

    /// `high`, `medium`, `low`, or `<n>/h` (a finite rate, not negative).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(v) = Volume::NAMED.into_iter().find(|v| v.name() == s) {
            return Ok(v);
        }
        s.strip_suffix("/h")
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(Volume::PerHour)
            .filter(Volume::is_valid)
            .ok_or_else(|| UnknownVolume(s.to_string()))
    }
}

/// Options of a simulated spine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpineOptions {
    /// How many incidents the spine sees.
    pub volume: Volume,
    /// Incident rate and difficulty follow the hour of day (see [`crate::DIURNAL_PEAK_HOUR`]).
    pub diurnal: bool,
    /// Incidents arrive in clusters that share their fate (see [`crate::BURST_MEAN_SIZE`]).
    pub bursts: bool,
}

impl SpineOptions {
    /// `volume`, with the daily cycle and bursts of real operations data below `High` (off at
    /// `High`, which keeps the scenarios' native, steady behaviour).
    pub fn for_volume(volume: Volume) -> Self {
        let real = volume.factor() < 1.0;
        SpineOptions {
            volume,
            diurnal: real,
            bursts: real,
        }
    }
}

impl Default for SpineOptions {
    /// `High`, no daily cycle, no bursts: the spine of [`crate::Spine::new`].
    fn default() -> Self {
        SpineOptions {
            volume: Volume::High,
            diurnal: false,
            bursts: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_and_rates() {
        assert_eq!(Volume::High.factor(), 1.0);
        assert_eq!(Volume::Medium.incidents_per_hour(), 960.0);
        assert_eq!(Volume::Low.incidents_per_hour(), 96.0);
        assert_eq!(Volume::PerHour(200.0).incidents_per_hour(), 200.0);
        assert!((Volume::PerHour(200.0).factor() - 200.0 / 9600.0).abs() < 1e-15);
        assert_eq!(Volume::PerHour(9600.0).factor(), 1.0);
        assert!(!Volume::PerHour(-1.0).is_valid());
        assert!(!Volume::PerHour(f64::NAN).is_valid());
        assert!(!Volume::PerHour(f64::INFINITY).is_valid());
        assert!(Volume::PerHour(0.0).is_valid());
    }

    #[test]
    fn names_parse_and_display_round_trip() {
        for v in [
            Volume::High,
            Volume::Medium,
            Volume::Low,
            Volume::PerHour(200.0),
            Volume::PerHour(12.5),
        ] {
            assert_eq!(v.to_string().parse::<Volume>().unwrap(), v);
        }
        assert_eq!(Volume::PerHour(200.0).to_string(), "200/h");
        assert_eq!(Volume::Medium.name(), "medium");
        for bad in ["High", "hi", "200", "-5/h", "NaN/h", "inf/h", ""] {
            let err = bad.parse::<Volume>().unwrap_err().to_string();
            assert!(
                err.contains(&format!("'{bad}'")) && err.contains("medium"),
                "{err}"
            );
        }
    }

    #[test]
    fn options_for_a_volume() {
        assert_eq!(
            SpineOptions::for_volume(Volume::High),
            SpineOptions::default()
        );
        let low = SpineOptions::for_volume(Volume::Low);
        assert!(low.diurnal && low.bursts);
        assert!(SpineOptions::for_volume(Volume::PerHour(200.0)).bursts);
        assert!(!SpineOptions::for_volume(Volume::PerHour(20_000.0)).diurnal);
    }
}
