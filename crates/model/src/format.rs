/// Sizes as a Grafana user reads them: binary units, three significant digits.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

pub fn format_percent(fraction: f64) -> String {
    let pct = fraction * 100.0;
    if pct >= 10.0 {
        format!("{pct:.0} %")
    } else {
        format!("{pct:.1} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(40 * 1024 * 1024), "40.0 MiB");
        assert_eq!(format_bytes(128 * 1024 * 1024), "128 MiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024 / 2), "1.50 GiB");
    }

    #[test]
    fn percent_keeps_small_values_readable() {
        assert_eq!(format_percent(0.3125), "31 %");
        assert_eq!(format_percent(0.051), "5.1 %");
    }
}

/// `42 s`, `17 min`, `3.2 h`, `2.5 days` (negative durations read as 0).
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

/// Calendar date and time of Unix milliseconds shifted by `offset_minutes`
/// (east of UTC): `(year, month, day, hour, minute, second)`. Civil-from-days
/// arithmetic, so the browser bundle needs no clock or zone database.
pub fn civil_time(ms: i64, offset_minutes: i32) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000) + offset_minutes as i64 * 60;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-12-01 09:52:17 UTC`, or in the viewer's zone without the suffix when the offset is known.
pub fn format_timestamp(ms: i64, offset_minutes: Option<i32>) -> String {
    let (y, mo, d, h, mi, s) = civil_time(ms, offset_minutes.unwrap_or(0));
    let zone = if offset_minutes.is_some() { "" } else { " UTC" };
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{zone}")
}

/// RFC 3339 in UTC: `2026-12-01T09:52:17Z`.
pub fn rfc3339_utc(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_time(ms, 0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn civil_dates_and_zones() {
        assert_eq!(format_timestamp(0, None), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_timestamp(1_767_225_600_000, None), "2026-01-01 00:00:00 UTC");
        assert_eq!(format_timestamp(1_767_225_600_000, Some(-60)), "2025-12-31 23:00:00");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}

/// A change in bytes with its sign: `+1.5 MiB`, `−200 KiB`.
pub fn format_signed_bytes(bytes: i64) -> String {
    let sign = if bytes < 0 { "−" } else { "+" };
    format!("{sign}{}", format_bytes(bytes.unsigned_abs()))
}
