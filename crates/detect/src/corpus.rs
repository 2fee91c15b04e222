//! The labelled corpus and the evaluation that produces the accuracy figures.
//!
//! Each trace is replayed minute by minute, as a live detector would see it.
//! A method *flags* a trace when it says leak at any minute (an alert that
//! fires once has paged someone); precision and recall count traces, and
//! time-to-detect runs from the leak's onset to the first flag.

use std::path::Path;

use crate::baselines;
use crate::{assess, Params, Sample};

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
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
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

    fn flags(self, prefix: &[Sample], limit: Option<f64>, now: f64, params: &Params) -> bool {
        match self {
            Method::Leakscope => assess(prefix, limit, &[], params).leak,
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
    pub results: Vec<TraceResult>,
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
        if method.flags(&samples[..end], trace.limit, now, params) {
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
    let mut detect: Vec<f64> = results.iter().filter(|r| r.leak).filter_map(|r| r.detect_seconds).collect();
    detect.sort_by(f64::total_cmp);
    Score {
        method,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fneg,
        true_negatives: tn,
        precision: ratio(tp, fp),
        recall: ratio(tp, fneg),
        median_detect_seconds: (!detect.is_empty()).then(|| detect[detect.len() / 2]),
        results,
    }
}

/// Reads `labels.csv` (file,leak,kind,source,onset_seconds,description) and the traces it names.
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
            file,
            samples: trace.samples,
            limit: trace.limit,
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
    pub description: String,
    pub samples: Vec<Sample>,
    pub limit: Option<f64>,
}

/// The synthetic part of the corpus: cases that are hard or slow to stage
/// with real services (hours-long slow leaks, restart loops, steps).
pub fn synthetic() -> Vec<Synthetic> {
    let mut out = Vec::new();
    let mut rng = Rng(0x5eed_1ea4_2026);
    const T0: f64 = 1_790_000_000.0;
    let step = 30.0;
    let mut make = |rng: &mut Rng, file: String, leak: bool, kind: &'static str, hours: f64, limit: Option<f64>, onset: f64, description: String, f: &dyn Fn(f64, &mut Rng) -> Option<f64>| {
        let mut samples = Vec::new();
        let mut t = 0.0;
        while t <= hours * 3600.0 {
            match f(t, rng) {
                Some(v) => samples.push(Sample { t: T0 + t, bytes: v.max(MIB) }),
                None => break,
            }
            t += step;
        }
        out.push(Synthetic { file, leak, kind, onset_seconds: onset, description, samples, limit });
    };

    // Leaks from 0.2 to 20 MiB/min: plain, hidden under a GC sawtooth, and without a limit.
    for (i, rate) in [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0].into_iter().enumerate() {
        let base = (150.0 + 70.0 * i as f64) * MIB;
        let limit = 2048.0 * MIB;
        let per_s = rate * MIB / 60.0;
        for variant in ["plain", "sawtooth", "nolimit"] {
            let sigma = 2.0 * MIB;
            let lim = (variant != "nolimit").then_some(limit);
            make(&mut rng, format!("synthetic-leak-{rate}mpm-{variant}.csv"), true, "leak", 6.0, lim, 0.0,
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
        make(&mut rng, format!("synthetic-late-leak-{rate}mpm.csv"), true, "late leak", 5.0, Some(2048.0 * MIB), 7200.0,
            format!("flat for 2 h, then {rate} MiB/min"),
            &move |t, r| Some(300.0 * MIB + per_s * (t - 7200.0).max(0.0) + r.noise(2.0 * MIB)));
    }
    // A leak with a one-off step on top.
    make(&mut rng, "synthetic-leak-with-step.csv".into(), true, "leak", 5.0, Some(2048.0 * MIB), 0.0,
        "2 MiB/min leak with a 200 MiB step at 1 h".into(),
        &|t, r| Some(250.0 * MIB + 2.0 * MIB / 60.0 * t + if t > 3600.0 { 200.0 * MIB } else { 0.0 } + r.noise(2.0 * MIB)));
    // Restart loops of a leaking service: climbs to the limit, is OOM-killed, restarts.
    for rate in [5.0, 10.0, 20.0] {
        let per_s = rate * MIB / 60.0;
        let limit = 512.0 * MIB;
        let life = (limit * 0.97 - 120.0 * MIB) / per_s;
        make(&mut rng, format!("synthetic-oom-loop-{rate}mpm.csv"), true, "restart loop (leak)", 4.0, Some(limit), 0.0,
            format!("{rate} MiB/min leak, OOM-killed at the limit and restarted, again and again"),
            &move |t, r| Some(120.0 * MIB + per_s * (t % (life + 20.0)).min(life) + r.noise(1.5 * MIB)));
    }

    // Not leaks: flat with noise, GC sawtooths, a slow daily-like wave.
    for (i, (amplitude, period)) in [(0.0, 60.0), (100.0, 180.0), (250.0, 60.0), (60.0, 600.0)].into_iter().enumerate() {
        for limit in [Some(1024.0 * MIB), None] {
            let base = (200.0 + 100.0 * i as f64) * MIB;
            make(&mut rng, format!("synthetic-steady-saw{amplitude}-p{period}-{}.csv", if limit.is_some() { "limit" } else { "nolimit" }),
                false, "steady", 6.0, limit, 0.0,
                format!("flat, GC sawtooth {amplitude} MiB every {period} s"),
                &move |t, r| Some(base + (t % period) / period * amplitude * MIB + r.noise(3.0 * MIB)));
        }
    }
    make(&mut rng, "synthetic-steady-wave.csv".into(), false, "steady", 8.0, Some(1024.0 * MIB), 0.0,
        "flat with a 2-hour wave of ±40 MiB (load following traffic)".into(),
        &|t, r| Some(400.0 * MIB + 40.0 * MIB * (t / 7200.0 * std::f64::consts::TAU).sin() + r.noise(2.0 * MIB)));
    // Warm-ups: a cache filling up, then flat.
    for tau in [3.0, 8.0, 15.0] {
        for size in [100.0, 300.0] {
            make(&mut rng, format!("synthetic-warmup-tau{tau}min-{size}mib.csv"), false, "warm-up", 4.0, Some(1024.0 * MIB), 0.0,
                format!("cache of {size} MiB filling with a {tau}-minute time constant"),
                &move |t, r| Some(200.0 * MIB + size * MIB * (1.0 - (-t / (tau * 60.0)).exp()) + r.noise(2.0 * MIB)));
        }
    }
    for minutes in [10.0, 15.0] {
        make(&mut rng, format!("synthetic-warmup-linear-{minutes}min.csv"), false, "warm-up", 4.0, Some(1024.0 * MIB), 0.0,
            format!("cache filling linearly for {minutes} min, then full"),
            &move |t, r| Some(250.0 * MIB + 200.0 * MIB * (t / (minutes * 60.0)).min(1.0) + r.noise(2.0 * MIB)));
    }
    // Restart loops that are not leaks: each life warms up, plateaus, and is restarted (deploys, crashes).
    for life_min in [30.0, 45.0, 60.0] {
        let life = life_min * 60.0;
        make(&mut rng, format!("synthetic-restart-loop-{life_min}min.csv"), false, "restart loop (no leak)", 6.0, Some(1024.0 * MIB), 0.0,
            format!("restarted every {life_min} min; each life warms up to a plateau"),
            &move |t, r| {
                let age = t % life;
                Some(100.0 * MIB + 250.0 * MIB * (1.0 - (-age / 240.0).exp()) + r.noise(2.0 * MIB))
            });
    }
    // One-off steps.
    for (step_mib, at_h) in [(50.0, 1.0), (150.0, 2.5), (300.0, 0.5)] {
        make(&mut rng, format!("synthetic-step-{step_mib}mib.csv"), false, "step", 5.0, Some(2048.0 * MIB), 0.0,
            format!("a one-off step of {step_mib} MiB at {at_h} h"),
            &move |t, r| Some(300.0 * MIB + if t > at_h * 3600.0 { step_mib * MIB } else { 0.0 } + r.noise(2.0 * MIB)));
    }
    make(&mut rng, "synthetic-two-steps.csv".into(), false, "step", 5.0, Some(2048.0 * MIB), 0.0,
        "two steps of 100 MiB at 1 h and 3 h".into(),
        &|t, r| Some(300.0 * MIB + 100.0 * MIB * ((t > 3600.0) as u8 + (t > 3.0 * 3600.0) as u8) as f64 + r.noise(2.0 * MIB)));
    out
}
