//! Leak verdicts on a container's working-set series.
//!
//! The detector trends the *floor* of the series (a rolling minimum, so a GC
//! sawtooth's peaks do not count) with a robust slope (Theil–Sen, so a one-off
//! step or spike moves it little), on the current life of the process only.
//! Lives are split where the engine saw the container (re)start; without that
//! knowledge (a CSV without `started_at`), at drops of more than half, unless
//! those drops come back regularly to the same floor (a cycle of one process).
//!
//! Inside a life, a fast drop is memory the process freed (a full collection,
//! the end of a batch): evidence *against* a leak. After several, the floor
//! after each drop decides (rising: a leak under the cycle; level: stable);
//! after one, only the climb since counts, and only above where it fell from.
//!
//! `leak` needs growth that is significant against the floor's noise, steady
//! (three quarters of the window including the last; a step or a finished
//! warm-up is not), not slowing down (a cache filling up is), to a new high,
//! for long enough — and how long depends on the rate: 25 minutes for slow
//! growth (its evidence builds slowly, and a wave looks like it), 12 for 3 MiB/min
//! or more, and for growth that would reach the limit within the hour a sixth of
//! the time left (at least 8 minutes). A process that keeps exhausting its
//! limit and restarting is a leak across restarts.
//!
//! `baselines` holds the two rules it is compared with; `corpus` the labelled
//! traces and the evaluation.

pub mod baselines;
pub mod budget;
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
    /// No `leak` before the process has grown steadily for this long (slow growth).
    pub min_age_seconds: f64,
    /// Growth of at least this rate needs only `fast_min_age_seconds`.
    pub fast_bytes_per_hour: f64,
    pub fast_min_age_seconds: f64,
    /// Growth that would reach the limit within `urgent_within_seconds` is called
    /// after a sixth of that time, but never before `urgent_min_age_seconds`.
    pub urgent_within_seconds: f64,
    pub urgent_min_age_seconds: f64,
    /// Only the most recent part of a long life is trended.
    pub window_seconds: f64,
    /// Without restart information: split the series where it drops by more than this share.
    pub drop_share: f64,
    /// Inside one process life: a drop of the floor by this share is memory the
    /// process freed (a full collection, the end of a batch): a cycle.
    pub cycle_drop_share: f64,
    /// Growth over the window must exceed this much and this share of the floor.
    pub min_growth_bytes: f64,
    pub min_growth_share: f64,
    /// Slowing down: the second half's slope under this share of the first half's.
    pub slowdown_share: f64,
    /// One floor point per this many seconds (finer for the minutes of a CI run).
    pub floor_step_seconds: f64,
    /// The first minutes of a life are start-up (code loaded, heaps sized): not trended.
    pub startup_seconds: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_age_seconds: 25.0 * 60.0,
            fast_bytes_per_hour: 180.0 * MIB,
            fast_min_age_seconds: 12.0 * 60.0,
            urgent_within_seconds: 3600.0,
            urgent_min_age_seconds: 8.0 * 60.0,
            window_seconds: 24.0 * 3600.0,
            drop_share: 0.5,
            cycle_drop_share: 0.05,
            min_growth_bytes: 8.0 * MIB,
            min_growth_share: 0.03,
            slowdown_share: 0.8,
            floor_step_seconds: 60.0,
            startup_seconds: 120.0,
        }
    }
}

impl Params {
    /// How long steady growth at `slope` (bytes/s), at `floor` now, must last
    /// before it is called a leak: slow growth needs the long window (its
    /// evidence builds slowly, and a wave looks like it), fast growth less, and
    /// growth that will exhaust the limit soon least of all.
    pub fn min_age_for(&self, slope: f64, floor: f64, limit: Option<f64>) -> f64 {
        let mut age = self.min_age_seconds;
        if slope * 3600.0 >= self.fast_bytes_per_hour {
            age = age.min(self.fast_min_age_seconds);
        }
        if let (Some(l), true) = (limit, slope > 0.0) {
            let to_limit = (l - floor).max(0.0) / slope;
            if to_limit < self.urgent_within_seconds {
                age = age.min((to_limit / 6.0).max(self.urgent_min_age_seconds));
            }
        }
        age
    }

    /// The shortest minimum age any growth can get (windows shorter than this are never judged).
    fn shortest_min_age(&self) -> f64 {
        self.min_age_seconds.min(self.urgent_min_age_seconds)
    }
}

/// What is known about the process's (re)starts.
#[derive(Clone, Copy, Debug)]
pub enum Starts<'a> {
    /// From the engine (its `start` events) or a CSV's `started_at`/`restart`
    /// column: Unix seconds of every (re)start. A drop between two starts is
    /// memory the process freed, never a restart.
    Known(&'a [f64]),
    /// Nothing known: a drop of more than half is taken for a restart, unless
    /// such drops repeat with a regular period and return to the same floor
    /// (a GC or batch cycle).
    Unknown,
}

/// Assesses a series (any order; duplicates and non-finite values ignored).
pub fn assess(samples: &[Sample], limit: Option<f64>, starts: Starts, params: &Params) -> Assessment {
    let mut series: Vec<Sample> = samples.iter().copied().filter(|s| s.t.is_finite() && s.bytes.is_finite() && s.bytes >= 0.0).collect();
    series.sort_by(|a, b| a.t.total_cmp(&b.t));
    series.dedup_by(|a, b| a.t == b.t);
    let limit = limit.filter(|l| *l > 0.0 && l.is_finite());
    let segments = split(&series, starts, params.drop_share);
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
    if segments.is_empty() {
        return too_young("too young: no samples yet; a verdict needs 2 min of history");
    }
    // Across restarts: earlier lives that each climbed to the limit.
    let exhausted = |r: &std::ops::Range<usize>| {
        let life = &series[r.clone()];
        let peak = life.iter().map(|s| s.bytes).fold(0.0, f64::max);
        let rose = life.last().map(|l| l.bytes).unwrap_or(0.0) > life.first().map(|f| f.bytes).unwrap_or(0.0) * 1.3;
        limit.is_some_and(|l| peak >= 0.85 * l) && rose
    };
    let exhausted_lives = segments[..segments.len() - 1].iter().filter(|r| exhausted(r)).count();
    let current_range = segments.last().cloned().unwrap_or(0..0);
    let current = &series[current_range.clone()];
    let end = current.last().map(|s| s.t).unwrap_or(0.0);
    let age = end - current[0].t;

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
    // Without restart information, drops that come back regularly to the same
    // floor are cycles of one process, not restarts: judge them as one life.
    let (current, segments_count) = match starts {
        Starts::Unknown if exhausted_lives == 0 && periodic(&series, &segments) => (&series[..], 1),
        _ => (current, segments.len()),
    };
    let end = current.last().map(|s| s.t).unwrap_or(0.0);
    let window: Vec<Sample> = current.iter().copied().filter(|s| s.t >= end - params.window_seconds).collect();
    let age = end - window[0].t;
    // A process takes much of its memory in its first minute or two (code, heap
    // sizing): compared with that climb, steady growth after it would look like
    // slowing down. Start-up is left out of that comparison only.
    let startup_end = current[0].t + params.startup_seconds;

    if window.len() < 8 || age < 120.0 {
        let wait = (120.0 - age).max(0.0);
        let when = if wait > 0.0 { format!("; one is possible in {}", duration(wait)) } else { String::new() };
        return too_young(&format!("too young: {} of history since the last (re)start, a verdict needs 2 min{when}", duration(age.max(0.0))));
    }

    let finish = |judged: Judgement, floor: &[Sample]| -> Assessment {
        let slope = judged.slope;
        let fit_end = judged.fit_end.unwrap_or_else(|| {
            median(&floor.iter().filter(|s| s.t >= end - judged.span).map(|s| s.bytes - slope * (s.t - end)).collect::<Vec<_>>())
        });
        let hours = judged.span / 3600.0;
        let consistency = judged.growing_quarters as f64 / 4.0;
        let verdict = judged.verdict;
        let confidence = match verdict {
            Verdict::Leak => (0.5 + 0.5 * consistency * (hours / 2.0).min(1.0)).min(0.99),
            Verdict::Stable => (0.5 + 0.5 * (hours / 1.0).min(1.0)).min(0.99),
            Verdict::Growing | Verdict::WarmingUp => 0.3 + 0.3 * consistency,
            Verdict::TooYoung => 0.0,
        };
        let time_to_limit = match (limit, verdict) {
            (Some(l), Verdict::Leak | Verdict::Growing) if slope > 0.0 => Some(((l - judged.peak.unwrap_or(fit_end)) / slope).max(0.0)),
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
            segments: segments_count,
            reason: with_limit(judged.reason, time_to_limit, verdict),
        }
    };

    let floor = rolling_floor(&window, params.floor_step_seconds);
    // Memory the process freed inside this life: with several such drops the
    // floor after each one decides; after a single one, only the climb since
    // counts, and only once it passes what was there before the drop.
    let drops = cycle_drops(&window, params);
    if drops.len() >= 2 {
        if let Some(judged) = judge_cycles(&window, &drops, limit, params) {
            return finish(judged, &floor);
        }
    }
    let since_drop = drops.last().map(|d| end - d.t).unwrap_or(age);
    // Sharp enough to show a one-off step as one (the trend floor spreads it over minutes).
    let fine = rolling_min(&window, 300.0f64.min(age / 5.0).max(60.0), 30.0);

    // A leak may have started late in a long life: judge windows ending now,
    // from the whole life (or since the last drop) down to the minimum age. A
    // shorter window only counts when the floor has reached a new high (a wave
    // that comes back is not a leak).
    let mut judged: Option<Judgement> = None;
    let spans = [since_drop, 8.0 * 3600.0, 4.0 * 3600.0, 2.0 * 3600.0, 3600.0, params.min_age_seconds, params.fast_min_age_seconds, 600.0, params.urgent_min_age_seconds];
    for (i, span) in spans.into_iter().enumerate() {
        if span > since_drop || (i > 0 && span < params.shortest_min_age().min(since_drop)) {
            continue;
        }
        let start = end - span;
        let part: Vec<Sample> = floor.iter().copied().filter(|s| s.t >= start).collect();
        if part.len() < 5 {
            continue;
        }
        let mut judgement = judge(&part, span, limit, startup_end, params);
        let earlier_max = floor.iter().filter(|s| s.t < start).map(|s| s.bytes).fold(f64::MIN, f64::max);
        // After a drop, also above the height it fell from (the rolling floor blurs that peak).
        let earlier_max = earlier_max.max(drops.last().map(|d| d.peak).unwrap_or(f64::MIN));
        let new_high = earlier_max == f64::MIN || part.last().map(|l| l.bytes).unwrap_or(0.0) > earlier_max + params.min_growth_bytes;
        if judgement.verdict == Verdict::Leak {
            // Most of the growth within 2 minutes, and far more than the trend gives in 2 minutes.
            let growth = judgement.slope * span;
            if let Some((at, jump)) = largest_jump(&fine, start).filter(|(_, jump)| *jump > 0.5 * growth && *jump > 3.0 * judgement.slope * 120.0) {
                judgement.verdict = Verdict::Growing;
                judgement.reason = format!(
                    "grew {} in {}, {} of it at once {} ago (a one-off step, not steady growth)",
                    mib(growth),
                    duration(span),
                    mib(jump),
                    duration(end - at)
                );
            }
        }
        if judgement.verdict == Verdict::Leak && !new_high {
            judgement.verdict = Verdict::Growing;
            judgement.reason = if drops.is_empty() {
                format!("growing {}/h lately, but it was this high before", mib(judgement.slope * 3600.0))
            } else {
                format!(
                    "growing {}/h since it freed {} {} ago, but not yet above where it was before",
                    mib(judgement.slope * 3600.0),
                    mib(drops[drops.len() - 1].freed),
                    duration(since_drop)
                )
            };
        }
        let is_leak = judgement.verdict == Verdict::Leak;
        if judged.is_none() || is_leak {
            judged = Some(judgement);
            if is_leak {
                break;
            }
        }
    }
    let judged = judged.unwrap_or_else(|| match drops.last() {
        Some(drop) => Judgement {
            verdict: Verdict::Stable,
            reason: format!("freed {} {} ago (memory the process could give back, not a leak); too little since to trend", mib(drop.freed), duration(since_drop)),
            slope: 0.0,
            span: since_drop.max(60.0),
            growing_quarters: 0,
            fit_end: None,
            peak: None,
        },
        None => judge(&floor, age, limit, startup_end, params),
    });
    finish(judged, &floor)
}

/// The verdict on one window of the floor (ending now).
struct Judgement {
    verdict: Verdict,
    reason: String,
    slope: f64,
    span: f64,
    growing_quarters: usize,
    /// Where the trend ends now, when not the floor's own fit (cycles).
    fit_end: Option<f64>,
    /// What the limit is compared with, when not the trend's end (a cycle's peak).
    peak: Option<f64>,
}

fn judge(floor: &[Sample], span: f64, limit: Option<f64>, startup_end: f64, params: &Params) -> Judgement {
    let slope = theil_sen(floor); // bytes per second
    let start_floor = floor.first().map(|s| s.bytes).unwrap_or(0.0);
    let end_floor = floor.last().map(|s| s.bytes).unwrap_or(0.0);
    let growth = slope * span;
    let noise = noise_level(floor, slope);
    let min_age = params.min_age_for(slope, end_floor, limit);
    // A window shorter than the usual minimum age must stand further out of its noise.
    let noise_times = if span < params.min_age_seconds { 6.0 } else { 4.0 };
    let significant = growth > params.min_growth_bytes.max(params.min_growth_share * start_floor).max(noise_times * noise);
    // Growth per quarter, and no slowing down from the first half to the second.
    let quarters: Vec<f64> = (0..4).map(|q| quarter_growth(floor, q)).collect();
    let expected_quarter = growth / 4.0;
    let growing_quarters = quarters.iter().filter(|g| **g > 0.25 * expected_quarter).count();
    let after_startup: Vec<Sample> = floor.iter().copied().filter(|s| s.t >= startup_end).collect();
    let halves_of = if after_startup.len() >= 8 { &after_startup[..] } else { floor };
    let first_half = theil_sen(&part(halves_of, 0.0, 0.5));
    let second_half = theil_sen(&part(halves_of, 0.5, 1.0));
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
    } else if span + 1.0 < min_age {
        (
            Verdict::Growing,
            format!("growing {}/h for {}; a leak verdict needs {} of steady growth at this rate", mib(slope * 3600.0), duration(span), duration(min_age)),
        )
    } else {
        let early = if min_age + 1.0 < params.min_age_seconds {
            format!(", {} above its noise", ratio(growth, noise))
        } else {
            String::new()
        };
        (
            Verdict::Leak,
            format!("floor grew steadily by {}/h for {} (in {growing_quarters} of 4 quarters including the last, not slowing down{early})", mib(slope * 3600.0), duration(span)),
        )
    };
    Judgement { verdict, reason, slope, span, growing_quarters, fit_end: None, peak: None }
}

/// The biggest rise of the floor within 2 minutes after `from`, and when it ended.
fn largest_jump(fine: &[Sample], from: f64) -> Option<(f64, f64)> {
    let points: Vec<Sample> = fine.iter().copied().filter(|s| s.t >= from).collect();
    let mut best: Option<(f64, f64)> = None;
    for (i, a) in points.iter().enumerate() {
        for b in points[i + 1..].iter().take_while(|b| b.t - a.t <= 120.0) {
            let rise = b.bytes - a.bytes;
            if best.is_none_or(|(_, r)| rise > r) {
                best = Some((b.t, rise));
            }
        }
    }
    best
}

/// `12x` for how many times the growth stands above the noise.
fn ratio(growth: f64, noise: f64) -> String {
    if noise <= 0.0 {
        "far".into()
    } else {
        format!("{:.0}x", growth / noise)
    }
}

/// A drop of the floor inside one process life: memory given back.
#[derive(Clone, Copy, Debug)]
struct Freed {
    /// When the floor had come down.
    t: f64,
    /// The height it fell from, and how much it lost.
    peak: f64,
    freed: f64,
}

/// Drops inside one life by more than `cycle_drop_share` and `min_growth_bytes`
/// within 5 minutes (memory given back at once, as by a full collection or the
/// end of a batch; a slow decline is a wave, not a drop), on a one-minute
/// rolling minimum (so a lone spike is not a drop). Drops more frequent than one
/// per 5 minutes are a GC sawtooth, which the floor already smooths: not cycles.
fn cycle_drops(window: &[Sample], params: &Params) -> Vec<Freed> {
    const FAST: f64 = 300.0;
    let smooth = rolling_min(window, 60.0, 30.0);
    let mut drops: Vec<Freed> = Vec::new();
    let mut since = 0; // the next peak is built after the previous drop's bottom
    let mut i = 1;
    while i < smooth.len() {
        let now = smooth[i].bytes;
        let peak = smooth[since..i].iter().rev().take_while(|s| s.t >= smooth[i].t - FAST).map(|s| s.bytes).fold(f64::MIN, f64::max);
        if peak - now > params.min_growth_bytes && now < peak * (1.0 - params.cycle_drop_share) {
            // Follow the fall to its bottom.
            let mut j = i;
            while j + 1 < smooth.len() && smooth[j + 1].bytes <= smooth[j].bytes {
                j += 1;
            }
            drops.push(Freed { t: smooth[j].t, peak, freed: peak - smooth[j].bytes });
            since = j;
            i = j + 1;
            continue;
        }
        i += 1;
    }
    let gaps: Vec<f64> = drops.windows(2).map(|w| w[1].t - w[0].t).collect();
    if !gaps.is_empty() && median(&gaps) < 300.0 {
        return Vec::new();
    }
    drops
}

/// The verdict from the floor after each drop (cycle minima): rising minima
/// are a leak under the cycle, level ones a process that gives back what it took.
fn judge_cycles(window: &[Sample], drops: &[Freed], limit: Option<f64>, params: &Params) -> Option<Judgement> {
    let end = window[window.len() - 1].t;
    let mut troughs: Vec<Sample> = Vec::new();
    for (k, drop) in drops.iter().enumerate() {
        let until = drops.get(k + 1).map(|d| d.t - 1.0).unwrap_or(end);
        let bottom = window.iter().filter(|s| s.t >= drop.t - 300.0 && s.t <= until).min_by(|a, b| a.bytes.total_cmp(&b.bytes))?;
        troughs.push(*bottom);
    }
    let periods: Vec<f64> = drops.windows(2).map(|w| w[1].t - w[0].t).collect();
    let period = median(&periods);
    let n = troughs.len();
    let slope = theil_sen(&troughs);
    let span = (troughs[n - 1].t - troughs[0].t).max(1.0);
    let growth = slope * span;
    let noise = noise_level(&troughs, slope);
    let rising_pairs = troughs.windows(2).filter(|w| w[1].bytes > w[0].bytes).count();
    let level = median(&troughs.iter().map(|s| s.bytes).collect::<Vec<_>>());
    let spread = troughs.iter().map(|s| (s.bytes - level).abs()).fold(0.0, f64::max);
    let fit_end = median(&troughs.iter().map(|s| s.bytes - slope * (s.t - end)).collect::<Vec<_>>());
    // The limit is met by a cycle's top, not its floor.
    let peak = window.iter().filter(|s| s.t >= end - period.max(60.0)).map(|s| s.bytes).fold(0.0, f64::max);
    let significant = n >= 3
        && growth > params.min_growth_bytes.max(params.min_growth_share * troughs[0].bytes).max(3.0 * noise)
        && rising_pairs * 3 >= (n - 1) * 2;
    let cycles = format!("{} drops of about {} each, every {}", drops.len(), mib(median(&drops.iter().map(|d| d.freed).collect::<Vec<_>>())), duration(period));
    let (verdict, reason) = if significant {
        let min_age = params.min_age_for(slope, peak, limit);
        let verdict = if span + 1.0 >= min_age { Verdict::Leak } else { Verdict::Growing };
        (
            verdict,
            format!(
                "the floor after each drop rose {}/h over {n} cycles ({} → {}; {cycles}): each cycle frees memory, but not all it took",
                mib(slope * 3600.0),
                mib(troughs[0].bytes),
                mib(troughs[n - 1].bytes)
            ),
        )
    } else if n >= 3 || spread < params.min_growth_bytes.max(0.05 * level) {
        (Verdict::Stable, format!("memory is freed in cycles ({cycles}) and the floor after each comes back to {} (±{}): a GC or batch cycle, not a leak", mib(level), mib(spread)))
    } else {
        return None;
    };
    Some(Judgement { verdict, reason, slope: if verdict == Verdict::Stable { 0.0 } else { slope }, span, growing_quarters: 4, fit_end: Some(fit_end), peak: Some(peak) })
}

/// Without restart information: do the drops of more than half repeat with a
/// regular period (lengths within 30 %) and come back to the same floor (the
/// starts within 15 %)? Then they are one process's cycles.
fn periodic(series: &[Sample], segments: &[std::ops::Range<usize>]) -> bool {
    // The first segment began wherever the recording did; the last is still going.
    if segments.len() < 4 {
        return false;
    }
    let complete = &segments[1..segments.len() - 1];
    let lengths: Vec<f64> = complete.iter().map(|r| series[r.end - 1].t - series[r.start].t).collect();
    let typical = median(&lengths);
    let regular = typical > 0.0 && lengths.iter().all(|l| (l - typical).abs() <= 0.3 * typical);
    let bottoms: Vec<f64> = segments[1..]
        .iter()
        .map(|r| series[r.clone()].iter().take_while(|s| s.t <= series[r.start].t + 300.0).map(|s| s.bytes).fold(f64::MAX, f64::min))
        .collect();
    let level = median(&bottoms);
    let same_floor = bottoms.iter().all(|b| (b - level).abs() <= (0.15 * level).max(16.0 * MIB));
    regular && same_floor
}

fn with_limit(reason: String, time_to_limit: Option<f64>, verdict: Verdict) -> String {
    match (time_to_limit, verdict) {
        (Some(t), Verdict::Leak | Verdict::Growing) => format!("{reason}; at this rate it reaches its limit in {}", duration(t)),
        _ => reason,
    }
}

/// Index ranges of the process lives. With known starts: split there, and where
/// the series drops by more than `drop_share` across a gap in the samples of
/// more than 5 minutes (nobody was watching: it may have restarted). Without:
/// split at every drop of more than `drop_share` from one sample to the next.
pub fn split(series: &[Sample], starts: Starts, drop_share: f64) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 1..series.len() {
        let (prev, cur) = (series[i - 1], series[i]);
        let dropped = prev.bytes > 0.0 && cur.bytes < prev.bytes * (1.0 - drop_share);
        let split_here = match starts {
            Starts::Known(times) => times.iter().any(|r| *r > prev.t && *r <= cur.t) || (dropped && cur.t - prev.t > 300.0),
            Starts::Unknown => dropped,
        };
        if split_here {
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
fn rolling_floor(window: &[Sample], step: f64) -> Vec<Sample> {
    let (t0, t1) = (window[0].t, window[window.len() - 1].t);
    // Wide enough to span a GC cycle (up to ~5 min), narrower on short histories.
    let width = ((t1 - t0) / 20.0).max(300.0f64.min((t1 - t0) / 5.0));
    rolling_min(window, width, step.max((t1 - t0) / 400.0))
}

/// A centred rolling minimum of `width` seconds, one point every `step`.
fn rolling_min(window: &[Sample], width: f64, step: f64) -> Vec<Sample> {
    let (t0, t1) = (window[0].t, window[window.len() - 1].t);
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
        let a = assess(&s, Some(1024.0 * MIB), Starts::Unknown, &Params::default());
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert!((a.slope_bytes_per_hour / MIB - 120.0).abs() < 5.0, "{}", a.slope_bytes_per_hour / MIB);
        let ttl = a.time_to_limit_seconds.unwrap();
        assert!((ttl / 60.0 - (1024.0 - 320.0) / 2.0).abs() < 10.0, "{ttl}");
    }

    #[test]
    fn flat_sawtooth_and_step_are_not_leaks() {
        let saw = series(120, |t| 300.0 * MIB + (t % 180.0) / 180.0 * 120.0 * MIB);
        assert!(!assess(&saw, Some(1e9), Starts::Unknown, &Params::default()).leak);
        let step = series(120, |t| if t > 3000.0 { 400.0 * MIB } else { 250.0 * MIB });
        let a = assess(&step, Some(1e9), Starts::Unknown, &Params::default());
        assert!(!a.leak, "{}", a.reason);
    }

    #[test]
    fn minute_points_of_a_short_history_are_enough() {
        // What the engine feeds the detector: one minimum per minute.
        let s: Vec<Sample> = (0..10).map(|m| Sample { t: m as f64 * 60.0, bytes: 100.0 * MIB + m as f64 * 20.0 * MIB }).collect();
        let params = Params { min_age_seconds: 300.0, ..Params::default() };
        let a = assess(&s, Some(1024.0 * MIB), Starts::Unknown, &params);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    }

    #[test]
    fn the_climb_of_start_up_does_not_make_steady_growth_look_like_slowing_down() {
        // A JVM leaking 20 MiB/min as CI recorded it (minute points): 5 MiB at
        // start, heap sizing in its first minutes, then steady growth a little
        // slower under load. Judged over its whole life, as when shorter windows
        // hold too few points.
        let minutes = [5.0, 28.4, 51.9, 85.9, 106.7, 127.4, 147.6, 168.0, 187.9, 211.9, 225.2];
        let floor: Vec<Sample> = minutes.iter().enumerate().map(|(m, b)| Sample { t: m as f64 * 60.0, bytes: b * MIB }).collect();
        let params = Params { min_age_seconds: 300.0, ..Params::default() };
        let judged = judge(&floor, 600.0, Some(1024.0 * MIB), params.startup_seconds, &params);
        assert_eq!(judged.verdict, Verdict::Leak, "{}", judged.reason);
        // Compared with the start-up climb, the same growth read as a cache filling up.
        let judged = judge(&floor, 600.0, Some(1024.0 * MIB), 0.0, &params);
        assert_eq!(judged.verdict, Verdict::WarmingUp, "{}", judged.reason);
    }

    /// The verdicts a live detector would give, minute by minute.
    fn replay(s: &[Sample], limit: Option<f64>, starts: Starts) -> Vec<(f64, Assessment)> {
        let t0 = s[0].t;
        (2..)
            .map(|m| t0 + m as f64 * 60.0)
            .take_while(|now| *now <= s[s.len() - 1].t)
            .map(|now| {
                let prefix: Vec<Sample> = s.iter().copied().filter(|x| x.t <= now).collect();
                (now - t0, assess(&prefix, limit, starts, &Params::default()))
            })
            .collect()
    }

    #[test]
    fn a_drop_inside_one_life_is_freed_memory_not_a_restart() {
        // Climbs 400 MiB in 40 min, a full collection frees it, climbs again more slowly.
        let s = series(70, |t| if t < 2400.0 { 300.0 * MIB + t / 6.0 * MIB } else { 300.0 * MIB + (t - 2400.0) / 9.0 * MIB });
        let known = assess(&s, Some(2048.0 * MIB), Starts::Known(&[]), &Params::default());
        assert_ne!(known.verdict, Verdict::Leak, "{}", known.reason);
        assert!(known.reason.contains("not yet above where it was before"), "{}", known.reason);
        assert_eq!(known.segments, 1);
        // Without restart information the drop is taken for a restart, and the new climb is a leak.
        let unknown = assess(&s, Some(2048.0 * MIB), Starts::Unknown, &Params::default());
        assert_eq!((unknown.verdict, unknown.segments), (Verdict::Leak, 2), "{}", unknown.reason);
    }

    #[test]
    fn level_cycles_are_stable_and_rising_cycle_minima_are_a_leak() {
        let cycle = |t: f64| 400.0 * MIB * (t % 2400.0) / 2400.0;
        let level = series(8 * 60, |t| 300.0 * MIB + cycle(t));
        // The first climb, from the process's start, cannot be told from a leak; after
        // the first drop it can when the restarts are known, after three (a period) when not.
        for (starts, settled) in [(Starts::Known(&[]), 2400.0), (Starts::Unknown, 3.0 * 2400.0)] {
            let flagged: Vec<_> = replay(&level, Some(4096.0 * MIB), starts).into_iter().filter(|(m, a)| a.leak && *m > settled).collect();
            assert!(flagged.is_empty(), "{starts:?}: {}", flagged[0].1.reason);
            let last = assess(&level, Some(4096.0 * MIB), starts, &Params::default());
            assert!(last.verdict == Verdict::Stable && last.reason.contains("cycles"), "{starts:?}: {}", last.reason);
        }
        let rising = series(8 * 60, |t| 300.0 * MIB + t / 60.0 * 1024.0 * 1024.0 + cycle(t));
        let a = assess(&rising, Some(4096.0 * MIB), Starts::Known(&[]), &Params::default());
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert!(a.reason.contains("the floor after each drop rose"), "{}", a.reason);
        assert!((a.slope_bytes_per_hour / MIB - 60.0).abs() < 10.0, "{}", a.slope_bytes_per_hour / MIB);
    }

    #[test]
    fn known_restarts_split_lives_and_a_leak_within_each_life_is_called() {
        // 4 MiB/min, restarted every 40 min by a timer, far from its limit.
        let starts: Vec<f64> = (0..6).map(|k| k as f64 * 2400.0).collect();
        let s = series(200, |t| 150.0 * MIB + (t % 2400.0) / 60.0 * 4.0 * MIB);
        let a = assess(&s, Some(4096.0 * MIB), Starts::Known(&starts), &Params::default());
        assert_eq!((a.verdict, a.segments), (Verdict::Leak, 5), "{}", a.reason);
    }

    #[test]
    fn how_soon_a_leak_is_called_depends_on_how_soon_it_reaches_the_limit() {
        let first_flag = |s: &[Sample], limit| replay(s, Some(limit), Starts::Known(&[])).into_iter().find(|(_, a)| a.leak).map(|(m, a)| (m / 60.0, a));
        // 20 MiB/min from 200 MiB under 1 GiB: at its limit in 41 min.
        let urgent = series(40, |t| 200.0 * MIB + t / 60.0 * 20.0 * MIB);
        let (minute, a) = first_flag(&urgent, 1024.0 * MIB).expect("flagged");
        assert!(minute <= 10.0, "flagged after {minute} min: {}", a.reason);
        assert!(a.reason.contains("above its noise"), "{}", a.reason);
        // 5 MiB/min toward a far limit: fast, not urgent.
        let fast = series(60, |t| 200.0 * MIB + t / 60.0 * 5.0 * MIB);
        let (minute, _) = first_flag(&fast, 8192.0 * MIB).expect("flagged");
        assert!((11.0..=14.0).contains(&minute), "{minute}");
        // 0.5 MiB/min: the long window.
        let slow = series(60, |t| 200.0 * MIB + t / 60.0 * 0.5 * MIB);
        let (minute, _) = first_flag(&slow, 8192.0 * MIB).expect("flagged");
        assert!(minute >= 25.0, "{minute}");
    }

    #[test]
    fn empty_and_short_inputs_are_too_young() {
        assert_eq!(assess(&[], None, Starts::Unknown, &Params::default()).verdict, Verdict::TooYoung);
        let short = series(1, |_| 1.0);
        assert_eq!(assess(&short, None, Starts::Unknown, &Params::default()).verdict, Verdict::TooYoung);
    }
}
