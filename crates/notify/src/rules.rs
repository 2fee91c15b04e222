//! When to speak: pure decisions from what the engine sees, so they are
//! tested without a clock or a network.
//!
//! A leak verdict or a limit share notifies once when its condition starts;
//! it must end (the verdict changes, memory falls 5 points under the share)
//! before it can notify again. OOM kills notify each time. Every (container,
//! kind) speaks at most once per `repeat`; what the limit holds back is
//! counted and said with the next message.

use std::collections::{HashMap, HashSet};

use leakscope_model::alerts::OomKill;
use leakscope_model::{format_bytes, format_duration, ContainerInfo, Overview};

use crate::store::AlertState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    Leak,
    OomKill,
    LimitShare,
    Test,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Leak => "leak",
            AlertKind::OomKill => "oom-kill",
            AlertKind::LimitShare => "limit",
            AlertKind::Test => "test",
        }
    }
}

/// One thing to tell a team.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    pub container: String,
    pub host: String,
    /// `Leak: web on docker-1`.
    pub title: String,
    /// What was seen, in one or two sentences (the verdict's own reasoning for a leak).
    pub sentence: String,
    pub verdict: Option<String>,
    pub time_to_limit_seconds: Option<f64>,
    pub working_set_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub time_ms: i64,
    /// Alerts of this kind for this container held back by the rate limit since the last one sent.
    pub held: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Share of the memory limit whose crossing notifies (0.9 = 90 %).
    pub limit_share: f64,
    /// At most one notification per container and kind in this many milliseconds.
    pub repeat_ms: i64,
}

/// Under the share by this much before a crossing can notify again.
const SHARE_HYSTERESIS: f64 = 0.05;

/// A state change to keep: (subject, kind, new state).
pub type Change = (String, &'static str, AlertState);

pub struct Watcher {
    rules: Rules,
    states: HashMap<(String, &'static str), AlertState>,
}

fn kind_key(kind: &str) -> Option<&'static str> {
    [AlertKind::Leak, AlertKind::OomKill, AlertKind::LimitShare].into_iter().map(AlertKind::as_str).find(|k| *k == kind)
}

/// How alerts name a container: unique across hosts.
pub fn subject(host: &str, container: &str) -> String {
    format!("{host}/{container}")
}

impl Watcher {
    /// `saved`: the states kept from before a restart.
    pub fn new(rules: Rules, saved: Vec<(String, String, AlertState)>) -> Self {
        let states = saved.into_iter().filter_map(|(subject, kind, state)| Some(((subject, kind_key(&kind)?), state))).collect();
        Watcher { rules, states }
    }

    /// The alerts an overview (one sampling tick) starts, and the states to keep.
    pub fn observe(&mut self, overview: &Overview, now_ms: i64) -> (Vec<Alert>, Vec<Change>) {
        let (mut alerts, mut changes) = (Vec::new(), Vec::new());
        for c in &overview.containers {
            let subject = subject(&c.host, &c.name);
            let running = c.state == "running";
            // Leak: only a fresh verdict on a running container speaks or ends the condition.
            if let Some(status) = c.leak.as_ref().filter(|_| running) {
                if status.leak {
                    if let Some(held) = self.raise(&subject, AlertKind::Leak, now_ms, &mut changes) {
                        alerts.push(leak_alert(c, held, now_ms));
                    }
                } else {
                    self.clear(&subject, AlertKind::Leak, &mut changes);
                }
            }
            // Without a limit of its own the kernel's limit is the host's RAM: no share to cross.
            let share = c.memory.as_ref().filter(|m| running && m.limit_set).and_then(|m| m.limit_fraction());
            match share {
                Some(share) if share >= self.rules.limit_share => {
                    if let Some(held) = self.raise(&subject, AlertKind::LimitShare, now_ms, &mut changes) {
                        alerts.push(share_alert(c, share, held, now_ms));
                    }
                }
                Some(share) if share >= self.rules.limit_share - SHARE_HYSTERESIS => {}
                _ => self.clear(&subject, AlertKind::LimitShare, &mut changes),
            }
        }
        // Containers that are gone leave nothing behind once their rate limit has run
        // out (a host that runs many short-lived containers would otherwise keep them all).
        if !self.states.is_empty() {
            let present: HashSet<String> = overview.containers.iter().map(|c| subject(&c.host, &c.name)).collect();
            let repeat_ms = self.rules.repeat_ms;
            self.states.retain(|(subject, _), s| present.contains(subject) || s.last_sent_ms.is_some_and(|t| now_ms - t < repeat_ms));
        }
        (alerts, changes)
    }

    /// An OOM kill: notifies unless one for this container went out within `repeat`.
    pub fn oom(&mut self, kill: &OomKill, info: Option<&ContainerInfo>, now_ms: i64) -> (Option<Alert>, Vec<Change>) {
        let subject = subject(&kill.host, &kill.container);
        let mut changes = Vec::new();
        let key = (subject.clone(), AlertKind::OomKill.as_str());
        let state = self.states.entry(key).or_default();
        let alert = if state.last_sent_ms.is_some_and(|t| now_ms - t < self.rules.repeat_ms) {
            state.held += 1;
            None
        } else {
            let held = std::mem::take(&mut state.held);
            state.last_sent_ms = Some(now_ms);
            Some(oom_alert(kill, info, held))
        };
        changes.push((subject, AlertKind::OomKill.as_str(), *state));
        (alert, changes)
    }

    /// The condition holds: notify if it just started and the rate limit allows.
    fn raise(&mut self, subject: &str, kind: AlertKind, now_ms: i64, changes: &mut Vec<Change>) -> Option<u32> {
        let state = self.states.entry((subject.to_string(), kind.as_str())).or_default();
        if state.active {
            return None;
        }
        state.active = true;
        let sent = if state.last_sent_ms.is_some_and(|t| now_ms - t < self.rules.repeat_ms) {
            state.held += 1;
            None
        } else {
            state.last_sent_ms = Some(now_ms);
            Some(std::mem::take(&mut state.held))
        };
        changes.push((subject.to_string(), kind.as_str(), *state));
        sent
    }

    fn clear(&mut self, subject: &str, kind: AlertKind, changes: &mut Vec<Change>) {
        if let Some(state) = self.states.get_mut(&(subject.to_string(), kind.as_str())) {
            if state.active {
                state.active = false;
                changes.push((subject.to_string(), kind.as_str(), *state));
            }
        }
    }
}

fn held_words(held: u32, what: &str) -> String {
    match held {
        0 => String::new(),
        1 => format!(" (1 more {what} since the last message was held back)"),
        n => format!(" ({n} more {what} since the last message were held back)"),
    }
}

fn limit_words(ttl: Option<f64>, limit: Option<u64>) -> String {
    match (ttl, limit) {
        (Some(ttl), Some(limit)) => format!(" At this rate it reaches its {} limit in {}.", format_bytes(limit), format_duration(ttl)),
        (Some(ttl), None) => format!(" At this rate it reaches its limit in {}.", format_duration(ttl)),
        _ => String::new(),
    }
}

fn leak_alert(c: &ContainerInfo, held: u32, now_ms: i64) -> Alert {
    let status = c.leak.as_ref();
    let ttl = status.and_then(|s| s.time_to_limit_seconds);
    let reason = status.map(|s| s.reason.clone()).unwrap_or_default();
    Alert {
        kind: AlertKind::Leak,
        container: c.name.clone(),
        host: c.host.clone(),
        title: format!("Leak: {} on {}", c.name, c.host),
        sentence: format!("{reason}{}{}", limit_words(ttl, c.limit_bytes), held_words(held, "leak verdict")),
        verdict: status.map(|s| s.verdict.clone()),
        time_to_limit_seconds: ttl,
        working_set_bytes: c.memory.as_ref().map(|m| m.working_set_bytes),
        limit_bytes: c.limit_bytes,
        time_ms: now_ms,
        held,
    }
}

fn share_alert(c: &ContainerInfo, share: f64, held: u32, now_ms: i64) -> Alert {
    let ws = c.memory.as_ref().map(|m| m.working_set_bytes).unwrap_or(0);
    let limit = c.memory.as_ref().and_then(|m| m.limit_bytes).or(c.limit_bytes).unwrap_or(0);
    let ttl = c.leak.as_ref().and_then(|s| s.time_to_limit_seconds);
    Alert {
        kind: AlertKind::LimitShare,
        container: c.name.clone(),
        host: c.host.clone(),
        title: format!("Near its limit: {} on {}", c.name, c.host),
        sentence: format!(
            "{} uses {:.0} % of its {} memory limit ({}).{}{}",
            c.name,
            share * 100.0,
            format_bytes(limit),
            format_bytes(ws),
            limit_words(ttl, None),
            held_words(held, "crossing")
        ),
        verdict: c.leak.as_ref().map(|s| s.verdict.clone()),
        time_to_limit_seconds: ttl,
        working_set_bytes: Some(ws),
        limit_bytes: Some(limit),
        time_ms: now_ms,
        held,
    }
}

fn oom_alert(kill: &OomKill, info: Option<&ContainerInfo>, held: u32) -> Alert {
    let limit = info.and_then(|c| c.limit_bytes);
    let limit_text = limit.map(|l| format!(" at its {} limit", format_bytes(l))).unwrap_or_default();
    Alert {
        kind: AlertKind::OomKill,
        container: kill.container.clone(),
        host: kill.host.clone(),
        title: format!("OOM kill: {} on {}", kill.container, kill.host),
        sentence: format!("The kernel killed a process of {}{limit_text} for lack of memory.{}", kill.container, held_words(held, "OOM kill")),
        verdict: info.and_then(|c| c.leak.as_ref()).map(|s| s.verdict.clone()),
        time_to_limit_seconds: None,
        working_set_bytes: None,
        limit_bytes: limit,
        time_ms: kill.time_ms,
        held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakscope_model::{LeakStatus, MemorySnapshot};

    const MIB: u64 = 1 << 20;
    const RULES: Rules = Rules { limit_share: 0.9, repeat_ms: 3_600_000 };

    fn container(verdict: Option<&str>, ws_mib: u64) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "web".into(),
            host: "h1".into(),
            image: "app".into(),
            compose_project: None,
            compose_service: None,
            state: "running".into(),
            limit_bytes: Some(100 * MIB),
            memory: Some(MemorySnapshot { time_ms: 0, working_set_bytes: ws_mib * MIB, usage_bytes: ws_mib * MIB, rss_bytes: 0, cache_bytes: 0, limit_bytes: Some(100 * MIB), limit_set: true }),
            sparkline: vec![],
            leak: verdict.map(|v| LeakStatus {
                leak: v == "leak",
                verdict: v.into(),
                slope_bytes_per_hour: 1e8,
                confidence: 0.9,
                time_to_limit_seconds: Some(1800.0),
                limit_bytes: Some(100 * MIB),
                window_start_ms: 0,
                window_end_ms: 0,
                floor_start_bytes: 0.0,
                floor_end_bytes: 0.0,
                reason: "floor grew steadily by 95 MiB/h for 40 min".into(),
                assessed_ms: 0,
            }),
            auto_capture: None,
        }
    }

    fn overview(c: ContainerInfo) -> Overview {
        Overview { containers: vec![c], ..Default::default() }
    }

    #[test]
    fn a_leak_verdict_speaks_once_until_it_ends() {
        let mut w = Watcher::new(RULES, vec![]);
        assert!(w.observe(&overview(container(Some("growing"), 10)), 0).0.is_empty());
        let (alerts, changes) = w.observe(&overview(container(Some("leak"), 10)), 1000);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].title, "Leak: web on h1");
        assert!(alerts[0].sentence.contains("95 MiB/h") && alerts[0].sentence.contains("100 MiB limit in 30 min"), "{}", alerts[0].sentence);
        assert_eq!(changes.len(), 1);
        // Every later tick with the same verdict: silence, nothing to store.
        for t in 2..50 {
            assert_eq!(w.observe(&overview(container(Some("leak"), 10)), t * 1000), (vec![], vec![]));
        }
        // No verdict (a restarted Leakscope before its first assessment) changes nothing.
        assert!(w.observe(&overview(container(None, 10)), 60_000).0.is_empty());
        // It ends, comes back within the hour: held back, then said with the next one.
        w.observe(&overview(container(Some("growing"), 10)), 120_000);
        assert!(w.observe(&overview(container(Some("leak"), 10)), 180_000).0.is_empty());
        w.observe(&overview(container(Some("stable"), 10)), 240_000);
        let (alerts, _) = w.observe(&overview(container(Some("leak"), 10)), 4_000_000);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].held, 1);
        assert!(alerts[0].sentence.contains("1 more leak verdict"), "{}", alerts[0].sentence);
    }

    #[test]
    fn containers_that_are_gone_are_forgotten_once_their_rate_limit_ran_out() {
        let mut w = Watcher::new(RULES, vec![]);
        assert_eq!(w.observe(&overview(container(Some("leak"), 95)), 1000).0.len(), 2);
        let others = Overview { containers: vec![], ..Default::default() };
        w.observe(&others, 2000);
        assert_eq!(w.states.len(), 2, "within the hour it is kept (a re-created container stays rate-limited)");
        w.observe(&others, 1000 + RULES.repeat_ms);
        assert!(w.states.is_empty(), "{:?}", w.states);
    }

    #[test]
    fn a_restart_remembers_what_was_said() {
        let mut w = Watcher::new(RULES, vec![]);
        let (_, changes) = w.observe(&overview(container(Some("leak"), 10)), 1000);
        let saved = changes.into_iter().map(|(s, k, st)| (s, k.to_string(), st)).collect();
        let mut again = Watcher::new(RULES, saved);
        assert!(again.observe(&overview(container(Some("leak"), 10)), 2000).0.is_empty());
    }

    #[test]
    fn the_limit_share_speaks_on_crossing_with_hysteresis() {
        let mut w = Watcher::new(RULES, vec![]);
        assert!(w.observe(&overview(container(None, 80)), 0).0.is_empty());
        let (alerts, _) = w.observe(&overview(container(None, 91)), 1);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].sentence.starts_with("web uses 91 % of its 100 MiB memory limit"), "{}", alerts[0].sentence);
        // Wobbling around the line is one crossing.
        assert!(w.observe(&overview(container(None, 88)), 2).0.is_empty());
        assert!(w.observe(&overview(container(None, 92)), 3).0.is_empty());
        // Well under, then over again after the repeat interval: a second message.
        w.observe(&overview(container(None, 50)), 4);
        assert_eq!(w.observe(&overview(container(None, 95)), 3_700_000).0.len(), 1);
        // No limit, no share.
        let mut unlimited = container(None, 95);
        unlimited.limit_bytes = None;
        unlimited.memory.as_mut().unwrap().limit_set = false;
        assert!(Watcher::new(RULES, vec![]).observe(&overview(unlimited), 0).0.is_empty());
    }

    #[test]
    fn oom_kills_each_speak_unless_one_just_did() {
        let mut w = Watcher::new(RULES, vec![]);
        let kill = |t| OomKill { container: "web".into(), host: "h1".into(), time_ms: t };
        let info = container(Some("leak"), 99);
        let (first, _) = w.oom(&kill(0), Some(&info), 0);
        let first = first.unwrap();
        assert_eq!(first.title, "OOM kill: web on h1");
        assert!(first.sentence.contains("at its 100 MiB limit"), "{}", first.sentence);
        assert!(w.oom(&kill(1), Some(&info), 60_000).0.is_none());
        assert!(w.oom(&kill(2), None, 120_000).0.is_none());
        let (later, _) = w.oom(&kill(3), None, 3_700_000);
        assert_eq!(later.unwrap().held, 2);
    }
}
