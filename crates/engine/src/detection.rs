//! Leak verdicts for every container, refreshed every minute from the stored
//! series (per-minute minimums of the working set, by container name so a
//! re-created container continues its history). Lives are split at the
//! `start` events the engine reported, so a drop inside one life is memory
//! the process freed, not a restart.

use std::time::Duration;

use leakscope_detect::{assess, Params, Sample, Starts};
use leakscope_model::{LeakStatus, LimitAdvice};

use crate::store::SeriesSource;
use crate::{now_ms, read, Engine, EngineError};

const ASSESS_EVERY: Duration = Duration::from_secs(60);
/// How much history the detector sees (its own window is at most a day).
const LOOKBACK_MS: i64 = 24 * 3600 * 1000;

pub(crate) async fn assess_forever(engine: Engine) {
    let mut ticker = tokio::time::interval(ASSESS_EVERY);
    loop {
        ticker.tick().await;
        if let Err(e) = engine.assess_all().await {
            tracing::warn!(error = %e, "leak assessment failed; retrying next minute");
        }
    }
}

/// The detector's answer in the wire type. `starts`: Unix seconds of the container's (re)starts.
pub fn status_of(samples: &[Sample], limit: Option<f64>, starts: &[f64], assessed_ms: i64, params: &Params) -> LeakStatus {
    let a = assess(samples, limit, Starts::Known(starts), params);
    let span_s = a.window_end - a.window_start;
    LeakStatus {
        leak: a.leak,
        verdict: a.verdict.as_str().to_string(),
        slope_bytes_per_hour: a.slope_bytes_per_hour,
        confidence: a.confidence,
        time_to_limit_seconds: a.time_to_limit_seconds,
        limit_bytes: a.limit_bytes.map(|l| l as u64),
        window_start_ms: (a.window_start * 1000.0) as i64,
        window_end_ms: (a.window_end * 1000.0) as i64,
        floor_start_bytes: (a.floor_end_bytes - a.slope_bytes_per_hour / 3600.0 * span_s).max(0.0),
        floor_end_bytes: a.floor_end_bytes,
        reason: a.reason,
        assessed_ms,
    }
}

impl Engine {
    /// Assesses every running container now (also used by tests through the API).
    pub async fn assess_all(&self) -> Result<(), EngineError> {
        let names: Vec<String> = read(&self.inner.containers)
            .values()
            .filter(|t| t.record.state == "running")
            .map(|t| t.record.name.clone())
            .collect();
        self.assess_names(names).await?;
        // Verdicts of removed containers go with them (a host that runs many
        // short-lived containers would otherwise keep every one it ever saw).
        let known: std::collections::HashSet<String> = read(&self.inner.containers).values().map(|t| t.record.name.clone()).collect();
        crate::write(&self.inner.verdicts).retain(|name, _| known.contains(name));
        Ok(())
    }

    /// Assesses one container (by id or name) now and returns the verdict.
    pub async fn assess_container(&self, id_or_name: &str) -> Result<LeakStatus, EngineError> {
        let name = self.container(id_or_name).await?.info.name;
        let mut results = self.assess_names(vec![name]).await?;
        results.pop().map(|(_, s)| s).ok_or_else(|| EngineError::Internal("no verdict".into()))
    }

    async fn assess_names(&self, names: Vec<String>) -> Result<Vec<(String, LeakStatus)>, EngineError> {
        let now = now_ms();
        let results = self
            .blocking(move |e| {
                let store = &e.inner.reader;
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let points = store.series(&name, now - LOOKBACK_MS, now + 1, 60_000, SeriesSource::Rollup1m)?;
                    let limit = points.iter().rev().find_map(|p| p.limit_bytes).map(|l| l as f64);
                    let samples: Vec<Sample> =
                        points.iter().map(|p| Sample { t: p.time_ms as f64 / 1000.0, bytes: p.working_set_min_bytes as f64 }).collect();
                    let starts: Vec<f64> = store
                        .events(&name, now - LOOKBACK_MS, now + 1)?
                        .iter()
                        .filter(|event| event.action == "start")
                        // To the minute of the rollup that holds it: that minute's minimum is already the new process's.
                        .map(|event| (event.time_ms / 60_000 * 60) as f64)
                        .collect();
                    out.push((name, status_of(&samples, limit, &starts, now, &e.inner.config.detect)));
                }
                Ok(out)
            })
            .await?;
        let mut verdicts = crate::write(&self.inner.verdicts);
        for (name, status) in &results {
            verdicts.insert(name.clone(), status.clone());
        }
        Ok(results)
    }

    /// A limit from the observed working set: p99.9 of the per-minute peaks
    /// over the kept rollups plus 25 % headroom, rounded up to 64 MiB. `None`
    /// with less than an hour of history (too little to say).
    pub async fn limit_advice(&self, id_or_name: &str) -> Result<Option<LimitAdvice>, EngineError> {
        let name = self.container(id_or_name).await?.info.name;
        let from = now_ms() - self.inner.config.rollup_retention.as_millis() as i64;
        let points = self
            .blocking({
                let name = name.clone();
                move |e| Ok(e.inner.reader.series(&name, from, now_ms() + 1, 60_000, SeriesSource::Rollup1m)?)
            })
            .await?;
        Ok(advice(&name, points.iter().map(|p| p.working_set_max_bytes).collect()))
    }

    /// The latest verdict for a container name, if assessed.
    pub fn leak_status(&self, name: &str) -> Option<LeakStatus> {
        read(&self.inner.verdicts).get(name).cloned()
    }
}

const MIB: u64 = 1 << 20;

/// The suggestion itself, from per-minute peaks.
pub fn advice(name: &str, mut peaks: Vec<u64>) -> Option<LimitAdvice> {
    if peaks.len() < 60 {
        return None;
    }
    peaks.sort_unstable();
    let index = ((peaks.len() as f64 * 0.999).ceil() as usize).clamp(1, peaks.len()) - 1;
    let p999 = peaks[index];
    let suggested = (p999 + p999 / 4).div_ceil(64 * MIB).max(1) * 64 * MIB;
    let mib = suggested / MIB;
    Some(LimitAdvice {
        p999_bytes: p999,
        suggested_bytes: suggested,
        observed_minutes: peaks.len() as u64,
        command: format!("docker update --memory {mib}m --memory-swap {mib}m {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_the_p999_peak_plus_headroom_rounded_to_64_mib() {
        assert!(advice("x", vec![100 * MIB; 59]).is_none());
        let mut peaks = vec![200 * MIB; 2000];
        peaks[0] = 900 * MIB; // one outlier minute in 2000 is above the 99.9th percentile
        let a = advice("web", peaks).unwrap();
        assert_eq!(a.p999_bytes, 200 * MIB);
        assert_eq!(a.suggested_bytes, 256 * MIB);
        assert_eq!(a.command, "docker update --memory 256m --memory-swap 256m web");
    }
}
