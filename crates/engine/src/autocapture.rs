//! Automatic heap dumps: when a container is flagged `leak`, or its working set
//! crosses a share of its limit, take a dump; after further growth take a
//! second one, so a diff is ready when a human arrives.
//!
//! Opt-in (a dump pauses the JVM and holds secrets): a global policy
//! (`leakscope serve --auto-capture`) and a per-container label
//! `io.leakscope.capture` that overrides it (`off` included).
//!
//! Rate limits: at most two automatic dumps per container per episode (an
//! episode ends when the container is re-created or a day after its first
//! dump), at least `spacing` from the end of one to the start of the next, a
//! failed attempt waits as long, and only one automatic capture runs at a time.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use leakscope_model::dumps::DumpFilter;

use crate::capture::CaptureRequest;
use crate::{lock, now_ms, read, Engine};

/// The container label that overrides the global policy.
pub const CAPTURE_LABEL: &str = "io.leakscope.capture";
/// Automatic dumps in one episode: the first, and one more for the diff.
const DUMPS_PER_EPISODE: usize = 2;
const EPISODE_MS: i64 = 24 * 3600 * 1000;
const TICK: Duration = Duration::from_secs(5);

/// When to dump automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CapturePolicy {
    /// When the detector says `leak`.
    pub on_leak: bool,
    /// When the working set reaches this share (0..1] of the memory limit.
    pub at_share: Option<f64>,
}

impl CapturePolicy {
    pub fn is_off(&self) -> bool {
        !self.on_leak && self.at_share.is_none()
    }
}

impl FromStr for CapturePolicy {
    type Err = String;

    /// `off`, `on-leak`, `at-85%`, or both joined by a comma: `on-leak,at-85%`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut policy = CapturePolicy::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "off" => {}
                "on-leak" => policy.on_leak = true,
                _ => {
                    let percent = part
                        .strip_prefix("at-")
                        .and_then(|p| p.strip_suffix('%'))
                        .and_then(|p| p.parse::<f64>().ok())
                        .filter(|p| *p > 0.0 && *p <= 100.0)
                        .ok_or_else(|| format!("'{part}' is not a capture policy (use off, on-leak, at-85% or on-leak,at-85%)"))?;
                    policy.at_share = Some(percent / 100.0);
                }
            }
        }
        Ok(policy)
    }
}

impl std::fmt::Display for CapturePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.on_leak {
            parts.push("on-leak".to_string());
        }
        if let Some(share) = self.at_share {
            parts.push(format!("at-{}%", share * 100.0));
        }
        if parts.is_empty() {
            parts.push("off".into());
        }
        f.write_str(&parts.join(","))
    }
}

/// The global policy and its rate limit.
#[derive(Clone, Copy, Debug)]
pub struct AutoCaptureConfig {
    pub policy: CapturePolicy,
    /// Least time between two automatic dumps of one container (and before retrying a failed one).
    pub spacing: Duration,
}

impl Default for AutoCaptureConfig {
    fn default() -> Self {
        AutoCaptureConfig { policy: CapturePolicy::default(), spacing: Duration::from_secs(15 * 60) }
    }
}

/// What the loop remembers per container name.
#[derive(Default)]
pub(crate) struct AutoState {
    by_name: HashMap<String, Episode>,
    /// The job of the automatic capture in flight, with the container name it is for.
    in_flight: Option<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Episode {
    container_id: String,
    /// (time, working set) of each automatic dump taken.
    taken: Vec<(i64, u64)>,
    last_attempt_ms: Option<i64>,
}

/// What one container looks like to the decision.
#[derive(Debug, Clone)]
struct Observation {
    working_set: u64,
    limit: Option<u64>,
    leak: bool,
}

/// Why to dump now, or `None`. Pure so the rules are unit-tested.
fn decide(policy: &CapturePolicy, episode: &Episode, seen: &Observation, now: i64, spacing_ms: i64) -> Option<String> {
    if policy.is_off() || episode.taken.len() >= DUMPS_PER_EPISODE {
        return None;
    }
    if episode.last_attempt_ms.is_some_and(|t| now - t < spacing_ms) {
        return None;
    }
    match episode.taken.last() {
        None => {
            let share = seen.limit.filter(|&l| l > 0).map(|l| seen.working_set as f64 / l as f64);
            if policy.on_leak && seen.leak {
                Some("leak verdict".into())
            } else if let (Some(at), Some(share)) = (policy.at_share, share) {
                (share >= at).then(|| format!("working set at {:.0}% of its limit", share * 100.0))
            } else {
                None
            }
        }
        Some(&(first_ms, first_ws)) => {
            // The second dump waits for growth worth diffing: a tenth of the
            // limit, or a quarter of what it was without a limit.
            let growth = match seen.limit {
                Some(limit) => limit / 10,
                None => first_ws / 4,
            }
            .max(8 << 20);
            (now - first_ms >= spacing_ms && seen.working_set >= first_ws + growth).then(|| {
                format!("second dump for a diff: grew {} MiB since the first", (seen.working_set - first_ws) >> 20)
            })
        }
    }
}

pub(crate) async fn auto_capture_forever(engine: Engine) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        // Among servers sharing a database, one decides (or each would take the same dump).
        if engine.holds_background() {
            engine.auto_capture_tick().await;
        }
    }
}

impl Engine {
    /// The policy that applies to a container: its label, else the global one
    /// (also for a label that does not parse; the container page says so).
    pub fn capture_policy(&self, label: Option<&str>) -> CapturePolicy {
        let global = self.inner.config.auto_capture.policy;
        label.and_then(|l| l.parse::<CapturePolicy>().ok()).unwrap_or(global)
    }

    /// The policy in words for the pages; `None` when off.
    pub(crate) fn auto_capture_text(&self, label: Option<&str>) -> Option<String> {
        match label.map(str::parse::<CapturePolicy>) {
            Some(Err(e)) => Some(format!("label {CAPTURE_LABEL} ignored ({e}); the global setting applies")),
            Some(Ok(p)) => (!p.is_off()).then(|| format!("{p} (label {CAPTURE_LABEL})")),
            None => {
                let global = self.inner.config.auto_capture.policy;
                (!global.is_off()).then(|| format!("{global} (leakscope serve --auto-capture)"))
            }
        }
    }

    async fn auto_capture_tick(&self) {
        let now = now_ms();
        let spacing_ms = self.inner.config.auto_capture.spacing.as_millis() as i64;
        // The one in flight: wait for it, then book its outcome.
        let in_flight = lock(&self.inner.auto).in_flight.clone();
        if let Some((job_id, name)) = in_flight {
            let job = self.capture_job(&job_id);
            if job.as_ref().is_some_and(|j| j.state == "running") {
                return;
            }
            let mut auto = lock(&self.inner.auto);
            auto.in_flight = None;
            // A job no longer kept is counted as taken; a failed one is not (retried after the spacing).
            // Spacing counts from when a dump ended: a long copy does not shorten the pause between two.
            let finished = job.as_ref().and_then(|j| j.finished_ms).unwrap_or(now);
            if let Some(episode) = auto.by_name.get_mut(&name) {
                episode.last_attempt_ms = Some(finished);
                match &job {
                    Some(j) if j.state != "done" => {
                        episode.taken.pop();
                        tracing::warn!(container = %name, error = ?j.error, "automatic capture failed");
                    }
                    _ => {
                        if let Some(last) = episode.taken.last_mut() {
                            last.0 = finished;
                        }
                    }
                }
            }
        }
        let candidates: Vec<(String, String, Option<String>, Observation)> = read(&self.inner.containers)
            .values()
            .filter(|t| t.record.state == "running")
            .filter_map(|t| {
                let latest = t.latest.as_ref()?;
                Some((
                    t.record.id.clone(),
                    t.record.name.clone(),
                    t.record.capture_label.clone(),
                    Observation {
                        working_set: latest.working_set_bytes,
                        limit: latest.limit_bytes.filter(|_| latest.limit_set),
                        leak: false,
                    },
                ))
            })
            .collect();
        for (id, name, label, mut seen) in candidates {
            let policy = self.capture_policy(label.as_deref());
            if policy.is_off() {
                continue;
            }
            seen.leak = self.leak_status(&name).is_some_and(|s| s.leak);
            let known = lock(&self.inner.auto).by_name.get(&name).cloned();
            let mut episode = match known {
                Some(e) if e.container_id == id && e.taken.first().is_none_or(|t| now - t.0 < EPISODE_MS) => e,
                _ => self.episode_from_store(&id, &name, seen.working_set, now).await,
            };
            let Some(reason) = decide(&policy, &episode, &seen, now, spacing_ms) else {
                lock(&self.inner.auto).by_name.insert(name, episode);
                continue;
            };
            episode.last_attempt_ms = Some(now);
            let request = CaptureRequest {
                container: id.clone(),
                pid: None,
                // The policy chose to capture; automatic snapshots near the limit are its call.
                confirmed: true,
                trigger: "auto".into(),
                requested_by: Some(format!("leakscope: {reason}")),
                kind: None,
            };
            tracing::info!(container = %name, %reason, "automatic heap dump");
            match self.start_capture(request).await {
                Ok(job_id) => {
                    episode.taken.push((now, seen.working_set));
                    let mut auto = lock(&self.inner.auto);
                    auto.by_name.insert(name.clone(), episode);
                    auto.in_flight = Some((job_id, name));
                    return; // one at a time
                }
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "automatic capture could not start");
                    lock(&self.inner.auto).by_name.insert(name, episode);
                }
            }
        }
    }

    /// After a restart of Leakscope, the automatic dumps already stored for
    /// this container count; growth for the second is measured from now.
    async fn episode_from_store(&self, id: &str, name: &str, working_set: u64, now: i64) -> Episode {
        let filter = DumpFilter { container: Some(name.to_string()), ..Default::default() };
        let stored = self.blocking(move |e| lock(&e.inner.dumps).list(&filter)).await.unwrap_or_default();
        let mut taken: Vec<(i64, u64)> = stored
            .iter()
            .filter(|d| d.trigger == "auto" && d.container_id.as_deref() == Some(id) && now - d.created_ms < EPISODE_MS)
            .map(|d| (d.created_ms, working_set))
            .collect();
        taken.sort_unstable();
        Episode { container_id: id.to_string(), last_attempt_ms: taken.last().map(|t| t.0), taken }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const MIN: i64 = 60_000;

    fn seen(ws_mib: u64, limit_mib: Option<u64>, leak: bool) -> Observation {
        Observation { working_set: ws_mib * MIB, limit: limit_mib.map(|l| l * MIB), leak }
    }

    #[test]
    fn policies_parse_and_print() {
        assert!("off".parse::<CapturePolicy>().unwrap().is_off());
        assert_eq!("on-leak".parse::<CapturePolicy>().unwrap(), CapturePolicy { on_leak: true, at_share: None });
        let both: CapturePolicy = "on-leak, at-85%".parse().unwrap();
        assert_eq!(both, CapturePolicy { on_leak: true, at_share: Some(0.85) });
        assert_eq!(both.to_string(), "on-leak,at-85%");
        for bad in ["at-0%", "at-150%", "85", "always", "at-x%"] {
            assert!(bad.parse::<CapturePolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn first_dump_on_leak_or_share_of_limit() {
        let episode = Episode::default();
        let on_leak = CapturePolicy { on_leak: true, at_share: None };
        let at_80 = CapturePolicy { on_leak: false, at_share: Some(0.8) };
        assert_eq!(decide(&on_leak, &episode, &seen(100, Some(1000), false), 0, MIN), None);
        assert!(decide(&on_leak, &episode, &seen(100, Some(1000), true), 0, MIN).unwrap().contains("leak"));
        assert_eq!(decide(&at_80, &episode, &seen(799, Some(1000), true), 0, MIN), None);
        assert!(decide(&at_80, &episode, &seen(800, Some(1000), false), 0, MIN).unwrap().contains("80%"));
        // No limit: a share means nothing.
        assert_eq!(decide(&at_80, &episode, &seen(5000, None, false), 0, MIN), None);
        assert_eq!(decide(&CapturePolicy::default(), &episode, &seen(999, Some(1000), true), 0, MIN), None);
    }

    #[test]
    fn second_dump_waits_for_spacing_and_growth_then_no_third() {
        let policy = CapturePolicy { on_leak: true, at_share: None };
        let one = Episode { container_id: "c".into(), taken: vec![(0, 500 * MIB)], last_attempt_ms: Some(0) };
        // Grown enough but too soon.
        assert_eq!(decide(&policy, &one, &seen(700, Some(1000), true), 5 * MIN, 10 * MIN), None);
        // Late enough but not grown a tenth of the limit.
        assert_eq!(decide(&policy, &one, &seen(590, Some(1000), true), 11 * MIN, 10 * MIN), None);
        assert!(decide(&policy, &one, &seen(600, Some(1000), true), 11 * MIN, 10 * MIN).unwrap().contains("second"));
        // Without a limit: a quarter of the first working set.
        assert!(decide(&policy, &one, &seen(625, None, true), 11 * MIN, 10 * MIN).is_some());
        assert!(decide(&policy, &one, &seen(620, None, true), 11 * MIN, 10 * MIN).is_none());
        let two = Episode { taken: vec![(0, 500 * MIB), (11 * MIN, 600 * MIB)], ..one };
        assert_eq!(decide(&policy, &two, &seen(990, Some(1000), true), 600 * MIN, 10 * MIN), None);
    }

    #[test]
    fn a_failed_attempt_waits_for_the_spacing() {
        let policy = CapturePolicy { on_leak: true, at_share: None };
        let failed = Episode { container_id: "c".into(), taken: vec![], last_attempt_ms: Some(0) };
        assert_eq!(decide(&policy, &failed, &seen(100, None, true), 5 * MIN, 10 * MIN), None);
        assert!(decide(&policy, &failed, &seen(100, None, true), 10 * MIN, 10 * MIN).is_some());
    }
}
