//! The sample services behave as designed, measured through Leakscope's own
//! sampler; and `leakscope demo up|down` is repeatable and touches nothing else.

use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, leakscope_bin, Server, TestContainer};

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// (seconds since `start`, working-set bytes) of a container's raw samples.
fn samples(server: &Server, name: &str, start_ms: i64) -> Vec<(f64, f64)> {
    let (status, series) = server.get_json(&format!("/api/v1/containers/{name}/memory?range=15m&step=1"));
    assert_eq!(status, 200, "{series}");
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = (p["time_ms"].as_i64().unwrap() - start_ms) as f64 / 1000.0;
            (t, p["working_set_bytes"].as_f64().unwrap())
        })
        .collect()
}

fn window(points: &[(f64, f64)], from_s: f64, to_s: f64) -> Vec<(f64, f64)> {
    points.iter().copied().filter(|(t, _)| *t >= from_s && *t <= to_s).collect()
}

/// Least-squares slope in bytes per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mt, mv) = points.iter().fold((0.0, 0.0), |(a, b), (t, v)| (a + t / n, b + v / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (t, v)| (num + (t - mt) * (v - mv), den + (t - mt) * (t - mt)));
    num / den
}

fn band(points: &[(f64, f64)]) -> f64 {
    let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    max - min
}

#[test]
fn sample_services_behave_as_designed() {
    let server = Server::start(&[], &[]);
    let rate_kib = 512.0;
    let leak_env = ["-e", "LEAK_KIB_PER_SEC=512", "-e", "OBJECT_BYTES=16384", "-m", "768m"];
    let java = fixture_image("java");
    let start_ms = chrono_now_ms();
    let mut leakers = Vec::new();
    for (what, image) in [("java-leak", java.clone()), ("node-leak", fixture_image("node")), ("python-leak", fixture_image("python")), ("native-leak", fixture_image("native"))] {
        let mut options = leak_env.to_vec();
        options.extend(["-e", "MODE=leak"]);
        leakers.push((what, TestContainer::run_image(what, &image, &options, &[])));
    }
    let steady = TestContainer::run_image("java-steady", &java, &["-e", "MODE=steady", "-e", "GARBAGE_MIB_PER_SEC=20", "-m", "256m"], &[]);
    let warmup = TestContainer::run_image(
        "java-warmup",
        &java,
        &["-e", "MODE=warmup", "-e", "LEAK_KIB_PER_SEC=1024", "-e", "CACHE_MIB=24", "-m", "256m"],
        &[],
    );

    // 30 s to start up (JVM, interpreters), then two minutes of measurement.
    let (from_s, to_s) = (30.0, 150.0);
    let begun = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(to_s + 2.0).saturating_sub(begun.elapsed()));

    let mut failures = Vec::new();
    for (what, container) in &leakers {
        let points = window(&samples(&server, &container.name, start_ms), from_s, to_s);
        assert!(points.len() > 60, "{what}: only {} samples", points.len());
        let measured = slope(&points) / KIB;
        println!("{what}: {measured:.0} KiB/s (configured {rate_kib})");
        if (measured / rate_kib - 1.0).abs() > 0.20 {
            failures.push(format!("{what} grew {measured:.0} KiB/s, configured {rate_kib} KiB/s"));
        }
    }
    let steady_points = window(&samples(&server, &steady.name, start_ms), from_s, to_s);
    let (steady_band, steady_slope) = (band(&steady_points) / MIB, slope(&steady_points) / KIB);
    println!("java-steady: band {steady_band:.1} MiB, slope {steady_slope:.1} KiB/s");
    if steady_band > 24.0 || steady_slope.abs() > 25.0 {
        failures.push(format!("java-steady is not steady: band {steady_band:.1} MiB, slope {steady_slope:.1} KiB/s"));
    }
    let warmup_all = samples(&server, &warmup.name, start_ms);
    let plateau = window(&warmup_all, 60.0, to_s);
    let first = warmup_all.first().map(|p| p.1).unwrap_or(0.0);
    let plateau_slope = slope(&plateau) / KIB;
    let filled = (plateau.iter().map(|p| p.1).sum::<f64>() / plateau.len() as f64 - first) / MIB;
    println!("java-warmup: filled {filled:.1} MiB, then slope {plateau_slope:.1} KiB/s");
    if filled < 20.0 || plateau_slope.abs() > 25.0 {
        failures.push(format!("java-warmup: filled {filled:.1} MiB, then slope {plateau_slope:.1} KiB/s (want >= 20 MiB then flat)"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn demo(action: &[&str]) -> String {
    let output = std::process::Command::new(leakscope_bin()).arg("demo").args(action).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "demo {action:?} failed:\n{text}");
    text
}

fn demo_containers() -> Vec<String> {
    let list = docker(&["ps", "-a", "--filter", "label=io.leakscope.demo=true", "--format", "{{.Names}} {{.ID}}"]);
    let mut names: Vec<String> = list.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn demo_up_is_repeatable_and_down_removes_only_demo_containers() {
    // A bystander that looks like a demo container by name but has no label.
    let bystander = TestContainer::run_image("leakscope-demo-bystander", &fixture_image("native"), &["-m", "64m"], &[]);
    demo(&["up"]);
    let first = demo_containers();
    assert_eq!(first.len(), 6, "{first:?}");
    for service in ["java-leak", "java-steady", "java-warmup", "node-leak", "python-leak", "native-leak"] {
        let name = format!("leakscope-demo-{service}");
        assert!(first.iter().any(|l| l.starts_with(&format!("{name} "))), "{name} missing: {first:?}");
        let limit = docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.State.Running}}", &name]);
        let (limit, running) = limit.split_once(' ').unwrap();
        assert!(limit.parse::<u64>().unwrap() > 0, "{name} has no memory limit");
        assert_eq!(running, "true", "{name} is not running");
    }
    let again = demo(&["up"]);
    assert!(again.contains("already running"), "{again}");
    assert_eq!(demo_containers(), first, "a second `demo up` replaced containers");
    demo(&["down"]);
    assert!(demo_containers().is_empty());
    let still = docker(&["inspect", "-f", "{{.State.Running}}", &bystander.name]);
    assert_eq!(still, "true", "demo down touched a container that is not a demo container");
    let second_down = demo(&["down"]);
    assert!(second_down.contains("no demo containers"), "{second_down}");
}
