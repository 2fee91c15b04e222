//! Budgets for a CI run (`leakscope check`): limits a team sets on the memory
//! of a short, controlled run, judged next to the detector's verdict.

use crate::{mib, theil_sen, Params, Sample};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budgets {
    /// Growth of the floor from the first to the last minute of the judged window.
    pub max_growth_bytes: Option<f64>,
    /// Slope of the floor (per-minute minimums), bytes per minute.
    pub max_slope_bytes_per_minute: Option<f64>,
    /// Highest working set as a share of the limit, in percent.
    pub max_percent_of_limit: Option<f64>,
}

/// What was measured over the judged window, for the outputs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Measured {
    pub growth_bytes: f64,
    pub slope_bytes_per_minute: f64,
    pub peak_bytes: f64,
    pub percent_of_limit: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Breach {
    /// `max-growth`, `max-slope` or `max-percent-of-limit`.
    pub budget: &'static str,
    pub sentence: String,
}

/// Per-minute minimums: the floor a GC sawtooth's peaks do not move.
fn minute_floor(samples: &[Sample]) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for s in samples {
        let minute = (s.t / 60.0).floor() * 60.0;
        match out.last_mut() {
            Some(last) if last.t == minute => last.bytes = last.bytes.min(s.bytes),
            _ => out.push(Sample { t: minute, bytes: s.bytes }),
        }
    }
    out
}

pub fn measure(samples: &[Sample], limit: Option<f64>) -> Measured {
    let floor = minute_floor(samples);
    let growth_bytes = match (floor.first(), floor.last()) {
        (Some(a), Some(b)) if floor.len() >= 2 => b.bytes - a.bytes,
        _ => 0.0,
    };
    let peak_bytes = samples.iter().map(|s| s.bytes).fold(0.0, f64::max);
    Measured {
        growth_bytes,
        slope_bytes_per_minute: theil_sen(&floor) * 60.0,
        peak_bytes,
        percent_of_limit: limit.filter(|l| *l > 0.0).map(|l| peak_bytes / l * 100.0),
    }
}

/// The budgets the run exceeded, each in a sentence.
pub fn breaches(measured: &Measured, budgets: &Budgets) -> Vec<Breach> {
    let mut out = Vec::new();
    if let Some(max) = budgets.max_growth_bytes {
        if measured.growth_bytes > max {
            out.push(Breach { budget: "max-growth", sentence: format!("the floor grew {} after the warm-up, over the budget of {}", mib(measured.growth_bytes), mib(max)) });
        }
    }
    if let Some(max) = budgets.max_slope_bytes_per_minute {
        if measured.slope_bytes_per_minute > max {
            out.push(Breach {
                budget: "max-slope",
                sentence: format!("the floor rose {}/min, over the budget of {}/min", mib(measured.slope_bytes_per_minute), mib(max)),
            });
        }
    }
    if let (Some(max), Some(percent)) = (budgets.max_percent_of_limit, measured.percent_of_limit) {
        if percent > max {
            out.push(Breach {
                budget: "max-percent-of-limit",
                sentence: format!("memory reached {percent:.0} % of the limit ({}), over the budget of {max:.0} %", mib(measured.peak_bytes)),
            });
        }
    }
    out
}

/// Detector settings for a run of `judged_seconds` after the warm-up: the
/// run is controlled (a fixed load, the warm-up skipped), so the whole
/// window may carry a verdict; growth must still be steady and significant.
pub fn short_run_params(judged_seconds: f64) -> Params {
    let age = (judged_seconds * 0.8).max(120.0);
    Params {
        min_age_seconds: age,
        fast_min_age_seconds: age,
        urgent_min_age_seconds: age.min(Params::default().urgent_min_age_seconds),
        min_growth_bytes: 4.0 * MIB,
        floor_step_seconds: (judged_seconds / 40.0).clamp(1.0, 60.0),
        // The warm-up is skipped by the run itself; a JVM's heap grows in steps,
        // which over a few minutes look like slowing down when they are not.
        slowdown_share: 0.6,
        startup_seconds: 0.0,
        ..Params::default()
    }
}

/// `64MiB`, `512k`, `1.5GiB`, `1g` (binary units; a bare number is bytes).
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a size (examples: 64MiB, 512k, 1g)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024.0 * MIB,
        other => return Err(format!("'{text}': unknown unit '{other}' (use KiB, MiB or GiB)")),
    };
    Ok(value * factor)
}

/// `2MiB/min`, `120MiB/h`, `100KiB/s`: bytes per minute.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (size, per) = text.rsplit_once('/').ok_or_else(|| format!("'{text}' is not a rate (examples: 2MiB/min, 120MiB/h)"))?;
    let minutes = match per.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" => 1.0 / 60.0,
        "min" | "m" => 1.0,
        "h" | "hour" => 60.0,
        other => return Err(format!("'{text}': unknown time unit '{other}' (use s, min or h)")),
    };
    Ok(parse_bytes(size)? / minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_parse_in_binary_units() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64.0 * MIB);
        assert_eq!(parse_bytes("512k").unwrap(), 512.0 * 1024.0);
        assert_eq!(parse_bytes("1.5g").unwrap(), 1.5 * 1024.0 * MIB);
        assert!(parse_bytes("lots").is_err() && parse_bytes("5 parsecs").is_err());
        assert_eq!(parse_rate("2MiB/min").unwrap(), 2.0 * MIB);
        assert_eq!(parse_rate("120MiB/h").unwrap(), 2.0 * MIB);
        assert!(parse_rate("2MiB").is_err() && parse_rate("2MiB/fortnight").is_err());
    }

    #[test]
    fn budgets_judge_the_floor_not_the_sawtooth() {
        // 3 MiB/min of floor growth under a 100 MiB sawtooth, for 10 minutes.
        let samples: Vec<Sample> = (0..600)
            .map(|i| {
                let t = 1_800_000_000.0 + i as f64;
                Sample { t, bytes: 200.0 * MIB + i as f64 / 60.0 * 3.0 * MIB + (i % 30) as f64 / 30.0 * 100.0 * MIB }
            })
            .collect();
        let m = measure(&samples, Some(1024.0 * MIB));
        assert!((m.growth_bytes / MIB - 27.0).abs() < 1.0, "{}", m.growth_bytes / MIB);
        assert!((m.slope_bytes_per_minute / MIB - 3.0).abs() < 0.2, "{}", m.slope_bytes_per_minute / MIB);
        let tight = Budgets { max_growth_bytes: Some(16.0 * MIB), max_slope_bytes_per_minute: Some(MIB), max_percent_of_limit: Some(20.0) };
        let names: Vec<_> = breaches(&m, &tight).iter().map(|b| b.budget).collect();
        assert_eq!(names, ["max-growth", "max-slope", "max-percent-of-limit"]);
        let loose = Budgets { max_growth_bytes: Some(64.0 * MIB), max_slope_bytes_per_minute: Some(5.0 * MIB), max_percent_of_limit: Some(80.0) };
        assert!(breaches(&m, &loose).is_empty());
    }
}

#[cfg(test)]
mod short_run {
    use super::*;

    #[test]
    fn a_steady_leak_over_a_short_run_is_a_leak() {
        // 10 MiB/min sampled every second for 3.5 minutes after the warm-up.
        let samples: Vec<Sample> = (0..210).map(|i| Sample { t: 1_800_000_000.0 + i as f64, bytes: 10.0 * MIB + i as f64 / 60.0 * 10.0 * MIB }).collect();
        let a = crate::assess(&samples, Some(512.0 * MIB), crate::Starts::Known(&[1_799_999_000.0]), &short_run_params(210.0));
        assert_eq!(a.verdict, crate::Verdict::Leak, "{}", a.reason);
    }
}
