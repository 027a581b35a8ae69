//! Virtual and wall-clock time as the core sees it: milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, milliseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs * 1000)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0 + ms)
    }

    /// RFC 3339 text in UTC with second precision (millisecond precision when not whole).
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) if self.0 % 1000 == 0 => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// Parses RFC 3339 text.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:05:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:05:00Z");
        assert_eq!(t.plus_millis(1500).to_rfc3339(), "2026-01-01T00:05:01.500Z");
    }
}
