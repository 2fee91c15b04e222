//! The two rules Leakscope's detector is measured against, as published.
//!
//! - `predict_linear`: the Prometheus alert
//!   `predict_linear(container_memory_working_set_bytes[6h], 24*3600) > limit`
//!   with `for: 15m` (least squares over the last 6 h, extrapolated a day).
//! - `coroot`: Coroot's memory-leak rule: split the series at drops of more
//!   than 50 %, take the longest segment, least-squares slope; a leak when it
//!   grows by at least 10 % of the limit per hour and the segment's last
//!   quarter confirms it (grows at that rate too).
//!
//! Both need a limit; without one they never fire.

use crate::{split, Sample};

/// Ordinary least-squares slope (bytes per second) and intercept at `t_ref`.
fn least_squares(points: &[Sample], t_ref: f64) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.t - t_ref).sum::<f64>() / n;
    let mv = points.iter().map(|p| p.bytes).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        num += (p.t - t_ref - mt) * (p.bytes - mv);
        den += (p.t - t_ref - mt).powi(2);
    }
    if den == 0.0 {
        return None;
    }
    let slope = num / den;
    Some((slope, mv - slope * mt))
}

/// True when the Prometheus expression is above the limit at `now` (`series` sorted, up to `now`).
fn predict_linear_fires_at(series: &[Sample], limit: f64, now: f64) -> bool {
    let range: Vec<Sample> = series.iter().copied().filter(|s| s.t > now - 6.0 * 3600.0 && s.t <= now).collect();
    match least_squares(&range, now) {
        Some((slope, at_now)) => at_now + slope * 24.0 * 3600.0 > limit,
        None => false,
    }
}

/// The alert fires at `now` when the expression held at every evaluation (each minute) of the last 15 minutes.
pub fn predict_linear(series: &[Sample], limit: Option<f64>, now: f64) -> bool {
    let Some(limit) = limit else { return false };
    let start = series.first().map(|s| s.t).unwrap_or(now);
    if now - start < 15.0 * 60.0 {
        return false;
    }
    (0..=15).all(|m| predict_linear_fires_at(series, limit, now - m as f64 * 60.0))
}

pub fn coroot(series: &[Sample], limit: Option<f64>, now: f64) -> bool {
    let Some(limit) = limit else { return false };
    let upto: Vec<Sample> = series.iter().copied().filter(|s| s.t <= now).collect();
    let segments = split(&upto, crate::Starts::Unknown, 0.5);
    let Some(longest) = segments.iter().max_by(|a, b| {
        let d = |r: &std::ops::Range<usize>| upto[r.end - 1].t - upto[r.start].t;
        d(a).total_cmp(&d(b))
    }) else {
        return false;
    };
    let segment = &upto[longest.clone()];
    let threshold = 0.10 * limit / 3600.0;
    let Some((slope, _)) = least_squares(segment, segment[0].t) else { return false };
    let last_quarter = &segment[segment.len() * 3 / 4..];
    let confirmed = least_squares(last_quarter, segment[0].t).is_some_and(|(s, _)| s >= threshold);
    slope >= threshold && confirmed
}
