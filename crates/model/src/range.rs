//! Chart time ranges as they appear in URLs (`?range=6h` or `?from=..&to=..`),
//! so that a copied link shows the same view.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

/// A preset range that always ends now (and so stays live).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangePreset {
    pub key: &'static str,
    pub seconds: i64,
}

pub const PRESETS: [RangePreset; 8] = [
    RangePreset { key: "15m", seconds: 15 * 60 },
    RangePreset { key: "1h", seconds: 3600 },
    RangePreset { key: "6h", seconds: 6 * 3600 },
    RangePreset { key: "24h", seconds: 24 * 3600 },
    RangePreset { key: "7d", seconds: 7 * 86400 },
    RangePreset { key: "30d", seconds: 30 * 86400 },
    RangePreset { key: "90d", seconds: 90 * 86400 },
    RangePreset { key: "1y", seconds: 365 * 86400 },
];

pub const DEFAULT_PRESET: &str = "1h";

/// A resolved time window in Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The preset key when the range is a preset (and therefore ends now).
    pub preset: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeError {
    UnknownPreset(String),
    BadTime(String),
    Empty,
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeError::UnknownPreset(p) => write!(
                f,
                "unknown range '{p}': use one of 15m, 1h, 6h, 24h, 7d, 30d, 90d, 1y, or from/to"
            ),
            RangeError::BadTime(t) => write!(
                f,
                "cannot read time '{t}': use RFC 3339 (2026-01-31T12:00:00Z), Unix seconds, or YYYY-MM-DDTHH:MM"
            ),
            RangeError::Empty => write!(f, "the range is empty: 'from' must be before 'to'"),
        }
    }
}

impl std::error::Error for RangeError {}

impl TimeRange {
    pub fn preset(key: &str, now_ms: i64) -> Result<Self, RangeError> {
        let preset = PRESETS
            .iter()
            .find(|p| p.key == key)
            .ok_or_else(|| RangeError::UnknownPreset(key.to_string()))?;
        Ok(TimeRange {
            from_ms: now_ms - preset.seconds * 1000,
            to_ms: now_ms,
            preset: Some(preset.key.to_string()),
        })
    }

    /// Reads the URL's query values. `tz_offset_minutes` (minutes east of UTC)
    /// interprets zone-less `YYYY-MM-DDTHH:MM` values as the viewer's local time.
    pub fn from_query(
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        tz_offset_minutes: i32,
        now_ms: i64,
    ) -> Result<Self, RangeError> {
        let from = from.filter(|s| !s.trim().is_empty());
        let to = to.filter(|s| !s.trim().is_empty());
        if from.is_none() && to.is_none() {
            return Self::preset(range.filter(|r| !r.is_empty()).unwrap_or(DEFAULT_PRESET), now_ms);
        }
        let from_ms = match from {
            Some(f) => parse_time_ms(f, tz_offset_minutes)?,
            None => now_ms - 3600 * 1000,
        };
        let to_ms = match to {
            Some(t) => parse_time_ms(t, tz_offset_minutes)?,
            None => now_ms,
        };
        if from_ms >= to_ms {
            return Err(RangeError::Empty);
        }
        Ok(TimeRange { from_ms, to_ms, preset: None })
    }

    pub fn duration_ms(&self) -> i64 {
        self.to_ms - self.from_ms
    }

    /// True when the window ends at (or after) `now`: the chart should keep updating.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.preset.is_some() || self.to_ms >= now_ms - 5_000
    }

    /// The query string that reproduces this range (`range=1h` or `from=..&to=..`).
    pub fn to_query(&self) -> String {
        match &self.preset {
            Some(p) => format!("range={p}"),
            None => format!("from={}&to={}", self.from_ms / 1000, self.to_ms / 1000),
        }
    }
}

/// Accepts RFC 3339, Unix seconds, or a zone-less local time (`datetime-local` inputs).
pub fn parse_time_ms(value: &str, tz_offset_minutes: i32) -> Result<i64, RangeError> {
    let value = value.trim();
    let bad = || RangeError::BadTime(value.to_string());
    // 1970 to the end of 9999: windows stay small enough to subtract without overflow.
    let in_range = |ms: i64| if (0..=253_402_300_799_999).contains(&ms) { Ok(ms) } else { Err(bad()) };
    if let Ok(secs) = value.parse::<i64>() {
        return secs.checked_mul(1000).ok_or_else(bad).and_then(in_range);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return in_range(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| bad())?;
    let offset = FixedOffset::east_opt(tz_offset_minutes.saturating_mul(60)).ok_or_else(bad)?;
    let local = offset.from_local_datetime(&naive).single().ok_or_else(bad)?;
    in_range(local.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn presets_end_now() {
        let r = TimeRange::from_query(Some("6h"), None, None, 0, NOW).unwrap();
        assert_eq!(r.to_ms, NOW);
        assert_eq!(r.duration_ms(), 6 * 3600 * 1000);
        assert_eq!(r.to_query(), "range=6h");
        assert!(r.is_live(NOW));
    }

    #[test]
    fn default_is_one_hour() {
        let r = TimeRange::from_query(None, None, None, 0, NOW).unwrap();
        assert_eq!(r.preset.as_deref(), Some("1h"));
    }

    #[test]
    fn unknown_preset_is_an_error() {
        assert!(matches!(
            TimeRange::from_query(Some("2y"), None, None, 0, NOW),
            Err(RangeError::UnknownPreset(_))
        ));
    }

    #[test]
    fn custom_ranges_accept_three_formats() {
        let r = TimeRange::from_query(None, Some("2026-01-01T00:00:00Z"), Some("1767229200"), 0, NOW).unwrap();
        assert_eq!(r.from_ms, 1_767_225_600_000);
        assert_eq!(r.to_ms, 1_767_229_200_000);
        assert_eq!(r.to_query(), "from=1767225600&to=1767229200");
        // A datetime-local value at UTC+1 is one hour earlier in UTC.
        let local = parse_time_ms("2026-01-01T01:00", 60).unwrap();
        assert_eq!(local, 1_767_225_600_000);
    }

    #[test]
    fn reversed_or_garbage_ranges_are_errors() {
        assert_eq!(
            TimeRange::from_query(None, Some("200"), Some("100"), 0, NOW),
            Err(RangeError::Empty)
        );
        assert!(matches!(parse_time_ms("yesterday", 0), Err(RangeError::BadTime(_))));
        assert!(matches!(parse_time_ms("99999999999999999", 0), Err(RangeError::BadTime(_))));
    }
}
