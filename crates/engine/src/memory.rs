//! Memory numbers exactly as `docker stats` computes them, from either source
//! (the Engine stats API or the host's cgroup files), so both paths agree.

use std::collections::HashMap;

/// One memory reading of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    pub usage: u64,
    pub working_set: u64,
    /// Anonymous memory: `total_rss` (cgroup v1) or `anon` (v2).
    pub rss: u64,
    /// Page cache: `total_cache` (v1) or `file` (v2).
    pub cache: u64,
}

/// Which cgroup hierarchy produced a `memory.stat` map; it decides the key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// The Engine API passes `memory.stat` through unchanged; v1 maps carry `total_*` keys.
    pub fn detect(stats: &HashMap<String, u64>) -> Self {
        if stats.contains_key("total_inactive_file") || stats.contains_key("total_rss") {
            CgroupVersion::V1
        } else {
            CgroupVersion::V2
        }
    }
}

impl MemoryReading {
    /// Working set as the docker CLI defines it: usage minus inactive file
    /// cache (`total_inactive_file` on v1, `inactive_file` on v2), each only
    /// when smaller than usage; otherwise usage itself.
    pub fn from_stat(usage: u64, stats: &HashMap<String, u64>) -> Self {
        let version = CgroupVersion::detect(stats);
        let get = |key: &str| stats.get(key).copied();
        let inactive_file = match version {
            CgroupVersion::V1 => get("total_inactive_file"),
            CgroupVersion::V2 => get("inactive_file"),
        };
        let working_set = match inactive_file {
            Some(inactive) if inactive < usage => usage - inactive,
            _ => usage,
        };
        let (rss, cache) = match version {
            CgroupVersion::V1 => (get("total_rss").unwrap_or(0), get("total_cache").unwrap_or(0)),
            CgroupVersion::V2 => (get("anon").unwrap_or(0), get("file").unwrap_or(0)),
        };
        MemoryReading { usage, working_set, rss, cache }
    }

    /// From one Engine API stats answer; `None` when the container is not running
    /// (the engine then sends an empty `memory_stats`).
    pub fn from_api(stats: &bollard::models::ContainerStatsResponse) -> Option<Self> {
        let memory = stats.memory_stats.as_ref()?;
        let usage = memory.usage?;
        let empty = HashMap::new();
        Some(Self::from_stat(usage, memory.stats.as_ref().unwrap_or(&empty)))
    }
}

/// Parses a cgroup `memory.stat` file (`key value` lines); malformed lines are skipped.
pub fn parse_memory_stat(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_fixture(name: &str) -> bollard::models::ContainerStatsResponse {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn cgroup_v1_recording_matches_docker_cli_formula() {
        // Recorded from Debian 12's docker.io 20.10 (cgroup v1) with busybox holding 40 MiB in /dev/shm.
        let stats = api_fixture("stats-cgroup-v1.json");
        let memory = stats.memory_stats.as_ref().unwrap();
        let map = memory.stats.as_ref().unwrap();
        let reading = MemoryReading::from_api(&stats).unwrap();
        assert_eq!(CgroupVersion::detect(map), CgroupVersion::V1);
        assert_eq!(reading.usage, memory.usage.unwrap());
        assert_eq!(reading.working_set, memory.usage.unwrap() - map["total_inactive_file"]);
        assert_eq!(reading.rss, map["total_rss"]);
        assert_eq!(reading.cache, map["total_cache"]);
        // 40 MiB in shm plus a little process memory.
        assert!(reading.working_set >= 40 << 20 && reading.working_set < 48 << 20, "{reading:?}");
    }

    #[test]
    fn cgroup_v2_recording_matches_docker_cli_formula() {
        let stats = api_fixture("stats-cgroup-v2.json");
        let memory = stats.memory_stats.as_ref().unwrap();
        let map = memory.stats.as_ref().unwrap();
        let reading = MemoryReading::from_api(&stats).unwrap();
        assert_eq!(CgroupVersion::detect(map), CgroupVersion::V2);
        assert_eq!(reading.working_set, memory.usage.unwrap() - map["inactive_file"]);
        assert_eq!(reading.rss, map["anon"]);
        assert_eq!(reading.cache, map["file"]);
    }

    #[test]
    fn stopped_container_has_no_reading() {
        let stats = api_fixture("stats-stopped.json");
        assert_eq!(MemoryReading::from_api(&stats), None);
    }

    #[test]
    fn inactive_file_not_smaller_than_usage_falls_back_to_usage() {
        let mut map = HashMap::new();
        map.insert("total_inactive_file".to_string(), 500);
        map.insert("total_rss".to_string(), 1);
        assert_eq!(MemoryReading::from_stat(400, &map).working_set, 400);
        assert_eq!(MemoryReading::from_stat(400, &HashMap::new()).working_set, 400);
    }

    #[test]
    fn memory_stat_parser_skips_garbage() {
        let map = parse_memory_stat("cache 12\nrss 7\nbroken\nneg -1\n\ninactive_file 3\n");
        assert_eq!(map.len(), 3);
        assert_eq!(map["rss"], 7);
    }
}
