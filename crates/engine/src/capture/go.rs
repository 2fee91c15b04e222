//! Go: programs that serve `net/http/pprof` on loopback give a heap profile
//! (`/debug/pprof/heap`: in-use and allocated space by call stack). Our
//! helper finds them (the build information every Go binary carries, their
//! listening sockets) and asks the program itself, as `go tool pprof` would;
//! nothing is stopped or injected. Go programs without pprof get a memory map.

use leakscope_model::capture::RuntimeProcess;

use super::{listed_process, said, status_line, Capture, Produced, Recipe, StepResult};

pub(super) struct Go;

#[async_trait::async_trait]
impl Recipe for Go {
    fn kind(&self) -> &'static str {
        "heap-profile"
    }

    async fn find(&self, capture: &mut Capture) -> StepResult<Vec<RuntimeProcess>> {
        // A Go program is often one static binary in a scratch image, where our
        // helper cannot be copied: then it looks from a helper container, unless
        // a richer runtime was found already and no heap profile was asked for.
        if capture.helper.is_none() && capture.found_richer && capture.kind.as_deref() != Some(self.kind()) {
            return Ok(Vec::new());
        }
        let listed = capture.run_helper(&["gos".to_string()], "0:0").await?;
        if listed.exit_code != 0 {
            return Err(format!("listing the Go programs in the container failed: {}", said(&listed.stderr)));
        }
        Ok(parse_gos(&listed.stdout))
    }

    async fn produce(&self, capture: &mut Capture, process: &RuntimeProcess) -> StepResult<Produced> {
        let port = process.tool.as_deref().and_then(|t| t.rsplit(':').next()).ok_or("this Go program serves no heap profile")?.to_string();
        capture.engine.update_job(&capture.job, |j| j.recipe = Some("go-pprof".into()));
        let mut memstats = Vec::new();
        let user = format!("{}:{}", process.uid, process.gid);
        let (staged, _) = capture
            .stream_helper(&["go-profile".to_string(), port], &user, "pprof", "heap profile", &mut |line| {
                if let Some(("memstats", values)) = status_line(line) {
                    memstats.push(values.to_string());
                }
            })
            .await?;
        let version = process.version.clone().unwrap_or_else(|| "go".into());
        Ok(Produced { staged, runtime: with_memstats(&version, &memstats), pause_ms: Some(0) })
    }
}

/// `go1.19.8 (runtime.MemStats: HeapAlloc 775 MiB, HeapSys 776 MiB, Sys 814 MiB, 10 GCs)`:
/// what the Go runtime itself counts, kept with the dump's record.
fn with_memstats(version: &str, memstats: &[String]) -> String {
    let value = |name: &str| memstats.iter().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
    let mut parts: Vec<String> = ["HeapAlloc", "HeapSys", "Sys"]
        .into_iter()
        .filter_map(|name| value(name).map(|v| format!("{name} {}", leakscope_model::format_bytes(v))))
        .collect();
    parts.extend(value("NumGC").map(|n| format!("{n} GCs")));
    if parts.is_empty() {
        version.to_string()
    } else {
        format!("{version} (runtime.MemStats: {})", parts.join(", "))
    }
}

/// `gos` lines: pid uid gid version rss_kib pprof_port command (tab-separated).
fn parse_gos(text: &str) -> Vec<RuntimeProcess> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(7, '\t').collect();
            if f.len() < 7 {
                return None;
            }
            let port = f[5].parse::<u16>().ok();
            Some(RuntimeProcess {
                version: Some(f[3].to_string()),
                tool: port.map(|p| format!("net/http/pprof on 127.0.0.1:{p}")),
                capturable: port.is_some(),
                note: Some(match port {
                    Some(p) => format!("serves net/http/pprof on port {p}: heap profile"),
                    None => "serves no net/http/pprof on loopback: import _ \"net/http/pprof\" and serve it on 127.0.0.1 for heap profiles; a memory map can be taken".into(),
                }),
                ..listed_process(&f, "go", f[4])?
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_go_listing() {
        let found = parse_gos("7\t0\t0\tgo1.19.8\t2048\t6060\t/goleak\n9\t0\t0\tgo1.22\t10\t-\t/other\n");
        assert_eq!(found.len(), 2);
        assert!(found[0].capturable && !found[1].capturable);
        assert_eq!(found[0].tool.as_deref(), Some("net/http/pprof on 127.0.0.1:6060"));
        let memstats = ["HeapAlloc 1048576".to_string(), "Sys 2097152".into(), "NumGC 3".into()];
        assert_eq!(with_memstats("go1.19.8", &memstats), "go1.19.8 (runtime.MemStats: HeapAlloc 1.00 MiB, Sys 2.00 MiB, 3 GCs)");
        assert_eq!(with_memstats("go1.19.8", &[]), "go1.19.8");
    }
}
