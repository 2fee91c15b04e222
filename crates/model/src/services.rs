//! A verdict per compose service, over its replicas: an on-call engineer
//! thinks in services, and replicas run the same code, so one leaking replica
//! is the service's problem (and the others say whether it is every replica or
//! one bad one).

use serde::{Deserialize, Serialize};

use crate::{format_duration, ContainerInfo};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceVerdict {
    /// The engine's host the replicas run on (a compose project belongs to one engine; the same
    /// project on two hosts is two deployments, each with its own verdict).
    #[serde(default)]
    pub host: String,
    pub project: Option<String>,
    pub service: String,
    /// Running replicas, by container name.
    pub replicas: Vec<String>,
    /// The replicas whose verdict is `leak`.
    pub leaking: Vec<String>,
    /// The most severe verdict among the replicas (`leak`, `growing`, …; `not assessed yet` before any is).
    pub verdict: String,
    /// The soonest any leaking or growing replica reaches its limit.
    pub time_to_limit_seconds: Option<f64>,
    /// In one sentence.
    pub reason: String,
}

impl ServiceVerdict {
    /// `project/service`, or the service alone.
    pub fn label(&self) -> String {
        match &self.project {
            Some(p) => format!("{p}/{}", self.service),
            None => self.service.clone(),
        }
    }
}

/// One verdict per compose service among the running containers, most severe first.
pub fn service_verdicts(containers: &[ContainerInfo]) -> Vec<ServiceVerdict> {
    let mut groups: Vec<((String, Option<String>, String), Vec<&ContainerInfo>)> = Vec::new();
    for c in containers.iter().filter(|c| c.is_running()) {
        let Some(service) = &c.compose_service else { continue };
        let key = (c.host.clone(), c.compose_project.clone(), service.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(c),
            None => groups.push((key, vec![c])),
        }
    }
    let mut out: Vec<ServiceVerdict> = groups.into_iter().map(|((host, project, service), members)| verdict_of(host, project, service, members)).collect();
    let severity = |v: &ServiceVerdict| crate::LeakStatus::severity_of(&v.verdict);
    out.sort_by(|a, b| {
        severity(b)
            .cmp(&severity(a))
            .then_with(|| a.time_to_limit_seconds.unwrap_or(f64::MAX).total_cmp(&b.time_to_limit_seconds.unwrap_or(f64::MAX)))
            .then_with(|| a.label().cmp(&b.label()))
            .then_with(|| a.host.cmp(&b.host))
    });
    out
}

fn verdict_of(host: String, project: Option<String>, service: String, mut members: Vec<&ContainerInfo>) -> ServiceVerdict {
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let replicas: Vec<String> = members.iter().map(|c| c.name.clone()).collect();
    let leaking: Vec<String> = members.iter().filter(|c| c.leak.as_ref().is_some_and(|l| l.leak)).map(|c| c.name.clone()).collect();
    let worst = members.iter().filter_map(|c| c.leak.as_ref()).max_by_key(|l| l.severity());
    let verdict = worst.map(|l| l.verdict.clone()).unwrap_or_else(|| "not assessed yet".into());
    let time_to_limit_seconds = members
        .iter()
        .filter_map(|c| c.leak.as_ref())
        .filter(|l| l.verdict == "leak" || l.verdict == "growing")
        .filter_map(|l| l.time_to_limit_seconds)
        .min_by(f64::total_cmp);
    let n = replicas.len();
    let soonest = time_to_limit_seconds.map(|t| format!("; the first reaches its limit in {}", format_duration(t))).unwrap_or_default();
    let reason = match (leaking.len(), n) {
        (0, 1) => format!("one replica, {verdict}"),
        (0, _) => {
            let mut words: Vec<String> = Vec::new();
            for word in ["growing", "warming up", "stable", "too young"] {
                let count = members.iter().filter(|c| c.leak.as_ref().is_some_and(|l| l.verdict == word)).count();
                if count > 0 {
                    words.push(format!("{count} {word}"));
                }
            }
            let unassessed = members.iter().filter(|c| c.leak.is_none()).count();
            if unassessed > 0 {
                words.push(format!("{unassessed} not assessed yet"));
            }
            format!("no replica leaks (of {n}: {}){soonest}", words.join(", "))
        }
        (k, _) if k == n => format!("all {n} replicas leak{soonest}: the service's code, not one replica"),
        (k, _) => format!(
            "{k} of {n} replicas leak ({}){soonest}; the others do not: a code path only some of the traffic takes, or state of those replicas",
            leaking.join(", ")
        ),
    };
    ServiceVerdict { host, project, service, replicas, leaking, verdict, time_to_limit_seconds, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LeakStatus;

    fn replica(name: &str, service: &str, verdict: Option<&str>, ttl: Option<f64>) -> ContainerInfo {
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            host: "h".into(),
            image: "app".into(),
            compose_project: Some("shop".into()),
            compose_service: Some(service.into()),
            state: "running".into(),
            limit_bytes: None,
            memory: None,
            sparkline: vec![],
            leak: verdict.map(|v| LeakStatus {
                leak: v == "leak",
                verdict: v.into(),
                slope_bytes_per_hour: 0.0,
                confidence: 0.5,
                time_to_limit_seconds: ttl,
                limit_bytes: None,
                window_start_ms: 0,
                window_end_ms: 0,
                floor_start_bytes: 0.0,
                floor_end_bytes: 0.0,
                reason: String::new(),
                assessed_ms: 0,
            }),
            auto_capture: None,
        }
    }

    #[test]
    fn replicas_are_grouped_by_service_and_the_leaking_ones_named() {
        let mut stopped = replica("shop-web-9", "web", Some("leak"), None);
        stopped.state = "exited".into();
        let list = vec![
            replica("shop-web-1", "web", Some("leak"), Some(4000.0)),
            replica("shop-web-2", "web", Some("stable"), None),
            replica("shop-web-3", "web", Some("leak"), Some(2400.0)),
            replica("shop-db-1", "db", Some("stable"), None),
            replica("shop-cache-1", "cache", None, None),
            stopped,
        ];
        let services = service_verdicts(&list);
        assert_eq!(services.iter().map(|s| s.label()).collect::<Vec<_>>(), ["shop/web", "shop/db", "shop/cache"]);
        let web = &services[0];
        assert_eq!((web.verdict.as_str(), web.replicas.len(), web.leaking.clone()), ("leak", 3, vec!["shop-web-1".to_string(), "shop-web-3".to_string()]));
        assert_eq!(web.time_to_limit_seconds, Some(2400.0));
        assert!(web.reason.starts_with("2 of 3 replicas leak (shop-web-1, shop-web-3); the first reaches its limit in 40 min"), "{}", web.reason);
        assert_eq!(services[2].verdict, "not assessed yet");
        let all = service_verdicts(&[replica("a-1", "a", Some("leak"), None), replica("a-2", "a", Some("leak"), None)]);
        assert!(all[0].reason.starts_with("all 2 replicas leak"), "{}", all[0].reason);
        let none = service_verdicts(&[replica("b-1", "b", Some("stable"), None), replica("b-2", "b", Some("growing"), Some(7200.0))]);
        assert_eq!(none[0].verdict, "growing");
        assert_eq!(none[0].reason, "no replica leaks (of 2: 1 growing, 1 stable); the first reaches its limit in 2.0 h");

        // The same project on two hosts is two deployments.
        let mut elsewhere = replica("shop-web-1", "web", Some("stable"), None);
        elsewhere.host = "edge-1".into();
        let two = service_verdicts(&[replica("shop-web-1", "web", Some("leak"), None), elsewhere]);
        assert_eq!(two.iter().map(|s| (s.host.as_str(), s.verdict.as_str())).collect::<Vec<_>>(), [("h", "leak"), ("edge-1", "stable")]);
    }
}
