//! Leak verdicts on a container's working-set series.
//!
//! The detector trends the *floor* of the series (a rolling minimum, so a GC
//! sawtooth's peaks do not count), on the current life of the process only
//! (the series is split at restarts and at drops of more than half), with a
//! robust slope (Theil–Sen, so a one-off step or spike moves it little). It
//! calls `leak` only when the growth is significant, has gone on for long
//! enough, is present in three quarters of the window including the last (a step or a finished
//! warm-up is not), and is not slowing down (a cache filling up is). A process
//! that keeps exhausting its limit and restarting is a leak across restarts.
//!
//! `baselines` holds the two rules it is compared with; `corpus` the labelled
//! traces and the evaluation.

pub mod baselines;
pub mod corpus;
pub mod csv;

use serde::{Deserialize, Serialize};

const MIB: f64 = 1024.0 * 1024.0;

/// One sample: Unix seconds and working-set bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub bytes: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Leak,
    /// Growing, but not (yet) for long or steadily enough to say leak.
    Growing,
    Stable,
    /// Grew early in this process's life and is levelling off.
    #[serde(rename = "warming up")]
    WarmingUp,
    /// Too little history since the (re)start to say anything yet.
    #[serde(rename = "too young")]
    TooYoung,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Growing => "growing",
            Verdict::Stable => "stable",
            Verdict::WarmingUp => "warming up",
            Verdict::TooYoung => "too young",
        }
    }

    /// For sorting: leaks first.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Leak => 4,
            Verdict::Growing => 3,
            Verdict::WarmingUp => 2,
            Verdict::Stable => 1,
            Verdict::TooYoung => 0,
        }
    }
}

/// The detector's answer, with what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub leak: bool,
    pub verdict: Verdict,
    /// Trend of the floor over the analysed window.
    pub slope_bytes_per_hour: f64,
    /// 0..1: how sure the verdict is.
    pub confidence: f64,
    /// At the current slope, until the limit (null without a limit or without growth).
    pub time_to_limit_seconds: Option<f64>,
    /// The analysed window (the current process life, at most `WINDOW`).
    pub window_start: f64,
    pub window_end: f64,
    /// Floor at the window's end, from the fit (for drawing the trend line).
    pub floor_end_bytes: f64,
    pub limit_bytes: Option<f64>,
    /// How many restarts or big drops split the series.
    pub segments: usize,
    /// The reasoning in one sentence.
    pub reason: String,
}

/// Tuning, with the values the corpus figures were measured with.
#[derive(Clone, Debug)]
pub struct Params {
    /// No `leak` before the process has grown steadily for this long.
    pub min_age_seconds: f64,
    /// Only the most recent part of a long life is trended.
    pub window_seconds: f64,
    /// Split the series where it drops by more than this share.
    pub drop_share: f64,
    /// Growth over the window must exceed this much and this share of the floor.
    pub min_growth_bytes: f64,
    pub min_growth_share: f64,
    /// Slowing down: the second half's slope under this share of the first half's.
    pub slowdown_share: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_age_seconds: 25.0 * 60.0,
            window_seconds: 24.0 * 3600.0,
            drop_share: 0.5,
            min_growth_bytes: 8.0 * MIB,
            min_growth_share: 0.03,
            slowdown_share: 0.8,
        }
    }
}

/// Assesses a series (any order; duplicates and non-finite values ignored).
/// `restarts`: Unix seconds at which the container (re)started, when known.
pub fn assess(samples: &[Sample], limit: Option<f64>, restarts: &[f64], params: &Params) -> Assessment {
    let mut series: Vec<Sample> = samples.iter().copied().filter(|s| s.t.is_finite() && s.bytes.is_finite() && s.bytes >= 0.0).collect();
    series.sort_by(|a, b| a.t.total_cmp(&b.t));
    series.dedup_by(|a, b| a.t == b.t);
    let limit = limit.filter(|l| *l > 0.0 && l.is_finite());
    let segments = split(&series, restarts, params.drop_share);
    let too_young = |reason: &str| Assessment {
        leak: false,
        verdict: Verdict::TooYoung,
        slope_bytes_per_hour: 0.0,
        confidence: 0.0,
        time_to_limit_seconds: None,
        window_start: series.first().map(|s| s.t).unwrap_or(0.0),
        window_end: series.last().map(|s| s.t).unwrap_or(0.0),
        floor_end_bytes: series.last().map(|s| s.bytes).unwrap_or(0.0),
        limit_bytes: limit,
        segments: segments.len(),
        reason: reason.to_string(),
    };
    let Some(current) = segments.last() else {
        return too_young("too young: no samples yet; a verdict needs 2 min of history");
    };
    let current = &series[current.clone()];
    let end = current.last().map(|s| s.t).unwrap_or(0.0);
    let window: Vec<Sample> = current.iter().copied().filter(|s| s.t >= end - params.window_seconds).collect();
    let age = end - window[0].t;
    // Across restarts: earlier lives that each climbed to the limit.
    let exhausted_lives = segments[..segments.len() - 1]
        .iter()
        .filter(|r| {
            let life = &series[(*r).clone()];
            let peak = life.iter().map(|s| s.bytes).fold(0.0, f64::max);
            let rose = life.last().map(|l| l.bytes).unwrap_or(0.0) > life.first().map(|f| f.bytes).unwrap_or(0.0) * 1.3;
            limit.is_some_and(|l| peak >= 0.85 * l) && rose
        })
        .count();

    if exhausted_lives >= 2 {
        let last_lives: Vec<f64> = segments[..segments.len() - 1]
            .iter()
            .map(|r| series[r.end - 1].t - series[r.start].t)
            .collect();
        let typical_life = median(&last_lives);
        let first = current.first().map(|s| s.bytes).unwrap_or(0.0);
        let rising = current.len() < 8 || current.last().map(|s| s.bytes).unwrap_or(0.0) >= first;
        if rising {
            let reason = format!(
                "climbed to its limit and restarted {exhausted_lives} times (a life lasts about {}), and is climbing again",
                duration(typical_life)
            );
            return Assessment {
                leak: true,
                verdict: Verdict::Leak,
                slope_bytes_per_hour: limit.map(|l| (0.85 * l - first).max(0.0) / typical_life.max(1.0) * 3600.0).unwrap_or(0.0),
                confidence: (0.5 + 0.1 * exhausted_lives as f64).min(0.95),
                time_to_limit_seconds: Some((typical_life - age).max(0.0)),
                window_start: current[0].t,
                window_end: end,
                floor_end_bytes: current.last().map(|s| s.bytes).unwrap_or(0.0),
                limit_bytes: limit,
                segments: segments.len(),
                reason,
            };
        }
    }

    if window.len() < 8 || age < 120.0 {
        let wait = (120.0 - age).max(0.0);
        let when = if wait > 0.0 { format!("; one is possible in {}", duration(wait)) } else { String::new() };
        return too_young(&format!("too young: {} of history since the last (re)start, a verdict needs 2 min{when}", duration(age.max(0.0))));
    }

    let floor = rolling_floor(&window);
    // A leak may have started late in a long life: judge windows ending now,
    // from the whole life down to the minimum age. A shorter window only
    // counts when the floor has reached a new high (a wave that comes back is not a leak).
    let mut judged = None;
    for span in [age, 8.0 * 3600.0, 4.0 * 3600.0, 2.0 * 3600.0, 3600.0, params.min_age_seconds] {
        if span > age || span < params.min_age_seconds.min(age) {
            continue;
        }
        let start = end - span;
        let part: Vec<Sample> = floor.iter().copied().filter(|s| s.t >= start).collect();
        if part.len() < 8 {
            continue;
        }
        let judgement = judge(&part, span, params);
        let earlier_max = floor.iter().filter(|s| s.t < start).map(|s| s.bytes).fold(f64::MIN, f64::max);
        let new_high = earlier_max == f64::MIN
            || part.last().map(|l| l.bytes).unwrap_or(0.0) > earlier_max + params.min_growth_bytes;
        let is_leak = judgement.verdict == Verdict::Leak && new_high;
        if judged.is_none() || is_leak {
            let mut j = judgement;
            if j.verdict == Verdict::Leak && !new_high {
                j.verdict = Verdict::Growing;
                j.reason = format!("growing {}/h lately, but it was this high before", mib(j.slope * 3600.0));
            }
            let stop = j.verdict == Verdict::Leak;
            judged = Some(j);
            if stop {
                break;
            }
        }
    }
    let judged = judged.unwrap_or_else(|| judge(&floor, age, params));
    let (slope, growing_quarters) = (judged.slope, judged.growing_quarters);
    let fit_end = median(&floor.iter().filter(|s| s.t >= end - judged.span).map(|s| s.bytes - slope * (s.t - end)).collect::<Vec<_>>());
    let hours = judged.span / 3600.0;
    let consistency = growing_quarters as f64 / 4.0;
    let (verdict, reason) = (judged.verdict, judged.reason);
    let confidence = match verdict {
        Verdict::Leak => (0.5 + 0.5 * consistency * (hours / 2.0).min(1.0)).min(0.99),
        Verdict::Stable => (0.5 + 0.5 * (hours / 1.0).min(1.0)).min(0.99),
        Verdict::Growing | Verdict::WarmingUp => 0.3 + 0.3 * consistency,
        Verdict::TooYoung => 0.0,
    };
    let time_to_limit = match (limit, verdict) {
        (Some(l), Verdict::Leak | Verdict::Growing) if slope > 0.0 => Some(((l - fit_end) / slope).max(0.0)),
        _ => None,
    };
    Assessment {
        leak: verdict == Verdict::Leak,
        verdict,
        slope_bytes_per_hour: slope * 3600.0,
        confidence,
        time_to_limit_seconds: time_to_limit,
        window_start: end - judged.span,
        window_end: end,
        floor_end_bytes: fit_end,
        limit_bytes: limit,
        segments: segments.len(),
        reason: with_limit(reason, time_to_limit, verdict),
    }
}

/// The verdict on one window of the floor (ending now).
struct Judgement {
    verdict: Verdict,
    reason: String,
    slope: f64,
    span: f64,
    growing_quarters: usize,
}

fn judge(floor: &[Sample], span: f64, params: &Params) -> Judgement {
    let slope = theil_sen(floor); // bytes per second
    let start_floor = floor.first().map(|s| s.bytes).unwrap_or(0.0);
    let growth = slope * span;
    let noise = noise_level(floor, slope);
    let significant = growth > params.min_growth_bytes.max(params.min_growth_share * start_floor).max(4.0 * noise);
    // Growth per quarter, and no slowing down from the first half to the second.
    let quarters: Vec<f64> = (0..4).map(|q| quarter_growth(floor, q)).collect();
    let expected_quarter = growth / 4.0;
    let growing_quarters = quarters.iter().filter(|g| **g > 0.25 * expected_quarter).count();
    let first_half = theil_sen(&part(floor, 0.0, 0.5));
    let second_half = theil_sen(&part(floor, 0.5, 1.0));
    let decelerating = second_half < params.slowdown_share * first_half;
    let recent_flat = quarters[3] <= 0.25 * expected_quarter && second_half.abs() * span / 2.0 < params.min_growth_bytes;
    let (verdict, reason) = if !significant {
        (Verdict::Stable, format!("no significant trend: the floor changed by {} over {}, within its noise of ±{}", mib(growth), duration(span), mib(noise)))
    } else if recent_flat {
        let verdict = if span < 3.0 * 3600.0 { Verdict::WarmingUp } else { Verdict::Stable };
        (verdict, format!("grew {} early in the last {} and has levelled off", mib(growth), duration(span)))
    } else if decelerating {
        (
            Verdict::WarmingUp,
            format!("growing but slowing down ({}/h now, {}/h before): a cache filling up?", mib(second_half * 3600.0), mib(first_half * 3600.0)),
        )
    } else if growing_quarters < 3 || quarters[3] <= 0.25 * expected_quarter {
        // Three quarters of four, the last among them: a one-off step grows in one
        // quarter only, while a real leak may pause for a minute (heap expansion).
        (Verdict::Growing, format!("grew {} in {}, but not steadily (a step or a burst?)", mib(growth), duration(span)))
    } else if span < params.min_age_seconds {
        (
            Verdict::Growing,
            format!("growing {}/h for {}; a leak verdict needs {} of steady growth", mib(slope * 3600.0), duration(span), duration(params.min_age_seconds)),
        )
    } else {
        (Verdict::Leak, format!("floor grew steadily by {}/h for {} (in {growing_quarters} of 4 quarters including the last, not slowing down)", mib(slope * 3600.0), duration(span)))
    };
    Judgement { verdict, reason, slope, span, growing_quarters }
}

fn with_limit(reason: String, time_to_limit: Option<f64>, verdict: Verdict) -> String {
    match (time_to_limit, verdict) {
        (Some(t), Verdict::Leak | Verdict::Growing) => format!("{reason}; at this rate it reaches its limit in {}", duration(t)),
        _ => reason,
    }
}

/// Index ranges of the process lives: split at known restarts and where the
/// series drops by more than `drop_share` from one sample to the next.
pub fn split(series: &[Sample], restarts: &[f64], drop_share: f64) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 1..series.len() {
        let (prev, cur) = (series[i - 1], series[i]);
        let dropped = prev.bytes > 0.0 && cur.bytes < prev.bytes * (1.0 - drop_share);
        let restarted = restarts.iter().any(|r| *r > prev.t && *r <= cur.t);
        if dropped || restarted {
            ranges.push(start..i);
            start = i;
        }
    }
    if start < series.len() {
        ranges.push(start..series.len());
    }
    ranges
}

/// The floor: a centred rolling minimum over about 5 minutes (window/20 on
/// long windows), sampled once a minute. A GC sawtooth's peaks vanish; its troughs remain.
fn rolling_floor(window: &[Sample]) -> Vec<Sample> {
    let (t0, t1) = (window[0].t, window[window.len() - 1].t);
    // Wide enough to span a GC cycle (up to ~5 min), narrower on short histories.
    let width = ((t1 - t0) / 20.0).max(300.0f64.min((t1 - t0) / 5.0));
    let step = (60.0f64).max((t1 - t0) / 400.0);
    let mut out = Vec::new();
    // Full windows on the left (a partial one there would only repeat the first
    // value and fake a flat start); up to the right edge, so the latest minutes count.
    let mut t = t0 + width / 2.0;
    let (mut lo, mut hi) = (0usize, 0usize);
    while t <= t1 + 1e-9 {
        while lo < window.len() && window[lo].t < t - width / 2.0 {
            lo += 1;
        }
        while hi < window.len() && window[hi].t <= t + width / 2.0 {
            hi += 1;
        }
        if hi > lo {
            let min = window[lo..hi].iter().map(|s| s.bytes).fold(f64::MAX, f64::min);
            out.push(Sample { t, bytes: min });
        }
        t += step;
    }
    if out.len() < 4 {
        // Short windows: the samples themselves.
        return window.to_vec();
    }
    out
}

/// Median of pairwise slopes (subsampled to at most ~200 points: O(n²) pairs).
pub fn theil_sen(points: &[Sample]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let stride = points.len().div_ceil(200);
    let p: Vec<Sample> = points.iter().step_by(stride).copied().collect();
    let mut slopes = Vec::with_capacity(p.len() * p.len() / 2);
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            let dt = p[j].t - p[i].t;
            if dt > 0.0 {
                slopes.push((p[j].bytes - p[i].bytes) / dt);
            }
        }
    }
    if slopes.is_empty() {
        0.0
    } else {
        median(&slopes)
    }
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// Robust spread of the floor around its trend (1.4826 × MAD).
fn noise_level(floor: &[Sample], slope: f64) -> f64 {
    let residuals: Vec<f64> = floor.iter().map(|s| s.bytes - slope * s.t).collect();
    let m = median(&residuals);
    1.4826 * median(&residuals.iter().map(|r| (r - m).abs()).collect::<Vec<_>>())
}

fn part(points: &[Sample], from: f64, to: f64) -> Vec<Sample> {
    let n = points.len();
    let (a, b) = ((n as f64 * from) as usize, ((n as f64 * to) as usize).max((n as f64 * from) as usize + 2).min(n));
    points[a.min(n)..b].to_vec()
}

/// Growth within quarter `q`: the difference between the medians of its last
/// and first thirds (robust to a single spike).
fn quarter_growth(floor: &[Sample], q: usize) -> f64 {
    let quarter = part(floor, q as f64 / 4.0, (q + 1) as f64 / 4.0);
    match quarter.len() {
        0 | 1 => return 0.0,
        // Short histories (minute points): the quarter's own ends.
        2 => return quarter[1].bytes - quarter[0].bytes,
        _ => {}
    }
    let third = (quarter.len() / 3).max(1);
    let head: Vec<f64> = quarter[..third].iter().map(|s| s.bytes).collect();
    let tail: Vec<f64> = quarter[quarter.len() - third..].iter().map(|s| s.bytes).collect();
    median(&tail) - median(&head)
}

pub fn mib(bytes: f64) -> String {
    let m = bytes / MIB;
    if m.abs() >= 100.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

pub use leakscope_model::format_duration as duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn series(minutes: usize, f: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..minutes * 4).map(|i| Sample { t: i as f64 * 15.0, bytes: f(i as f64 * 15.0) }).collect()
    }

    #[test]
    fn steady_growth_is_a_leak_with_time_to_limit() {
        let s = series(60, |t| 200.0 * MIB + t / 60.0 * 2.0 * MIB);
        let a = assess(&s, Some(1024.0 * MIB), &[], &Params::default());
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert!((a.slope_bytes_per_hour / MIB - 120.0).abs() < 5.0, "{}", a.slope_bytes_per_hour / MIB);
        let ttl = a.time_to_limit_seconds.unwrap();
        assert!((ttl / 60.0 - (1024.0 - 320.0) / 2.0).abs() < 10.0, "{ttl}");
    }

    #[test]
    fn flat_sawtooth_and_step_are_not_leaks() {
        let saw = series(120, |t| 300.0 * MIB + (t % 180.0) / 180.0 * 120.0 * MIB);
        assert!(!assess(&saw, Some(1e9), &[], &Params::default()).leak);
        let step = series(120, |t| if t > 3000.0 { 400.0 * MIB } else { 250.0 * MIB });
        let a = assess(&step, Some(1e9), &[], &Params::default());
        assert!(!a.leak, "{}", a.reason);
    }

    #[test]
    fn minute_points_of_a_short_history_are_enough() {
        // What the engine feeds the detector: one minimum per minute.
        let s: Vec<Sample> = (0..10).map(|m| Sample { t: m as f64 * 60.0, bytes: 100.0 * MIB + m as f64 * 20.0 * MIB }).collect();
        let params = Params { min_age_seconds: 300.0, ..Params::default() };
        let a = assess(&s, Some(1024.0 * MIB), &[], &params);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    }

    #[test]
    fn empty_and_short_inputs_are_too_young() {
        assert_eq!(assess(&[], None, &[], &Params::default()).verdict, Verdict::TooYoung);
        let short = series(1, |_| 1.0);
        assert_eq!(assess(&short, None, &[], &Params::default()).verdict, Verdict::TooYoung);
    }
}
