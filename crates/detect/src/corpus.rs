//! The labelled corpus and the evaluation that produces the accuracy figures.
//!
//! Each trace is replayed minute by minute, as a live detector would see it.
//! A method *flags* a trace when it says leak at any minute (an alert that
//! fires once has paged someone); precision and recall count traces, and
//! time-to-detect runs from the leak's onset to the first flag.

use std::path::Path;

use crate::baselines;
use crate::{assess, Params, Sample, Starts};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Debug)]
pub struct Labelled {
    pub file: String,
    pub leak: bool,
    pub kind: String,
    /// `recorded` (from the sample services through Leakscope's sampler) or `synthetic`.
    pub source: String,
    /// Seconds from the trace's start to the leak's start (0 unless the leak starts late).
    pub onset_seconds: f64,
    /// The leak's configured rate (labels.csv's `rate_mib_per_min`; 0 when not a leak).
    pub rate_mib_per_min: f64,
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
    /// (Re)start times when the trace records them (`started_at`/`restart` columns).
    pub starts: Option<Vec<f64>>,
}

impl Labelled {
    pub fn starts(&self) -> Starts<'_> {
        match &self.starts {
            Some(times) => Starts::Known(times),
            None => Starts::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Leakscope,
    PredictLinear,
    Coroot,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Leakscope, Method::PredictLinear, Method::Coroot];

    pub fn name(self) -> &'static str {
        match self {
            Method::Leakscope => "Leakscope detector",
            Method::PredictLinear => "predict_linear 6h > limit (24 h ahead, for 15m)",
            Method::Coroot => "Coroot memory-leak rule",
        }
    }

    fn flags(self, prefix: &[Sample], limit: Option<f64>, starts: Starts, now: f64, params: &Params) -> bool {
        match self {
            Method::Leakscope => assess(prefix, limit, starts, params).leak,
            Method::PredictLinear => baselines::predict_linear(prefix, limit, now),
            Method::Coroot => baselines::coroot(prefix, limit, now),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TraceResult {
    pub file: String,
    pub leak: bool,
    pub flagged: bool,
    /// From onset to the first flag.
    pub detect_seconds: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Score {
    pub method: Method,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub true_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    pub median_detect_seconds: Option<f64>,
    /// Over the leaks of 1 MiB/min or more, and over those that would reach their limit within an hour of onset.
    pub median_detect_fast_seconds: Option<f64>,
    pub median_detect_urgent_seconds: Option<f64>,
    pub results: Vec<TraceResult>,
}

impl Labelled {
    /// A leak that, at its rate, would reach its limit within an hour of its onset.
    pub fn urgent(&self) -> bool {
        let (Some(limit), Some(first)) = (self.limit, self.samples.first().map(|s| s.t)) else { return false };
        let onset = first + self.onset_seconds;
        let level = self.samples.iter().filter(|s| s.t >= onset && s.t <= onset + 120.0).map(|s| s.bytes).fold(f64::MAX, f64::min);
        self.leak && self.rate_mib_per_min > 0.0 && level < f64::MAX && (limit - level) / (self.rate_mib_per_min * MIB) <= 60.0
    }
}

fn median_of(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    (!values.is_empty()).then(|| values[values.len() / 2])
}

/// Replays one trace minute by minute.
pub fn replay(trace: &Labelled, method: Method, params: &Params) -> TraceResult {
    let mut samples = trace.samples.clone();
    samples.sort_by(|a, b| a.t.total_cmp(&b.t));
    let (Some(first), Some(last)) = (samples.first().map(|s| s.t), samples.last().map(|s| s.t)) else {
        return TraceResult { file: trace.file.clone(), leak: trace.leak, flagged: false, detect_seconds: None };
    };
    let mut now = first + 120.0;
    let mut end = 0;
    while now <= last {
        while end < samples.len() && samples[end].t <= now {
            end += 1;
        }
        if method.flags(&samples[..end], trace.limit, trace.starts(), now, params) {
            let detect = (now - first - trace.onset_seconds).max(0.0);
            return TraceResult { file: trace.file.clone(), leak: trace.leak, flagged: true, detect_seconds: Some(detect) };
        }
        now += 60.0;
    }
    TraceResult { file: trace.file.clone(), leak: trace.leak, flagged: false, detect_seconds: None }
}

pub fn evaluate(traces: &[Labelled], method: Method, params: &Params) -> Score {
    let results: Vec<TraceResult> = traces.iter().map(|t| replay(t, method, params)).collect();
    let count = |leak: bool, flagged: bool| results.iter().filter(|r| r.leak == leak && r.flagged == flagged).count();
    let (tp, fp, fneg, tn) = (count(true, true), count(false, true), count(true, false), count(false, false));
    let ratio = |a: usize, b: usize| if a + b == 0 { 0.0 } else { a as f64 / (a + b) as f64 };
    let detect_where = |keep: &dyn Fn(&Labelled) -> bool| -> Option<f64> {
        median_of(traces.iter().zip(&results).filter(|(t, r)| r.leak && keep(t)).filter_map(|(_, r)| r.detect_seconds).collect())
    };
    Score {
        method,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fneg,
        true_negatives: tn,
        precision: ratio(tp, fp),
        recall: ratio(tp, fneg),
        median_detect_seconds: detect_where(&|_| true),
        median_detect_fast_seconds: detect_where(&|t| t.rate_mib_per_min >= 1.0),
        median_detect_urgent_seconds: detect_where(&|t| t.urgent()),
        results,
    }
}

/// Reads `labels.csv` (file,leak,kind,source,onset_seconds,description,rate_mib_per_min) and the traces it names.
pub fn load(dir: &Path) -> Result<Vec<Labelled>, String> {
    let labels = std::fs::read_to_string(dir.join("labels.csv")).map_err(|e| format!("{}: {e}", dir.join("labels.csv").display()))?;
    let mut reader = ::csv::Reader::from_reader(labels.as_bytes());
    let mut traces = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("labels.csv: {e}"))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim().to_string();
        let file = field(0);
        let text = std::fs::read_to_string(dir.join(&file)).map_err(|e| format!("{file}: {e}"))?;
        let trace = crate::csv::parse(&text).map_err(|e| format!("{file}: {e}"))?;
        traces.push(Labelled {
            leak: field(1) == "leak",
            kind: field(2),
            source: field(3),
            onset_seconds: field(4).parse().unwrap_or(0.0),
            rate_mib_per_min: field(6).parse().unwrap_or(0.0),
            file,
            samples: trace.samples,
            limit: trace.limit,
            starts: trace.starts,
        });
    }
    Ok(traces)
}

/// A small deterministic generator (xorshift), so the synthetic corpus is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal noise: the sum of three uniforms, scaled.
    fn noise(&mut self, sigma: f64) -> f64 {
        (self.next() + self.next() + self.next() - 1.5) * 2.0 * sigma
    }
}

/// One synthetic trace: a name, its label, and a function of time (seconds) to bytes.
pub struct Synthetic {
    pub file: String,
    pub leak: bool,
    pub kind: &'static str,
    pub onset_seconds: f64,
    /// The leak's rate (0 for traces that do not leak).
    pub rate_mib_per_min: f64,
    pub description: String,
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
    pub starts: Option<Vec<f64>>,
}

/// `f` every `step` seconds for `hours` from `t0` (it ends the trace early by returning `None`).
fn sample_trace(rng: &mut Rng, t0: f64, hours: f64, step: f64, f: &dyn Fn(f64, &mut Rng) -> Option<f64>) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut t = 0.0;
    while t <= hours * 3600.0 {
        match f(t, rng) {
            Some(v) => samples.push(Sample { t: t0 + t, bytes: v.max(MIB) }),
            None => break,
        }
        t += step;
    }
    samples
}

/// The synthetic part of the corpus: cases that are hard or slow to stage
/// with real services (hours-long slow leaks, restart loops, steps).
pub fn synthetic() -> Vec<Synthetic> {
    let mut out = Vec::new();
    let mut rng = Rng(0x5eed_1ea4_2026);
    const T0: f64 = 1_790_000_000.0;
    let step = 30.0;
    let mut make = |rng: &mut Rng, file: String, leak: bool, kind: &'static str, hours: f64, limit: Option<f64>, onset: f64, rate: f64, description: String, f: &dyn Fn(f64, &mut Rng) -> Option<f64>| {
        let samples = sample_trace(rng, T0, hours, step, f);
        out.push(Synthetic { file, leak, kind, onset_seconds: onset, rate_mib_per_min: rate, description, samples, limit, starts: None });
    };

    // Leaks from 0.2 to 20 MiB/min: plain, hidden under a GC sawtooth, and without a limit.
    for (i, rate) in [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0].into_iter().enumerate() {
        let base = (150.0 + 70.0 * i as f64) * MIB;
        let limit = 2048.0 * MIB;
        let per_s = rate * MIB / 60.0;
        for variant in ["plain", "sawtooth", "nolimit"] {
            let sigma = 2.0 * MIB;
            let lim = (variant != "nolimit").then_some(limit);
            make(&mut rng, format!("synthetic-leak-{rate}mpm-{variant}.csv"), true, "leak", 6.0, lim, 0.0, rate,
                format!("{rate} MiB/min leak, {variant}"),
                &move |t, r| {
                    let mut v = base + per_s * t + r.noise(sigma);
                    if variant == "sawtooth" {
                        v += (t % 150.0) / 150.0 * 80.0 * MIB;
                    }
                    (lim.is_none() || v < limit * 0.98).then_some(v)
                });
        }
    }
    // A leak that starts after two quiet hours.
    for rate in [1.0, 5.0] {
        let per_s = rate * MIB / 60.0;
        make(&mut rng, format!("synthetic-late-leak-{rate}mpm.csv"), true, "late leak", 5.0, Some(2048.0 * MIB), 7200.0, rate,
            format!("flat for 2 h, then {rate} MiB/min"),
            &move |t, r| Some(300.0 * MIB + per_s * (t - 7200.0).max(0.0) + r.noise(2.0 * MIB)));
    }
    // A leak with a one-off step on top.
    make(&mut rng, "synthetic-leak-with-step.csv".into(), true, "leak", 5.0, Some(2048.0 * MIB), 0.0, 2.0,
        "2 MiB/min leak with a 200 MiB step at 1 h".into(),
        &|t, r| Some(250.0 * MIB + 2.0 * MIB / 60.0 * t + if t > 3600.0 { 200.0 * MIB } else { 0.0 } + r.noise(2.0 * MIB)));
    // Restart loops of a leaking service: climbs to the limit, is OOM-killed, restarts.
    for rate in [5.0, 10.0, 20.0] {
        let per_s = rate * MIB / 60.0;
        let limit = 512.0 * MIB;
        let life = (limit * 0.97 - 120.0 * MIB) / per_s;
        make(&mut rng, format!("synthetic-oom-loop-{rate}mpm.csv"), true, "restart loop (leak)", 4.0, Some(limit), 0.0, rate,
            format!("{rate} MiB/min leak, OOM-killed at the limit and restarted, again and again"),
            &move |t, r| Some(120.0 * MIB + per_s * (t % (life + 20.0)).min(life) + r.noise(1.5 * MIB)));
    }

    // Not leaks: flat with noise, GC sawtooths, a slow daily-like wave.
    for (i, (amplitude, period)) in [(0.0, 60.0), (100.0, 180.0), (250.0, 60.0), (60.0, 600.0)].into_iter().enumerate() {
        for limit in [Some(1024.0 * MIB), None] {
            let base = (200.0 + 100.0 * i as f64) * MIB;
            make(&mut rng, format!("synthetic-steady-saw{amplitude}-p{period}-{}.csv", if limit.is_some() { "limit" } else { "nolimit" }),
                false, "steady", 6.0, limit, 0.0, 0.0,
                format!("flat, GC sawtooth {amplitude} MiB every {period} s"),
                &move |t, r| Some(base + (t % period) / period * amplitude * MIB + r.noise(3.0 * MIB)));
        }
    }
    make(&mut rng, "synthetic-steady-wave.csv".into(), false, "steady", 8.0, Some(1024.0 * MIB), 0.0, 0.0,
        "flat with a 2-hour wave of ±40 MiB (load following traffic)".into(),
        &|t, r| Some(400.0 * MIB + 40.0 * MIB * (t / 7200.0 * std::f64::consts::TAU).sin() + r.noise(2.0 * MIB)));
    // Warm-ups: a cache filling up, then flat.
    for tau in [3.0, 8.0, 15.0] {
        for size in [100.0, 300.0] {
            make(&mut rng, format!("synthetic-warmup-tau{tau}min-{size}mib.csv"), false, "warm-up", 4.0, Some(1024.0 * MIB), 0.0, 0.0,
                format!("cache of {size} MiB filling with a {tau}-minute time constant"),
                &move |t, r| Some(200.0 * MIB + size * MIB * (1.0 - (-t / (tau * 60.0)).exp()) + r.noise(2.0 * MIB)));
        }
    }
    for minutes in [10.0, 15.0] {
        make(&mut rng, format!("synthetic-warmup-linear-{minutes}min.csv"), false, "warm-up", 4.0, Some(1024.0 * MIB), 0.0, 0.0,
            format!("cache filling linearly for {minutes} min, then full"),
            &move |t, r| Some(250.0 * MIB + 200.0 * MIB * (t / (minutes * 60.0)).min(1.0) + r.noise(2.0 * MIB)));
    }
    // Restart loops that are not leaks: each life warms up, plateaus, and is restarted (deploys, crashes).
    for life_min in [30.0, 45.0, 60.0] {
        let life = life_min * 60.0;
        make(&mut rng, format!("synthetic-restart-loop-{life_min}min.csv"), false, "restart loop (no leak)", 6.0, Some(1024.0 * MIB), 0.0, 0.0,
            format!("restarted every {life_min} min; each life warms up to a plateau"),
            &move |t, r| {
                let age = t % life;
                Some(100.0 * MIB + 250.0 * MIB * (1.0 - (-age / 240.0).exp()) + r.noise(2.0 * MIB))
            });
    }
    // One-off steps.
    for (step_mib, at_h) in [(50.0, 1.0), (150.0, 2.5), (300.0, 0.5)] {
        make(&mut rng, format!("synthetic-step-{step_mib}mib.csv"), false, "step", 5.0, Some(2048.0 * MIB), 0.0, 0.0,
            format!("a one-off step of {step_mib} MiB at {at_h} h"),
            &move |t, r| Some(300.0 * MIB + if t > at_h * 3600.0 { step_mib * MIB } else { 0.0 } + r.noise(2.0 * MIB)));
    }
    make(&mut rng, "synthetic-two-steps.csv".into(), false, "step", 5.0, Some(2048.0 * MIB), 0.0, 0.0,
        "two steps of 100 MiB at 1 h and 3 h".into(),
        &|t, r| Some(300.0 * MIB + 100.0 * MIB * ((t > 3600.0) as u8 + (t > 3.0 * 3600.0) as u8) as f64 + r.noise(2.0 * MIB)));

    // Cycles, known restarts and urgency (appended, so the traces above keep
    // their random draws). `starts`: offsets of the (re)starts when the trace
    // records them (a `started_at` column), `None` when it does not.
    let mut make = |rng: &mut Rng, file: String, leak: bool, kind: &'static str, hours: f64, step: f64, limit: Option<f64>, onset: f64, rate: f64, starts: Option<Vec<f64>>, description: String, f: &dyn Fn(f64, &mut Rng) -> Option<f64>| {
        let samples = sample_trace(rng, T0, hours, step, f);
        let starts = starts.map(|offsets| offsets.into_iter().map(|o| T0 + o).collect());
        out.push(Synthetic { file, leak, kind, onset_seconds: onset, rate_mib_per_min: rate, description, samples, limit, starts });
    };
    let gib2 = Some(2048.0 * MIB);
    // A JVM whose old generation fills for 30-60 minutes and is then collected,
    // in one process life (the engine saw no restart). Observed from 5 minutes
    // before a collection: the first climb, seen from its start, is
    // indistinguishable from a leak until it drops (any detector's limit).
    for period_min in [30.0, 45.0, 60.0] {
        let period = period_min * 60.0;
        let shift = period - 300.0;
        make(&mut rng, format!("synthetic-oldgen-cycle-{period_min}min.csv"), false, "GC cycle", 8.0, 30.0, gib2, 0.0, 0.0, Some(vec![-7200.0]),
            format!("old generation fills 400 MiB in {period_min} min, then a full collection frees it; one process life"),
            &move |t, r| Some(300.0 * MIB + 400.0 * MIB * ((t + shift) % period) / period + (t % 20.0) / 20.0 * 30.0 * MIB + r.noise(2.0 * MIB)));
    }
    // A leak under that cycle: the floor after each collection rises.
    for rate in [0.5, 2.0] {
        let per_s = rate * MIB / 60.0;
        make(&mut rng, format!("synthetic-oldgen-cycle-leak-{rate}mpm.csv"), true, "leak under a cycle", 8.0, 30.0, gib2, 0.0, rate, Some(vec![-7200.0]),
            format!("old generation cycle of 40 min over a {rate} MiB/min leak"),
            &move |t, r| Some(300.0 * MIB + per_s * t + 300.0 * MIB * ((t + 2100.0) % 2400.0) / 2400.0 + r.noise(2.0 * MIB)));
    }
    // Batch jobs: climb for 50 minutes, free everything, rest 10 (observed from
    // the end of a batch).
    let batch = |t: f64| {
        let into = (t + 2700.0) % 3600.0;
        if into < 3000.0 { 1024.0 * MIB * into / 3000.0 } else { 0.0 }
    };
    make(&mut rng, "synthetic-batch-hourly.csv".into(), false, "batch cycle", 8.0, 30.0, gib2, 0.0, 0.0, Some(vec![-7200.0]),
        "hourly batch job: 1 GiB in 50 min, all freed, 10 min rest".into(),
        &|t, r| Some(80.0 * MIB + batch(t) + r.noise(2.0 * MIB)));
    make(&mut rng, "synthetic-batch-hourly-leak.csv".into(), true, "leak under a cycle", 8.0, 30.0, gib2, 0.0, 2.9, Some(vec![-7200.0]),
        "hourly batch job that keeps 5 % of every batch (51 MiB/h)".into(),
        &|t, r| Some(80.0 * MIB + 51.2 * MIB * ((t + 2700.0) / 3600.0).floor() + batch(t) + r.noise(2.0 * MIB)));
    // Restarted by `docker restart` on a timer, with the restarts known.
    let every_45: Vec<f64> = (0..8).map(|k| k as f64 * 2700.0).collect();
    let every_30: Vec<f64> = (0..12).map(|k| k as f64 * 1800.0).collect();
    make(&mut rng, "synthetic-restarted-leak-3mpm.csv".into(), true, "leak restarted on a timer", 6.0, 30.0, gib2, 0.0, 3.0, Some(every_45),
        "3 MiB/min leak, restarted every 45 min (long before its limit)".into(),
        &|t, r| Some(150.0 * MIB + 3.0 * MIB / 60.0 * (t % 2700.0) + r.noise(2.0 * MIB)));
    make(&mut rng, "synthetic-restarted-warmup.csv".into(), false, "restart loop (no leak)", 6.0, 30.0, gib2, 0.0, 0.0, Some(every_30),
        "warms up 250 MiB (4-minute time constant), restarted every 30 min".into(),
        &|t, r| Some(100.0 * MIB + 250.0 * MIB * (1.0 - (-(t % 1800.0) / 240.0).exp()) + r.noise(2.0 * MIB)));
    // Fast leaks that reach their limit within the hour (the urgent ones), up to the OOM kill.
    for (rate, base, limit_mib, saw) in [(10.0, 100.0, 512.0, false), (20.0, 200.0, 1024.0, false), (30.0, 300.0, 2048.0, false), (15.0, 150.0, 1024.0, true)] {
        let (per_s, limit) = (rate * MIB / 60.0, limit_mib * MIB);
        make(&mut rng, format!("synthetic-urgent-leak-{rate}mpm-{limit_mib}mib{}.csv", if saw { "-sawtooth" } else { "" }), true, "urgent leak", 2.0, 30.0, Some(limit), 0.0, rate, Some(vec![0.0]),
            format!("{rate} MiB/min from {base} MiB under a {limit_mib} MiB limit{}", if saw { ", under a GC sawtooth" } else { "" }),
            &move |t, r| {
                let v = base * MIB + per_s * t + if saw { (t % 120.0) / 120.0 * 60.0 * MIB } else { 0.0 } + r.noise(2.0 * MIB);
                (v < limit * 0.98).then_some(v)
            });
    }
    make(&mut rng, "synthetic-late-urgent-leak.csv".into(), true, "urgent leak", 4.0, 30.0, Some(1024.0 * MIB), 3.0 * 3600.0, 12.0, Some(vec![0.0]),
        "flat for 3 h, then 12 MiB/min toward a 1 GiB limit".into(),
        &|t, r| {
            let v = 300.0 * MIB + 12.0 * MIB / 60.0 * (t - 3.0 * 3600.0).max(0.0) + r.noise(2.0 * MIB);
            (v < 1024.0 * MIB * 0.98).then_some(v)
        });
    // Days: a daily wave, alone and over a slow leak (minute samples).
    make(&mut rng, "synthetic-daily-wave.csv".into(), false, "steady", 72.0, 60.0, gib2, 0.0, 0.0, Some(vec![0.0]),
        "a daily wave of ±150 MiB (traffic) for 3 days, observed from its peak".into(),
        &|t, r| Some(600.0 * MIB + 150.0 * MIB * (t / 86400.0 * std::f64::consts::TAU).cos() + r.noise(3.0 * MIB)));
    make(&mut rng, "synthetic-daily-wave-leak.csv".into(), true, "slow leak under a wave", 72.0, 60.0, Some(4096.0 * MIB), 0.0, 0.1, Some(vec![0.0]),
        "a 0.1 MiB/min leak (144 MiB a day) under a daily wave of ±150 MiB, observed from its peak".into(),
        &|t, r| Some(600.0 * MIB + 0.1 * MIB / 60.0 * t + 150.0 * MIB * (t / 86400.0 * std::f64::consts::TAU).cos() + r.noise(3.0 * MIB)));
    out
}
